"""Traffic drivers: ping, byte-exact TCP, raw frames, iperf3, dpsw-pktgen,
sockperf, dpsw-connrate, dpdk-testpmd, dnsperf; and what they are measured with (interface
counters, busy cores). Every driver runs inside namespaces it is given."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from .env import CONNRATE, PKTGEN
from .proc import LabError, nsx, spawn


def _need(cond, msg):
    if not cond:
        raise LabError(msg)


# ---- ping ----
def ping_ns(ns, ip, count=3, expect=None, timeout=30, who=None):
    """ping -c COUNT -i 0.2 -W 1 IP from namespace ns; returns its output.
    expect True/False: raises LabError unless the ping succeeds/fails."""
    r = nsx(ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1", ip, check_rc=False, timeout=timeout)
    if expect is not None:
        _need((r.returncode == 0) == expect,
              f"ping {who or ns} -> {ip}: expected {'success' if expect else 'failure'}\n{r.stdout}{r.stderr}")
    return r.stdout


def ping(d, src, ip, count=3, expect=True):
    """ping_ns from endpoint src of dpsw d (or from its namespace "out")."""
    return ping_ns(d.ns(src), ip, count, expect, who=src)


# ---- byte-exact TCP ----
# The receiver prints the peer's address and the length and SHA-256 of what
# it got; the sender sends seeded pseudo-random bytes and prints length and
# SHA-256 of what it sent.
RECEIVER = r"""
import hashlib, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1); s.settimeout(30)
print("listening", flush=True)
c, peer = s.accept(); c.settimeout(30); h = hashlib.sha256(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    h.update(b); n += len(b)
print(peer[0], n, h.hexdigest(), flush=True)
"""
SENDER = r"""
import hashlib, random, socket, sys, time
host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(1234); h = hashlib.sha256(); n = 0
for attempt in range(50):
    try:
        c = socket.create_connection((host, port), timeout=5); break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit("cannot connect")
while n < size:
    b = rnd.randbytes(min(1 << 16, size - n)); c.sendall(b); h.update(b); n += len(b)
c.close()
print(n, h.hexdigest(), flush=True)
"""


def tcp_transfer(d, src, dst, dst_ip, size=8 << 20, port=5001, listen_port=None):
    """Byte-exact TCP from endpoint src to dst_ip:port, received in endpoint dst
    on listen_port (default: port). Returns the address the receiver saw."""
    return tcp_transfer_ns(d.ns(src), d.ns(dst), dst_ip, size, port, listen_port)


def tcp_transfer_ns(src_ns, dst_ns, dst_ip, size=8 << 20, port=5001, listen_port=None):
    """tcp_transfer between two namespaces by name (e.g. containers of two dpsw hosts)."""
    rx = subprocess.Popen(["ip", "netns", "exec", dst_ns, "python3", "-c", RECEIVER, str(listen_port or port)],
                          stdout=subprocess.PIPE, text=True)
    try:
        _need(rx.stdout.readline().strip() == "listening", "receiver did not start")
        sent = nsx(src_ns, "python3", "-c", SENDER, dst_ip, str(port), str(size), timeout=90).stdout.split()
        peer, *got = rx.communicate(timeout=90)[0].split()
    finally:
        if rx.poll() is None:
            rx.kill()
    _need(sent == got, f"TCP transfer to {dst_ip}:{port} corrupted: sent {sent}, received {got}")
    _need(int(got[0]) == size, f"received {got[0]} of {size} bytes")
    return peer


# ---- raw frames ----
# Sends COUNT frames DST <- SRC (MACs) with the probe ethertype 0x88b5 and
# MARKER (default DPSW-PROBE) out of eth0: `python3 -c SEND_RAW DST SRC COUNT [MARKER]`.
SEND_RAW = r"""
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("eth0", 0))
dst = bytes.fromhex(sys.argv[1].replace(":", "")); src = bytes.fromhex(sys.argv[2].replace(":", ""))
marker = (sys.argv[4] if len(sys.argv) > 4 else "DPSW-PROBE").encode()
for i in range(int(sys.argv[3])):
    s.send(dst + src + b"\x88\xb5" + marker + bytes(50))
"""


# ---- what is measured ----
def link_tx(ifname, what="bytes", ns=None):
    """What the kernel counts as sent by link ifname's own transmit (tx_bytes
    or tx_packets), in namespace ns (None: ours)."""
    path = f"/sys/class/net/{ifname}/statistics/tx_{what}"
    return int(nsx(ns, "cat", path).stdout) if ns else int(open(path).read())


def rx_packets(ns, ifname="eth0"):
    return int(nsx(ns, "cat", f"/sys/class/net/{ifname}/statistics/rx_packets").stdout)


def mac_of(ns, ifname="eth0"):
    return nsx(ns, "cat", f"/sys/class/net/{ifname}/address").stdout.strip()


class CpuMeter:
    """Cores busy (summed over all CPUs) between start and stop, from /proc/stat."""

    @staticmethod
    def read():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v) - v[3] - v[4], sum(v)

    def __enter__(self):
        self.b0, self.t0 = self.read()
        return self

    def __exit__(self, *a):
        b1, t1 = self.read()
        self.cores = (b1 - self.b0) / max(1, (t1 - self.t0) / os.cpu_count())


# ---- generators and load ----
def pktgen(ns, dst_mac, src_mac, src_ip, dst_ip, size, duration, rate=None, core=None, flows=None):
    """dpsw-pktgen (UDP over AF_PACKET) out of ns's eth0, pinned to core if
    given, at `rate` frames/s (default: as fast as it can), over `flows` UDP
    source ports (default: the generator's 16); returns frames sent."""
    pin = ["taskset", "-c", str(core)] if core is not None else []
    out = nsx(ns, *pin, PKTGEN, "--dst-mac", dst_mac, "--src-mac", src_mac, "--src-ip", src_ip, "--dst-ip", dst_ip,
              "--size", str(size), *(["--rate", str(rate)] if rate else []), *(["--flows", str(flows)] if flows else []),
              "--duration", str(duration),
              timeout=duration + 30).stdout
    return int(re.search(r"sent (\d+)", out).group(1))


def udp_delivered(src_ns, dst_ns, src_ip, dst_ip, size, duration, core, dst_mac=None, rx_ns=None):
    """pktgen from src_ns to dst_ip (frames to dst_mac, default dst_ns's eth0);
    counts what reaches rx_ns's eth0 (default dst_ns): {"mpps" delivered,
    "offered_mpps", "cores_busy"}."""
    smac = mac_of(src_ns)
    dmac = dst_mac or mac_of(dst_ns)
    before = rx_packets(rx_ns or dst_ns)
    with CpuMeter() as cpu:
        sent = pktgen(src_ns, dmac, smac, src_ip, dst_ip, size, duration, core=core)
        time.sleep(0.2)  # let the last frames drain
    got = rx_packets(rx_ns or dst_ns) - before
    return {"mpps": got / duration / 1e6, "offered_mpps": sent / duration / 1e6, "cores_busy": cpu.cores}


def iperf3(server_ns, client_ns, target, duration, port=5299, listen_port=None, streams=None):
    """iperf3 from client_ns to target:port (the server in server_ns listens on
    listen_port, default port; one test, then it exits): {"gbps" received, or
    None if iperf3 gave no result, "cores_busy"}."""
    srv = spawn("ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-p", str(listen_port or port),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    with CpuMeter() as cpu:
        out = nsx(client_ns, "iperf3", "-c", target, "-p", str(port), *(["-P", str(streams)] if streams else []),
                  "-t", str(duration), "-J", timeout=duration + 30, check_rc=False).stdout
    srv.wait(10)
    try:
        gbps = json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9
    except (ValueError, KeyError):
        gbps = None
    return {"gbps": gbps, "cores_busy": cpu.cores}


def sockperf_rtt(server_ns, client_ns, ip, duration, core, mps=2000):
    """sockperf ping-pong at mps messages/s, both ends pinned to core (the same
    placement for every variant): {"p50_us", "p99_us", "p999_us", "cores_busy"}."""
    pin = ["taskset", "-c", str(core)]
    srv = spawn("ip", "netns", "exec", server_ns, *pin, "sockperf", "server", "-i", ip, "-p", "11111",
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    with CpuMeter() as cpu:
        out = nsx(client_ns, *pin, "sockperf", "ping-pong", "-i", ip, "-p", "11111", "-t", str(max(1, int(duration))),
                  "--mps", str(mps), timeout=duration + 30, check_rc=False).stdout
    srv.terminate()
    srv.wait(10)
    pct = {float(m.group(1)): float(m.group(2)) for m in re.finditer(r"percentile\s+([\d.]+)\s+=\s+([\d.]+)", out)}
    return {"p50_us": pct.get(50.0), "p99_us": pct.get(99.0), "p999_us": pct.get(99.9), "cores_busy": cpu.cores}


def connrate(server_ns, client_ns, target, duration, core, port, listen_port=None, concurrency=32):
    """dpsw-connrate: short TCP connections (64 bytes echoed, then the server
    closes first) from client_ns to target:port for `duration` s, `concurrency`
    in flight; the server in server_ns listens on listen_port (default port).
    Both ends pinned to core (the same placement for every variant). Returns
    the client's JSON line (conn_per_s, completed, failed, errors by cause,
    connect_p50_us / connect_p99_us, ...) plus "cores_busy"; conn_per_s is
    None when no connection completed (no number: the path does not work)."""
    pin = ["taskset", "-c", str(core)]
    srv = spawn("ip", "netns", "exec", server_ns, *pin, CONNRATE, "server", "--port", str(listen_port or port),
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        _need(srv.stdout.readline().strip() == "listening", "dpsw-connrate server did not start")
        with CpuMeter() as cpu:
            out = nsx(client_ns, *pin, CONNRATE, "client", "--address", target, "--port", str(port), "--concurrency",
                      str(concurrency), "--duration", str(duration), timeout=duration + 30, check_rc=False).stdout
    finally:
        srv.terminate()
        srv.wait(10)
        srv.stdout.close()  # its closing line (counts) is not needed
    try:
        r = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        r = {"conn_per_s": None, "output": out[-500:]}
    if not r.get("completed"):
        r["conn_per_s"] = None
    r["cores_busy"] = cpu.cores
    return r


# ---- dpdk-testpmd ----
def testpmd_cmd(lcores, main_lcore, vdevs, args, file_prefix=None):
    """A dpdk-testpmd command line: EAL on lcores (main_lcore one of them), no
    PCI, one --vdev per entry of vdevs, then testpmd's args. file_prefix None:
    --in-memory (hugepages, no files left behind); else --no-huge with its
    runtime directory /var/run/dpdk/FILE_PREFIX (the caller removes it)."""
    mem = ["--no-huge", "-m", "1024", "--file-prefix", file_prefix] if file_prefix else \
        ["--in-memory", "--single-file-segments", "-m", "256"]
    return ["dpdk-testpmd", "-l", ",".join(str(c) for c in lcores), "--main-lcore", str(main_lcore), "--no-pci", *mem,
            "--no-telemetry", "--log-level", "*:error", *[a for v in vdevs for a in ("--vdev", v)], "--", *args]


def virtio_user(i, sock, mac, server=False):
    """The --vdev of a virtio-user port on vhost-user socket sock."""
    return f"virtio_user{i},path={sock},queues=1,mac={mac}" + (",server=1" if server else "")


class Testpmd:
    """dpdk-testpmd as a virtio-user application: its own process, --in-memory
    (hugepages, but no files left behind), ended by PID."""

    def __init__(self, sock, mode, mac, server=False, extra=(), fwd_core=0, main_core=1):
        self.cmd = testpmd_cmd((fwd_core, main_core), main_core, [virtio_user(0, sock, mac, server)],
                               [f"--forward-mode={mode}", "--auto-start", "--total-num-mbufs=8192", *extra])
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = ""

    def stop(self, timeout=30):
        """Press Enter (testpmd stops forwarding, prints its statistics and exits); returns them."""
        if self.proc.poll() is None:
            try:
                self.output = self.proc.communicate("\n", timeout=timeout)[0]
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.output = self.proc.communicate()[0]
        m = re.search(r"Forward statistics for port 0.*?RX-packets:\s*(\d+).*?TX-packets:\s*(\d+)", self.output, re.S)
        if not m:
            raise LabError("no statistics from testpmd:\n" + self.output[-2000:])
        return {"rx": int(m.group(1)), "tx": int(m.group(2))}

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def dpdk_cleanup():
    """With --in-memory --no-telemetry testpmd creates nothing; an empty default dir is all that may remain."""
    try:
        os.rmdir("/var/run/dpdk/rte")
    except OSError:
        pass


# ---- DNS ----
def process_cpu_s(pid, tid=None):
    """CPU time (user + system) process pid (all its threads), or its thread
    tid alone, has used, in seconds."""
    with open(f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DpswBusyCpu:
    """dpsw's CPU seconds spent working, as a running total: its threads' CPU
    time, where a worker's counts only in the share of its loops that moved
    frames (busy_cycles / (busy + idle cycles), from `show counters`): a
    polling worker burns its core whatever the load, and that is not work."""

    def __init__(self, d):
        self.d = d
        self.workers = {}
        for tid in os.listdir(f"/proc/{d.proc.pid}/task"):
            with open(f"/proc/{d.proc.pid}/task/{tid}/comm") as f:
                m = re.match(r"dpsw-w(\d+)", f.read().strip())
            if m:
                self.workers[int(m.group(1))] = tid
        self.last = None

    def __call__(self):
        total = process_cpu_s(self.d.proc.pid)
        cyc = {w["worker"]: (w["busy_cycles"], w["idle_cycles"]) for w in self.d.counters()["workers"]}
        if self.last is None:
            self.last = (total, {w: process_cpu_s(self.d.proc.pid, t) for w, t in self.workers.items()}, cyc)
            return 0.0
        t0, wcpu0, cyc0 = self.last
        used = total - t0
        for w, tid in self.workers.items():
            wcpu = process_cpu_s(self.d.proc.pid, tid) - wcpu0[w]
            busy, idle = cyc[w][0] - cyc0[w][0], cyc[w][1] - cyc0[w][1]
            used -= wcpu * (1 - busy / (busy + idle) if busy + idle else 1)
        return used


def dnsperf(ns, server, names, duration, core, clients=4, server_cpu=None, threads=1):
    """dnsperf (Debian's, UDP, A queries for `names` round robin) from ns
    against server:53 for `duration` s, pinned to core (a taskset list: "0,1"
    for several), with `threads` threads: {"qps" answered,
    "lost" queries, "avg_us", "cores_busy", "cpu_us_per_q": the server's CPU
    seconds (server_cpu(): a running total) per answered query}; qps None
    when nothing answered."""
    fd, path = tempfile.mkstemp(prefix="dpsw-dnsperf-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{n} A\n" for n in names)
    try:
        cpu0 = server_cpu() if server_cpu else None
        with CpuMeter() as cpu:
            out = nsx(ns, "taskset", "-c", str(core), "dnsperf", "-s", server, "-d", path, "-l", str(max(1, int(duration))),
                      "-c", str(clients), "-T", str(threads), "-q", "256", "-t", "2", timeout=duration + 30, check_rc=False).stdout
        cpu_s = server_cpu() - cpu0 if server_cpu else None
    finally:
        os.unlink(path)
    done = re.search(r"Queries completed:\s+(\d+)", out)
    qps = re.search(r"Queries per second:\s+([\d.]+)", out)
    lost = re.search(r"Queries lost:\s+(\d+)", out)
    avg = re.search(r"Average Latency \(s\):\s+([\d.]+)", out)
    ok = re.search(r"NOERROR (\d+)", out)
    per_q = cpu_s * 1e6 / int(done.group(1)) if cpu_s is not None and done and int(done.group(1)) else None
    return {"qps": float(qps.group(1)) if qps and ok else None, "lost": int(lost.group(1)) if lost else None,
            "avg_us": float(avg.group(1)) * 1e6 if avg else None, "cores_busy": cpu.cores,
            "cpu_us_per_q": round(per_q, 2) if per_q is not None else None}


# One query at a time (closed loop), each timed: argv server, count, names...
DNS_LATENCY = r"""
import random, socket, struct, sys, time
server, count, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1); s.connect((server, 53))
lat, lost = [], 0
for i in range(count):
    n = names[i % len(names)]
    q = struct.pack(">HHHHHH", i & 0xffff, 0x0100, 1, 0, 0, 0) + b"".join(bytes([len(l)]) + l.encode() for l in n.split(".")) + b"\0\0\1\0\1"
    t0 = time.perf_counter_ns(); s.send(q)
    try:
        while struct.unpack(">H", s.recv(4096)[:2])[0] != i & 0xffff: pass
        lat.append((time.perf_counter_ns() - t0) / 1000)
    except socket.timeout:
        lost += 1
    time.sleep(0.0005)
lat.sort()
pick = lambda p: round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None
print(pick(0.5), pick(0.99), pick(0.999), lost)
"""


def kxdpgun(ns, server, names, duration, qps, core):
    """kxdpgun (Knot DNS's generator: its own XDP program and AF_XDP socket
    on ns's eth0, no socket calls per query) sending A queries for `names` in
    turn to server:53 at `qps` for `duration` s, its thread pinned to core:
    {"sent", "replies", "qps" answered per second, "cores_busy"}. Open loop:
    what is not answered is lost. None when kxdpgun is not installed."""
    if not shutil.which("kxdpgun"):
        return None
    fd, path = tempfile.mkstemp(prefix="dpsw-kxdpgun-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.writelines(f"{n} A\n" for n in names)
    try:
        with CpuMeter() as cpu:
            out = nsx(ns, "kxdpgun", "-t", str(duration), "-Q", str(int(qps)), "-F", str(core), "-i", path, server,
                      timeout=duration + 30, check_rc=False)
    finally:
        os.unlink(path)
    text = out.stdout + out.stderr
    sent = re.search(r"total queries:\s+(\d+)", text)
    got = re.search(r"total replies:\s+(\d+)", text)
    _need(sent is not None, f"kxdpgun did not run: {text.strip()[-300:]}")
    replies = int(got.group(1)) if got else 0
    return {"sent": int(sent.group(1)), "replies": replies, "qps": replies / duration, "cores_busy": cpu.cores}


def dns_latency(ns, server, names, count, core):
    """Query latency at light load (one outstanding, ~2000/s), pinned to core:
    {"p50_us", "p99_us", "p999_us", "lost"}."""
    out = nsx(ns, "taskset", "-c", str(core), "python3", "-c", DNS_LATENCY, server, str(count), *names,
              timeout=count / 100 + 60).stdout.split()
    val = lambda x: None if x == "None" else float(x)
    return {"p50_us": val(out[0]), "p99_us": val(out[1]), "p999_us": val(out[2]), "lost": int(out[3])}
