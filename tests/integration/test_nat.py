#!/usr/bin/env python3
"""Outbound masquerade through the uplink, connection tracking, isolation.
The outside world is a namespace of ours (198.51.100.0/24)."""
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab import topo  # noqa: E402
from lab.env import BUILD, kernel_core, worker_core  # noqa: E402
from lab.proc import nsx, sh  # noqa: E402
from lab.testing import FAST, Dpsw, check, scenario_main  # noqa: E402
from lab.traffic import link_tx, mac_of, pktgen, ping, rx_packets, tcp_transfer, tcp_transfer_ns  # noqa: E402

OUT, HOST = Dpsw.OUTSIDE_IP, Dpsw.HOST_IP
UPLINK_XDP = os.environ.get("DPSW_UPLINK_XDP") == "1"  # dpsw serves the veth uplink as it would a NIC (XDP + AF_XDP)
XDP_OBJECT = os.path.join(BUILD, "bpf", "xsk_redirect.bpf.o")  # an XDP program to put on the uplink's peer (it passes what has no socket)

UDP_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1]))); s.settimeout(20)
print("listening", flush=True)
data, peer = s.recvfrom(2048); s.sendto(data[::-1], peer)
print(peer[0], flush=True)
"""
UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
for i in range(5):
    s.sendto(b"dpsw-udp-probe", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recvfrom(2048)[0].decode()); break
    except socket.timeout:
        pass
"""

# A UDP echo server that answers every datagram until killed (or, with a
# count, closes its socket after that many: the port then answers "port
# unreachable").
UDP_ECHO_MANY = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1])))
limit = int(sys.argv[2]) if len(sys.argv) > 2 else 0
print("listening", flush=True)
n = 0
while not limit or n < limit:
    data, peer = s.recvfrom(2048); s.sendto(data[::-1], peer); n += 1
s.close(); print("closed", n, flush=True)
"""
# A connected UDP client: one datagram every 20 ms for argv[3] seconds (or
# until refused); prints "sent answered" and then "refused" if the port was
# reported unreachable (an ICMP error reached its socket).
UDP_SESSION = r"""
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(0.2)
s.connect((sys.argv[1], int(sys.argv[2])))
sent = answered = 0; refused = False; end = time.time() + float(sys.argv[3])
while time.time() < end and not refused:
    try:
        s.send(b"dpsw-udp-session"); sent += 1
        if s.recv(100) == b"noisses-pdu-wspd": answered += 1
    except ConnectionRefusedError:
        refused = True
    except socket.timeout:
        pass
    time.sleep(0.02)
print(sent, answered, flush=True)
if refused: print("refused", flush=True)
"""
# argv[3] sockets to argv[1]:argv[2], each sends once and waits for its answer:
# that many replied (assured) UDP flows. Prints how many were answered.
UDP_MANY_FLOWS = r"""
import socket, sys
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(int(sys.argv[3]))]
ok = 0
for s in socks:
    s.settimeout(0.3)
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
    try:
        s.recv(10); ok += 1
    except socket.timeout:
        pass
print(ok, flush=True)
"""


def drops(d, ep, net, reason):
    return d.port_of(ep, net)["counters"]["drops"].get(reason, 0)


def outbound_icmp_udp_tcp():
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True) as d:
        d.start()
        cap = d.popen("out", "tcpdump", "-i", "eth0", "-n", "-c", "3", "icmp[icmptype] == icmp-echo",
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.8)
        ping(d, "c1", OUT)  # every one answered: the next hop was resolved at start
        seen = cap.communicate(timeout=10)[0]
        check(seen.count(f"IP {HOST} > {OUT}") == 3, f"the outside should see only the host address: {seen}")
        # UDP, and the server sees the host address.
        srv = d.popen("out", "python3", "-c", UDP_ECHO, "7007", stdout=subprocess.PIPE, text=True)
        check(srv.stdout.readline().strip() == "listening", "udp server")
        got = d.run("c1", "python3", "-c", UDP_CLIENT, OUT, "7007").stdout.strip()
        peer = srv.communicate(timeout=10)[0].strip()
        check(got == "eborp-pdu-wspd", f"UDP answer: {got!r}")
        check(peer == HOST, f"UDP server saw {peer}, not the host address")
        # TCP, byte-exact, through NAT in both directions.
        tcp_transfer(d, "c1", "out", OUT, size=8 << 20)
        flows = d.ctl("show", "conntrack")
        protos = {f["proto"] for f in flows}
        check({"icmp", "udp", "tcp"} <= protos, f"conntrack should list all three: {flows}")
        check(all(f["translated"].startswith(HOST + ":") for f in flows), f"masquerade should translate to the host address: {flows}")
        check(any(f["proto"] == "tcp" and f["state"] in ("closing", "time_wait", "close") for f in flows), f"TCP close not tracked: {flows}")
        # Unsolicited traffic to the host address belongs to no flow: refused and counted.
        before = d.counters()["ports"][d.uplink_if]["drops"].get("no_flow", 0)
        d.run("out", "python3", "-c", UDP_CLIENT, HOST, "9999", check_rc=False)
        after = d.counters()["ports"][d.uplink_if]["drops"].get("no_flow", 0)
        check(after > before, "unsolicited UDP to the host address should be dropped as no_flow")


# Paced TCP (a long-lived connection). `python3 -c PACED SEND|RECV HOST PORT
# SECONDS`: connects; SEND sends 64 KiB every 20 ms for SECONDS, RECV reads
# until the peer closes; prints bytes and their sha256.
PACED = r"""
import hashlib, socket, sys, time
s = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=20)
h, n = hashlib.sha256(), 0
if sys.argv[1] == "SEND":
    end, chunk = time.time() + float(sys.argv[4]), bytes(range(256)) * 256
    while time.time() < end:
        s.sendall(chunk); h.update(chunk); n += len(chunk); time.sleep(0.02)
    s.shutdown(socket.SHUT_WR)
    while s.recv(1 << 16): pass
else:
    while True:
        b = s.recv(1 << 16)
        if not b: break
        h.update(b); n += len(b)
print(n, h.hexdigest(), flush=True)
"""
# The other end: `python3 -c PACED_SERVER SEND|RECV PORT SECONDS` (one connection).
PACED_SERVER = r"""
import hashlib, socket, sys, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(("0.0.0.0", int(sys.argv[2]))); l.listen(1)
print("listening", flush=True)
c, peer = l.accept(); c.settimeout(20); h, n = hashlib.sha256(), 0
if sys.argv[1] == "SEND":
    end, chunk = time.time() + float(sys.argv[3]), bytes(range(256)) * 256
    while time.time() < end:
        c.sendall(chunk); h.update(chunk); n += len(chunk); time.sleep(0.02)
else:
    while True:
        b = c.recv(1 << 16)
        if not b: break
        h.update(b); n += len(b)
c.close(); print(peer[0], n, h.hexdigest(), flush=True)
"""


def fast_tier(d):
    return d.counters()["fast_tier"] or {}


def until(cond, what, timeout=5.0):
    """Polls cond() until it is true (a maintenance tick is 250 ms; CI machines are slow)."""
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.1)
    check(False, what)


def paced_transfer(d, direction, port, seconds=3, client="c1", server="out", target=OUT, connect_port=None):
    """client <-> server for `seconds` (by default c1 <-> the outside through
    NAT): "up" (the client sends) or "down" (the server sends); the server
    listens on `port`, the client connects to target:connect_port (default
    the same port). Returns (bytes, peer seen by the server, kernel-tier
    counters while the connection was open)."""
    srv = d.popen(server, "python3", "-c", PACED_SERVER, "RECV" if direction == "up" else "SEND", str(port), str(seconds),
                  stdout=subprocess.PIPE, text=True)
    check(srv.stdout.readline().strip() == "listening", "server")
    cli = d.popen(client, "python3", "-c", PACED, "SEND" if direction == "up" else "RECV", target, str(connect_port or port),
                  str(seconds), stdout=subprocess.PIPE, text=True)
    during = {}
    if FAST:  # handed to the kernel tier once established (within a tick or two)
        until(lambda: fast_tier(d).get("nat_kernel_entries", 0) == 2, "the established flow should be in the kernel map both ways")
        during = fast_tier(d)
    c_out = cli.communicate(timeout=60)[0].split()
    peer, *s_out = srv.communicate(timeout=60)[0].split()
    sent, got = (c_out, s_out) if direction == "up" else (s_out, c_out)
    check(len(sent) == 2 and got == sent, f"bytes changed on the way ({direction}): sent {sent}, received {got}")
    return int(sent[0]), peer, during


def established_flows_in_kernel():
    """Masquerade out of a fast-tier endpoint: once dpsw holds the connection
    established it hands the flow to the kernel tier both ways (the way out
    at the container's host veth, the replies at the uplink's TC ingress): addresses, ports, TTL and MACs rewritten with
    checksums left to offload and GSO intact. The bytes arrive intact both
    ways, the frames are counted, dpsw's flow stays alive, and the entries
    leave the kernel map when the connection closes or the endpoint goes.
    With fast_path off, the same traffic through dpsw's worker."""
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True) as d:
        d.start()
        ping(d, "c1", OUT)  # the next hop is resolved
        c1 = d.port_of("c1", "a")["name"]
        for direction, port in (("up", 7100), ("down", 7101)):
            before = fast_tier(d)
            port_before = d.counters()["ports"][c1].get("fast_tier", {})
            up_before = d.counters()["ports"][d.uplink_if].get("fast_tier", {})
            veth_before = link_tx(d.uplink_if)
            n, peer, during = paced_transfer(d, direction, port)
            check(peer == HOST, f"the outside should see the host address, saw {peer}")
            if FAST:
                after = fast_tier(d)
                port_after = d.counters()["ports"][c1]["fast_tier"]
                key = "rx_bytes" if direction == "up" else "tx_bytes"
                moved = port_after[key] - port_before.get(key, 0)
                check(moved >= n // 3, f"{direction}: the kernel tier should have carried most of the {n} bytes, counted {moved}")
                check(after["nat_forwarded"] > before.get("nat_forwarded", 0), f"{direction}: nothing forwarded in the kernel")
                # ...and on the uplink: a veth is served at TC like a container's, a NIC
                # (DPSW_UPLINK_XDP=1 here) keeps its XDP program, which passes replies up.
                up_key = "tx_bytes" if direction == "up" else "rx_bytes"
                moved = d.counters()["ports"][d.uplink_if]["fast_tier"][up_key] - up_before.get(up_key, 0)
                check(moved >= n // 3, f"{direction}: the uplink should count most of the {n} bytes in the kernel tier, counted {moved}")
                passed = after["nat_replies_passed"] - before.get("nat_replies_passed", 0)
                if UPLINK_XDP:
                    check(direction == "up" or passed > 0, "the uplink's XDP program should pass replies up")
                else:
                    check(passed == 0, "a veth uplink has no XDP program to pass replies up")
                check(after["nat_errors"] == 0, f"rewrite errors: {after}")
                if not UPLINK_XDP and direction == "up":
                    # The uplink's peer is in another namespace ("out"): the frames
                    # went into it directly, not through the uplink veth's transmit.
                    up = d.ctl("show", "fast").get("uplink", {})
                    check(up.get("into_peer") is True, f"frames out of the uplink should go into its peer: {up}")
                    veth_tx = link_tx(d.uplink_if) - veth_before
                    check(veth_tx < n // 10, f"{veth_tx} of {n} bytes went through the uplink veth's own transmit")
                # Closed (FIN reaches dpsw): its entries leave the kernel map.
                until(lambda: fast_tier(d)["nat_kernel_entries"] == 0, "a closed connection's entries should leave the kernel map")
        ct = [f for f in d.ctl("show", "conntrack") if f["proto"] == "tcp"]
        check(len(ct) == 2 and all(f["state"] in ("closing", "time_wait", "close") for f in ct), f"dpsw's table should follow both connections: {ct}")
        # A connection, then the endpoint goes: none of its entries stays.
        srv = d.popen("out", "python3", "-c", PACED_SERVER, "RECV", "7102", "5", stdout=subprocess.PIPE, text=True)
        check(srv.stdout.readline().strip() == "listening", "server")
        cli = d.popen("c1", "python3", "-c", PACED, "SEND", OUT, "7102", "5", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        if FAST:
            until(lambda: fast_tier(d).get("nat_kernel_entries", 0) == 2, "the third connection should be in the kernel map")
        d.ctl("endpoint", "del", "c1")
        if FAST:
            check(fast_tier(d)["nat_kernel_entries"] == 0, "a deleted endpoint's flows should leave the kernel map at once")
            time.sleep(0.6)
            check(fast_tier(d)["nat_kernel_entries"] == 0, "...and not come back on the next tick")
        cli.kill()
        srv.kill()


def published_and_hairpin_flows_in_kernel():
    """Published ports (DNAT at the uplink's ingress, the client's address
    kept) and hairpin (a container to a published port through the host
    address, between two fast-tier endpoints) are handed to the kernel tier
    once established, like masquerade: bytes intact both ways, the frames
    counted on the uplink and the endpoint, the entries gone when the
    connection closes. With fast_path off, the same traffic through dpsw."""
    nets = [{"name": "a", "subnet": "10.241.1.0/24"}]
    eps = [{"name": "web", "networks": ["a"], "publish": ["8080:80/tcp"]}, {"name": "c2", "networks": ["a"]}]
    with Dpsw(nets, eps, uplink=True) as d:
        d.start()
        ping(d, "out", HOST)
        web = d.port_of("web", "a")["name"]
        cases = (("out", OUT, d.uplink_if), ("c2", "10.241.1.1", d.port_of("c2", "a")["name"]))
        for client, seen, client_port in cases:
            for direction in ("up", "down"):
                before = fast_tier(d)
                ports_before = {p: d.counters()["ports"][p].get("fast_tier", {}) for p in (web, client_port)}
                n, peer, _ = paced_transfer(d, direction, 80, client=client, server="web", target=HOST, connect_port=8080)
                check(peer == seen, f"{client} {direction}: the container should see {seen}, saw {peer}")
                if FAST:
                    after = fast_tier(d)
                    check(after["nat_forwarded"] > before.get("nat_forwarded", 0), f"{client} {direction}: nothing forwarded in the kernel")
                    check(after["nat_errors"] == 0, f"rewrite errors: {after}")
                    # The data's direction: into web ("up") or out of it ("down"), on both ports.
                    for p, key in ((web, "tx_bytes" if direction == "up" else "rx_bytes"),
                                   (client_port, "rx_bytes" if direction == "up" else "tx_bytes")):
                        moved = d.counters()["ports"][p]["fast_tier"][key] - ports_before[p].get(key, 0)
                        check(moved >= n // 3, f"{client} {direction}: the kernel tier should have carried most of the {n} bytes "
                                               f"on {p} ({key}), counted {moved}")
                    until(lambda: fast_tier(d)["nat_kernel_entries"] == 0, "a closed connection's entries should leave the kernel map")


def udp_flow_in_kernel_refreshed_then_expired():
    """A replied UDP flow is handed to the kernel tier; its packets there keep
    dpsw's flow alive past its timeout (dpsw refreshes it from the kernel's
    stamps), and once the traffic stops the flow expires and its entries leave
    the kernel map."""
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True,
              extra_switch={"conntrack": {"timeouts": {"udp": 1}}}) as d:  # replied: 4 s
        d.start()
        ping(d, "c1", OUT)
        srv = d.popen("out", "python3", "-c", UDP_ECHO_MANY, "7300", stdout=subprocess.PIPE, text=True)
        check(srv.stdout.readline().strip() == "listening", "udp server")
        cli = d.popen("c1", "python3", "-c", UDP_SESSION, OUT, "7300", "7", stdout=subprocess.PIPE, text=True)
        udp_flows = lambda: [f for f in d.ctl("show", "conntrack") if f["proto"] == "udp"]
        until(lambda: len(udp_flows()) == 1, "the UDP flow should be tracked")
        first = udp_flows()[0]
        if FAST:
            until(lambda: fast_tier(d).get("nat_kernel_entries", 0) == 2, "the replied UDP flow should be in the kernel map")
            before = fast_tier(d)["nat_forwarded"]
        time.sleep(5.5)  # past the replied timeout (4 s) since the flow began
        later = udp_flows()
        check(len(later) == 1 and later[0]["translated"] == first["translated"] and later[0]["state"] == "replied",
              f"the same flow should live on, refreshed: {first} -> {later}")
        sent, answered = map(int, cli.communicate(timeout=30)[0].split()[:2])
        check(sent > 100 and answered >= sent - 2, f"every datagram should be answered for 7 s (timeout 4 s): {answered} of {sent}")
        if FAST:
            check(fast_tier(d)["nat_forwarded"] - before >= sent // 2, "the kernel tier should have carried the flow")
        until(lambda: not [f for f in d.ctl("show", "conntrack") if f["proto"] == "udp"], "the idle flow should expire", timeout=10)
        if FAST:
            check(fast_tier(d)["nat_kernel_entries"] == 0, "an expired flow's entries should leave the kernel map")
        srv.kill()


def icmp_error_reaches_kernel_flow():
    """A UDP flow the kernel tier carries: the outside's server goes away and
    its host answers "port unreachable" to the host address. The error is
    dpsw's (ICMP is never forwarded by the kernel tier): translated back to
    the flow's container, whose socket reports the refusal."""
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True) as d:
        d.start()
        ping(d, "c1", OUT)
        srv = d.popen("out", "python3", "-c", UDP_ECHO_MANY, "7301", "150", stdout=subprocess.PIPE, text=True)
        check(srv.stdout.readline().strip() == "listening", "udp server")
        cli = d.popen("c1", "python3", "-c", UDP_SESSION, OUT, "7301", "15", stdout=subprocess.PIPE, text=True)
        if FAST:
            until(lambda: fast_tier(d).get("nat_kernel_entries", 0) == 2, "the replied UDP flow should be in the kernel map")
        out = cli.communicate(timeout=30)[0].split()
        check(out and out[-1] == "refused", f"the ICMP error should reach the container's socket: {out}")
        check(srv.communicate(timeout=5)[0].split()[0] == "closed", "the server should have closed its port")


def full_table_keeps_established_flows():
    """conntrack full of assured flows: a new connection is refused (and
    counted) while an established one, in the kernel tier with the fast path
    on, keeps flowing to the end with its bytes intact."""
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True,
              extra_switch={"conntrack": {"size": 16}}) as d:
        d.start()
        ping(d, "c1", OUT)
        echo = d.popen("out", "python3", "-c", UDP_ECHO_MANY, "7302", stdout=subprocess.PIPE, text=True)
        check(echo.stdout.readline().strip() == "listening", "udp server")
        # 10 s: the table fills and refuses while it is still established.
        srv = d.popen("out", "python3", "-c", PACED_SERVER, "RECV", "7303", "10", stdout=subprocess.PIPE, text=True)
        check(srv.stdout.readline().strip() == "listening", "server")
        cli = d.popen("c1", "python3", "-c", PACED, "SEND", OUT, "7303", "10", stdout=subprocess.PIPE, text=True)
        until(lambda: any(f["proto"] == "tcp" and f["state"] == "established" for f in d.ctl("show", "conntrack")),
              "the connection should be established before the table fills")
        if FAST:
            until(lambda: fast_tier(d).get("nat_kernel_entries", 0) == 2, "the established flow should be in the kernel map")
        listener = d.popen("out", "python3", "-c", "import socket, time; l = socket.socket(); l.bind(('0.0.0.0', 7304)); l.listen(8)\n"
                           "print('listening', flush=True); time.sleep(60)", stdout=subprocess.PIPE, text=True)
        check(listener.stdout.readline().strip() == "listening", "listener")
        # Fill the table with replied UDP flows (none of them is early-droppable).
        d.run("c1", "python3", "-c", UDP_MANY_FLOWS, OUT, "7302", "24")
        c = d.counters()["conntrack"]
        check(c["flows"] == c["capacity"], f"the table should be full: {c}")
        refused = c["refused_full"]
        r = d.run("c1", "python3", "-c", "import socket; s=socket.socket(); s.settimeout(2)\ntry: s.connect(('%s', 7304)); print('connected')\n"
                  "except OSError as e: print('failed')" % OUT, check_rc=False)  # someone listens there (below): only the full table refuses
        check(r.stdout.strip() == "failed", f"a new connection should be refused while the table is full: {r.stdout}")
        check(d.counters()["conntrack"]["refused_full"] > refused, "the refused flow should be counted")
        c_out = cli.communicate(timeout=60)[0].split()
        peer, *s_out = srv.communicate(timeout=60)[0].split()
        check(len(c_out) == 2 and s_out == c_out, f"the established connection should finish intact: sent {c_out}, received {s_out}")
        echo.kill()
        listener.kill()


def nat_flood_in_kernel_steered():
    """A container flooding small UDP frames through NAT: once its flow is in
    the kernel tier, its frames are rewritten there and, as for known
    unicast, delivered through the punt veth's ingress on the steering core
    (not through dpsw's worker); the outside receives them from the host
    address. With fast_path off, dpsw's worker masquerades them."""
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True) as d:
        d.start()
        ping(d, "c1", OUT)
        gw_mac = re.search(r"lladdr (\S+)", d.run("c1", "ip", "neigh", "show", "10.241.1.1").stdout).group(1)
        src = d.port_of("c1", "a")["ip"].split("/")[0]
        ev = lambda: fast_tier(d).get("steered", 0)
        # A first, slow trickle creates the flow (one source port) and puts it in the kernel.
        pktgen(d.ns("c1"), gw_mac, mac_of(d.ns("c1")), src, OUT, 64, 0.5, rate=100, flows=1)
        if FAST:
            until(lambda: fast_tier(d).get("nat_kernel_entries", 0) == 2, "the UDP flow should be in the kernel map")
        s0, before = ev(), rx_packets(d.ns("out"))
        sent = pktgen(d.ns("c1"), gw_mac, mac_of(d.ns("c1")), src, OUT, 64, 1.0, rate=150000, flows=1,
                      core=kernel_core())  # off the steering core (a frame on it stays there)
        time.sleep(0.3)
        got = rx_packets(d.ns("out")) - before
        check(sent > 50000 and got >= sent * 0.9, f"{sent} frames sent through NAT, {got} reached the outside")
        flows = [f for f in d.ctl("show", "conntrack") if f["proto"] == "udp"]
        check(len(flows) == 1 and flows[0]["translated"].startswith(HOST + ":"), f"one masqueraded flow: {flows}")
        if FAST:
            if worker_core() != kernel_core():  # (one CPU: the sender is on the steering core, nothing to move)
                check(ev() - s0 >= sent // 2, f"only {ev() - s0} of {sent} flooded frames were steered")
            check(fast_tier(d)["punt_no_peer"] == 0, f"steered frames found no way on: {fast_tier(d)}")


def uplink_peer_in_own_namespace():
    """An uplink veth whose peer is in dpsw's own namespace, and the outside
    is that namespace's own stack (as with an uplink to the host's stack or a
    bridge there): frames out of the uplink are transmitted by the veth
    (bpf_redirect_peer cannot deliver into the namespace it is called from),
    and with Linux's default offloads ping, TCP out through NAT and TCP in
    to a published port work, the established flows in the kernel tier."""
    t = topo.Topology(topo.new_prefix("h"))
    try:
        h = t.netns(t.prefix + "h")
        sh("ip", "-n", h, "link", "add", "up0", "type", "veth", "peer", "name", "up0p")
        nsx(h, "ip", "addr", "add", OUT + "/24", "dev", "up0p")
        nsx(h, "ip", "link", "set", "up0p", "up")
        with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"], "publish": ["8080:80/tcp"]}],
                  uplink={"interface": "up0", "address": HOST + "/24", "gateway": OUT}, netns=h) as d:
            d.start()
            if FAST and not UPLINK_XDP:
                up = d.ctl("show", "fast").get("uplink", {})
                check(up.get("name") == "up0" and up.get("into_peer") is False and up.get("peer", {}).get("elsewhere") is False,
                      f"the uplink's peer is in dpsw's namespace: {up}")
            ping(d, "c1", OUT)
            before, veth_before = fast_tier(d).get("nat_forwarded", 0), link_tx("up0", ns=h)
            # 32 MB each way: a few ms at this speed, longer than the install after the handshake
            # (4 MB once finished before it, seen once in ~12 runs).
            peer = tcp_transfer_ns(d.ns("c1"), h, OUT, size=32 << 20, port=7200)
            check(peer == HOST, f"masqueraded TCP: the outside saw {peer}")
            peer = tcp_transfer_ns(h, d.ns("c1"), HOST, size=32 << 20, port=8080, listen_port=80)
            check(peer == OUT, f"published TCP: the container saw {peer}")
            if FAST:
                check(fast_tier(d)["nat_forwarded"] > before, "the established flows were not forwarded in the kernel tier")
                check(link_tx("up0", ns=h) - veth_before >= 4 << 20, "the uplink veth should have sent the masqueraded stream")
    finally:
        t.teardown()


def uplink_into_peer_only_when_safe():
    """Frames out of the uplink go into its peer (in another namespace)
    directly only while the peer has no XDP program and the uplink is up:
    with an XDP program on the peer they are transmitted by the veth, so they
    pass that program (and TCP through NAT still works); with the uplink set
    down nothing leaves through it, and once it is up again it all works."""
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True) as d:
        d.start()
        ping(d, "c1", OUT)
        tier = FAST and not UPLINK_XDP  # a punted veth uplink: the kernel tier sends out of it
        into = lambda: d.ctl("show", "fast").get("uplink", {}).get("into_peer")
        if tier:
            check(into() is True, f"the peer is elsewhere and plain: {d.ctl('show', 'fast').get('uplink')}")
        sh("ip", "-n", d.ns("out"), "link", "set", "dev", "eth0", "xdpdrv", "obj", XDP_OBJECT, "sec", "xdp")
        try:
            if tier:
                until(lambda: into() is False, "with XDP on the peer, frames should be transmitted by the veth")
                check(d.ctl("show", "fast")["uplink"]["peer"]["xdp"] is True, "the peer's XDP program not seen")
            veth_before = link_tx(d.uplink_if)
            peer = tcp_transfer(d, "c1", "out", OUT, size=4 << 20, port=7300)
            check(peer == HOST, f"masqueraded TCP with XDP on the peer: the outside saw {peer}")
            if tier:
                check(link_tx(d.uplink_if) - veth_before >= 4 << 20, "the stream should have passed the uplink veth (and the peer's XDP)")
        finally:
            sh("ip", "-n", d.ns("out"), "link", "set", "dev", "eth0", "xdpdrv", "off")
        if tier:
            until(lambda: into() is True, "without XDP on the peer, frames should go into it again")
        sh("ip", "link", "set", d.uplink_if, "down")
        try:
            if tier:
                until(lambda: into() is False, "with the uplink down nothing should go into its peer")
            ping(d, "c1", OUT, count=2, expect=False)
        finally:
            sh("ip", "link", "set", d.uplink_if, "up")
        ping(d, "c1", OUT)
        if tier:
            until(lambda: into() is True, "the uplink up again: frames into the peer again")


def uplink_broadcast_and_other_macs_through_the_veth():
    """Frames out of the uplink go straight into its peer only when unicast to
    the peer's own MAC: dpsw's broadcast ARP requests, and frames for another
    station behind the peer (a macvlan on the outside's interface: it gets
    them only as the veth classifies them), are transmitted by the veth, and
    that station answers."""
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True) as d:
        d.start()
        tier = FAST and not UPLINK_XDP
        other = "198.51.100.20"
        nsx(d.ns("out"), "ip", "link", "add", "st2", "link", "eth0", "type", "macvlan", "mode", "bridge")
        nsx(d.ns("out"), "ip", "addr", "add", other + "/24", "dev", "st2")
        nsx(d.ns("out"), "ip", "link", "set", "st2", "up")
        before = link_tx(d.uplink_if, "packets")
        ping(d, "c1", OUT, count=3)  # echo requests to the peer's own MAC
        if tier:
            sent = link_tx(d.uplink_if, "packets") - before
            check(sent < 3, f"the echo requests to the peer's MAC should go into it directly: {sent} sent by the veth")
        before = link_tx(d.uplink_if, "packets")
        ping(d, "c1", "198.51.100.30", count=2, expect=False)  # nobody there: dpsw's ARP requests (broadcast)
        if tier:
            sent = link_tx(d.uplink_if, "packets") - before
            check(sent >= 1, "dpsw's ARP requests (broadcast) should be transmitted by the veth")
        before = link_tx(d.uplink_if, "packets")
        ping(d, "c1", other, count=3)  # to another station's MAC behind the peer
        if tier:
            sent = link_tx(d.uplink_if, "packets") - before
            check(sent >= 3, f"frames for another MAC behind the peer should be transmitted by the veth: {sent} sent by it")


def isolation_and_internal():
    nets = [{"name": "a", "subnet": "10.241.1.0/24"}, {"name": "b", "subnet": "10.241.2.0/24"},
            {"name": "i", "subnet": "10.241.3.0/24", "internal": True}]
    eps = [{"name": "c1", "networks": ["a"]}, {"name": "c2", "networks": ["b"]}, {"name": "c3", "networks": ["i"]},
           {"name": "both", "networks": ["a", "b"]}]
    with Dpsw(nets, eps, uplink=True) as d:
        d.start()
        c2 = d.port_of("c2", "b")["ip"]
        before = drops(d, "c1", "a", "isolated")
        ping(d, "c1", c2, count=2, expect=False)  # no routing between bridge networks (Docker's isolation)
        check(drops(d, "c1", "a", "isolated") - before == 2, "isolation drops not counted")
        before = drops(d, "c3", "i", "internal")
        ping(d, "c3", OUT, count=2, expect=False)  # internal: no way out
        check(drops(d, "c3", "i", "internal") - before == 2, "internal drops not counted")
        ping(d, "c3", "10.241.3.1")  # but its gateway answers
        ping(d, "both", d.port_of("c1", "a")["ip"])  # attached to both: talks to each side directly
        ping(d, "both", c2)
        ping(d, "c1", OUT)  # and the others still get out


def conntrack_expiry():
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True,
              extra_switch={"conntrack": {"size": 64, "timeouts": {"icmp": 2, "udp": 2}}}) as d:
        d.start()
        ping(d, "c1", OUT, count=1)
        check(len(d.ctl("show", "conntrack")) == 1, "flow not tracked")
        deadline = time.time() + 8
        while time.time() < deadline and d.ctl("show", "conntrack"):
            time.sleep(0.25)
        check(d.ctl("show", "conntrack") == [], "flow did not expire after its 2 s timeout")
        # The configured size is what the table has (full-table behaviour: tests/unit/nat_test.cc),
        # and the slot and port freed by the expiry serve the next flow.
        ping(d, "c1", OUT, count=1)
        c = d.counters()["conntrack"]
        check(c["capacity"] == 64 and c["flows"] == 1, str(c))


def tcp_via(d, client, target_ep, host, port, listen_port, size=1 << 20):
    """TCP from `client` to host:port, served in `target_ep` on listen_port; returns the peer address it saw."""
    return tcp_transfer(d, client, target_ep, host, size=size, port=port, listen_port=listen_port)


def published_ports_and_hairpin():
    nets = [{"name": "a", "subnet": "10.241.1.0/24"}, {"name": "b", "subnet": "10.241.2.0/24"}]
    eps = [{"name": "web", "networks": ["a"], "publish": ["8080:80/tcp", "5353:53/udp", "9000-9009:9100-9109/tcp"]},
           {"name": "c2", "networks": ["a"]}, {"name": "c3", "networks": ["b"]}]
    with Dpsw(nets, eps, uplink=True) as d:
        d.start()
        # From outside: the container sees the real client address.
        peer = tcp_via(d, "out", "web", HOST, 8080, 80)
        check(peer == OUT, f"published TCP: the container saw {peer}, not the client {OUT}")
        srv = d.popen("web", "python3", "-c", UDP_ECHO, "53", stdout=subprocess.PIPE, text=True)
        check(srv.stdout.readline().strip() == "listening", "udp server")
        got = d.run("out", "python3", "-c", UDP_CLIENT, HOST, "5353").stdout.strip()
        peer = srv.communicate(timeout=10)[0].strip()
        check(got == "eborp-pdu-wspd" and peer == OUT, f"published UDP: answer {got!r}, peer {peer}")
        peer = tcp_via(d, "out", "web", HOST, 9005, 9105)  # inside a published range
        check(peer == OUT, f"range: peer {peer}")
        # Hairpin: containers reach a published port through the host address.
        peer = tcp_via(d, "c2", "web", HOST, 8080, 80)
        check(peer == "10.241.1.1", f"hairpin from the same network should come from the gateway, got {peer}")
        peer = tcp_via(d, "c3", "web", HOST, 8080, 80)
        check(peer == "10.241.1.1", f"hairpin from another network: peer {peer}")
        # An unpublished port is refused and counted.
        before = d.counters()["ports"][d.uplink_if]["drops"].get("no_flow", 0)
        d.run("out", "python3", "-c", "import socket; s=socket.socket(); s.settimeout(1)\ntry: s.connect(('%s', 8081))\nexcept OSError: pass" % HOST,
              check_rc=False)
        check(d.counters()["ports"][d.uplink_if]["drops"].get("no_flow", 0) > before, "unpublished port not refused")
        pubs = {e["name"]: e.get("publish") for e in d.ctl("show", "endpoints")}
        check(pubs["web"] == ["8080:80/tcp", "5353:53/udp", "9000-9009:9100-9109/tcp"], str(pubs))


REFUSED = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.connect((sys.argv[1], int(sys.argv[2])))
for i in range(3):
    s.send(b"anyone?")
    try:
        s.recv(100); print("answered")
    except ConnectionRefusedError:
        print("refused"); break
    except socket.timeout:
        print("timeout")
"""


def icmp_errors_translated():
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True) as d:
        d.start()
        # Nobody listens on the outside's UDP port 9: its kernel answers "port unreachable" to the
        # host address; dpsw must hand it to c1's own flow, which the kernel then turns into ECONNREFUSED.
        out = d.run("c1", "python3", "-c", REFUSED, OUT, "9").stdout.split()
        check(out and out[-1] == "refused", f"the ICMP error did not reach the container's socket: {out}")


def routing_between_allowed_networks():
    nets = [{"name": "a", "subnet": "10.241.1.0/24", "allow": ["b"]}, {"name": "b", "subnet": "10.241.2.0/24"},
            {"name": "c", "subnet": "10.241.3.0/24"}, {"name": "i", "subnet": "10.241.4.0/24", "internal": True, "allow": ["b"]}]
    eps = [{"name": "c1", "networks": ["a"]}, {"name": "c2", "networks": ["b"]}, {"name": "c3", "networks": ["c"]},
           {"name": "c4", "networks": ["i"]}]
    with Dpsw(nets, eps, uplink=True) as d:
        d.start()
        c1, c2, c3 = (d.port_of(e, n)["ip"] for e, n in (("c1", "a"), ("c2", "b"), ("c3", "c")))
        ping(d, "c1", c2)  # a allows b: routed, both ways
        ping(d, "c2", c1)
        # No NAT on the way: c2 sees c1's own address.
        cap = d.popen("c2", "tcpdump", "-i", "eth0", "-n", "-c", "1", "icmp[icmptype] == icmp-echo",
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.8)
        ping(d, "c1", c2, count=1)
        check(f"IP {c1} > {c2}" in cap.communicate(timeout=10)[0], "routed traffic should keep its source address")
        ping(d, "c1", c3, count=1, expect=False)  # c is not allowed: isolated
        ping(d, "c3", c2, count=1, expect=False)
        check(d.port_of("c1", "a")["counters"]["drops"].get("isolated", 0) >= 1, "isolation not counted")
        # Bulk TCP both ways, byte-exact; with the fast tier routed in the kernel
        # (stateless, as dpsw routes it), counted on both endpoints.
        before = fast_tier(d).get("routed", 0)
        senders = [d.port_of(e, n)["name"] for e, n in (("c1", "a"), ("c2", "b"))]
        rx_before = [d.counters()["ports"][p].get("fast_tier", {}).get("rx_bytes", 0) for p in senders]
        n = 8 << 20
        peer = tcp_transfer(d, "c1", "c2", c2, size=n)
        check(peer == c1, f"routed TCP should keep the source address, the receiver saw {peer}")
        tcp_transfer(d, "c2", "c1", c1, size=n, port=5002)
        if FAST:
            check(fast_tier(d)["routed"] > before, f"the kernel tier should have routed the transfers: {fast_tier(d)}")
            for p, b in zip(senders, rx_before):  # each sender's bytes went through the kernel tier
                moved = d.counters()["ports"][p]["fast_tier"]["rx_bytes"] - b
                check(moved >= n // 3, f"{p} should count most of what it sent as routed in the kernel: {moved} of {n}")
            check(fast_tier(d)["routes"] >= 2, f"routes: {fast_tier(d)}")
        ping(d, "c3", c2, count=1, expect=False)  # still isolated with the routes in the kernel
        # An internal network routes nowhere, even where it allows it (as dpsw's own path).
        ping(d, "c4", c2, count=2, expect=False)
        ping(d, "c4", "10.241.4.1", count=1)  # its gateway still answers


def nat_across_two_workers():
    """The container's port and the uplink on different workers: each direction
    of every flow is handled by another thread (shared conntrack, handoff)."""
    eps = [{"name": "c1", "networks": ["a"]}, {"name": "web", "networks": ["a"], "publish": ["8080:80/tcp"]}]
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], eps, uplink=True, workers=[0, 1],
              extra_switch={"idle": "block"}) as d:
        d.start()
        owners = {p["endpoint"] or "uplink": p["worker"] for p in d.ports()}
        check(owners["c1"] != owners["uplink"] or owners["web"] != owners["uplink"], f"want a cross-worker path: {owners}")
        ping(d, "c1", OUT)
        tcp_transfer(d, "c1", "out", OUT, size=4 << 20)
        check(tcp_via(d, "out", "web", HOST, 8080, 80) == OUT, "published port across workers")
        workers = d.counters()["workers"]
        check(all(w["busy_loops"] > 0 for w in workers), f"both workers should have forwarded: {workers}")


# Raw SYNs with spoofed sources from the outside's subnet (no hping3/scapy needed).
SYN_FLOOD = r"""
import random, socket, struct, sys
dst, dport, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b)); s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rnd = random.Random(18); d = socket.inet_aton(dst)
for i in range(n):
    src = socket.inet_aton("198.51.100.%d" % rnd.choice([x for x in range(2, 255) if x != 10]))
    sport = rnd.randrange(1024, 65535)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, rnd.getrandbits(32), 0, 5 << 4, 0x02, 64240, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(src + d + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xffff, 0, 64, 6, 0, src, d)
    s.sendto(ip + tcp, (dst, 0))
print("sent", n, flush=True)
"""
TIMED_CONNECT = r"""
import socket, sys, time
t0 = time.monotonic()
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
t = time.monotonic() - t0
c.sendall(b"hello"); c.close()
print("%.3f" % t, flush=True)
"""
ACCEPT_ONE = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(64); s.settimeout(30)
print("listening", flush=True)
c, peer = s.accept(); c.settimeout(10); print(peer[0], c.recv(100).decode(), flush=True)
"""


def syn_flood_then_connect():
    """Issue 18 #5: 3,000 SYNs from outside against a published port fill a 1,024-flow table;
    a container's new connection still succeeds at once (early drop, the containers' reserve)."""
    eps = [{"name": "c1", "networks": ["a"]}, {"name": "web", "networks": ["a"], "publish": ["8080:80/tcp"]}]
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], eps, uplink=True,
              extra_switch={"conntrack": {"size": 1024}}) as d:
        d.start()
        lst = d.popen("web", "python3", "-c", "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', 80)); s.listen(4096); time.sleep(60)")
        ping(d, "c1", OUT, count=1)  # the container's gateway ARP and the uplink's next hop are warm, as in real life
        try:
            out = d.run("out", "python3", "-c", SYN_FLOOD, HOST, "8080", "3000").stdout
            flooded = time.monotonic()
            check("sent 3000" in out, out)
            time.sleep(0.3)  # dpsw has taken the flood in
            c = d.counters()["conntrack"]
            check(c["capacity"] == 1024 and c["refused_full"] > 0, f"the flood should have filled the table: {c}")
            srv = d.popen("out", "python3", "-c", ACCEPT_ONE, "5001", stdout=subprocess.PIPE, text=True)
            check(srv.stdout.readline().strip() == "listening", "server")
            r = d.run("c1", "python3", "-c", TIMED_CONNECT, OUT, "5001", check_rc=False)
            if r.returncode != 0:  # (seen twice in ~100 runs: what the table held, for whoever looks next)
                mine = [f for f in d.ctl("show", "conntrack") if f["original"].endswith(f"> {OUT}:5001")]
                print(f"conntrack {d.counters()['conntrack']}; the container's flows {mine}; "
                      f"c1's port {d.counters()['ports'][d.port_of('c1', 'a')['name']]}", flush=True)
            check(r.returncode == 0, f"the container could not connect after the flood: {r.stderr.strip().splitlines()[-1:]}")
            took = float(r.stdout.strip())
            got = srv.communicate(timeout=10)[0].split()
            check(got == [HOST, "hello"], f"the server got {got}")
            check(took < 1.0, f"the container's connection took {took:.3f} s: its first SYN was not admitted")
            c = d.counters()["conntrack"]
            check(c.get("early_drop", 0) > 0, f"early drops should be counted: {c}")
            flows = d.ctl("show", "conntrack")
            flood = [f for f in flows if f["proto"] == "tcp" and f["original"].endswith(f"> {HOST}:8080")]
            states = {f["state"] for f in flood}
            check(flood and states <= {"syn_sent", "syn_recv", "close"} and states & {"syn_sent", "syn_recv"},
                  f"the flood's flows should be half-open, not established: {sorted(states)} ({len(flood)} flows)")
            mine = [f for f in flows if f["original"].endswith(f"> {OUT}:5001")]
            check(mine and mine[0]["state"] in ("established", "closing", "time_wait", "close"), f"the container's flow: {mine}")
            # web retries its SYN+ACKs a second on (and 2 s later) for the SYNs it queued, and so for
            # flows early drop took when they are among those (in about half the runs here). They
            # open no flow (netfilter's INVALID; they once used up the reserve the container's connect
            # needs). Whether any came is the kernel's choice: shown, not required (the unit test
            # NatPipeline.OnlyASynOrAnAckOpensATcpFlow covers the refusal itself).
            web_drops = lambda: d.counters()["ports"][d.port_of("web", "a")["name"]]["drops"].get("ct_invalid", 0)
            while not web_drops() and time.monotonic() < flooded + 3.5:
                time.sleep(0.2)
            invalid = web_drops()
            theirs = [f for f in d.ctl("show", "conntrack") if f["proto"] == "tcp" and f["original"].split(" >")[0].endswith(":80")]
            check(not theirs, f"the server's SYN+ACK retries opened flows: {theirs[:3]} ({len(theirs)})")
            print(f"connect took {took:.3f} s; flood flows {len(flood)} {sorted(states)}; counters {d.counters()['conntrack']}; "
                  f"web's SYN+ACK retries refused (ct_invalid) {invalid}")
        finally:
            lst.kill()
            lst.wait()


BIG_UDP_ECHO = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(sys.argv[1]))); s.settimeout(20)
print("listening", flush=True)
data, peer = s.recvfrom(65535); s.sendto(data[::-1], peer)
print(peer[0], len(data), flush=True)
"""
BIG_UDP_CLIENT = r"""
import socket, sys
msg = bytes((i * 7 + 3) & 0xff for i in range(3000))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
for i in range(5):
    s.sendto(msg, (sys.argv[1], int(sys.argv[2])))
    try:
        got = s.recvfrom(65535)[0]; print("ok" if got == msg[::-1] else "bad %d" % len(got)); break
    except socket.timeout:
        print("timeout")
"""
GRE_ECHO = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47); s.settimeout(20)
print("listening", flush=True)
while True:
    pkt, peer = s.recvfrom(65535)
    if pkt[20:24] == b"\x00\x00\x88\xb5":  # our probes (ethertype 0x88b5: local experimental)
        s.sendto(b"\x00\x00\x88\xb5" + pkt[24:][::-1], (peer[0], 0)); print(peer[0], flush=True); break
"""
GRE_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 47); s.settimeout(2)
body = b"dpsw-gre-probe"
for i in range(5):
    s.sendto(b"\x00\x00\x88\xb5" + body, (sys.argv[1], 0))
    try:
        while True:
            pkt, peer = s.recvfrom(65535)
            if pkt[20:24] == b"\x00\x00\x88\xb5" and peer[0] == sys.argv[1]:
                print("ok" if pkt[24:] == body[::-1] else "bad"); sys.exit(0)
    except socket.timeout:
        print("timeout")
"""


def fragments_and_gre():
    """Issue 18 #14: fragmented datagrams and other IP protocols through NAT, both ways."""
    eps = [{"name": "c1", "networks": ["a"]}, {"name": "web", "networks": ["a"], "publish": ["5353:53/udp"]}]
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], eps, uplink=True) as d:
        d.start()
        # ping -s 3000: three fragments each way.
        r = d.run("c1", "ping", "-c", "3", "-i", "0.2", "-W", "2", "-s", "3000", OUT, check_rc=False, timeout=30)
        check(r.returncode == 0 and "3 received" in r.stdout, f"ping -s 3000 through NAT:\n{r.stdout}{r.stderr}")
        # A 3000-byte UDP datagram from outside to a published port, and its 3000-byte answer.
        srv = d.popen("web", "python3", "-c", BIG_UDP_ECHO, "53", stdout=subprocess.PIPE, text=True)
        check(srv.stdout.readline().strip() == "listening", "udp server")
        got = d.run("out", "python3", "-c", BIG_UDP_CLIENT, HOST, "5353").stdout.split()
        peer = srv.communicate(timeout=10)[0].split()
        check(got and got[-1] == "ok" and peer == [OUT, "3000"], f"published UDP, 3000 bytes: client {got}, server {peer}")
        # Masqueraded out: 3000 bytes from the container and back.
        srv = d.popen("out", "python3", "-c", BIG_UDP_ECHO, "7007", stdout=subprocess.PIPE, text=True)
        check(srv.stdout.readline().strip() == "listening", "udp server")
        got = d.run("c1", "python3", "-c", BIG_UDP_CLIENT, OUT, "7007").stdout.split()
        peer = srv.communicate(timeout=10)[0].split()
        check(got and got[-1] == "ok" and peer == [HOST, "3000"], f"masqueraded UDP, 3000 bytes: client {got}, server {peer}")
        # GRE (IP protocol 47): out behind the host address, and the answer back.
        srv = d.popen("out", "python3", "-c", GRE_ECHO, stdout=subprocess.PIPE, text=True)
        check(srv.stdout.readline().strip() == "listening", "gre server")
        got = d.run("c1", "python3", "-c", GRE_CLIENT, OUT).stdout.split()
        peer = srv.communicate(timeout=10)[0].strip()
        check(peer == HOST, f"GRE should arrive from the host address, came from {peer!r}")
        check(got and got[-1] == "ok", f"GRE answer: {got}")
        flows = d.ctl("show", "conntrack")
        gre = [f for f in flows if f["proto"] == "gre"]
        check(gre and gre[0]["translated"].startswith(HOST + ":") and gre[0]["state"] == "replied", f"GRE flow: {gre}")
        drops = d.counters()["ports"][d.uplink_if]["drops"]
        check(drops.get("frag_no_flow", 0) == 0, f"no fragment should have been lost: {drops}")


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (outbound_icmp_udp_tcp, established_flows_in_kernel, published_and_hairpin_flows_in_kernel,
                                          udp_flow_in_kernel_refreshed_then_expired, icmp_error_reaches_kernel_flow,
                                          full_table_keeps_established_flows, nat_flood_in_kernel_steered,
                                          isolation_and_internal, conntrack_expiry,
                                          published_ports_and_hairpin, icmp_errors_translated,
                                          routing_between_allowed_networks, nat_across_two_workers,
                                          syn_flood_then_connect, fragments_and_gre, uplink_peer_in_own_namespace,
                                          uplink_into_peer_only_when_safe, uplink_broadcast_and_other_macs_through_the_veth)})
