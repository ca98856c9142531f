"""Integration-test harness: runs a real dpsw on real namespaces.

Every namespace and link carries a random per-run instance prefix, and
Dpsw.cleanup() (called from __exit__, i.e. also when a test fails) removes
the process it started (by PID) and anything with that prefix.
"""
import json
import re
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILD = os.environ.get("DPSW_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
DPSW = os.path.join(BUILD, "control", "dpsw")
DPSWCTL = os.path.join(BUILD, "control", "dpswctl")
SKIP = 77
# Meson runs every scenario twice: with the in-kernel fast tier (dpsw's
# default, DPSW_FAST_PATH unset or "auto") and with it off (every frame
# through AF_XDP). Dpsw() writes `switch.fast_path` accordingly.
FAST = os.environ.get("DPSW_FAST_PATH", "auto") != "off"


class TestFailure(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def require_root():
    if os.geteuid() != 0:
        print("SKIP: integration tests need root (namespaces, XDP, AF_XDP)")
        sys.exit(SKIP)


def sh(*cmd, check_rc=True, timeout=60, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check_rc and r.returncode != 0:
        raise TestFailure(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r


def worker_core():
    # Leave core 0 to the kernel side (ping, iperf3, the test itself).
    return 1 if (os.cpu_count() or 1) > 1 else 0


class Dpsw:
    OUTSIDE_IP, HOST_IP = "198.51.100.1", "198.51.100.10"  # documentation range (SPEC §5)

    def __init__(self, networks, endpoints, name=None, aging_s=300, workers=None, extra_switch=None, uplink=False, netns=None):
        """uplink: True = an outside namespace of our own behind a new veth; or a dict
        {interface, address, gateway?} naming an existing interface (e.g. an underlay
        link). netns: run dpsw in this network namespace (dpsw --netns)."""
        self.name = name or "t" + secrets.token_hex(2)  # 5 chars: fits the 6-char limit
        self.dir = tempfile.mkdtemp(prefix=f"dpsw-{self.name}-")
        self.sock = os.path.join(self.dir, "ctl.sock")
        self.cfg_path = os.path.join(self.dir, "dpsw.yaml")
        self.log_path = os.path.join(self.dir, "dpsw.log")
        self.proc = None
        self.netns = netns
        workers = workers if workers is not None else [worker_core()]
        lines = ["switch:", f"  name: {self.name}", f"  workers: {json.dumps(workers)}",
                 f"  control_socket: {self.sock}", f"  state_dir: {self.dir}",
                 f"  mac_table: {{ size: 4096, aging_s: {aging_s} }}"]
        extra_switch = dict(extra_switch or {})
        extra_switch.setdefault("fast_path", "auto" if FAST else "off")
        for k, v in extra_switch.items():
            lines.append(f"  {k}: {v}")
        if isinstance(uplink, dict):
            self.uplink_if = uplink["interface"]
            lines += ["uplink:", f"  port: {{ kind: afxdp, interface: {self.uplink_if} }}", f"  address: {uplink['address']}"]
            if uplink.get("gateway"):
                lines.append(f"  gateway: {uplink['gateway']}")
        elif uplink:
            # The "outside world": a namespace of ours behind a veth that dpsw uses as its uplink.
            self.uplink_if = f"{self.name}-up"
            out = self.ns("out")
            sh("ip", "netns", "add", out)
            sh("ip", "link", "add", self.uplink_if, "type", "veth", "peer", "name", "eth0", "netns", out)
            sh("ip", "-n", out, "addr", "add", self.OUTSIDE_IP + "/24", "dev", "eth0")
            sh("ip", "-n", out, "link", "set", "eth0", "up")
            sh("ip", "-n", out, "link", "set", "lo", "up")
            sh("ip", "netns", "exec", out, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1")
            # Our "outside" is a veth, which leaves TCP/UDP checksums to offload (a real NIC's
            # segment delivers them complete); AF_XDP on the uplink needs them complete.
            sh("ip", "netns", "exec", out, "ethtool", "-K", "eth0", "tx", "off")
            sh("sysctl", "-qw", f"net.ipv6.conf.{self.uplink_if}.disable_ipv6=1")
            lines += ["uplink:", f"  port: {{ kind: afxdp, interface: {self.uplink_if} }}",
                      f"  address: {self.HOST_IP}/24", f"  gateway: {self.OUTSIDE_IP}"]
        for key, items in (("networks", networks), ("endpoints", endpoints)):
            lines.append(f"{key}:")
            for item in items:
                lines.append(f"  - name: {item['name']}")
                lines += [f"    {k}: {json.dumps(v) if isinstance(v, (list, bool)) else v}" for k, v in item.items() if k != "name"]
        self.write_config("\n".join(lines) + "\n")

    def write_config(self, text):
        with open(self.cfg_path, "w") as f:
            f.write(text)

    # ---- process ----
    def start(self, timeout=20):
        self.log = open(self.log_path, "a")
        cmd = [DPSW, "--config", self.cfg_path] + (["--netns", self.netns] if self.netns else [])
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise TestFailure(f"dpsw exited with {self.proc.returncode}:\n{self.read_log()}")
            if os.path.exists(self.sock):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(self.sock)
                    s.close()
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise TestFailure("dpsw did not become ready:\n" + self.read_log())

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("dpsw did not stop within %ds" % timeout)

    def read_log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    # ---- control ----
    def ctl(self, *args, raw=False):
        cmd = [DPSWCTL, "--socket", self.sock] + ([] if raw else ["--json"]) + list(args)
        r = sh(*cmd)
        return r.stdout if raw else json.loads(r.stdout)

    def counters(self):
        return self.ctl("show", "counters")

    def port_of(self, endpoint, network):
        for p in self.ctl("show", "ports"):
            if p["endpoint"] == endpoint and p["network"] == network:
                return p
        raise TestFailure(f"no port for {endpoint} on {network}")

    # ---- namespaces ----
    def ns(self, endpoint):
        return f"{self.name}-{endpoint}"

    def run(self, endpoint, *cmd, check_rc=True, timeout=60):
        return sh("ip", "netns", "exec", self.ns(endpoint), *cmd, check_rc=check_rc, timeout=timeout)

    def popen(self, endpoint, *cmd, **kw):
        return subprocess.Popen(["ip", "netns", "exec", self.ns(endpoint), *cmd], **kw)

    def leftovers(self):
        """Namespaces, links and XDP programs that carry this run's prefix."""
        ns = [l.split()[0] for l in sh("ip", "netns", "list").stdout.splitlines() if l.startswith(self.name + "-")]
        links = []
        for l in sh("ip", "-o", "link").stdout.splitlines():
            name = l.split(": ")[1].split("@")[0]
            if name.startswith(self.name + "-"):
                links.append(name + (" (xdp)" if " xdp" in l else ""))
        return ns, links

    def endpoint_links(self):
        """leftovers() without the fast tier's punt veths (one pair per worker)."""
        ns, links = self.leftovers()
        return ns, [l for l in links if not re.search(r"-puntx?\d+\b", l)]

    def ports(self):
        """`show ports` without the fast tier's punt ports."""
        return [p for p in self.ctl("show", "ports") if p["kind"] != "punt"]

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # let dpsw clean up after itself first
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(f"/var/run/dpdk/dpsw-{self.name}", ignore_errors=True)
        ns, links = self.leftovers()
        for l in links:
            sh("ip", "link", "del", l.split()[0], check_rc=False)
        for n in ns:
            # End processes a test left inside (only ours: they live in our namespace).
            pids = sh("ip", "netns", "pids", n, check_rc=False).stdout.split()
            for p in pids:
                try:
                    os.kill(int(p), signal.SIGKILL)
                except OSError:
                    pass
            sh("ip", "netns", "del", n, check_rc=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None and self.proc is not None:
            print("---- dpsw log ----\n" + self.read_log(), file=sys.stderr)
        self.cleanup()
        return False


# A byte-exact TCP transfer: the receiver prints the peer's address and the
# length and SHA-256 of what it got; the sender sends seeded pseudo-random
# bytes and prints length and SHA-256 of what it sent.
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


def tcp_transfer(d, src, dst, dst_ip, size=8 << 20, port=5001, listen_port=None):
    """Byte-exact TCP from src to dst_ip:port, received in namespace dst on
    listen_port (default: port). Returns the address the receiver saw."""
    return tcp_transfer_ns(d.ns(src), d.ns(dst), dst_ip, size, port, listen_port)


def tcp_transfer_ns(src_ns, dst_ns, dst_ip, size=8 << 20, port=5001, listen_port=None):
    """tcp_transfer between two namespaces by name (e.g. containers of two dpsw hosts)."""
    rx = subprocess.Popen(["ip", "netns", "exec", dst_ns, "python3", "-c", RECEIVER, str(listen_port or port)],
                          stdout=subprocess.PIPE, text=True)
    try:
        check(rx.stdout.readline().strip() == "listening", "receiver did not start")
        sent = sh("ip", "netns", "exec", src_ns, "python3", "-c", SENDER, dst_ip, str(port), str(size), timeout=90).stdout.split()
        peer, *got = rx.communicate(timeout=90)[0].split()
    finally:
        if rx.poll() is None:
            rx.kill()
    check(sent == got, f"TCP transfer to {dst_ip}:{port} corrupted: sent {sent}, received {got}")
    check(int(got[0]) == size, f"received {got[0]} of {size} bytes")
    return peer


def ping(d, src, ip, count=3, expect=True):
    r = d.run(src, "ping", "-c", str(count), "-i", "0.2", "-W", "1", ip, check_rc=False, timeout=30)
    ok = r.returncode == 0
    check(ok == expect, f"ping {src} -> {ip}: expected {'success' if expect else 'failure'}\n{r.stdout}{r.stderr}")
    return r.stdout


def scenario_main(scenarios):
    require_root()
    if len(sys.argv) != 2 or sys.argv[1] not in scenarios:
        print("usage: %s {%s}" % (sys.argv[0], "|".join(scenarios)))
        sys.exit(2)
    try:
        scenarios[sys.argv[1]]()
    except TestFailure as e:
        print(f"FAIL: {e}")
        sys.exit(1)
    print("PASS")


class Testpmd:
    """dpdk-testpmd as a virtio-user application: its own process, --in-memory
    (hugepages, but no files left behind), ended by PID."""

    def __init__(self, sock, mode, mac, server=False, extra=(), fwd_core=0, main_core=1):
        vdev = f"virtio_user0,path={sock},queues=1,mac={mac}" + (",server=1" if server else "")
        self.cmd = ["dpdk-testpmd", "-l", f"{fwd_core},{main_core}", "--main-lcore", str(main_core), "--no-pci", "--in-memory",
                    "--single-file-segments", "--no-telemetry", "-m", "256", "--log-level", "*:error", "--vdev", vdev,
                    "--", f"--forward-mode={mode}", "--auto-start", "--total-num-mbufs=8192", *extra]
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
            raise TestFailure("no statistics from testpmd:\n" + self.output[-2000:])
        return {"rx": int(m.group(1)), "tx": int(m.group(2))}

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def dpdk_cleanup():
    # With --in-memory --no-telemetry testpmd creates nothing; an empty default dir is all that may remain.
    try:
        os.rmdir("/var/run/dpdk/rte")
    except OSError:
        pass
