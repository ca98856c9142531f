#!/usr/bin/env python3
"""The uplink, dpsw's own addresses (gateways, the host address), and macvlan
endpoints directly on the uplink's segment. The outside world is a namespace
of ours (198.51.100.0/24, documentation range)."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab.proc import sh  # noqa: E402
from lab.testing import FAST, Dpsw, check, scenario_main  # noqa: E402
from lab.traffic import ping, tcp_transfer  # noqa: E402

OUT, HOST = Dpsw.OUTSIDE_IP, Dpsw.HOST_IP


def gateway_and_host_address():
    nets = [{"name": "a", "subnet": "10.240.1.0/24"}]
    with Dpsw(nets, [{"name": "c1", "networks": ["a"]}], uplink=True) as d:
        d.start()
        ping(d, "c1", "10.240.1.1")  # the network's gateway answers
        neigh = d.run("c1", "ip", "neigh", "show", "10.240.1.1").stdout
        check("02:dd:" in neigh, f"gateway should answer with dpsw's router MAC: {neigh}")
        ping(d, "out", HOST)  # the host address on the uplink answers
        neigh = d.run("out", "ip", "neigh", "show", HOST).stdout
        up_mac = open(f"/sys/class/net/{d.uplink_if}/address").read().strip()
        check(up_mac in neigh, f"host address should answer with the uplink's MAC {up_mac}: {neigh}")
        # Anything else sent to the gateway itself (here UDP to port 9) is not served: counted as no_route.
        # (Port 53 is the DNS responder's: a datagram too short to be a query is dns_bad.)
        drops = lambda: d.port_of("c1", "a")["counters"]["drops"]
        before = drops()
        for port in (9, 53):
            d.run("c1", "python3", "-c", f"import socket; socket.socket(2, 2).sendto(b'x', ('10.240.1.1', {port}))")
        time.sleep(0.2)
        after = drops()
        check(after.get("no_route", 0) - before.get("no_route", 0) == 1, f"UDP to the gateway should be dropped as no_route: {before} -> {after}")
        check(after.get("dns_bad", 0) - before.get("dns_bad", 0) == 1, f"a non-query to the gateway's port 53 is dns_bad: {before} -> {after}")
        ports = {p["name"]: p for p in d.ctl("show", "ports")}
        check(ports[d.uplink_if]["network"] == "(uplink)", str(ports))
        check(d.stop() == 0, "stop failed")
        link = sh("ip", "-o", "link", "show", d.uplink_if).stdout
        check(" xdp" not in link, f"XDP left on the uplink: {link}")  # detached, interface kept (not ours)


def macvlan():
    nets = [{"name": "lan", "driver": "macvlan", "subnet": "198.51.100.0/24"}, {"name": "b", "subnet": "10.240.2.0/24"}]
    eps = [{"name": "m1", "networks": ["lan"], "ip": "198.51.100.20"}, {"name": "m2", "networks": ["lan"], "ip": "198.51.100.21"},
           {"name": "c1", "networks": ["b"]}]
    with Dpsw(nets, eps, uplink=True) as d:
        d.start()
        # Reachable from the uplink's segment, with its own MAC, no NAT.
        cap = d.popen("m1", "tcpdump", "-i", "eth0", "-n", "-c", "3", "icmp[icmptype] == icmp-echo",
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.8)
        ping(d, "out", "198.51.100.20")
        seen = cap.communicate(timeout=10)[0]
        check(f"IP {OUT} > 198.51.100.20" in seen, f"m1 should see the outside's own address (no NAT): {seen}")
        neigh = d.run("out", "ip", "neigh", "show", "198.51.100.20").stdout
        check(d.port_of("m1", "lan")["mac"] in neigh, f"the outside should see m1's own MAC: {neigh}")
        ping(d, "m1", OUT)           # and out, by its default route (the uplink's gateway)
        ping(d, "m1", HOST)          # the host side, which the kernel's macvlan cannot reach
        ping(d, "m1", "198.51.100.21")
        macs = {m["mac"]: m for m in d.ctl("show", "mac", "lan")}
        for ep in ("m1", "m2"):
            check(macs[d.port_of(ep, "lan")["mac"]]["static"], f"{ep} should be a static entry: {macs}")
        # Unicast from the uplink for m1 goes to m1 only.
        m2_before = d.port_of("m2", "lan")["counters"]["tx_packets"]
        ping(d, "out", "198.51.100.20", count=10)
        m2_after = d.port_of("m2", "lan")["counters"]["tx_packets"]
        check(m2_after == m2_before, f"m1's frames leaked to m2: {m2_after - m2_before}")
        # Bulk TCP both ways between a macvlan endpoint and the outside, byte-exact;
        # with the fast tier bridged in the kernel (the uplink's learned MACs).
        m1 = d.port_of("m1", "lan")["name"]
        if FAST:  # the outside's MAC is bridged in the kernel once dpsw holds it established (seen again a second later)
            ping(d, "m1", OUT, count=3)
            out_mac = d.run("out", "cat", "/sys/class/net/eth0/address").stdout.strip()
            deadline = time.time() + 10
            while time.time() < deadline and not any(e["mac"] == out_mac and e["fast_tier"] for e in d.ctl("show", "mac", "lan")):
                time.sleep(0.25)
            check(any(e["mac"] == out_mac and e["fast_tier"] for e in d.ctl("show", "mac", "lan")), "the outside's MAC should reach the kernel fdb")
        before = d.counters()["ports"][m1].get("fast_tier", {})
        tcp_transfer(d, "m1", "out", OUT, size=8 << 20)
        tcp_transfer(d, "out", "m1", "198.51.100.20", size=8 << 20, port=5002)
        if FAST:
            after = d.counters()["ports"][m1]["fast_tier"]
            for k in ("rx_bytes", "tx_bytes"):
                check(after[k] - before.get(k, 0) >= (8 << 20) // 3, f"the kernel tier should carry m1's traffic ({k}): {before} -> {after}")
        # The bridge network stays apart at L2.
        ping(d, "c1", "198.51.100.20", count=1, expect=False)
        cap = d.popen("m1", "tcpdump", "-i", "eth0", "-n", "-e", "-c", "50", "ether", "src", d.port_of("c1", "b")["mac"],
                      stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        time.sleep(0.8)
        d.run("c1", "ping", "-c", "2", "-b", "-W", "1", "10.240.2.255", check_rc=False)
        time.sleep(0.3)
        cap.send_signal(signal.SIGINT)
        check(cap.communicate(timeout=10)[0].strip() == "", "a bridge network's frames reached the macvlan segment")


def uplink_left_clean_after_kill9():
    """The uplink is the user's interface: with the fast tier dpsw's TC filter
    (and the clsact qdisc it made) sit on it. After kill -9 the next start
    takes them over, and a clean stop leaves the interface as it was."""
    with Dpsw([{"name": "a", "subnet": "10.241.1.0/24"}], [{"name": "c1", "networks": ["a"]}], uplink=True) as d:
        d.start()
        ping(d, "c1", OUT, count=1)
        tc = lambda what: sh("tc", what, "show", "dev", d.uplink_if, *(["ingress"] if what == "filter" else [])).stdout
        if FAST:
            check("dpsw_fast_ingre" in tc("filter"), f"the fast tier should serve the uplink: {tc('filter')}")
        d.stop(signal.SIGKILL)
        d.start()
        ping(d, "c1", OUT)
        check(d.stop() == 0, "clean stop after restart failed")
        check("clsact" not in tc("qdisc") and "bpf" not in tc("filter"), f"left on the uplink: {tc('qdisc')} {tc('filter')}")


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (gateway_and_host_address, macvlan, uplink_left_clean_after_kill9)})
