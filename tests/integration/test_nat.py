#!/usr/bin/env python3
"""Outbound masquerade through the uplink, connection tracking, isolation.
The outside world is a namespace of ours (198.51.100.0/24)."""
import subprocess
import time

from dpswtest import Dpsw, check, ping, scenario_main, sh, tcp_transfer

OUT, HOST = Dpsw.OUTSIDE_IP, Dpsw.HOST_IP

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
        check(all(f["nat"].startswith(HOST + ":") for f in flows), str(flows))
        check(any(f["proto"] == "tcp" and f["state"] in ("closing", "closed") for f in flows), f"TCP close not tracked: {flows}")
        # Unsolicited traffic to the host address belongs to no flow: refused and counted.
        before = d.counters()["ports"][d.uplink_if]["drops"].get("no_flow", 0)
        d.run("out", "python3", "-c", UDP_CLIENT, HOST, "9999", check_rc=False)
        after = d.counters()["ports"][d.uplink_if]["drops"].get("no_flow", 0)
        check(after > before, "unsolicited UDP to the host address should be dropped as no_flow")


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
              extra_switch={"conntrack": "{ size: 64, timeouts: { icmp: 2, udp: 2 } }"}) as d:
        d.start()
        ping(d, "c1", OUT, count=1)
        check(len(d.ctl("show", "conntrack")) == 1, "flow not tracked")
        deadline = time.time() + 8
        while time.time() < deadline and d.ctl("show", "conntrack"):
            time.sleep(0.25)
        check(d.ctl("show", "conntrack") == [], "flow did not expire after its 2 s timeout")
        # A small table: 64 flows. Existing ones keep working when it is full.
        ping(d, "c1", OUT, count=1)
        c = d.counters()["conntrack"]
        check(c["capacity"] == 64 and c["flows"] == 1, str(c))


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (outbound_icmp_udp_tcp, isolation_and_internal, conntrack_expiry)})
