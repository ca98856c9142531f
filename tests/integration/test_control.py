#!/usr/bin/env python3
"""The control socket and dpswctl against hostile or broken input (issue 18):
no request ends dpsw or holds up its control loop, a control_socket path that
is not a socket is refused, dpswctl reports every failure with a message."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab.dpsw import render_config  # noqa: E402
from lab.env import DPSW, DPSWCTL  # noqa: E402
from lab.proc import sh  # noqa: E402
from lab.testing import Dpsw, TestFailure, check, scenario_main  # noqa: E402
from lab.traffic import ping  # noqa: E402

NETS = [{"name": "front", "subnet": "10.201.7.0/24"}]
EPS = [{"name": "w1", "networks": ["front"]}, {"name": "w2", "networks": ["front"]}]


def raw(sock, data, shut=False, timeout=20):
    """One exchange over the control socket with bytes of our choosing; returns the answer, decoded strictly."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(sock)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    finally:
        s.close()
    check(out.endswith(b"\n") and out.count(b"\n") == 1, f"answer is not one line: {out[:300]!r}")
    return json.loads(out.decode("utf-8"))  # strict: the answer must be valid UTF-8


def expect_error(resp, needle):
    check(resp.get("ok") is False and needle in resp.get("error", ""), f"expected an error with '{needle}': {resp}")


def alive(d, what):
    check(d.proc.poll() is None, f"dpsw exited ({d.proc.returncode}) after {what}:\n{d.read_log()[-3000:]}")
    ns = sh("ip", "netns", "list").stdout
    check(d.ns("w1") in ns and d.ns("w2") in ns, f"namespaces gone after {what}: {ns}")


def hostile_requests_keep_dpsw_alive():
    with Dpsw(NETS, EPS) as d:
        d.start()
        w2 = d.port_of("w2", "front")["ip"]
        ping(d, "w1", w2, count=2)
        # Invalid UTF-8, in a string and outside one: the parser's error quotes the bytes.
        expect_error(raw(d.sock, b'{"v":1,"cmd":"show","args":["po\xffrts"]}\n'), "not valid JSON")
        alive(d, "an invalid UTF-8 byte in a string")
        expect_error(raw(d.sock, b'{"v":1,\xe9"cmd":"show"}\n'), "not valid JSON")
        expect_error(raw(d.sock, b'\xc3\x28\n'), "not valid JSON")
        alive(d, "invalid UTF-8 outside strings")
        # The realistic trigger: reload of a config saved with one Latin-1 character; the error quotes it.
        good = open(d.cfg_path, "rb").read()
        with open(d.cfg_path, "wb") as f:
            f.write(good.replace(b"  - name: w2\n", b"  - name: w2\n    caf\xe9: 1\n"))
        r = subprocess.run([DPSWCTL, "--socket", d.sock, "reload"], capture_output=True, timeout=60)
        check(r.returncode == 1 and b"caf\xef\xbf\xbd" in r.stderr, f"reload of a Latin-1 config: rc={r.returncode} {r.stderr!r}")
        alive(d, "reload of a Latin-1 config")
        with open(d.cfg_path, "wb") as f:
            f.write(good)
        # 100,000 levels of nesting (a spec of objects, ~600 KB, crashed the serialisation of `spec`; arrays, ~200 KB),
        # a 2 MiB line, NUL bytes, a truncated request at EOF.
        deep = 100000
        expect_error(raw(d.sock, b'{"v":1,"cmd":"endpoint","args":["add"],"spec":' + b'{"a":' * deep + b"1" + b"}" * deep + b"}\n"),
                     "nested too deeply (more than 64 levels")
        expect_error(raw(d.sock, b'{"v":1,"cmd":"network","args":["add"],"spec":' + b"[" * deep + b"]" * deep + b"}\n"),
                     "nested too deeply (more than 64 levels")
        expect_error(raw(d.sock, b"[" * deep + b"\n"), "nested too deeply")
        alive(d, "a request nested 100,000 deep")
        expect_error(raw(d.sock, b"x" * (2 << 20) + b"\n"), "request too large (2097152 bytes, limit 1048576)")
        expect_error(raw(d.sock, b'{"v":1,"cmd":"sh\x00ow"}\n'), "not valid JSON")
        expect_error(raw(d.sock, b'{"v":1,"cmd":"show","args":["po', shut=True), "not valid JSON")
        expect_error(raw(d.sock, b'{"v":1,"cmd":7}\n'), '"cmd" must be a string')
        expect_error(raw(d.sock, b'{"v":1,"cmd":"show","args":[1]}\n'), '"args" must be a list of strings')
        alive(d, "huge, NUL and truncated requests")
        # Still forwarding and still answering; a clean shutdown leaves nothing.
        ping(d, "w1", w2, count=2)
        check(len(d.ports()) == 2, "ports changed")
        check(raw(d.sock, b'{"v":1,"cmd":"show","args":["endpoints"]}\n')["ok"], "a normal request failed")
        check(d.stop() == 0, "dpsw did not exit cleanly")
        check(d.leftovers() == ([], []), f"leftovers: {d.leftovers()}")


def dribble(sock, stop, result):
    """A slow client: one byte of a valid request every 0.8 s; records what it got back."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.settimeout(60)
    try:
        for b in b'{"v":1,"cmd":"show","args":["ports"]}\n':
            if stop.is_set():
                break
            s.send(bytes([b]))
            time.sleep(0.8)
    except OSError:
        pass  # cut off by the server
    try:
        result.append(s.recv(65536))
    except OSError as e:
        result.append(repr(e).encode())
    s.close()


def slow_client_blocks_nobody():
    with Dpsw(NETS, EPS) as d:
        d.start()
        stop, got = threading.Event(), []
        t = threading.Thread(target=dribble, args=(d.sock, stop, got))
        t.start()
        try:
            time.sleep(0.5)
            # Meanwhile, others are answered (well within their timeout: the old server held them for ~30 s).
            for _ in range(3):
                try:
                    r = sh(DPSWCTL, "--socket", d.sock, "--timeout", "3", "show", "ports", check_rc=False, timeout=20)
                except subprocess.TimeoutExpired:
                    raise TestFailure("show ports got no answer within 20 s while a client dribbles")
                check(r.returncode == 0 and "ENDPOINT" in r.stdout, f"show ports while a client dribbles: {r.returncode} {r.stderr}")
            t.join(20)
            check(not t.is_alive(), "the slow client was never cut off")
            check(got and b"request timed out" in got[0], f"the slow client got: {got}")
        finally:
            stop.set()
            t.join()
        # Ageing and signals are not held up either: SIGTERM during a dribble shuts down at once and cleanly.
        stop, got = threading.Event(), []
        t = threading.Thread(target=dribble, args=(d.sock, stop, got))
        t.start()
        try:
            time.sleep(2)
            t0 = time.time()
            check(d.stop(signal.SIGTERM, timeout=5) == 0, "dpsw did not exit cleanly")
            check(time.time() - t0 < 5, "SIGTERM waited for the slow client")
        finally:
            stop.set()
            t.join()
        check(d.leftovers() == ([], []), f"leftovers after SIGTERM: {d.leftovers()}")


def control_socket_not_a_socket():
    with Dpsw(NETS, EPS) as d:
        for target in (d.cfg_path, d.dir):  # the config file itself; a directory
            bad = d.copy_config()
            bad["switch"]["control_socket"] = target
            text = render_config(bad)
            d.write_config(text)
            for args in (["--check", "--config", d.cfg_path], ["--config", d.cfg_path]):
                r = sh(DPSW, *args, check_rc=False, timeout=30)
                want = f"switch.control_socket: {target} exists and is not a socket; refusing to replace it"
                check(r.returncode == 2 and want in r.stderr and d.cfg_path in r.stderr, f"{args}: rc={r.returncode} {r.stderr}")
                check(open(d.cfg_path).read() == text, "the config file was changed")
                check(os.path.isdir(d.dir), "the directory was removed")
            check(d.leftovers() == ([], []), f"created before refusing: {d.leftovers()}")
        # A stale socket (nobody listening) is replaced; --check of a running config passes.
        d.write_config()
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
    scenario_main({f.__name__: f for f in (hostile_requests_keep_dpsw_alive, slow_client_blocks_nobody,
                                          control_socket_not_a_socket, dpswctl_errors)})
