#!/usr/bin/env python3
"""The control socket (issue 18): a control_socket path that is not a socket is refused."""
import os
import socket

from dpswtest import DPSW, Dpsw, check, scenario_main, sh

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


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (control_socket_not_a_socket,)})
