#!/usr/bin/env python3
"""vhost-user endpoints with dpdk-testpmd (virtio-user) as the real peer."""
import os
import re
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab.env import DPSW, DPSWCTL  # noqa: E402
from lab.proc import sh, thread_cpus  # noqa: E402
from lab.testing import Dpsw, TestFailure, check, scenario_main  # noqa: E402
from lab.traffic import Testpmd, dpdk_cleanup, ping  # noqa: E402

MAC_A, MAC_B = "02:00:00:00:aa:01", "02:00:00:00:bb:02"


def vhost(name, d, net="a", **kw):
    e = {"name": name, "networks": [net], "port": "vhost", "vhost_socket": os.path.join(d, f"{name}.sock")}
    e.update(kw)
    return e


def port(d, endpoint):
    return [p for p in d.ctl("show", "ports") if p["endpoint"] == endpoint][0]


def wait_link(d, endpoint, state, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if port(d, endpoint)["link"] == state:
            return
        time.sleep(0.1)
    raise TestFailure(f"{endpoint}: link never went {state}: {port(d, endpoint)}")


NETS = [{"name": "a", "subnet": "10.230.0.0/24"}]


def ping_icmpecho():
    with Dpsw(NETS, lambda dir: [{"name": "c1", "networks": ["a"]}, vhost("vm", dir)]) as d:
        d.start()
        app = Testpmd(os.path.join(d.dir, "vm.sock"), "icmpecho", MAC_A)
        try:
            wait_link(d, "vm", "up")
            ip = port(d, "vm")["ip"]
            ping(d, "c1", ip, count=5)
            # A worker serving a vhost-user port polls whatever switch.idle says: the control thread and every
            # thread it started (the relay's, DPDK's) keep off the workers' cores, where another core exists.
            workers = d.config["switch"]["workers"]
            if set(os.sched_getaffinity(0)) - set(workers):
                for tid, (name, cpus) in thread_cpus(d.proc.pid).items():
                    check(name.startswith("dpsw-w") or not set(cpus) & set(workers),
                          f"thread {tid} ({name}) may run on a polled worker's core {workers}: {cpus}")
            c = port(d, "vm")["counters"]
            check(c["rx_packets"] >= 5 and c["tx_packets"] >= 5, f"vhost port counters did not move: {c}")
        finally:
            app.kill()
            dpdk_cleanup()


def vhost_to_vhost_counts():
    with Dpsw(NETS, lambda dir: [vhost("va", dir), vhost("vb", dir)]) as d:
        d.start()
        rx = Testpmd(os.path.join(d.dir, "vb.sock"), "rxonly", MAC_B)
        tx = None
        try:
            wait_link(d, "vb", "up")
            tx = Testpmd(os.path.join(d.dir, "va.sock"), "txonly", MAC_A, extra=[f"--eth-peer=0,{MAC_B}"])
            wait_link(d, "va", "up")
            time.sleep(2)
            sent = tx.stop()["tx"]
            time.sleep(0.5)  # let dpsw drain what is still in flight
            got = rx.stop()["rx"]
            time.sleep(0.2)
            pa, pb = port(d, "va")["counters"], port(d, "vb")["counters"]
            print(f"testpmd A sent {sent}; dpsw rx {pa['rx_packets']}, tx to B {pb['tx_packets']} "
                  f"(drops {pb['drops']}); testpmd B received {got}")
            check(sent > 1000 and got > 1000, f"too little traffic: sent {sent}, received {got}")
            # Frames still in A's ring when it exits never reach dpsw: at most one ring (1024).
            check(sent - 1024 <= pa["rx_packets"] <= sent, f"dpsw received {pa['rx_packets']} of the {sent} frames A sent")
            check(pb["tx_packets"] == got, f"dpsw transmitted {pb['tx_packets']} to B, B received {got}")
            dropped = sum(pb["drops"].values())
            check(pb["tx_packets"] + dropped == pa["rx_packets"],
                  f"every frame received is sent or counted as dropped: {pb['tx_packets']} + {dropped} != {pa['rx_packets']}")
        finally:
            rx.kill()
            if tx:
                tx.kill()
            dpdk_cleanup()


def disconnect_reconnect_no_leak():
    eps = lambda dir: [{"name": "c1", "networks": ["a"]}, {"name": "c2", "networks": ["a"]}, vhost("vm", dir)]
    with Dpsw(NETS, eps) as d:
        d.start()
        sock = os.path.join(d.dir, "vm.sock")
        c2 = port(d, "c2")["ip"]
        ping(d, "c1", c2, count=1)
        base = d.counters()["dpdk"]["mbufs_available"]
        flow = d.popen("c1", "ping", "-i", "0.01", "-c", "600", "-W", "1", c2, stdout=subprocess.PIPE, text=True)
        try:
            for cycle in range(3):
                app = Testpmd(sock, "icmpecho", MAC_A)
                try:
                    wait_link(d, "vm", "up")
                    ping(d, "c1", port(d, "vm")["ip"], count=2)
                finally:
                    app.stop()
                wait_link(d, "vm", "down")
                avail = d.counters()["dpdk"]["mbufs_available"]
                check(avail == base, f"cycle {cycle}: {base - avail} mbufs leaked")
            check(port(d, "vm")["link_changes"] >= 6, f"link changes not counted: {port(d, 'vm')}")
            ping(d, "c1", port(d, "vm")["ip"], count=1, expect=False)  # nobody there now
            out = flow.communicate(timeout=30)[0]
            m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
            check(m and m.group(1) == m.group(2) == "600", f"unrelated flow lost frames while the app came and went: {out[-300:]}")
        finally:
            if flow.poll() is None:
                flow.kill()
            dpdk_cleanup()


def client_mode_survives_dpsw_restart():
    with Dpsw(NETS, lambda dir: [{"name": "c1", "networks": ["a"]}, vhost("vm", dir, vhost_mode="client")]) as d:
        sock = os.path.join(d.dir, "vm.sock")
        app = Testpmd(sock, "icmpecho", MAC_A, server=True)  # the application serves the socket
        try:
            time.sleep(1)
            d.start()
            wait_link(d, "vm", "up")
            ip = port(d, "vm")["ip"]
            ping(d, "c1", ip)
            check(d.stop() == 0, "stop failed")
            check(os.path.exists(sock), "dpsw must not remove a socket the application owns")
            d.start()  # reconnects to the application, which kept running
            wait_link(d, "vm", "up")
            ping(d, "c1", ip)
            check(app.proc.poll() is None, "the application should have survived dpsw's restart")
        finally:
            app.kill()
            dpdk_cleanup()


def socket_paths_are_never_clobbered():
    """A vhost_socket that is a file is refused (by --check too) and left
    intact; one equal to the control socket is a config error; after kill -9,
    an endpoint switched to client mode keeps the application's own socket
    at the path dpsw once served (issue 19, items 7 and 13)."""
    with Dpsw(NETS, lambda dir: [{"name": "c1", "networks": ["a"]}, vhost("vm", dir)]) as d:
        sock = os.path.join(d.dir, "vm.sock")

        def vm_with(**change):
            cfg = d.copy_config()
            d.endpoint("vm", cfg).update(change)
            return cfg

        with open(sock, "w") as f:
            f.write("precious\n")
        r = sh(DPSW, "--config", d.cfg_path, "--check", check_rc=False)
        check(r.returncode == 2 and "vhost_socket: " + sock + " exists and is not a socket" in r.stderr, f"--check: {r.stderr}")
        try:
            d.start()
            raise TestFailure("dpsw started over a regular file at vhost_socket")
        except TestFailure as e:
            check("exists and is not a socket" in str(e), str(e))
        check(open(sock).read() == "precious\n", "the file at vhost_socket was changed")
        os.unlink(sock)
        d.write_config(vm_with(vhost_socket=d.sock))
        r = sh(DPSW, "--config", d.cfg_path, "--check", check_rc=False)
        check(r.returncode == 2 and "is the control socket (switch.control_socket)" in r.stderr, f"--check: {r.stderr}")
        # Server mode, then kill -9; the endpoint becomes a client and the application serves the path.
        d.write_config()
        d.start()
        wait_link(d, "vm", "down")
        # A reload that moves the socket onto a file is refused before anything changes.
        other = os.path.join(d.dir, "other.txt")
        with open(other, "w") as f:
            f.write("keep\n")
        d.write_config(vm_with(vhost_socket=other))
        r = sh(DPSWCTL, "--socket", d.sock, "reload", check_rc=False)
        check(r.returncode != 0 and "exists and is not a socket" in r.stderr, f"reload onto a file: {r.stderr}")
        check(open(other).read() == "keep\n" and os.path.exists(sock) and port(d, "vm")["name"] == sock, "the rejected reload changed something")
        d.write_config()
        d.stop(signal.SIGKILL)
        d.write_config(vm_with(vhost_mode="client"))
        os.unlink(sock)  # the stale server socket: the application replaces it with its own
        app = Testpmd(sock, "icmpecho", MAC_A, server=True)
        try:
            time.sleep(1)
            check(os.path.exists(sock), "the application did not create its socket")
            d.start()
            check(os.path.exists(sock), "the restart removed the application's socket")
            wait_link(d, "vm", "up")
            ping(d, "c1", port(d, "vm")["ip"])
        finally:
            app.kill()
            dpdk_cleanup()


def jumbo_frames_intact():
    nets = [{"name": "j", "subnet": "10.231.0.0/24", "mtu": 9000}]
    with Dpsw(nets, lambda dir: [vhost("va", dir, net="j"), vhost("vb", dir, net="j")]) as d:
        d.start()
        rx = Testpmd(os.path.join(d.dir, "vb.sock"), "rxonly", MAC_B, extra=["--max-pkt-len=9018", "--enable-scatter"])
        tx = None
        try:
            wait_link(d, "vb", "up")
            tx = Testpmd(os.path.join(d.dir, "va.sock"), "txonly", MAC_A,
                         extra=[f"--eth-peer=0,{MAC_B}", "--mbuf-size=9216", "--txpkts=9000", "--max-pkt-len=9018"])
            wait_link(d, "va", "up")
            time.sleep(2)
            sent = tx.stop()["tx"]
            time.sleep(0.5)
            got = rx.stop()["rx"]
            pa, pb = port(d, "va")["counters"], port(d, "vb")["counters"]
            print(f"jumbo: A sent {sent}, dpsw rx {pa['rx_packets']} ({pa['rx_bytes']} B), tx {pb['tx_packets']} "
                  f"({pb['tx_bytes']} B), B received {got}")
            check(got > 100 and pb["tx_packets"] == got, f"B received {got}, dpsw sent {pb['tx_packets']}")
            check(pa["rx_bytes"] == 9000 * pa["rx_packets"], f"frames changed size on the way in: {pa}")
            check(pb["tx_bytes"] == 9000 * pb["tx_packets"], f"frames changed size on the way out: {pb}")
            check(not pa["drops"], f"jumbo frames dropped at input: {pa['drops']}")
        finally:
            rx.kill()
            if tx:
                tx.kill()
            dpdk_cleanup()


def stalled_or_second_client_harms_nobody():
    """A client that sends a message header and then nothing, or a second
    application on a socket in use, stalls nothing and takes nothing: other
    endpoints connect and forward, dpswctl and SIGTERM answer at once, the
    staller is disconnected and logged (issue 19, items 2 and 10)."""
    import socket as so
    with Dpsw(NETS, lambda dir: [{"name": "c1", "networks": ["a"]}, vhost("va", dir), vhost("vb", dir)]) as d:
        d.start()
        va, vb = os.path.join(d.dir, "va.sock"), os.path.join(d.dir, "vb.sock")
        stall = so.socket(so.AF_UNIX)
        stall.connect(va)
        stall.sendall((1).to_bytes(4, "little") + (1).to_bytes(4, "little") + (8).to_bytes(4, "little"))  # header, no payload
        app = Testpmd(vb, "icmpecho", MAC_B)
        try:
            wait_link(d, "vb", "up")
            ping(d, "c1", port(d, "vb")["ip"])
            # A second application on vb's socket is turned away; the first keeps the port.
            second = so.socket(so.AF_UNIX)
            second.settimeout(3)
            second.connect(vb)
            check(second.recv(64) == b"", "a second connection on a server socket in use was kept")
            second.close()
            check(port(d, "vb")["link"] == "up", "the first application lost the port")
            ping(d, "c1", port(d, "vb")["ip"])
            # The staller is disconnected within the relay's bound, and logged.
            stall.settimeout(5)
            check(stall.recv(64) == b"", "the stalled client was not disconnected")
            check("left a message unfinished" in d.read_log(), "the stalled socket was not logged")
            check("refused a second connection" in d.read_log(), "the refused connection was not logged")
            # A stalled client holds up neither endpoint removal nor shutdown.
            stall = so.socket(so.AF_UNIX)
            stall.connect(va)
            stall.sendall(b"\x01\x00\x00\x00")
            t0 = time.time()
            d.ctl("endpoint", "del", "va")
            d.ctl("show", "ports")
            check(time.time() - t0 < 5, f"endpoint del with a stalled client took {time.time() - t0:.1f} s")
            check(not os.path.exists(va), "va's socket left behind")
            t0 = time.time()
            check(d.stop() == 0 and time.time() - t0 < 10, "SIGTERM with a vhost client attached")
        finally:
            stall.close()
            app.kill()
            dpdk_cleanup()


def oversize_counted_at_its_length():
    """A frame larger than any dpsw carries (9,300 bytes) is counted at its
    real length and dropped as oversize, not truncated and passed on
    (issue 19, item 14)."""
    nets = [{"name": "j", "subnet": "10.231.0.0/24", "mtu": 9000}]
    with Dpsw(nets, lambda dir: [vhost("va", dir, net="j"), vhost("vb", dir, net="j")]) as d:
        d.start()
        tx = None
        try:
            tx = Testpmd(os.path.join(d.dir, "va.sock"), "txonly", MAC_A,
                         extra=[f"--eth-peer=0,{MAC_B}", "--mbuf-size=9600", "--txpkts=9300", "--max-pkt-len=9318"])
            wait_link(d, "va", "up")
            time.sleep(1.5)
            tx.stop()
            pa, pb = port(d, "va")["counters"], port(d, "vb")["counters"]
            check(pa["rx_packets"] > 10 and pa["rx_bytes"] == 9300 * pa["rx_packets"], f"rx counted a truncated length: {pa}")
            check(pa["drops"].get("oversize", 0) == pa["rx_packets"], f"oversize frames not dropped as such: {pa['drops']}")
            check(pb["tx_packets"] == 0, f"oversize frames went out: {pb}")
        finally:
            if tx:
                tx.kill()
            dpdk_cleanup()


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (ping_icmpecho, vhost_to_vhost_counts, disconnect_reconnect_no_leak,
                                          client_mode_survives_dpsw_restart, jumbo_frames_intact,
                                          socket_paths_are_never_clobbered, oversize_counted_at_its_length,
                                          stalled_or_second_client_harms_nobody)})
