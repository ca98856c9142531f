#!/usr/bin/env python3
"""Services (issue 16): a virtual IP balanced over its backends by Maglev
(the client's address kept; from the same network, an allowed network, the
outside through a published port, by hairpin and from a backend itself),
what removing a backend does to existing and new connections, and DNS round
robin. Real TCP servers in the backends' namespaces say who they are and
whom they see."""
import contextlib
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab.testing import FAST, Dpsw, check, scenario_main, wait_for  # noqa: E402

OUT, HOST = Dpsw.OUTSIDE_IP, Dpsw.HOST_IP
NETS = [{"name": "front", "subnet": "10.244.1.0/24", "allow": ["back"]}, {"name": "back", "subnet": "10.244.2.0/24"}]
BACKENDS = ["b1", "b2", "b3"]
EPS = ([{"name": b, "networks": ["front"], "labels": {"app": "web"}} for b in BACKENDS] +
       [{"name": "c", "networks": ["front"], "ip": "10.244.1.50"}, {"name": "d", "networks": ["back"], "ip": "10.244.2.50"}])
SERVICES = [{"name": "web", "network": "front", "vip": "10.244.1.200", "ports": ["80/tcp"], "backends": {"labels": {"app": "web"}},
             "publish": ["8088:80/tcp"], "health_check": {"interval_s": 1}},
            {"name": "rr", "network": "front", "mode": "dnsrr", "backends": ["b1", "b2"]}]
VIP = "10.244.1.200"

# A TCP server: every connection gets "NAME PEER_IP\n", then (with STREAM) it
# reads until EOF and answers the byte count; the server closes first.
SERVER = r"""
import socket, sys, threading
name = sys.argv[1]
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", 80)); s.listen(512)
print("ready", flush=True)
def serve(c, peer):
    try:
        c.sendall(f"{name} {peer[0]}\n".encode())
        n = 0
        c.settimeout(60)
        while True:
            b = c.recv(65536)
            if not b or b == b"bye\n": break
            n += len(b)
        c.sendall(f"{n}\n".encode())
    except OSError:
        pass
    c.close()
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
"""
# argv: TARGET PORT COUNT [FIRST_SOURCE_PORT]: COUNT connections, each reads
# the greeting and says bye; prints one "NAME PEER" line per connection
# ("fail REASON" for one that failed). With FIRST_SOURCE_PORT, connection k
# leaves from that port + k (the same tuples again on another run).
CLIENT = r"""
import socket, sys
target, port, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
first = int(sys.argv[4]) if len(sys.argv) > 4 else 0
for k in range(count):
    try:
        s = socket.socket(); s.settimeout(5)
        if first:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", first + k))
        s.connect((target, port))
        f = s.makefile("rb"); line = f.readline().decode().strip()
        s.sendall(b"bye\n"); f.readline(); s.close()
        print(line, flush=True)
    except OSError as e:
        print("fail", e, flush=True)
"""
# Long-lived: argv TARGET PORT SECONDS [SOURCE_PORT]: a connection that sends
# 4 KiB every 10 ms for SECONDS; prints "NAME sent RECEIVED_BY_SERVER".
STREAM = r"""
import socket, sys, time
s = socket.socket(); s.settimeout(10)
if len(sys.argv) > 4:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", int(sys.argv[4])))
s.connect((sys.argv[1], int(sys.argv[2])))
f = s.makefile("rb"); name = f.readline().decode().split()[0]
sent, end = 0, time.time() + float(sys.argv[3])
while time.time() < end:
    s.sendall(b"x" * 4096); sent += 4096; time.sleep(0.01)
s.sendall(b"bye\n")
print(name, sent, f.readline().decode().strip(), flush=True)
"""

# UDP: a server on each of PORTS answers every datagram with "NAME PEER_IP
# LOCAL_PORT"; the client sends COUNT datagrams (each from its own socket, or
# with FIRST_SOURCE_PORT from that port + k; with "same", all from one
# socket, 5 ms apart) and prints "NAME PEER LOCAL_PORT FROM_IP:FROM_PORT" per answer.
UDP_SERVER = r"""
import select, socket, sys
name, socks = sys.argv[1], []
for port in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", int(port))); socks.append(s)
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        b, peer = s.recvfrom(2048)
        s.sendto(f"{name} {peer[0]} {s.getsockname()[1]}".encode(), peer)
"""
UDP_CLIENT = r"""
import socket, sys, time
target, port, count, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
one = None
for k in range(count):
    s = one or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if mode == "same": one = s
    elif mode != "any": s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", int(mode) + k))
    s.settimeout(1)
    line = "fail timed out"
    for _ in range(3):
        try:
            s.sendto(b"hello", (target, port)); b, frm = s.recvfrom(2048)
            line = f"{b.decode()} {frm[0]}:{frm[1]}"; break
        except OSError:
            pass
    print(line, flush=True)
    if s is not one: s.close()
    else: time.sleep(0.005)  # one flow for a while: over a few of dpsw's ticks
"""


def start_servers(d, names):
    procs = []
    for b in names:
        p = d.popen(b, "python3", "-c", SERVER, b, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        check(p.stdout.readline().strip() == "ready", f"server in {b}")
        procs.append(p)
    return procs


@contextlib.contextmanager
def servers(d, names):
    """start_servers(), ended (killed) when the block ends; the list may be changed in the block."""
    procs = start_servers(d, names)
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def web_backends(d):
    """The backends `show services` lists in web's table."""
    return next(r for r in d.ctl("show", "services") if r["name"] == "web")["backends"]


def connect(d, ns, target, port, count, first=None):
    out = d.run(ns, "python3", "-c", CLIENT, target, str(port), str(count), *([str(first)] if first else []), timeout=120).stdout
    return [l.split() for l in out.splitlines()]


def vip_balancing():
    with Dpsw(NETS, EPS, uplink=True) as d:
        d.config["services"] = SERVICES
        d.write_config()
        d.start()
        with servers(d, BACKENDS) as procs:
            # The health check's first probes may have come before the servers: all three back first.
            wait_for(lambda: web_backends(d) == "b1,b2,b3", 6, "every backend in the table")
            # DNS: the service's name is its VIP; ping answers at the VIP.
            out = d.run("c", "getent", "hosts", "web").stdout.split()
            check(out[:1] == [VIP], f"web resolves to its VIP: {out}")
            d.run("c", "ping", "-c", "1", "-W", "2", VIP)
            # 600 connections from the same network: spread evenly, the client's address kept.
            got = connect(d, "c", VIP, 80, 600)
            fails = [g for g in got if g[0] == "fail"]
            check(not fails, f"{len(fails)} connections failed: {fails[:3]}")
            per = {b: sum(1 for g in got if g[0] == b) for b in BACKENDS}
            check(all(160 <= n <= 240 for n in per.values()), f"600 connections over 3 backends within +-20% of 200: {per}")
            check(all(g[1] == "10.244.1.50" for g in got), f"backends see the client's own address: {set(g[1] for g in got)}")
            # From an allowed network, from outside (published), by hairpin, from a backend itself.
            for ns, target, port, seen in [("d", VIP, 80, "10.244.2.50"), ("out", HOST, 8088, OUT), ("c", HOST, 8088, "10.244.1.1")]:
                got = connect(d, ns, target, port, 30)
                check(all(g[0] in BACKENDS for g in got), f"{ns} -> {target}:{port}: {got[:3]}")
                check(len({g[0] for g in got}) >= 2, f"{ns} -> {target}:{port}: spread over backends: {got[:5]}")
                check(all(g[1] == seen for g in got), f"{ns} -> {target}:{port}: the backend sees {seen}: {set(g[1] for g in got)}")
            # A backend to its own VIP: when it lands on itself, masqueraded behind the gateway.
            b1_ip = d.run("b1", "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]
            got = connect(d, "b1", VIP, 80, 30)
            check(all(g[0] in BACKENDS for g in got) and len({g[0] for g in got}) >= 2, f"b1 -> VIP: {got[:5]}")
            check(all(g[1] == ("10.244.1.1" if g[0] == "b1" else b1_ip) for g in got), f"b1 -> VIP: who sees whom: {got[:6]}")
            # Service-port traffic that is no VIP connection is bridged as ever: c straight to b1:80.
            got = connect(d, "c", b1_ip, 80, 5)
            check(got == [["b1", "10.244.1.50"]] * 5, f"c straight to b1:80 (not through the VIP): {got}")
            # The same client ports straight to b1, then to the VIP: two flows, never one reply tuple.
            got = connect(d, "c", b1_ip, 80, 20, first=45000) + connect(d, "c", VIP, 80, 20, first=45000)
            check(all(g[0] == "b1" for g in got[:20]) and all(g[0] in BACKENDS for g in got[20:]),
                  f"the same source ports to b1 and then to the VIP: {[g for g in got if g[0] not in BACKENDS][:3]}")
            on_b3 = [45000 + k for k, g in enumerate(got[20:]) if g[0] == "b3"]
            # ...and straight to b1 at once: a closed VIP connection's flow does not claim b1's answers (its
            # SYN+ACK ends the flow; the kernel tier closed the flow's entries on its FIN).
            got = connect(d, "c", b1_ip, 80, 20, first=45000)
            check(got == [["b1", "10.244.1.50"]] * 20, f"the VIP's just-used source ports straight to b1: {got[:3]}")
            # The same from the allowed network (b1's answers routed, not bridged).
            got = connect(d, "d", VIP, 80, 20, first=46000)
            check(all(g[0] in BACKENDS for g in got), f"d -> VIP from 46000: {got[:3]}")
            got = connect(d, "d", b1_ip, 80, 20, first=46000)
            check(got == [["b1", "10.244.2.50"]] * 20, f"d: the VIP's just-used source ports straight to b1: {got[:3]}")
            rows = d.ctl("show", "services")
            web = next(r for r in rows if r["name"] == "web")
            check(web["vip"] == VIP and web["backends"] == "b1,b2,b3", f"show services: {web}")
            # A backend whose link goes down leaves the table (and comes back with it).
            backends = lambda: web_backends(d)
            d.run("b3", "ip", "link", "set", "eth0", "down")
            wait_for(lambda: backends() == "b1,b2", 5, "b3 out of the table once its link is down")
            got = connect(d, "c", VIP, 80, 60)
            check({g[0] for g in got} == {"b1", "b2"}, f"new connections avoid b3: {[g for g in got if g[0] not in ('b1', 'b2')][:3]}")
            # Client ports whose closed VIP connections were on b3: a new SYN on such a tuple is a new
            # connection (netfilter's reopen), on today's backends.
            print(f"source ports whose last VIP connection was on b3: {len(on_b3)}")
            check(len(on_b3) >= 2, f"some of the 20 VIP connections from 45000 landed on b3: {on_b3}")
            reopened = d.counters()["conntrack"]["reopened"]
            got = connect(d, "c", VIP, 80, 20, first=45000)
            check({g[0] for g in got} <= {"b1", "b2"}, f"reused ports avoid b3: {[g for g in got if g[0] not in ('b1', 'b2')][:3]}")
            # (b1's SYN+ACKs above ended its closed VIP flows; b2's and b3's are reopened here)
            reopened = d.counters()["conntrack"]["reopened"] - reopened
            check(reopened >= len(on_b3), f"conntrack reopened {reopened} flows (at least b3's {len(on_b3)})")
            d.run("b3", "ip", "link", "set", "eth0", "up")
            wait_for(lambda: backends() == "b1,b2,b3", 5, "b3 back in the table")
            # Health check: b2 stops listening on 80: out; listening again: back.
            procs[1].kill()
            procs[1].wait()
            wait_for(lambda: backends() == "b1,b3", 6, "b2 out of the table once it fails its health check")
            got = connect(d, "c", VIP, 80, 60)
            check({g[0] for g in got} == {"b1", "b3"} and all(g[0] != "fail" for g in got), f"new connections avoid b2: {got[:4]}")
            procs[1:2] = start_servers(d, ["b2"])
            wait_for(lambda: backends() == "b1,b2,b3", 6, "b2 back once it passes again")


def backend_removed():
    """Streams to the backends that stay go on; new connections move only off the one removed (about 1/N)."""
    with Dpsw(NETS, EPS, uplink=True) as d:
        d.config["services"] = SERVICES[:1]
        d.write_config()
        d.start()
        with servers(d, BACKENDS):
            # The health check's first probes may have come before the servers: all three back first.
            wait_for(lambda: web_backends(d) == "b1,b2,b3", 6, "every backend in the table")
            before = connect(d, "c", VIP, 80, 300, first=40000)
            check(all(g[0] in BACKENDS for g in before), f"before: {before[:3]}")
            # The streams reuse the client ports of closed connections: each SYN reopens its tuple (a
            # new flow, established, so the kernel tier carries it).
            check(all(g[0] in BACKENDS for g in connect(d, "c", VIP, 80, 9, first=41000)), "connections from 41000")
            streams = [d.popen("c", "python3", "-c", STREAM, VIP, "80", "6", str(41000 + k), stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
                       for k in range(9)]
            time.sleep(2)
            d.ctl("endpoint", "del", "b3")
            results = [s.communicate(timeout=60)[0].split() for s in streams]
            kept = [r for r in results if r and r[0] != "b3"]
            check(kept, f"some streams were on b1/b2: {results}")
            check(all(len(r) == 3 and r[1] == r[2] for r in kept), f"streams to the backends that stay arrive whole: {kept}")
            # At once, straight to b1 from the ports of the streams that were on it: their flows' kernel
            # entries (installed: established streams) were closed by the FINs, so b1's answers go unchanged.
            b1_ip = d.run("b1", "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]
            for k in [k for k, r in enumerate(results) if r and r[0] == "b1"][:3]:
                got = connect(d, "c", b1_ip, 80, 1, first=41000 + k)
                check(got == [["b1", "10.244.1.50"]], f"a stream's port {41000 + k} at once straight to b1: {got}")
            if FAST:  # the kernel tier carried the established streams (a reused tuple's closed flow never
                # became established again before reopen: one CI run saw 0 here)
                fwd = d.counters()["fast_tier"]["nat_forwarded"]
                check(fwd > 1000, f"the kernel tier forwarded the VIP streams: nat_forwarded {fwd}")
            after = connect(d, "c", VIP, 80, 300, first=40000)
            check(all(g[0] in ("b1", "b2") for g in after), f"after: only b1 and b2: {[g for g in after if g[0] not in ('b1', 'b2')][:3]}")
            moved = sum(1 for a, b in zip(before, after) if a[0] != b[0])
            on_b3 = sum(1 for a in before if a[0] == "b3")
            print(f"removing 1 of 3 backends moved {moved} of 300 connections' tuples ({moved / 3:.1f}%); {on_b3} were on it")
            check(moved >= on_b3 and moved <= on_b3 + 15, f"only the removed backend's tuples move: {moved} moved, {on_b3} were on b3")


def dns_round_robin():
    with Dpsw(NETS, EPS, uplink=True) as d:
        d.config["services"] = SERVICES
        d.write_config()
        d.start()
        firsts = set()
        for _ in range(6):
            out = d.run("c", "dig", "+short", "+tries=1", "@10.244.1.1", "rr").stdout.split()
            check(len(out) == 2, f"rr answers both backends: {out}")
            firsts.add(out[0])
        check(len(firsts) == 2, f"the order rotates: first addresses seen {firsts}")
        b1 = d.run("b1", "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3].split("/")[0]
        d.ctl("endpoint", "del", "b2")
        out = d.run("c", "dig", "+short", "+tries=1", "@10.244.1.1", "rr").stdout.split()
        check(out == [b1], f"a removed backend leaves the answer at once: {out}")
        # A service added and removed at runtime.
        d.ctl("service", "add", "api", "--network", "front", "--port", "8080/tcp", "--backend", "b1", "--vip", "10.244.1.201")
        check(d.run("c", "getent", "hosts", "api").stdout.split()[:1] == ["10.244.1.201"], "api added")
        d.ctl("service", "del", "api")
        check(d.run("c", "getent", "hosts", "api", check_rc=False).returncode != 0, "api removed")


def udp_vip():
    """A UDP service with a port range mapped to other backend ports: answers come from the VIP's port,
    the backends see the client's address, a flow stays on its backend (and rides the kernel tier)."""
    svc = {"name": "dgram", "network": "front", "vip": VIP, "ports": ["7000-7001:8000-8001/udp"],
           "backends": {"labels": {"app": "web"}}, "publish": ["7070:7000/udp"]}
    with Dpsw(NETS, EPS, uplink=True) as d:
        d.config["services"] = [svc]
        d.write_config()
        d.start()
        procs = [d.popen(b, "python3", "-c", UDP_SERVER, b, "8000", "8001", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for b in BACKENDS]
        try:
            for p in procs:
                check(p.stdout.readline().strip() == "ready", "UDP server ready")
            udp = lambda ns, target, port, count, mode: [
                l.split() for l in d.run(ns, "python3", "-c", UDP_CLIENT, target, str(port), str(count), mode, timeout=120).stdout.splitlines()]
            for port, target_port in [(7000, "8000"), (7001, "8001")]:
                got = udp("c", VIP, port, 60, "any")
                check(all(g[0] in BACKENDS for g in got), f"c -> VIP:{port}/udp answered: {[g for g in got if g[0] not in BACKENDS][:3]}")
                check(len({g[0] for g in got}) == 3, f"spread over the three backends: {sorted({g[0] for g in got})}")
                check(all(g[1:] == ["10.244.1.50", target_port, f"{VIP}:{port}"] for g in got),
                      f"the backend sees the client on its port {target_port}; the answer comes from the VIP's: {got[:3]}")
            # One socket: one flow, one backend, its datagrams over a second and more (the kernel tier takes the flow).
            fwd = d.counters()["fast_tier"]["nat_forwarded"] if FAST else 0
            got = udp("c", VIP, 7000, 300, "same")
            check(len({g[0] for g in got}) == 1 and got[0][0] in BACKENDS, f"one socket stays on one backend: {sorted({g[0] for g in got})}")
            check(all(g[3] == f"{VIP}:7000" for g in got), f"every answer from the VIP: {[g for g in got if g[3] != VIP + ':7000'][:3]}")
            if FAST:
                fwd = d.counters()["fast_tier"]["nat_forwarded"] - fwd
                check(fwd > 100, f"the kernel tier forwarded the flow's datagrams: nat_forwarded +{fwd}")
            # From the allowed network, and from outside through the published port.
            got = udp("d", VIP, 7000, 20, "any")
            check(all(g[0] in BACKENDS and g[1] == "10.244.2.50" and g[3] == f"{VIP}:7000" for g in got), f"d -> VIP:7000/udp: {got[:3]}")
            got = udp("out", HOST, 7070, 20, "any")
            check(all(g[0] in BACKENDS and g[1] == OUT and g[3] == f"{HOST}:7070" for g in got), f"out -> {HOST}:7070/udp: {got[:3]}")
            # A removed backend's flows go with it: the same source ports reach the others.
            before = udp("c", VIP, 7000, 30, "47000")
            d.ctl("endpoint", "del", "b3")
            after = udp("c", VIP, 7000, 30, "47000")
            check(all(g[0] in ("b1", "b2") for g in after), f"after b3 is removed: {[g for g in after if g[0] not in ('b1', 'b2')][:3]}")
            kept = [(a[0], b[0]) for a, b in zip(before, after) if a[0] != "b3"]
            check(all(a == b for a, b in kept), f"the others' flows stay where they were: {[k for k in kept if k[0] != k[1]][:3]}")
        finally:
            for p in procs:
                p.kill()
                p.wait()


if __name__ == "__main__":
    scenario_main({"vip_balancing": vip_balancing, "backend_removed": backend_removed, "dns_round_robin": dns_round_robin,
                   "udp_vip": udp_vip})
