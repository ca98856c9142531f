"""bench/run's scenarios: the variants it compares, the scenarios it
measures, the numbers each yields (report rows), and the measurements.
bench/run parses arguments, calls Bench.run() and reports.

settings (bench/run's parsed arguments): duration (s), sizes (list of
ints), scenarios (list), only (list of variants), gen_core, switch_core,
overlay_rx_core.
"""
import os
import re
import shutil
import subprocess
import tempfile
import time

from . import topo
from .dpsw import Dpsw
from .env import CONNRATE
from .proc import LabError, end_spawned, nsx, sh, spawn
from .topo import HAIRPIN_IP, HOST_IP, OUTSIDE_IP, PAIR_IPS, PAIR_SUBNET, UNDERLAY
from .traffic import (CpuMeter, DpswBusyCpu, connrate, dns_latency, dnsperf, dpdk_cleanup, iperf3, kxdpgun, ping_ns, process_cpu_s,
                      rx_packets, sockperf_rtt, testpmd_cmd, udp_delivered, virtio_user)

# Switches compared, in report order; "generator" (a bare veth pair) is always measured first.
VARIANTS = ["kernel", "dpsw", "dpsw-poll", "dpsw-afxdp", "testpmd"]
SCENARIOS = ["udp", "tcp", "rtt", "idle", "nat", "overlay", "vhost", "dns", "svc"]
# The services scenario: client s and backends r1..r3 on one network; VIPs
# for one backend (throughput: iperf3's two connections must meet one server)
# and for three (connections/s).
SVC_BACKENDS = ("10.250.0.11", "10.250.0.12", "10.250.0.13")
SVC_VIP1, SVC_VIP3 = "10.250.0.101", "10.250.0.100"
SVC_TPUT_PORT, SVC_CONN_PORT = 5201, 7000
KXDPGUN_QPS = 1_000_000  # offered: above what kxdpgun sends on one core of this machine (~0.6 M/s)
DNS_NAMES = [f"svc{i}" for i in range(100)]  # what both DNS servers answer (one container's aliases in dpsw)
ENDPOINT_MACS = ("02:00:00:00:00:01", "02:00:00:00:00:02")


def rows(scenarios, sizes):
    """(label, result key, field, unit, better) for every number in the report."""
    out = [(f"UDP {s} B", f"udp{s}", "mpps", "Mpps", "higher") for s in sizes] if "udp" in scenarios else []
    if "tcp" in scenarios:
        out += [("TCP 1 stream", "tcp1", "gbps", "Gb/s", "higher"), ("TCP 4 streams", "tcp4", "gbps", "Gb/s", "higher")]
    if "rtt" in scenarios:
        out += [("RTT p50", "rtt", "p50_us", "us", "lower"), ("RTT p99", "rtt", "p99_us", "us", "lower"),
                ("RTT p99.9", "rtt", "p999_us", "us", "lower")]
    if "idle" in scenarios:
        out += [("idle", "idle", "cores_busy", "cores", "lower")]
    if "nat" in scenarios:
        out += [("NAT UDP 64 B", "natudp64", "mpps", "Mpps", "higher"), ("NAT TCP out", "nattcp", "gbps", "Gb/s", "higher"),
                ("published TCP in", "dnattcp", "gbps", "Gb/s", "higher"),
                ("NAT conn/s out", "natconn", "conn_per_s", "conn/s", "higher"),
                ("published conn/s in", "dnatconn", "conn_per_s", "conn/s", "higher"),
                ("hairpin TCP", "hptcp", "gbps", "Gb/s", "higher"), ("hairpin conn/s", "hpconn", "conn_per_s", "conn/s", "higher"),
                ("NAT RTT p50", "natrtt", "p50_us", "us", "lower"), ("NAT RTT p99", "natrtt", "p99_us", "us", "lower"),
                ("NAT RTT p99.9", "natrtt", "p999_us", "us", "lower")]
    if "overlay" in scenarios:
        out += [("overlay UDP 64 B", "ovudp64", "mpps", "Mpps", "higher"), ("overlay TCP", "ovtcp", "gbps", "Gb/s", "higher")]
    if "dns" in scenarios:
        out += [("DNS queries/s", "dnsqps", "qps", "q/s", "higher"),
                ("DNS q/s, dnsperf on all cores", "dnsqps2", "qps", "q/s", "higher"),
                ("DNS q/s, kxdpgun (AF_XDP)", "dnsxdp", "qps", "q/s", "higher"),
                ("DNS server CPU/query", "dnsqps", "cpu_us_per_q", "us", "lower"),
                ("DNS p50", "dnslat", "p50_us", "us", "lower"),
                ("DNS p99", "dnslat", "p99_us", "us", "lower")]
    if "svc" in scenarios:
        out += [("VIP TCP 1 stream", "svctcp", "gbps", "Gb/s", "higher"), ("VIP conn/s (3 backends)", "svcconn", "conn_per_s", "conn/s", "higher")]
    if "vhost" in scenarios:
        out += [(f"vhost loop {s} B", f"vhost{s}", "mpps", "Mpps", "higher") for s in sizes]
        out += [(f"vhost>AF_XDP {s} B", f"v2x{s}", "mpps", "Mpps", "higher") for s in sizes]
    return out


def measured_by(variant, key):
    """Whether `variant` yields result `key` (what --smoke insists on)."""
    if key in ("natudp64", "nattcp", "dnattcp", "natconn", "dnatconn", "hptcp", "hpconn", "natrtt", "ovudp64", "ovtcp", "dnsqps", "dnsqps2", "dnslat", "svctcp", "svcconn"):
        return variant in ("kernel", "dpsw")
    if key == "dnsxdp":  # where kxdpgun is installed (scripts/install-deps.sh)
        return variant in ("kernel", "dpsw") and shutil.which("kxdpgun") is not None
    if key.startswith("vhost"):
        return variant in ("dpsw", "testpmd")
    if key.startswith("v2x"):
        return variant == "dpsw"
    return True


def _started(d):
    """d.start(), or d cleaned up and the error raised."""
    try:
        return d.start()
    except BaseException:
        d.cleanup()
        raise


class DpswPair:
    """dpsw on one network (PAIR_SUBNET) with containers s and r (AF_XDP,
    the default); or two vhost endpoints x and y on vhost_socks; or
    (extra_vhost) vhost endpoint `app` (socket .vsock) and container r.
    idle: None = dpsw's default (auto), or "poll" / "block"."""
    ips = PAIR_IPS

    def __init__(self, prefix, switch_core, idle=None, vhost_socks=None, extra_vhost=False, fast=True, r_aliases=None):
        tag = "p" if idle == "poll" and fast and not (vhost_socks or extra_vhost) else "v" if vhost_socks else "x" if extra_vhost else "d" if fast else "a"
        vh = lambda n, sock: {"name": n, "networks": ["net"], "port": "vhost", "vhost_socket": sock}
        ct = lambda n, ip: {"name": n, "networks": ["net"], "ip": ip}
        if vhost_socks:
            eps = [vh("x", vhost_socks[0]), vh("y", vhost_socks[1])]
        elif extra_vhost:
            eps = lambda dir: [vh("app", os.path.join(dir, "app.sock")), ct("r", self.ips[1])]
        else:
            eps = [ct("s", self.ips[0]), dict(ct("r", self.ips[1]), **({"aliases": r_aliases} if r_aliases else {}))]
        switch = {"workers": [switch_core]}
        if idle:
            switch["idle"] = idle
        switch["fast_path"] = "auto" if fast else "off"
        self.d = _started(Dpsw([{"name": "net", "subnet": PAIR_SUBNET}], eps, name=prefix + tag, switch=switch))
        self.s, self.r = self.d.ns("s"), self.d.ns("r")
        self.vsock = os.path.join(self.d.dir, "app.sock")

    def teardown(self):
        self.d.cleanup()  # SIGTERM: dpsw removes its namespaces and links


class KernelServices(topo.Topology):
    """Client s and backends r1..r3 on a Linux bridge; the VIPs are iptables
    DNAT rules in s's namespace (kube-proxy's: `-m statistic --mode random`
    over the backends; Docker puts its VIPs' IPVS in the container's namespace)."""

    def __init__(self, prefix):
        super().__init__(prefix)
        self.s = f"{prefix}ls"
        self.backends = [f"{prefix}l{i}" for i in range(1, 4)]
        with self.building():
            br = f"{prefix}lbr"
            sh("ip", "link", "add", br, "type", "bridge")
            self.links.append(br)
            sh("ip", "link", "set", br, "up")
            self.container(self.s, f"{prefix}lv0", PAIR_IPS[0], bridge=br)
            for i, (ns, ip) in enumerate(zip(self.backends, SVC_BACKENDS)):
                self.container(ns, f"{prefix}lv{i + 1}", ip, bridge=br)
            nat = lambda *a: nsx(self.s, "iptables", "-w", "-t", "nat", *a)
            nat("-A", "OUTPUT", "-d", SVC_VIP1, "-p", "tcp", "--dport", str(SVC_TPUT_PORT), "-j", "DNAT",
                "--to-destination", f"{SVC_BACKENDS[0]}:{SVC_TPUT_PORT}")
            for i, ip in enumerate(SVC_BACKENDS):  # 1/3, then 1/2 of the rest, then the rest
                prob = ["-m", "statistic", "--mode", "random", "--probability", f"{1 / (3 - i):.5f}"] if i < 2 else []
                nat("-A", "OUTPUT", "-d", SVC_VIP3, "-p", "tcp", "--dport", str(SVC_CONN_PORT), *prob, "-j", "DNAT",
                    "--to-destination", f"{ip}:{SVC_CONN_PORT}")


class DpswServices:
    """The same on a dpsw network: two services with mode vip (and the uplink
    that carries the connection table)."""

    def __init__(self, prefix, switch_core):
        eps = [{"name": "s", "networks": ["net"], "ip": PAIR_IPS[0]}] + [
            {"name": f"r{i + 1}", "networks": ["net"], "ip": ip} for i, ip in enumerate(SVC_BACKENDS)]
        self.d = Dpsw([{"name": "net", "subnet": PAIR_SUBNET}], eps, name=prefix + "s", switch={"workers": [switch_core]}, uplink=True)
        self.d.config["services"] = [
            {"name": "tput", "network": "net", "vip": SVC_VIP1, "ports": [f"{SVC_TPUT_PORT}/tcp"], "backends": ["r1"]},
            {"name": "conn", "network": "net", "vip": SVC_VIP3, "ports": [f"{SVC_CONN_PORT}/tcp"], "backends": ["r1", "r2", "r3"]}]
        self.d.write_config()
        _started(self.d)
        self.s = self.d.ns("s")
        self.backends = [self.d.ns(f"r{i}") for i in range(1, 4)]

    def teardown(self):
        self.d.cleanup()


class TestpmdPair(topo.Topology):
    """Containers s and r whose veths dpdk-testpmd io-forwards over AF_XDP:
    the raw I/O ceiling, no switching logic."""
    ips = PAIR_IPS

    def __init__(self, prefix, gen_core, switch_core):
        super().__init__(prefix)
        self.s, self.r = f"{prefix}ts", f"{prefix}tr"
        self.proc = None
        with self.building():
            for i, (ns, ip) in enumerate(zip((self.s, self.r), self.ips)):
                # testpmd io-forwards raw frames and completes no checksum: the
                # one place the lab turns a peer's offload off (not a dpsw peer).
                self.container(ns, f"{prefix}t{i}", ip, csum_off=True)
            cmd = testpmd_cmd((gen_core, switch_core), gen_core, [f"net_af_xdp{i},iface={l}" for i, l in enumerate(self.links)],
                              ["--forward-mode=io", "--auto-start", "--nb-cores=1"], file_prefix=prefix)
            # stdin kept open: testpmd exits on EOF
            self.proc = spawn(*cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(3)
            if self.proc.poll() is not None:
                raise LabError("dpdk-testpmd exited at start")

    def teardown(self):
        if self.proc and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(f"/var/run/dpdk/{self.prefix}", ignore_errors=True)  # --no-huge: only its runtime dir
        super().teardown()


class DpswNat:
    """dpsw with container s (PAIR_IPS[0], publishing 8080 -> 80/tcp) and its
    uplink at HOST_IP towards the outside namespace r (OUTSIDE_IP); container
    c (HAIRPIN_IP) on the same network reaches s's published port by hairpin."""

    def __init__(self, prefix, switch_core):
        eps = [{"name": "s", "networks": ["net"], "ip": PAIR_IPS[0], "publish": ["8080:80/tcp"]},
               {"name": "c", "networks": ["net"], "ip": HAIRPIN_IP}]
        self.d = _started(Dpsw([{"name": "net", "subnet": PAIR_SUBNET}], eps, name=prefix + "n",
                               switch={"workers": [switch_core]}, uplink=True))
        self.s, self.r, self.c = self.d.ns("s"), self.d.ns("out"), self.d.ns("c")

    def teardown(self):
        self.d.cleanup()


class DpswOverlay(topo.Topology):
    """topo.KernelOverlay's hosts and containers, each host running its own
    dpsw (--netns HOST, idle: block) with the underlay link as its uplink;
    on switch_core (sender's host) and rx_core (receiver's)."""
    ips = PAIR_IPS

    def __init__(self, prefix, switch_core, rx_core):
        super().__init__(prefix)
        self.ha, self.hb = f"{prefix}doa", f"{prefix}dob"
        self.dpsws = []
        a, b = UNDERLAY.format(11), UNDERLAY.format(12)
        with self.building():
            topo.underlay(self, self.ha, self.hb)
            for h, me, peer, ep, ip, core in ((self.ha, a, b, "s", self.ips[0], switch_core),
                                              (self.hb, b, a, "r", self.ips[1], rx_core)):
                net = {"name": "ov", "driver": "overlay", "vni": 42, "subnet": PAIR_SUBNET, "peers": [peer]}
                d = Dpsw([net], [{"name": ep, "networks": ["ov"], "ip": ip}], name=f"{prefix}{ep}",
                         switch={"workers": [core], "idle": "block"}, uplink={"interface": "up0", "address": me + "/24"}, netns=h)
                self.dpsws.append(d)
                d.start()
            self.s, self.r = self.dpsws[0].ns("s"), self.dpsws[1].ns("r")

    def teardown(self):
        for d in self.dpsws:
            d.cleanup()
        self.dpsws = []
        super().teardown()


class Bench:
    """One run of the benchmarks; everything it makes is named with .prefix."""

    def __init__(self, settings):
        self.cfg = settings
        self.prefix = topo.new_prefix("b")

    def make(self, variant):
        c, p = self.cfg, self.prefix
        if variant == "generator":
            return topo.BarePair(p)
        if variant == "kernel":
            return topo.KernelBridge(p)
        if variant == "testpmd":
            return TestpmdPair(p, c.gen_core, c.switch_core)
        return DpswPair(p, c.switch_core, idle="poll" if variant == "dpsw-poll" else None, fast=variant != "dpsw-afxdp")

    def run(self, results):
        """Every variant in settings.only through every scenario asked for, into results["runs"]."""
        for name in ["generator"] + [v for v in VARIANTS if v in self.cfg.only]:
            print(f"== {name}", flush=True)
            t = self.make(name)
            try:
                results["runs"][name] = self.run_variant(name, t)
            finally:
                t.teardown()
        if "nat" in self.cfg.scenarios:
            self.run_nat(results)
        if "overlay" in self.cfg.scenarios:
            self.run_overlay(results)
        if "vhost" in self.cfg.scenarios:
            self.run_vhost(results)
        if "dns" in self.cfg.scenarios:
            self.run_dns(results)
        if "svc" in self.cfg.scenarios:
            self.run_svc(results)

    def cleanup(self):
        """Ends every process started (by PID) and removes the namespaces that
        carry the prefix (a safety net: each topology removes its own, links too)."""
        end_spawned()
        topo.remove_prefixed(self.prefix, links=False)
        dpdk_cleanup()  # left empty by --in-memory testpmd

    # ---- container to container ----
    def udp(self, t, size):
        return udp_delivered(t.s, t.r, t.ips[0], t.ips[1], size, self.cfg.duration, self.cfg.gen_core)

    def tcp(self, t, streams):
        return iperf3(t.r, t.s, t.ips[1], self.cfg.duration, streams=streams)

    def rtt(self, t):
        # Both ends on the generator's core in every variant: the same placement
        # for all, so the switch's own cost is compared (on a VM, a wake-up across
        # cores alone costs ~10-15 us each way and would dominate).
        return sockperf_rtt(t.r, t.s, t.ips[1], self.cfg.duration, self.cfg.gen_core)

    def idle(self, t):
        time.sleep(1)  # let a blocking worker go to sleep
        with CpuMeter() as cpu:
            time.sleep(max(1.0, self.cfg.duration / 2))
        return {"cores_busy": cpu.cores}

    def run_variant(self, name, t):
        ping_ns(t.s, t.ips[1])  # ARP, MAC learning
        r = {}
        scen = self.cfg.scenarios
        for size in self.cfg.sizes if "udp" in scen else []:
            r[f"udp{size}"] = x = self.udp(t, size)
            print(f"   UDP {size:5d} B: {x['mpps']:.3f} Mpps delivered (offered {x['offered_mpps']:.3f}), {x['cores_busy']:.2f} cores busy", flush=True)
        if name == "generator":  # the direct veth pair: no switch at all (the reference row)
            if "tcp" in scen:
                r["tcp1"] = x = self.tcp(t, 1)
                print(f"   TCP x1: {x['gbps'] if x['gbps'] is None else round(x['gbps'], 2)} Gb/s, {x['cores_busy']:.2f} cores busy", flush=True)
            return r
        if "tcp" in scen:
            for streams in (1, 4):
                r[f"tcp{streams}"] = x = self.tcp(t, streams)
                print(f"   TCP x{streams}: {x['gbps'] if x['gbps'] is None else round(x['gbps'], 2)} Gb/s, {x['cores_busy']:.2f} cores busy", flush=True)
        if "rtt" in scen:
            r["rtt"] = x = self.rtt(t)
            print(f"   RTT: p50 {x['p50_us']} us, p99 {x['p99_us']} us, p99.9 {x['p999_us']} us", flush=True)
        if "idle" in scen:
            r["idle"] = x = self.idle(t)
            print(f"   idle: {x['cores_busy']:.2f} cores busy", flush=True)
        return r

    # ---- NAT ----
    def run_nat(self, results):
        c = self.cfg
        for kind, make in (("kernel", lambda: topo.KernelNat(self.prefix)), ("dpsw", lambda: DpswNat(self.prefix, c.switch_core))):
            if kind not in c.only:
                continue
            print(f"== NAT through {kind}", flush=True)
            t = make()
            r = results["runs"].setdefault(kind, {})
            try:
                ping_ns(t.s, OUTSIDE_IP)  # gateway ARP, uplink ARP
                gw_mac = re.search(r"lladdr (\S+)", nsx(t.s, "ip", "neigh", "show", topo.PAIR_GATEWAY).stdout).group(1)
                x = udp_delivered(t.s, t.r, PAIR_IPS[0], OUTSIDE_IP, 64, c.duration, c.gen_core, dst_mac=gw_mac)
                r["natudp64"] = {"mpps": x["mpps"], "cores_busy": x["cores_busy"]}
                print(f"   UDP 64 B out: {r['natudp64']['mpps']:.3f} Mpps, {x['cores_busy']:.2f} cores busy", flush=True)
                # Both ways: out to a server in the outside namespace (masquerade), and in
                # from there to the published port (8080 -> 80): (what, server ns, client ns,
                # target, port, server's port), then the keys of its TCP and connection rows.
                ways = ((("out", t.r, t.s, OUTSIDE_IP, 5299, None), "nattcp", "natconn"),
                        (("in (published)", t.s, t.r, HOST_IP, 8080, 80), "dnattcp", "dnatconn"),
                        (("hairpin (c to s's published port)", t.s, t.c, HOST_IP, 8080, 80), "hptcp", "hpconn"))
                for (what, server_ns, client_ns, target, port, listen), tcp, _ in ways:
                    r[tcp] = x = iperf3(server_ns, client_ns, target, c.duration, port=port, listen_port=listen)
                    print(f"   TCP {what}: {x['gbps'] if x['gbps'] is None else round(x['gbps'], 2)} Gb/s", flush=True)
                for (what, server_ns, client_ns, target, port, listen), _, conn in ways:  # short connections
                    r[conn] = x = connrate(server_ns, client_ns, target, c.duration, c.gen_core, port, listen_port=listen)
                    print(f"   connections {what}: {x['conn_per_s']} conn/s, connect p50 {x.get('connect_p50_us')} us, "
                          f"p99 {x.get('connect_p99_us')} us; failed {x.get('failed')} {x.get('errors', '')}", flush=True)
                # Round trips through NAT: the rtt scenario's sockperf, container -> the outside.
                r["natrtt"] = x = sockperf_rtt(t.r, t.s, OUTSIDE_IP, c.duration, c.gen_core)
                print(f"   RTT through NAT: p50 {x['p50_us']} us, p99 {x['p99_us']} us, p99.9 {x['p999_us']} us", flush=True)
            finally:
                t.teardown()

    # ---- overlay ----
    def run_overlay(self, results):
        c = self.cfg
        for kind, make in (("kernel", lambda: topo.KernelOverlay(self.prefix)),
                           ("dpsw", lambda: DpswOverlay(self.prefix, c.switch_core, c.overlay_rx_core))):
            if kind not in c.only:
                continue
            print(f"== overlay (VXLAN between two hosts) through {kind}", flush=True)
            t = make()
            r = results["runs"].setdefault(kind, {})
            try:
                # ARP through the tunnel, learning; for 1.4 s: dpsw confirms a station
                # learned behind a tunnel when it is seen again 1 s later (flood
                # resistance: MacTable confirm_ms) and only then gives it to the kernel
                # tier, so a shorter warm-up measures the punted path's first second.
                ping_ns(t.s, t.ips[1], count=8)
                time.sleep(0.5)  # the control thread's next sync (every 250 ms)
                x = self.udp(t, 64)
                r["ovudp64"] = x
                print(f"   UDP 64 B: {x['mpps']:.3f} Mpps delivered (offered {x['offered_mpps']:.3f}), {x['cores_busy']:.2f} cores busy", flush=True)
                r["ovtcp"] = x = self.tcp(t, 1)
                print(f"   TCP x1: {x['gbps'] if x['gbps'] is None else round(x['gbps'], 2)} Gb/s, {x['cores_busy']:.2f} cores busy", flush=True)
            finally:
                t.teardown()

    # ---- DNS ----
    def run_dns(self, results):
        """dnsperf from container s against the names of DNS_NAMES: answered by
        dnsmasq in container r across the kernel bridge (kernel; dnsmasq pinned
        to the switch's core, its cache holding every name), or by dpsw's
        responder at the network's gateway (r holds the names as aliases)."""
        c = self.cfg
        for kind in ("kernel", "dpsw"):
            if kind not in c.only:
                continue
            print(f"== DNS answered by {'dnsmasq' if kind == 'kernel' else 'dpsw'}", flush=True)
            srv = None
            if kind == "kernel":
                t = topo.KernelBridge(self.prefix)
                server = t.ips[1]
            else:
                t = DpswPair(self.prefix, c.switch_core, r_aliases=DNS_NAMES)
                server = topo.PAIR_GATEWAY
            r = results["runs"].setdefault(kind, {})
            try:
                if kind == "kernel":
                    hosts = os.path.join(tempfile.mkdtemp(prefix="dpsw-dnsmasq-"), "hosts")
                    with open(hosts, "w") as f:
                        f.writelines(f"{PAIR_IPS[1]} {n}\n" for n in DNS_NAMES)
                    srv = spawn("ip", "netns", "exec", t.r, "taskset", "-c", str(c.switch_core), "dnsmasq", "--no-daemon",
                                "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--addn-hosts=" + hosts, "--cache-size=10000",
                                "--listen-address=" + server, "--bind-interfaces", "--user=root", "--pid-file=",
                                "--log-facility=/dev/null", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1)
                ping_ns(t.s, server)
                cpu = (lambda: process_cpu_s(srv.pid)) if srv else DpswBusyCpu(t.d)
                r["dnsqps"] = x = dnsperf(t.s, server, DNS_NAMES, c.duration, c.gen_core, server_cpu=cpu)
                print(f"   dnsperf: {x['qps']} queries/s answered, {x['lost']} lost, average {x['avg_us']} us, "
                      f"server {x['cpu_us_per_q']} CPU us per query, {x['cores_busy']:.2f} cores busy", flush=True)
                # dnsperf with a thread on every core: what the machine answers when the load
                # generator may take the cores a server does not need.
                r["dnsqps2"] = x = dnsperf(t.s, server, DNS_NAMES, c.duration, f"{c.gen_core},{c.switch_core}", threads=2)
                print(f"   dnsperf on cores {c.gen_core},{c.switch_core} (2 threads): {x['qps']} queries/s answered, {x['lost']} lost, "
                      f"{x['cores_busy']:.2f} cores busy", flush=True)
                # kxdpgun (Knot DNS): queries sent and answers received through its own XDP
                # program and AF_XDP socket on the client's interface - no socket calls per
                # query, so the generator stops being the limit (dnsperf's ~15 us of a core per
                # query is). Open loop at KXDPGUN_QPS offered: the answered rate, and what was lost.
                # (dpsw sees kxdpgun's program within a tick: answers before that reach the
                # container's stack, not kxdpgun, and count as lost - up to 250 ms of the run.)
                try:
                    x = kxdpgun(t.s, server, DNS_NAMES, c.duration, KXDPGUN_QPS, c.gen_core)
                except LabError as e:
                    x = None
                    print(f"   kxdpgun: {e}; row skipped", flush=True)
                if x:
                    r["dnsxdp"] = x
                    print(f"   kxdpgun on core {c.gen_core}: {x['sent'] / c.duration:.0f} queries/s sent, {x['qps']:.0f} answered, "
                          f"{x['sent'] - x['replies']} lost, {x['cores_busy']:.2f} cores busy", flush=True)
                elif not shutil.which("kxdpgun"):
                    print("   kxdpgun: not installed (knot-dnsutils), row skipped", flush=True)
                r["dnslat"] = x = dns_latency(t.s, server, DNS_NAMES, max(500, int(c.duration * 1000)), c.gen_core)
                print(f"   one at a time: p50 {x['p50_us']} us, p99 {x['p99_us']} us, p99.9 {x['p999_us']} us, {x['lost']} lost", flush=True)
            finally:
                if srv:
                    srv.terminate()
                    srv.wait(10)
                    shutil.rmtree(os.path.dirname(hosts), ignore_errors=True)
                t.teardown()

    # ---- services ----
    def run_svc(self, results):
        """Through a virtual IP: one TCP stream (a VIP with one backend) and
        short connections/s spread over three backends. kernel = the kernel's
        own balancing as kube-proxy builds it (iptables DNAT with `-m statistic
        --mode random`; here in the client's namespace, where Docker puts its
        VIP's IPVS), client and backends on a Linux bridge; dpsw = services
        with mode vip (Maglev) on a dpsw network."""
        c = self.cfg
        for kind in ("kernel", "dpsw"):
            if kind not in c.only:
                continue
            print(f"== service VIP through {kind}", flush=True)
            t = KernelServices(self.prefix) if kind == "kernel" else DpswServices(self.prefix, c.switch_core)
            r = results["runs"].setdefault(kind, {})
            servers = []
            try:
                for b in t.backends[1:]:  # the first one's is connrate()'s own
                    servers.append(spawn("ip", "netns", "exec", b, "taskset", "-c", str(c.gen_core), CONNRATE, "server", "--port",
                                         str(SVC_CONN_PORT), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                ping_ns(t.s, SVC_BACKENDS[0])
                r["svctcp"] = x = iperf3(t.backends[0], t.s, SVC_VIP1, c.duration, port=SVC_TPUT_PORT)
                print(f"   TCP x1 to the VIP: {x['gbps'] if x['gbps'] is None else round(x['gbps'], 2)} Gb/s, {x['cores_busy']:.2f} cores busy", flush=True)
                r["svcconn"] = x = connrate(t.backends[0], t.s, SVC_VIP3, c.duration, c.gen_core, SVC_CONN_PORT)
                print(f"   connections to the VIP (3 backends): {x['conn_per_s']} conn/s, connect p50 {x.get('connect_p50_us')} us, "
                      f"p99 {x.get('connect_p99_us')} us; failed {x.get('failed')}", flush=True)
            finally:
                for s in servers:
                    s.terminate()
                    s.wait(10)
                t.teardown()

    # ---- vhost-user ----
    def vhost_endpoint(self, socks, size):
        """The endpoint process: one testpmd, two virtio-user ports, frames looping
        port0 -> switch -> port1 -> port0 ... (mac forwarding keeps MACs stable so
        a learning switch sees no moves). Returns frames/s it received."""
        c = self.cfg
        cmd = testpmd_cmd((c.switch_core, c.gen_core), c.switch_core, [virtio_user(i, s, m) for i, (s, m) in enumerate(zip(socks, ENDPOINT_MACS))],
                          ["-i", "--nb-cores=1", "--total-num-mbufs=16384"])
        p = spawn(*cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        p.stdin.write(f"set fwd mac\nset eth-peer 0 {ENDPOINT_MACS[1]}\nset eth-peer 1 {ENDPOINT_MACS[0]}\nset txpkts {size}\n")
        p.stdin.flush()
        time.sleep(1)
        with CpuMeter() as cpu:
            p.stdin.write("start tx_first 32\n")
            p.stdin.flush()
            t0 = time.time()
            time.sleep(c.duration)
            p.stdin.write("stop\n")
            p.stdin.flush()
            t1 = time.time()
        out = p.communicate("quit\n", timeout=30)[0]
        m = re.search(r"Accumulated forward statistics.*?RX-packets:\s*(\d+)", out, re.S)
        return {"mpps": int(m.group(1)) / (t1 - t0) / 1e6 if m else None, "cores_busy": cpu.cores}

    def vhost_switch(self, kind, socks):
        """Starts the switch between two vhost-user sockets; returns a stop function."""
        c = self.cfg
        if kind == "testpmd":
            runtime = self.prefix + "v"
            cmd = testpmd_cmd((c.gen_core, c.switch_core), c.gen_core, [f"net_vhost{i},iface={s},queues=1" for i, s in enumerate(socks)],
                              ["--forward-mode=io", "--auto-start", "--nb-cores=1"], file_prefix=runtime)
            p = spawn(*cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

            def stop():
                p.stdin.close()
                p.wait(15)
                shutil.rmtree(f"/var/run/dpdk/{runtime}", ignore_errors=True)
        else:
            stop = DpswPair(self.prefix, c.switch_core, idle="poll", vhost_socks=socks).teardown
        for _ in range(100):
            if all(os.path.exists(x) for x in socks):
                break
            time.sleep(0.05)
        return stop

    def vhost_to_afxdp(self, size):
        c = self.cfg
        d = DpswPair(self.prefix, c.switch_core, idle="poll", extra_vhost=True)
        try:
            dmac = nsx(d.r, "cat", "/sys/class/net/eth0/address").stdout.strip()
            cmd = testpmd_cmd((c.switch_core, c.gen_core), c.switch_core, [virtio_user(0, d.vsock, ENDPOINT_MACS[0])],
                              ["--forward-mode=txonly", f"--eth-peer=0,{dmac}", f"--txpkts={size}", "--auto-start"])
            p = spawn(*cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.5)
            before = rx_packets(d.r)
            with CpuMeter() as cpu:
                time.sleep(c.duration)
            got = rx_packets(d.r) - before
            p.stdin.close()
            p.wait(15)
            return {"mpps": got / c.duration / 1e6, "cores_busy": cpu.cores}
        finally:
            d.teardown()

    def run_vhost(self, results):
        c = self.cfg
        for kind in ("dpsw", "testpmd"):
            if kind not in c.only:
                continue
            print(f"== vhost loop through {kind}", flush=True)
            r = results["runs"].setdefault(kind, {})
            for size in c.sizes:
                tmp = tempfile.mkdtemp(prefix="dpsw-bench-vh-")
                socks = [os.path.join(tmp, "x.sock"), os.path.join(tmp, "y.sock")]
                stop = self.vhost_switch(kind, socks)
                try:
                    r[f"vhost{size}"] = x = self.vhost_endpoint(socks, size)
                finally:
                    stop()
                    shutil.rmtree(tmp, ignore_errors=True)
                print(f"   {size:5d} B: {x['mpps'] if x['mpps'] is None else round(x['mpps'], 3)} Mpps, {x['cores_busy']:.2f} cores busy", flush=True)
        if "dpsw" in c.only:
            print("== vhost -> AF_XDP container through dpsw", flush=True)
            r = results["runs"].setdefault("dpsw", {})
            for size in c.sizes:
                r[f"v2x{size}"] = x = self.vhost_to_afxdp(size)
                print(f"   {size:5d} B: {x['mpps']:.3f} Mpps, {x['cores_busy']:.2f} cores busy", flush=True)
