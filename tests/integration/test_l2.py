#!/usr/bin/env python3
"""L2 switching between container namespaces over AF_XDP, end to end."""
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab.env import DPSW  # noqa: E402
from lab.proc import sh  # noqa: E402
from lab.testing import FAST, Dpsw, check, scenario_main  # noqa: E402
from lab.traffic import SEND_RAW, ping, tcp_transfer  # noqa: E402

NETS = [{"name": "a", "subnet": "10.200.1.0/24"}, {"name": "b", "subnet": "10.200.2.0/24"}]
EPS = [
    {"name": "c1", "networks": ["a"], "ip": "10.200.1.11"},
    {"name": "c2", "networks": ["a"], "ip": "10.200.1.12"},
    {"name": "c3", "networks": ["b"], "ip": "10.200.2.13"},
    {"name": "c4", "networks": ["b"], "ip": "10.200.2.14"},
]


def ping_and_tcp():
    with Dpsw(NETS, EPS) as d:
        d.start()
        ping(d, "c1", "10.200.1.12")
        ping(d, "c3", "10.200.2.14")
        k = d.run("c1", "ethtool", "-k", "eth0").stdout
        if FAST:  # the fast tier keeps the container's offloads: TCP crosses in 64 KiB GSO frames
            check("tcp-segmentation-offload: on" in k, "TSO is off in the container (fast tier):\n" + k)
        else:  # what TCP over AF_XDP relies on: the container computes full checksums
            check("tx-checksumming: off" in k, "TX checksum offload still on in the container:\n" + k)
        v6 = d.run("c1", "sysctl", "-n", "net.ipv6.conf.all.disable_ipv6").stdout.strip()
        check(v6 == "1", "IPv6 should be off in containers on IPv4-only networks (as in Docker)")
        n = 16 << 20
        tcp_transfer(d, "c1", "c2", "10.200.1.12", size=n)
        c = d.counters()["ports"]
        p1, p2 = d.port_of("c1", "a")["name"], d.port_of("c2", "a")["name"]
        # 16 MiB in MTU-sized segments: at least ~11k frames each way through the switch.
        check(c[p1]["rx_packets"] > 11000 and c[p2]["tx_packets"] > 11000, f"counters did not move: {c}")
        check(c[p1]["rx_bytes"] > n, "rx bytes below the payload size")
        macs = {e["mac"]: e for e in d.ctl("show", "mac", "a")}
        check(d.port_of("c1", "a")["mac"] in macs and d.port_of("c2", "a")["mac"] in macs, f"MACs not learned: {macs}")



def isolation():
    with Dpsw(NETS, EPS) as d:
        d.start()
        m1 = d.port_of("c1", "a")["mac"]
        m3 = d.port_of("c3", "b")["mac"]
        # c3 and c4 talk so c3's MAC is known in network b.
        ping(d, "c3", "10.200.2.14", count=1)
        before = d.counters()["ports"]
        caps = {}
        for ep in ("c2", "c3", "c4"):
            caps[ep] = d.popen(ep, "tcpdump", "-i", "eth0", "-U", "-n", "-e", "-c", "1000", "ether", "proto", "0x88b5",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        # From network a: broadcast, c3's MAC (known only in b) and an unknown MAC.
        for dst in ("ff:ff:ff:ff:ff:ff", m3, "02:99:99:99:99:99"):
            d.run("c1", "python3", "-c", SEND_RAW, dst, m1, "20", "DPSW-LEAK-PROBE")
        ping(d, "c1", "10.200.2.13", count=2, expect=False)  # other network's address: no path
        time.sleep(0.5)
        out = {}
        for ep, p in caps.items():
            p.send_signal(signal.SIGINT)
            out[ep] = p.communicate(timeout=10)[0]
        after = d.counters()["ports"]
        leaked = [ep for ep in ("c3", "c4") if "DPSW" in out[ep] or m1 in out[ep]]
        check(not leaked, f"frames from network a reached {leaked}: {out}")
        got_c2 = out["c2"].count(m1)
        check(got_c2 == 60, f"c2 (same network) should see all 60 probes (all flooded), saw {got_c2}:\n{out['c2']}")
        for ep in ("c3", "c4"):
            p = d.port_of(ep, "b")["name"]
            check(after[p]["tx_packets"] == before[p]["tx_packets"],
                  f"{ep}'s port transmitted {after[p]['tx_packets'] - before[p]['tx_packets']} frames during network a's traffic")
        p1 = d.port_of("c1", "a")["name"]
        check(after[p1]["flood_packets"] - before[p1]["flood_packets"] >= 60, "probes were not flooded within network a")


def modes():
    eps = [
        {"name": "web", "networks": ["a"]},
        {"name": "side", "mode": "container:web"},
        {"name": "iso", "mode": "none"},
        {"name": "hosty", "mode": "host"},
        {"name": "peer", "networks": ["a"]},
    ]
    with Dpsw(NETS[:1], eps) as d:
        d.start()
        ns, links = d.endpoint_links()
        check(sorted(ns) == sorted([d.ns("web"), d.ns("iso"), d.ns("peer")]), f"namespaces: {ns}")
        check(len(links) == 2, f"expected 2 host links (web, peer), got {links}")
        # none: loopback only, and it is up.
        r = d.run("iso", "ip", "-o", "link").stdout.strip().splitlines()
        check(len(r) == 1 and ": lo:" in r[0] and "UP" in r[0], f"mode none should have only lo: {r}")
        d.run("iso", "ping", "-c", "1", "-W", "1", "127.0.0.1")
        # container:web shares web's namespace and its endpoint.
        eps_shown = {e["name"]: e for e in d.ctl("show", "endpoints")}
        check(eps_shown["side"]["mode"] == "container" and eps_shown["side"]["joins"] == "web", str(eps_shown["side"]))
        check(eps_shown["side"]["attachments"] == [], "container:web must not get interfaces of its own")
        check(eps_shown["hosty"]["netns"] == "" and eps_shown["hosty"]["attachments"] == [], str(eps_shown["hosty"]))
        web_ip = eps_shown["web"]["attachments"][0]["ip"].split("/")[0]
        ping(d, "peer", web_ip)


def mac_aging():
    """The endpoints' own MACs are known by configuration (static: never aged,
    moved or learned elsewhere); a station learned behind an endpoint ages out
    (with the fast tier: of both tiers, and is installed in the kernel's)."""
    with Dpsw(NETS[:1], EPS[:2], aging_s=2) as d:
        d.start()
        ping(d, "c1", "10.200.1.12", count=1)
        macs = d.ctl("show", "mac")
        check(len(macs) == 2 and all(m["static"] and m["fast_tier"] == FAST for m in macs), f"endpoint MACs: {macs}")
        extra = "02:77:00:00:00:01"

        def where():
            return ([m for m in d.ctl("show", "mac") if m["mac"] == extra],
                    [e for e in d.ctl("show", "fast")["fdb"] if e["mac"] == extra] if FAST else [{"endpoint": "c1"}])

        for round_ in ("learned", "relearned"):
            d.run("c1", "python3", "-c", SEND_RAW, "ff:ff:ff:ff:ff:ff", extra, "2", "DPSW-LEAK-PROBE")
            time.sleep(1.2)  # seen again a second later: confirmed (only then in the kernel tier)
            d.run("c1", "python3", "-c", SEND_RAW, "ff:ff:ff:ff:ff:ff", extra, "2", "DPSW-LEAK-PROBE")
            deadline = time.time() + 3
            while time.time() < deadline and not all(where()):
                time.sleep(0.1)
            table, fdb = where()
            check(table and not table[0]["static"] and fdb and fdb[0]["endpoint"] == "c1", f"{extra} not {round_}: {table} {fdb}")
            if round_ == "relearned":
                break
            deadline = time.time() + 8
            while time.time() < deadline and where()[0]:
                time.sleep(0.25)
            check(not where()[0] and (not FAST or not where()[1]), f"{extra} did not age out (of both tiers) after 2 s: {where()}")
            check(len(d.ctl("show", "mac")) == 2, "endpoint MACs must not age")


def clean_shutdown():
    for sig in (signal.SIGTERM, signal.SIGINT):
        with Dpsw(NETS, EPS) as d:
            d.start()
            ns, links = d.endpoint_links()
            check(len(ns) == 4 and len(links) == 4, f"setup incomplete: {ns} {links}")
            if FAST:  # TC on the host veths (XDP would turn the containers' TSO off); XDP on the punt ports
                check(not any("(xdp)" in l for l in links), f"XDP on a fast-tier port: {links}")
                tc = sh("tc", "filter", "show", "dev", links[0], "ingress").stdout
                check("dpsw_fast_ingre" in tc, f"fast tier not attached to {links[0]}: {tc}")  # names are cut at 15
                punts = [l for l in d.leftovers()[1] if l not in links]
                check(len(punts) == 2 and sum("(xdp)" in l for l in punts) == 1, f"punt veth pair: {punts}")
            else:
                check(all("(xdp)" in l for l in links), f"XDP not attached to every port: {links}")
            rc = d.stop(sig)
            check(rc == 0, f"exit code {rc} on {sig.name}")
            ns, links = d.leftovers()
            check(ns == [] and links == [], f"left behind after {sig.name}: {ns} {links}")
            check(not os.path.exists(d.sock), "control socket left behind")
            check(not os.path.exists(os.path.join(d.dir, d.name + ".state")), "state file left behind")


def restart_after_kill9():
    with Dpsw(NETS, EPS) as d:
        d.start()
        ping(d, "c1", "10.200.1.12", count=1)
        d.stop(signal.SIGKILL)
        ns, links = d.leftovers()
        check(len(ns) == 4, f"kill -9 should leave state behind (that is the point): {ns}")
        d.start()  # replaces the stale state
        ping(d, "c1", "10.200.1.12")
        tcp_transfer(d, "c2", "c1", "10.200.1.11", size=4 << 20)
        check("removed" in d.read_log(), "restart did not report the stale state it removed")
        check(d.stop() == 0, "clean stop after restart failed")
        ns, links = d.leftovers()
        check(ns == [] and links == [], f"left behind: {ns} {links}")


def second_instance_refused():
    with Dpsw(NETS[:1], EPS[:2]) as d:
        d.start()
        r = sh(DPSW, "--config", d.cfg_path,
               check_rc=False, timeout=20)
        check(r.returncode != 0 and "another dpsw instance" in r.stderr, f"second instance: rc={r.returncode} {r.stderr}")
        ping(d, "c1", "10.200.1.12", count=1)  # the first one is untouched


def two_workers():
    """Ports spread over two workers: every frame between c1 and c2 crosses
    the handoff ring. Workers sleep when idle so they can share the 2 cores
    with the kernel side of the test."""
    with Dpsw(NETS[:1], EPS[:2], workers=[0, 1], extra_switch={"idle": "block"}) as d:
        d.start()
        owners = {p["endpoint"]: p["worker"] for p in d.ports()}
        check(owners["c1"] != owners["c2"], f"ports should be on different workers: {owners}")
        ping(d, "c1", "10.200.1.12")
        tcp_transfer(d, "c1", "c2", "10.200.1.12", size=4 << 20)
        c = d.counters()
        check(len(c["workers"]) == 2 and all(w["busy_loops"] > 0 for w in c["workers"]), f"both workers should forward: {c['workers']}")


def adopt_netns():
    """An endpoint in a namespace that already exists (as a runtime hands it over):
    dpsw plumbs it and, on exit, removes only what it created there."""
    with Dpsw(NETS[:1], EPS[:1]) as d:
        ns = f"{d.name}-adopted"  # our prefix, so cleanup covers it on failure
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "exec", ns, "ip", "link", "add", "keepme", "type", "veth", "peer", "name", "keepme2")
        d.config["endpoints"].append({"name": "adopted", "networks": ["a"], "netns": f"/var/run/netns/{ns}"})
        d.write_config()
        d.start()
        ip = [p for p in d.ctl("show", "ports") if p["endpoint"] == "adopted"][0]["ip"]
        ping(d, "c1", ip)
        check(d.stop() == 0, "stop failed")
        nss, links = d.leftovers()
        check(nss == [ns], f"the adopted namespace must survive, ours must go: {nss}")
        left = sh("ip", "netns", "exec", ns, "ip", "-o", "link").stdout
        check("keepme" in left and "eth0" not in left, f"adopted namespace should keep its own links only: {left}")


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (ping_and_tcp, isolation, modes, mac_aging, clean_shutdown,
                                          restart_after_kill9, second_instance_refused, two_workers,
                                          adopt_netns)})
