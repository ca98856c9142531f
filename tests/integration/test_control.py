#!/usr/bin/env python3
"""The control socket and dpswctl against broken input (issue 18): a
control_socket path that is not a socket is refused, dpswctl reports every
failure with a message."""
import os
import socket
import subprocess
import threading
import time

from dpswtest import DPSW, DPSWCTL, Dpsw, check, scenario_main, sh

NETS = [{"name": "front", "subnet": "10.201.7.0/24"}]
EPS = [{"name": "w1", "networks": ["front"]}, {"name": "w2", "networks": ["front"]}]


def control_socket_not_a_socket():
    with Dpsw(NETS, EPS) as d:
        good = open(d.cfg_path).read()
        for target in (d.cfg_path, d.dir):  # the config file itself; a directory
            text = good.replace(f"control_socket: {d.sock}", f"control_socket: {target}")
            d.write_config(text)
            for args in (["--check", "--config", d.cfg_path], ["--config", d.cfg_path]):
                r = sh(DPSW, *args, check_rc=False, timeout=30)
                want = f"switch.control_socket: {target} exists and is not a socket; refusing to replace it"
                check(r.returncode == 2 and want in r.stderr and d.cfg_path in r.stderr, f"{args}: rc={r.returncode} {r.stderr}")
                check(open(d.cfg_path).read() == text, "the config file was changed")
                check(os.path.isdir(d.dir), "the directory was removed")
            check(d.leftovers() == ([], []), f"created before refusing: {d.leftovers()}")
        # A stale socket (nobody listening) is replaced; --check of a running config passes.
        d.write_config(good)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(d.sock)
        stale.close()
        d.start()
        r = sh(DPSW, "--check", "--config", d.cfg_path)
        check("OK" in r.stdout, r.stdout)
        check(len(d.ports()) == 2, "dpsw did not start on a stale socket")


def listener(path, mode, ready, done):
    """A fake daemon: 'close' accepts and closes at once; 'mute' accepts and never answers."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(30)
    ready.set()
    conns = []
    try:
        c, _ = srv.accept()
        if mode == "close":
            c.close()
        else:
            conns.append(c)
            done.wait(30)
    except OSError:
        pass
    for c in conns:
        c.close()
    srv.close()


def dpswctl_errors():
    with Dpsw(NETS, EPS) as d:
        # Refused: a socket file nobody listens on.
        stale = os.path.join(d.dir, "stale.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(stale)
        s.close()
        r = sh(DPSWCTL, "--socket", stale, "show", "ports", check_rc=False)
        check(r.returncode == 1 and "cannot reach dpsw" in r.stderr and "refused" in r.stderr, f"{r.returncode} {r.stderr}")
        # Closed while dpswctl sends (a request larger than the socket buffer): a message, not death by SIGPIPE.
        path = os.path.join(d.dir, "close.sock")
        ready, done = threading.Event(), threading.Event()
        t = threading.Thread(target=listener, args=(path, "close", ready, done))
        t.start()
        ready.wait(10)
        big = []
        for i in range(8):
            big += ["--network", f"n{i}" + "x" * 100000]
        r = subprocess.run([DPSWCTL, "--socket", path, "endpoint", "add", "e1", *big], capture_output=True, text=True, timeout=30)
        t.join()
        check(r.returncode == 1 and r.stderr.startswith("dpswctl: ") and
              ("closed the connection" in r.stderr), f"rc={r.returncode} {r.stderr[:300]}")
        # --timeout against a daemon that accepts and never answers.
        path = os.path.join(d.dir, "mute.sock")
        ready, done = threading.Event(), threading.Event()
        t = threading.Thread(target=listener, args=(path, "mute", ready, done))
        t.start()
        ready.wait(10)
        t0 = time.time()
        try:
            r = sh(DPSWCTL, "--socket", path, "--timeout", "1", "show", "ports", check_rc=False, timeout=20)
        finally:
            done.set()
            t.join()
        check(r.returncode == 1 and f"no answer from dpsw at {path} within 1 s" in r.stderr, f"rc={r.returncode} {r.stderr}")
        check(time.time() - t0 < 15, "--timeout 1 did not end dpswctl")
        r = sh(DPSWCTL, "--socket", path, "--timeout", "-1", "show", "ports", check_rc=False)
        check(r.returncode == 2 and "--timeout" in r.stderr, r.stderr)

        d.start()
        before = d.ctl("show", "endpoints")
        # A non-UTF-8 argument.
        r = subprocess.run([DPSWCTL.encode(), b"--socket", d.sock.encode(), b"endpoint", b"add", b"e\xff9", b"--network", b"front"],
                           capture_output=True, timeout=30)
        check(r.returncode == 2 and b"argument 5 is not valid UTF-8" in r.stderr, f"rc={r.returncode} {r.stderr!r}")
        # The name is the positional NAME: a different --name is an error, and nothing is created.
        r = sh(DPSWCTL, "--socket", d.sock, "endpoint", "add", "e9", "--name", "other", "--network", "front", check_rc=False)
        check(r.returncode == 2 and "--name 'other' differs from the NAME argument 'e9'" in r.stderr, f"{r.returncode} {r.stderr}")
        r = sh(DPSWCTL, "--socket", d.sock, "endpoint", "add", "e9", "--network", "front", "--ip", "10.201.7.50", "--ip",
               "10.201.7.51", check_rc=False)
        check(r.returncode == 2 and "--ip given twice" in r.stderr, f"{r.returncode} {r.stderr}")
        check(d.ctl("show", "endpoints") == before, "an endpoint was created")
        ns = sh("ip", "netns", "list").stdout
        check(d.ns("other") not in ns and d.ns("e9") not in ns, f"a namespace was created: {ns}")
        # The same name twice is fine.
        r = sh(DPSWCTL, "--socket", d.sock, "endpoint", "add", "e9", "--name", "e9", "--network", "front")
        check("endpoint e9 added" in r.stdout, r.stdout)
        check([e["name"] for e in d.ctl("show", "endpoints")] == ["w1", "w2", "e9"], "e9 missing")


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (control_socket_not_a_socket, dpswctl_errors)})
