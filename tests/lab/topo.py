"""Topologies: namespaces and veths, every name carrying a per-run prefix,
removed afterwards even when the run fails (SPEC section 5). Traffic only
ever crosses namespaces made here (and dpsw's, which carry its instance
name as their prefix); nothing is attached to the machine's own interfaces.

Also the kernel's reference topologies the benchmarks compare dpsw with
(Docker's bridge, NAT and overlay built by hand) and the overlay tests'
fabric (an underlay segment with dpsw and kernel VXLAN hosts on it).
"""
import contextlib
import secrets
import subprocess

from .proc import kill_netns_pids, nsx, sh

# Documentation ranges for everything "outside" (SPEC section 5).
OUTSIDE_IP, HOST_IP = "198.51.100.1", "198.51.100.10"  # the outside namespace; the host's uplink address
UNDERLAY = "198.51.100.{}"                              # VTEPs of the overlay topologies
# Two containers s (sender) and r (receiver) on one bridge network (the benchmarks').
PAIR_SUBNET, PAIR_GATEWAY, PAIR_IPS = "10.250.0.0/24", "10.250.0.1", ("10.250.0.2", "10.250.0.3")
HAIRPIN_IP = "10.250.0.4"  # the NAT topologies' second container: reaches s's published port by hairpin


def new_prefix(letter):
    """A per-run prefix: a letter and 4 random hex digits. 5 characters, so a
    prefix plus one character still fits dpsw's 6-character instance names."""
    return letter + secrets.token_hex(2)


def prefixed(prefix):
    """(namespaces, links of the root namespace) whose names start with prefix;
    a link with an XDP program attached is listed as "NAME (xdp)"."""
    ns = [l.split()[0] for l in sh("ip", "netns", "list").stdout.splitlines() if l.startswith(prefix)]
    links = []
    for l in sh("ip", "-o", "link").stdout.splitlines():
        name = l.split(": ")[1].split("@")[0]
        if name.startswith(prefix):
            links.append(name + (" (xdp)" if " xdp" in l else ""))
    return ns, links


def remove_prefixed(prefix, links=True):
    """Removes every namespace (and, with links, root-namespace link) named
    prefix..., ending the processes left inside those namespaces first (ours:
    they live in ours). A veth with one end in a removed namespace goes with it."""
    ns, found = prefixed(prefix)
    for l in found if links else []:
        sh("ip", "link", "del", l.split()[0], check_rc=False)
    for n in ns:
        kill_netns_pids(n)
        sh("ip", "netns", "del", n, check_rc=False)


class Topology:
    """Namespaces and root-namespace links made through it; teardown() removes
    them (processes left inside first), also after a failure half-way."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.namespaces, self.links = [], []

    @contextlib.contextmanager
    def building(self):
        """Wraps a constructor's steps: a failure tears down what was made so far."""
        try:
            yield self
        except BaseException:
            self.teardown()
            raise

    def netns(self, name, setup=True):
        """A new namespace; setup: loopback up and IPv6 off (as Docker's containers
        on IPv4-only networks; for interfaces made later too)."""
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        if setup:
            sh("ip", "-n", name, "link", "set", "lo", "up")
            nsx(name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            nsx(name, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
        return name

    def veth(self, name, peer, peer_ns, ns=None):
        """veth `name` in ns (default: the root namespace, where it is recorded
        for removal) with `peer` in namespace peer_ns."""
        sh("ip", *(["-n", ns] if ns else []), "link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns)
        if ns is None:
            self.links.append(name)
        return name

    def container(self, ns, host_if, ip, host_ns=None, bridge=None, mtu=None, csum_off=False, gateway=None):
        """A container: namespace ns with eth0 at ip/24, the far end of veth
        host_if (in host_ns, default the root namespace), which is set up (on
        `bridge` if given). csum_off: the container computes full checksums
        (what AF_XDP needs of it, docs/ARCHITECTURE.md)."""
        self.netns(ns)
        self.veth(host_if, "eth0", ns, host_ns)
        nsx(ns, "ip", "addr", "add", ip + "/24", "dev", "eth0")
        if mtu:
            nsx(ns, "ip", "link", "set", "eth0", "mtu", str(mtu))
        nsx(ns, "ip", "link", "set", "eth0", "up")
        if csum_off:
            nsx(ns, "ethtool", "-K", "eth0", "tx", "off")
        if gateway:
            nsx(ns, "ip", "route", "add", "default", "via", gateway)
        sh("ip", *(["-n", host_ns] if host_ns else []), "link", "set", host_if, *(["master", bridge] if bridge else []), "up")
        return ns

    def outside(self, ns, host_if, host_ns=None):
        """The "outside world": namespace ns at OUTSIDE_IP/24 behind veth host_if
        (in host_ns, default the root namespace; left down: an uplink's owner
        sets it up). Linux's defaults throughout: its eth0 leaves TCP/UDP
        checksums to offload, which dpsw completes on the uplink."""
        self.netns(ns)
        self.veth(host_if, "eth0", ns, host_ns)
        nsx(ns, "ip", "addr", "add", OUTSIDE_IP + "/24", "dev", "eth0")
        nsx(ns, "ip", "link", "set", "eth0", "up")
        return ns

    def kernel_vxlan(self, host, local, vni, peers, ctr, ctr_ip, mtu=1450):
        """VXLAN as one builds it by hand (and Docker's overlay): in namespace
        host, the underlay link up0 gets `local`/24, a vxlan device vx0 (VNI
        vni, UDP 4789, head-end replication to peers) on bridge br0, and a
        container ctr (eth0 at ctr_ip, MTU mtu) on br0 through c0. Linux's
        defaults: inner checksums may be left to offload (dpsw completes them)."""
        nsx(host, "ip", "addr", "add", local + "/24", "dev", "up0")
        nsx(host, "ip", "link", "add", "vx0", "type", "vxlan", "id", str(vni), "dstport", "4789", "local", local, "dev", "up0")
        for p in peers:
            nsx(host, "bridge", "fdb", "append", "00:00:00:00:00:00", "dev", "vx0", "dst", p)
        nsx(host, "ip", "link", "add", "br0", "type", "bridge")
        nsx(host, "ip", "link", "set", "vx0", "master", "br0", "up")
        nsx(host, "ip", "link", "set", "br0", "up")
        return self.container(ctr, "c0", ctr_ip, host_ns=host, bridge="br0", mtu=mtu)

    def teardown(self):
        for l in self.links:
            sh("ip", "link", "del", l, check_rc=False)
        for ns in reversed(self.namespaces):
            kill_netns_pids(ns)
            sh("ip", "netns", "del", ns, check_rc=False)
        self.links, self.namespaces = [], []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False


# ---- the kernel's reference topologies (bench/run) ----
# Each has containers s (sender) and r (receiver) at PAIR_IPS.

class BarePair(Topology):
    """s and r joined by one veth pair, eth0 <-> eth0: no switch at all."""
    ips = PAIR_IPS

    def __init__(self, prefix):
        super().__init__(prefix)
        self.s, self.r = f"{prefix}vs", f"{prefix}vr"
        with self.building():
            for ns in (self.s, self.r):
                self.netns(ns, setup=False)
            sh("ip", "link", "add", "eth0", "netns", self.s, "type", "veth", "peer", "name", "eth0", "netns", self.r)
            for ip, ns in zip(self.ips, (self.s, self.r)):
                nsx(ns, "ip", "addr", "add", ip + "/24", "dev", "eth0")
                nsx(ns, "ip", "link", "set", "eth0", "up")


class KernelBridge(Topology):
    """s and r on veths attached to a Linux bridge (Docker's bridge network)."""
    ips = PAIR_IPS

    def __init__(self, prefix):
        super().__init__(prefix)
        self.s, self.r = f"{prefix}ks", f"{prefix}kr"
        with self.building():
            br = f"{prefix}kbr"
            sh("ip", "link", "add", br, "type", "bridge")
            self.links.append(br)
            sh("ip", "link", "set", br, "up")
            for i, (ns, ip) in enumerate(zip((self.s, self.r), self.ips)):
                self.container(ns, f"{prefix}k{i}", ip, bridge=br)


class KernelNat(Topology):
    """Docker's NAT: a host namespace h with bridge br0 (PAIR_GATEWAY), ip_forward
    and iptables MASQUERADE/DNAT; containers s and c behind it; the outside
    namespace r behind the host's uplink up0 (HOST_IP). s publishes 8080 ->
    80/tcp, which c reaches through HOST_IP (hairpin: DNATed from the bridge
    too and masqueraded behind the gateway, as Docker without its userland
    proxy and kube-proxy do it)."""
    ips = PAIR_IPS

    def __init__(self, prefix):
        super().__init__(prefix)
        self.h, self.s, self.r, self.c = f"{prefix}knh", f"{prefix}kns", f"{prefix}kno", f"{prefix}knc"
        with self.building():
            h = self.netns(self.h, setup=False)
            sh("ip", "-n", h, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", h, "addr", "add", PAIR_GATEWAY + "/24", "dev", "br0")
            sh("ip", "-n", h, "link", "set", "br0", "up")
            self.container(self.s, "c0", self.ips[0], host_ns=h, bridge="br0", gateway=PAIR_GATEWAY)
            self.container(self.c, "c1", HAIRPIN_IP, host_ns=h, bridge="br0", gateway=PAIR_GATEWAY)
            self.outside(self.r, "up0", host_ns=h)
            sh("ip", "-n", h, "addr", "add", HOST_IP + "/24", "dev", "up0")
            sh("ip", "-n", h, "link", "set", "up0", "up")
            nsx(h, "sysctl", "-qw", "net.ipv4.ip_forward=1")
            # Docker's rules, in our host namespace's own tables.
            nsx(h, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", PAIR_SUBNET, "!", "-o", "br0", "-j", "MASQUERADE")
            nsx(h, "iptables", "-t", "nat", "-A", "PREROUTING", "-d", HOST_IP, "-p", "tcp", "--dport", "8080",
                "-j", "DNAT", "--to-destination", self.ips[0] + ":80")
            nsx(h, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", PAIR_SUBNET, "-o", "br0", "-m", "conntrack",
                "--ctstate", "DNAT", "-j", "MASQUERADE")  # hairpin: the reply comes back through h


class KernelOverlay(Topology):
    """Two "hosts" ha and hb joined by an underlay veth pair up0 <-> up0
    (UNDERLAY .11 <-> .12), each with the kernel's vxlan + bridge (VNI 42,
    PAIR_SUBNET); container s on ha, r on hb."""
    ips = PAIR_IPS

    def __init__(self, prefix):
        super().__init__(prefix)
        self.ha, self.hb = f"{prefix}koa", f"{prefix}kob"
        self.s, self.r = f"{prefix}kos", f"{prefix}kor"
        a, b = UNDERLAY.format(11), UNDERLAY.format(12)
        with self.building():
            underlay(self, self.ha, self.hb)
            self.kernel_vxlan(self.ha, a, 42, [b], self.s, self.ips[0])
            self.kernel_vxlan(self.hb, b, 42, [a], self.r, self.ips[1])


def underlay(topo, ha, hb):
    """Host namespaces ha and hb joined directly by veth up0 <-> up0 (no address: the host's switch owns it)."""
    for ns in (ha, hb):
        topo.netns(ns)
    topo.veth("up0", "up0", hb, ns=ha)
    for ns in (ha, hb):
        nsx(ns, "ip", "link", "set", "up0", "up")


# ---- the overlay tests' fabric ----

class Fabric(Topology):
    """An underlay segment (a bridge in namespace <p>-ul, UNDERLAY addresses)
    and hosts on it: dpsw hosts (dpsw --netns HOST) and kernel VXLAN hosts.
    dpsw: the Dpsw class its dpsw hosts are made with."""

    def __init__(self, dpsw):
        super().__init__(new_prefix("v"))
        self.p, self.dpsw = self.prefix, dpsw
        self.ul = f"{self.p}-ul"
        with self.building():
            self.netns(self.ul)
            sh("ip", "-n", self.ul, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.ul, "link", "set", "br0", "up")

    def host(self, tag):
        """A host namespace <p>-<tag> with `up0` on the underlay (no address: dpsw owns it)."""
        ns = self.netns(f"{self.p}-{tag}")
        self.veth(f"ul-{tag}", "up0", ns, ns=self.ul)
        sh("ip", "-n", self.ul, "link", "set", f"ul-{tag}", "master", "br0", "up")
        sh("ip", "-n", ns, "link", "set", "up0", "up")
        return ns

    def dpsw_host(self, tag, octet, networks, endpoints, core, **kw):
        """A host running its own dpsw (not started) on `core`, idle: block, with
        up0 as its uplink at UNDERLAY.format(octet)."""
        ns = self.host(tag)
        kw["extra_switch"] = dict(kw.get("extra_switch") or {}, idle="block")
        return self.dpsw(networks, endpoints, name=f"{self.p[1:]}{tag}", workers=[core], netns=ns,
                         uplink={"interface": "up0", "address": UNDERLAY.format(octet) + "/24"}, **kw)

    def kernel_host(self, tag, octet, vni, peers, ctr_ip, mtu=1450):
        """A kernel VXLAN host <p>-<tag> with a container namespace <p>-<tag>c
        behind it; returns (host, container) namespaces."""
        ns = self.host(tag)
        ctr = self.kernel_vxlan(ns, UNDERLAY.format(octet), vni, peers, f"{self.p}-{tag}c", ctr_ip, mtu=mtu)
        return ns, ctr

    def capture(self, tag, count, filt="udp port 4789"):
        """tcpdump -v on the underlay side of a host's link (decodes VXLAN)."""
        return subprocess.Popen(["ip", "netns", "exec", self.ul, "tcpdump", "-l", "-nn", "-v", "-c", str(count), "-i", f"ul-{tag}", filt],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)

    def cleanup(self):
        self.teardown()
