#!/usr/bin/env python3
"""Overlay (VXLAN) networks across "hosts": namespaces of ours joined by an
underlay segment (198.51.100.0/24, a kernel bridge in its own namespace).
A dpsw host runs `dpsw --netns HOST` with the host's underlay link as its
uplink; a kernel host is built the way one builds VXLAN by hand (vxlan
device + bridge + a container namespace behind it)."""
import contextlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab import topo  # noqa: E402
from lab.proc import sh  # noqa: E402
from lab.testing import FAST, Dpsw, check, scenario_main, wait_for  # noqa: E402
from lab.topo import UNDERLAY, Fabric  # noqa: E402
from lab.traffic import SEND_RAW, ping, tcp_transfer_ns  # noqa: E402


def attachment(d, ep, net):
    for e in d.ctl("show", "endpoints"):
        if e["name"] == ep:
            for a in e["attachments"]:
                if a["network"] == net:
                    return a
    raise AssertionError(f"no attachment {ep}/{net}")


def mac_entries(d, net):
    return {e["mac"]: e["port"] for e in d.ctl("show", "mac", net)}


def counters_of(d, port):
    return d.counters()["ports"][port]


def tcpdump_in(ns, count, filt, timeout=8):
    return subprocess.Popen(["timeout", str(timeout), "ip", "netns", "exec", ns, "tcpdump", "-l", "-nn", "-c", str(count), "-i", "eth0", filt],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def remote_mac_in_kernel(d, name, mac):
    """With the fast tier: waits until a remote MAC is in the kernel tier's fdb
    (dpsw's table holds it established: seen again a second later)."""
    wait_for(lambda: any(e["mac"] == mac and e["fast_tier"] for e in d.ctl("show", "mac", "ov1")), 10,
             f"host {name}: the remote MAC {mac} in the kernel tier's fdb")


def kernel_tier_counts(d, tunnel):
    return d.counters()["fast_tier"] or {}, counters_of(d, tunnel).get("fast_tier", {})


def kernel_tier_carried(d, name, tunnel, before, size):
    """With the fast tier: a transfer of `size` bytes each way since `before`
    (kernel_tier_counts) was encapsulated and decapsulated by the kernel tier,
    counted on the tunnel port."""
    if not FAST:
        return
    (ev, port), (after, port_after) = before, kernel_tier_counts(d, tunnel)
    for k in ("vxlan_encapsulated", "vxlan_decapsulated"):
        check(after[k] > ev.get(k, 0), f"host {name}: the kernel tier should have {k.split('_')[1]} frames: {after}")
    check(after["vxlan_errors"] == 0 and after["vxlan_tunnels"] >= 1, f"host {name}: {after}")
    for k in ("tx_bytes", "rx_bytes"):
        moved = port_after.get(k, 0) - port.get(k, 0)
        check(moved >= size, f"host {name}: the tunnel port should count the transfer in the kernel tier ({k}): {moved}")


def dpsw_to_dpsw():
    A, B = UNDERLAY.format(11), UNDERLAY.format(12)
    ov = lambda peer: [
        {"name": "ov1", "driver": "overlay", "vni": 42, "subnet": "10.10.0.0/24", "peers": [peer]},
        # An MTU the underlay cannot carry: dpsw answers with fragmentation-needed.
        {"name": "ov2", "driver": "overlay", "vni": 43, "subnet": "10.20.0.0/24", "mtu": 1500, "peers": [peer]}]
    with Fabric(Dpsw) as f, \
            f.dpsw_host("a", 11, ov(B), [{"name": "a1", "networks": ["ov1"], "ip": "10.10.0.11"},
                                         {"name": "a2", "networks": ["ov2"], "ip": "10.20.0.11"}], core=1, aging_s=3) as da, \
            f.dpsw_host("b", 12, ov(A), [{"name": "b1", "networks": ["ov1"], "ip": "10.10.0.21"},
                                         {"name": "b2", "networks": ["ov2"], "ip": "10.20.0.21"}], core=0) as db:
        da.start()
        db.start()
        nets = {n["name"]: n for n in da.ctl("show", "networks")}
        check(nets["ov1"]["driver"] == "overlay" and nets["ov1"]["vni"] == 42 and nets["ov1"]["peers"] == [B],
              f"show networks: {nets['ov1']}")
        check(nets["ov1"]["mtu"] == 1450, f"overlay MTU should default to uplink MTU - 50: {nets['ov1']}")
        mtu = da.run("a1", "cat", "/sys/class/net/eth0/mtu").stdout.strip()
        check(mtu == "1450", f"a1's eth0 has MTU {mtu}, expected 1450")

        # ARP through the tunnel, then ping both ways; capture on the underlay decoded as VXLAN.
        cap = f.capture("a", 4)
        ping(da, "a1", "10.10.0.21", count=3)
        ping(db, "b1", "10.10.0.11", count=2)
        out = cap.communicate(timeout=20)[0]
        check("VXLAN" in out and "vni 42" in out, f"underlay capture is not VXLAN with VNI 42:\n{out}")
        b1 = attachment(db, "b1", "ov1")
        neigh = da.run("a1", "ip", "neigh", "show", "10.10.0.21").stdout
        check(b1["mac"] in neigh, f"a1 resolved 10.10.0.21 to the wrong MAC: {neigh} (b1 is {b1['mac']})")
        macs = mac_entries(da, "ov1")
        check(macs.get(b1["mac"]) == f"vxlan:42:{B}", f"b1's MAC not learned on the tunnel to {B}: {macs}")

        # Byte-exact TCP both ways; with the fast tier, encapsulated and
        # decapsulated in the kernel once both MACs are learned (the first
        # frames are dpsw's), counted on the tunnel port.
        hosts = (("a", da, f"vxlan:42:{B}"), ("b", db, f"vxlan:42:{A}"))
        if FAST:
            a1 = attachment(da, "a1", "ov1")
            ping(da, "a1", "10.10.0.21", count=3)
            for (name, d, _), mac in zip(hosts, (b1["mac"], a1["mac"])):
                remote_mac_in_kernel(d, name, mac)
        before = [kernel_tier_counts(d, t) for _, d, t in hosts]
        tcp_transfer_ns(da.ns("a1"), db.ns("b1"), "10.10.0.21", size=4 << 20)
        tcp_transfer_ns(db.ns("b1"), da.ns("a1"), "10.10.0.11", size=4 << 20, port=5002)
        for (name, d, t), b in zip(hosts, before):
            kernel_tier_carried(d, name, t, b, 4 << 20)

        # VNI isolation: a broadcast on ov1 (ARP for an absent address) reaches b1, never b2.
        c1, c2 = tcpdump_in(db.ns("b1"), 1, "arp"), tcpdump_in(db.ns("b2"), 1, "arp")
        time.sleep(1)
        da.run("a1", "ping", "-c", "2", "-W", "1", "10.10.0.99", check_rc=False)
        o1, o2 = c1.communicate(timeout=15)[0], c2.communicate(timeout=15)[0]
        check("10.10.0.99" in o1, f"b1 did not see a1's ARP broadcast: {o1!r}")
        check(o2.strip() == "", f"b2 (VNI 43) saw VNI 42 traffic: {o2!r}")

        # Too big for the underlay: ICMP fragmentation-needed (mtu 1450) back to the sender; PMTU then works.
        r = da.run("a2", "ping", "-M", "do", "-s", "1472", "-c", "1", "-W", "2", "10.20.0.21", check_rc=False)
        check("mtu = 1450" in r.stdout, f"expected 'Frag needed ... mtu = 1450':\n{r.stdout}{r.stderr}")
        drops = counters_of(da, f"vxlan:43:{B}")["drops"]
        check(drops.get("too_big", 0) >= 1, f"too_big not counted: {drops}")
        ping(da, "a2", "10.20.0.21", count=2)
        tcp_transfer_ns(da.ns("a2"), db.ns("b2"), "10.20.0.21", size=2 << 20, port=5003)  # TCP follows the PMTU

        # Remote MACs age out (aging_s: 3 on host a).
        wait_for(lambda: b1["mac"] not in mac_entries(da, "ov1"), 15, "b1's MAC to age out on host a")

        # Peers change at runtime (reload): removing B cuts ov1, adding it back restores it.
        cut = da.copy_config()
        da.network("ov1", cut)["peers"] = []
        da.write_config(cut)
        res = da.ctl("reload")
        check(res["applied"]["peers_changed"] == ["ov1"] and not res["applied"]["endpoints_changed"], f"reload: {res}")
        check(not any(p["kind"] == "vxlan" and p["network"] == "ov1" for p in da.ctl("show", "ports")), "tunnel not removed")
        ping(da, "a1", "10.10.0.21", count=2, expect=False)
        da.write_config()
        da.ctl("reload")
        ping(da, "a1", "10.10.0.21", count=2)

        # The overlay's gateway (10.10.0.1) is each host's own: its dpsw answers ARP, echo and DNS for its
        # endpoints there. Names are this host's: another host's endpoints are not known (no shared registry).
        for d, ep in ((da, "a1"), (db, "b1")):
            ping(d, ep, "10.10.0.1", count=1)
            check("nameserver 10.10.0.1" in d.run(ep, "cat", "/etc/resolv.conf").stdout, f"{ep} asks its overlay's gateway")
        out = da.run("a1", "getent", "hosts", "a1", check_rc=False).stdout.split()
        check(out[:1] == ["10.10.0.11"], f"a1 resolves its own name at host a's gateway: {out}")
        names = {(r["name"], r["network"]) for r in da.ctl("show", "dns")}
        check(("a1", "ov1") in names and ("b1", "ov1") not in names, f"host a's names are its own endpoints': {names}")


def dpsw_to_dpsw_direct():
    """Two dpsw hosts whose uplinks are the two ends of one veth (no bridge
    between, as the bench joins them): each uplink's peer is the other
    host's uplink, in another namespace, so frames to the remote VTEP go
    into it directly - except GSO frames the kernel tier encapsulated, which
    only the veth's transmit segments. Byte-exact TCP both ways carried by
    the kernel tier, nothing dropped as oversized on either uplink."""
    t = topo.Topology(topo.new_prefix("w"))
    try:
        ha, hb = t.prefix + "a", t.prefix + "b"
        topo.underlay(t, ha, hb)
        A, B = UNDERLAY.format(11), UNDERLAY.format(12)
        net = lambda peer: [{"name": "ov1", "driver": "overlay", "vni": 42, "subnet": "10.10.0.0/24", "peers": [peer]}]
        with Dpsw(net(B), [{"name": "a1", "networks": ["ov1"], "ip": "10.10.0.11"}], name=t.prefix[1:] + "a",
                  uplink={"interface": "up0", "address": A + "/24"}, netns=ha) as da, \
                Dpsw(net(A), [{"name": "b1", "networks": ["ov1"], "ip": "10.10.0.21"}], name=t.prefix[1:] + "b",
                     uplink={"interface": "up0", "address": B + "/24"}, netns=hb) as db:
            da.start()
            db.start()
            ping(da, "a1", "10.10.0.21", count=8)  # 1.4 s: each remote MAC seen again a second later (confirmed)
            hosts = (("a", da, f"vxlan:42:{B}"), ("b", db, f"vxlan:42:{A}"))
            if FAST:
                for (name, d, _), (ep, net_) in zip(hosts, (("b1", db), ("a1", da))):
                    remote_mac_in_kernel(d, name, attachment(net_, ep, "ov1")["mac"])
                    up = d.ctl("show", "fast").get("uplink", {})
                    check(up.get("into_peer") is True, f"host {name}: frames to the other host should go into its uplink: {up}")
            before = [kernel_tier_counts(d, tn) for _, d, tn in hosts]
            tcp_transfer_ns(da.ns("a1"), db.ns("b1"), "10.10.0.21", size=4 << 20)
            tcp_transfer_ns(db.ns("b1"), da.ns("a1"), "10.10.0.11", size=4 << 20, port=5002)
            for (name, d, tn), b in zip(hosts, before):
                kernel_tier_carried(d, name, tn, b, 4 << 20)
                drops = counters_of(d, "up0")["drops"]
                check(not drops.get("oversize"), f"host {name}: frames dropped as oversized on the uplink: {drops}")
    finally:
        t.teardown()


@contextlib.contextmanager
def dpsw_and_kernel(endpoints):
    """Host a (dpsw, 198.51.100.11) and host c (kernel vxlan, .13, container
    10.10.0.31) on overlay ov1, VNI 42; yields (fabric, dpsw, c's host
    namespace, c's container namespace), dpsw started."""
    A, C = UNDERLAY.format(11), UNDERLAY.format(13)
    with Fabric(Dpsw) as f, \
            f.dpsw_host("a", 11, [{"name": "ov1", "driver": "overlay", "vni": 42, "subnet": "10.10.0.0/24", "peers": [C]}],
                        endpoints, core=1) as da:
        host, ctr = f.kernel_host("c", 13, 42, [A], "10.10.0.31")
        da.start()
        yield f, da, host, ctr


def dpsw_to_kernel():
    A, C = UNDERLAY.format(11), UNDERLAY.format(13)
    with dpsw_and_kernel([{"name": "a1", "networks": ["ov1"], "ip": "10.10.0.11"}]) as (f, da, host, ctr):
        cap = f.capture("c", 4)
        ping(da, "a1", "10.10.0.31", count=3)  # ARP resolved through the tunnel, both ways
        r = sh("ip", "netns", "exec", ctr, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.10.0.11", check_rc=False)
        check(r.returncode == 0, f"kernel container -> dpsw container failed:\n{r.stdout}")
        out = cap.communicate(timeout=20)[0]
        check("VXLAN" in out and "vni 42" in out, f"underlay capture is not VXLAN with VNI 42:\n{out}")
        a1 = attachment(da, "a1", "ov1")
        fdb = sh("bridge", "-n", host, "fdb", "show", "dev", "vx0").stdout
        check(any(a1["mac"] in l and f"dst {A}" in l for l in fdb.splitlines()),
              f"the kernel did not learn a1's MAC behind {A}:\n{fdb}")
        kmac = sh("ip", "-n", ctr, "-br", "link", "show", "eth0").stdout.split()[2]
        macs = mac_entries(da, "ov1")
        check(macs.get(kmac) == f"vxlan:42:{C}", f"the kernel container's MAC {kmac} not learned behind {C}: {macs}")
        # Byte-exact TCP both ways, against the kernel's own vxlan device with
        # Linux's defaults (it leaves checksums to offload and sends GSO frames).
        if FAST:
            ping(da, "a1", "10.10.0.31", count=3)
            remote_mac_in_kernel(da, "a", kmac)
        before = kernel_tier_counts(da, f"vxlan:42:{C}")
        tcp_transfer_ns(da.ns("a1"), ctr, "10.10.0.31", size=4 << 20)
        tcp_transfer_ns(ctr, da.ns("a1"), "10.10.0.11", size=4 << 20, port=5002)
        kernel_tier_carried(da, "a", f"vxlan:42:{C}", before, 4 << 20)
        # The overlay's gateway (10.10.0.1) is host a's own for a1: a kernel host that holds it too has its
        # ARP from that address dropped (arp_spoof on the tunnel: the documented limitation), a1 keeps dpsw's.
        sh("ip", "-n", ctr, "addr", "add", "10.10.0.1/24", "dev", "eth0")
        sh("ip", "-n", ctr, "neigh", "flush", "dev", "eth0")
        r = sh("ip", "netns", "exec", ctr, "ping", "-I", "10.10.0.1", "-c", "2", "-i", "0.3", "-W", "1", "10.10.0.11", check_rc=False)
        check(r.returncode != 0, f"a kernel host holding the overlay's gateway address reached a1 from it:\n{r.stdout}")
        drops = counters_of(da, f"vxlan:42:{C}")["drops"]
        check(drops.get("arp_spoof", 0) >= 1, f"the tunnel's ARP announcing the gateway not counted: {drops}")
        ping(da, "a1", "10.10.0.1", count=1)
        neigh = da.run("a1", "ip", "neigh", "show", "10.10.0.1").stdout
        check("02:dd:" in neigh, f"a1's gateway must stay dpsw's router MAC: {neigh}")
        sh("ip", "-n", ctr, "addr", "del", "10.10.0.1/24", "dev", "eth0")
        # A VNI the kernel host does not use: counted and dropped by dpsw.
        sh("ip", "-n", host, "link", "add", "vx1", "type", "vxlan", "id", "77", "dstport", "4789", "local", C, "dev", "up0")
        sh("bridge", "-n", host, "fdb", "append", "00:00:00:00:00:00", "dev", "vx1", "dst", A)
        sh("ip", "-n", host, "addr", "add", "10.77.0.1/24", "dev", "vx1")
        sh("ip", "-n", host, "link", "set", "vx1", "up")
        sh("ip", "netns", "exec", host, "ping", "-c", "2", "-i", "0.2", "-W", "1", "10.77.0.2", check_rc=False)
        up = next(p for p in da.ctl("show", "ports") if p["network"] == "(uplink)")
        drops = up["counters"]["drops"]
        check(drops.get("vxlan_vni", 0) >= 1, f"unknown VNI not counted on the uplink: {drops}")
        # An overlay network added and removed at run time, with dpswctl's flags.
        da.ctl("network", "add", "ov9", "--driver", "overlay", "--vni", "99", "--subnet", "10.99.0.0/24", "--peer", C)
        net = next(n for n in da.ctl("show", "networks") if n["name"] == "ov9")
        check(net["vni"] == 99 and net["peers"] == [C] and net["mtu"] == 1450, f"network add overlay: {net}")
        check(any(p["name"] == f"vxlan:99:{C}" for p in da.ctl("show", "ports")), "no tunnel for the added network")
        da.ctl("network", "del", "ov9")
        check(not any(p["name"] == f"vxlan:99:{C}" for p in da.ctl("show", "ports")), "tunnel left after network del")
        ping(da, "a1", "10.10.0.31", count=2)  # the other overlay never noticed



def remote_cannot_claim_local_macs():
    """Frames decapsulated from a peer whose source is a local endpoint's MAC
    (anyone on the underlay can send them) never move that MAC into the
    tunnel: every configured endpoint MAC is static (issue 19, item 3)."""
    with dpsw_and_kernel([{"name": "a1", "networks": ["ov1"], "ip": "10.10.0.11"},
                          {"name": "a2", "networks": ["ov1"], "ip": "10.10.0.12"}]) as (f, da, host, ctr):
        ping(da, "a1", "10.10.0.31", count=1)
        a1 = attachment(da, "a1", "ov1")
        for dst in ("ff:ff:ff:ff:ff:ff", attachment(da, "a2", "ov1")["mac"]):
            sh("ip", "netns", "exec", ctr, "python3", "-c", SEND_RAW, dst, a1["mac"], "20")
        time.sleep(0.3)
        macs = mac_entries(da, "ov1")
        check(macs.get(a1["mac"]) == a1["host_ifname"], f"a1's MAC moved: {macs}")
        ping(da, "a2", "10.10.0.11")
        ping(da, "a1", "10.10.0.31", count=1)


def peer_mac_change_followed():
    """dpsw re-validates its uplink neighbours: a peer whose underlay MAC
    changed is reached again within seconds (the kernel's neighbour states
    take ~5 s), and a peer that stops answering takes its tunnel's link down
    (issue 19, item 6)."""
    A, C = UNDERLAY.format(11), UNDERLAY.format(13)
    with dpsw_and_kernel([{"name": "a1", "networks": ["ov1"], "ip": "10.10.0.11"}]) as (f, da, host, ctr):
        ping(da, "a1", "10.10.0.31", count=2)
        # The kernel host never asks for dpsw's address again (a permanent
        # entry), so only dpsw's own re-validation can find its new MAC.
        a_mac = json.loads(sh("ip", "-n", f"{f.p}-a", "-j", "link", "show", "up0").stdout)[0]["address"]
        sh("ip", "-n", host, "neigh", "replace", A, "lladdr", a_mac, "nud", "permanent", "dev", "up0")
        sh("ip", "-n", host, "link", "set", "up0", "address", "02:00:00:00:0c:13")
        t0 = time.time()
        while time.time() - t0 < 15:
            if da.run("a1", "ping", "-c", "1", "-W", "1", "10.10.0.31", check_rc=False).returncode == 0:
                break
        took = time.time() - t0
        check(took < 12, f"the peer's new MAC was not followed ({took:.1f} s)")
        print(f"reached the peer again {took:.1f} s after its MAC changed")
        tunnel = f"vxlan:42:{C}"
        state = lambda: next(p for p in da.ctl("show", "ports") if p["name"] == tunnel)
        check(state()["link"] == "up" and state()["mac"] == "02:00:00:00:0c:13", f"tunnel: {state()}")
        sh("ip", "-n", host, "link", "set", "up0", "down")
        t0 = time.time()
        while time.time() - t0 < 15 and state()["link"] == "up":
            da.run("a1", "ping", "-c", "1", "-W", "1", "10.10.0.31", check_rc=False)
        check(state()["link"] == "down", f"the tunnel to a silent peer stays up: {state()}")


if __name__ == "__main__":
    scenario_main({"dpsw_to_dpsw": dpsw_to_dpsw, "dpsw_to_dpsw_direct": dpsw_to_dpsw_direct, "dpsw_to_kernel": dpsw_to_kernel,
                   "remote_cannot_claim_local_macs": remote_cannot_claim_local_macs,
                   "peer_mac_change_followed": peer_mac_change_followed})
