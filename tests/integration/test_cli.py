#!/usr/bin/env python3
"""dpsw and dpswctl command lines, bad input, and rollback of a failed setup."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab.env import DPSW, DPSWCTL  # noqa: E402
from lab.proc import sh, thread_cpus  # noqa: E402
from lab.testing import FAST, Dpsw, check, scenario_main  # noqa: E402
from lab.traffic import ping  # noqa: E402

NETS = [{"name": "front", "subnet": "10.201.1.0/24"}]
EPS = [{"name": "w1", "networks": ["front"]}, {"name": "w2", "networks": ["front"]}]


def bad_config_creates_nothing():
    with Dpsw(NETS, EPS) as d:
        bad = d.copy_config()
        bad["networks"][0]["subnet"] = "10.201.1.0/33"
        d.write_config(bad)
        for args in (["--config", d.cfg_path], ["--check", "--config", d.cfg_path]):
            r = sh(DPSW, *args, check_rc=False)
            check(r.returncode == 2, f"{args}: exit code {r.returncode}")
            want = f"{d.cfg_path}:"
            check(want in r.stderr and "networks[0].subnet" in r.stderr and "10.201.1.0/33" in r.stderr, r.stderr)
        check(d.leftovers() == ([], []), f"a bad config created something: {d.leftovers()}")
        # --check on a good file validates and creates nothing either.
        d.write_config()
        r = sh(DPSW, "--check", "--config", d.cfg_path)
        check("OK (1 networks, 2 endpoints" in r.stdout, r.stdout)
        check(d.leftovers() == ([], []), "--check created something")
        # A core this machine does not have.
        for core, want in ((4000, "not a whole number"), (999, "core 999 is not available")):
            bad = d.copy_config()
            bad["switch"]["workers"] = [core] + bad["switch"]["workers"]
            d.write_config(bad)
            r = sh(DPSW, "--check", "--config", d.cfg_path, check_rc=False)
            check(r.returncode == 2 and want in r.stderr, r.stderr)
        bad = d.copy_config()
        bad["switch"]["fast_path_steering"] = {"cores": [998]}
        d.write_config(bad)
        r = sh(DPSW, "--check", "--config", d.cfg_path, check_rc=False)
        check(r.returncode == 2 and "switch.fast_path_steering.cores[0]: core 998 is not available" in r.stderr, r.stderr)
        bad = d.copy_config()
        bad["switch"]["control_cores"] = [997]
        d.write_config(bad)
        r = sh(DPSW, "--check", "--config", d.cfg_path, check_rc=False)
        check(r.returncode == 2 and "switch.control_cores[0]: core 997 is not available" in r.stderr, r.stderr)


def failed_setup_rolls_back():
    with Dpsw(NETS, EPS) as d:
        bogus = os.path.join(d.dir, "not-a-namespace")
        open(bogus, "w").close()
        d.endpoint("w2")["netns"] = bogus
        d.write_config()
        r = sh(DPSW, "--config", d.cfg_path, check_rc=False, timeout=30)
        check(r.returncode == 1 and "everything created so far was removed" in r.stderr, f"rc={r.returncode} {r.stderr}")
        check(d.leftovers() == ([], []), f"half-applied state left: {d.leftovers()}")


def cli_flags():
    r = sh(DPSW, "--version")
    check(r.stdout.startswith("dpsw "), r.stdout)
    r = sh(DPSW, "--help")
    for flag in ("--config", "--check", "--log-level", "--version"):
        check(flag in r.stdout, f"--help lacks {flag}")
    r = sh(DPSW, "--bogus", check_rc=False)
    check(r.returncode == 2 and "bogus" in r.stderr, r.stderr)
    r = sh(DPSW, "--config", "/x", "--log-level", "loud", check_rc=False)
    check(r.returncode == 2 and "'loud' is not one of" in r.stderr, r.stderr)
    r = sh(DPSW, "--config", "/nonexistent.yaml", check_rc=False)
    check(r.returncode == 2 and "/nonexistent.yaml: cannot read the file" in r.stderr, r.stderr)
    r = sh(DPSWCTL, "--socket", "/nonexistent.sock", "show", "ports", check_rc=False)
    check(r.returncode == 1 and "cannot reach dpsw" in r.stderr, r.stderr)


def dpswctl_views():
    with Dpsw(NETS, EPS) as d:
        d.start()
        # Threads placed deliberately: each worker on its core; the control thread on the workers' cores when they
        # block when idle (the fast tier's default: its periodic work never lands on the containers' cores), else
        # on every core but the polled ones.
        pid, worker = d.proc.pid, d.config["switch"]["workers"][0]
        threads = thread_cpus(pid)
        w0 = next(cpus for name, cpus in threads.values() if name == "dpsw-w0")
        check(w0 == [worker], f"worker 0 on core {worker}: {w0}")
        want = [worker] if FAST else [c for c in sorted(os.sched_getaffinity(0)) if c != worker]
        if want:
            check(threads[pid][1] == want, f"the control thread on {want}: {threads[pid][1]}")
        w2 = d.port_of("w2", "front")
        ping(d, "w1", w2["ip"], count=2)
        ports = d.ports()
        check(len(ports) == 2 and {p["endpoint"] for p in ports} == {"w1", "w2"}, str(ports))
        kind = "fast" if FAST else "afxdp"
        check(all(p["kind"] == kind and p["counters"]["rx_packets"] > 0 for p in ports), str(ports))
        nets = d.ctl("show", "networks")
        check(nets[0]["name"] == "front" and nets[0]["gateway"] == "10.201.1.1" and sorted(nets[0]["endpoints"]) == ["w1", "w2"], str(nets))
        eps = d.ctl("show", "endpoints")
        check([e["attachments"][0]["ip"] for e in eps] == ["10.201.1.2/24", "10.201.1.3/24"], str(eps))
        macs = d.ctl("show", "mac", "front")
        check(len(macs) == 2 and all(m["network"] == "front" for m in macs), str(macs))
        c = d.counters()
        check(c["workers"][0]["loops"] > 0 and c["mac_table"]["entries"] == 2 and c["xdp"]["redirected"] > 0, str(c))
        # Drop reasons come from the one table: each with its nodes, a count summed over the ports, a meaning.
        drops = d.ctl("show", "drops")
        byname = {r["reason"]: r for r in drops}
        check(len(byname) == len(drops) >= 30 and all(r["nodes"] and r["meaning"] and r["packets"] >= 0 for r in drops), str(drops))
        check(byname["runt"]["nodes"] == "eth_input" and "l3_route" in byname["ttl"]["nodes"], str(drops))
        # Human-readable tables.
        for what, head in (("drops", "NODES"), ("ports", "ENDPOINT"), ("networks", "SUBNET"), ("endpoints", "MODE"), ("mac", "ESTABLISHED"),
                           ("counters", "DROPS"), ("fast", "SOURCE" if FAST else "not in use")):
            out = d.ctl("show", what, raw=True)
            check(head in out.splitlines()[0], f"show {what}: {out}")
            check(not any(l != l.rstrip() or "null" in l for l in out.splitlines()), f"show {what}: {out}")
        # Views are declared by the daemon: `show` alone lists them all, and dpswctl prints each from its reply.
        out = d.ctl("show", raw=True)
        check(out.startswith("VIEW") and all(f"\n{v} " in out for v in ("ports", "counters", "conntrack", "mac")), out)
        check("mac        [NETWORK]" in out, out)
        # Errors are clear and change nothing.
        r = sh(DPSWCTL, "--socket", d.sock, "show", "mac", "nosuchnet", check_rc=False)
        check(r.returncode == 1 and "unknown network 'nosuchnet'" in r.stderr, r.stderr)
        r = sh(DPSWCTL, "--socket", d.sock, "show", "everything", check_rc=False)
        check(r.returncode == 1 and "cannot show 'everything'" in r.stderr and "mac [NETWORK], fast" in r.stderr, r.stderr)
        r = sh(DPSWCTL, "--socket", d.sock, "show", "ports", "extra", check_rc=False)
        check(r.returncode == 1 and "show ports: unexpected 'extra'" in r.stderr, r.stderr)
        # Root only: a non-root client is refused.
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", DPSWCTL, "--socket", d.sock,
                            "show", "ports"], capture_output=True, text=True)
        check(r.returncode != 0, f"non-root client was served: {r.stdout}")


def control_socket_in_use():
    with Dpsw(NETS, EPS[:1]) as a, Dpsw([{"name": "other", "subnet": "10.201.9.0/24"}], [{"name": "x", "networks": ["other"]}]) as b:
        a.start()
        b.write_config(open(b.cfg_path).read().replace(b.sock, a.sock))
        r = sh(DPSW, "--config", b.cfg_path, check_rc=False, timeout=30)
        check(r.returncode == 2 and "is in use by another running dpsw" in r.stderr, f"rc={r.returncode} {r.stderr}")
        check(b.leftovers() == ([], []), f"created before refusing: {b.leftovers()}")
        check(len(a.ports()) == 1, "the running instance lost its socket")


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (bad_config_creates_nothing, failed_setup_rolls_back, cli_flags, dpswctl_views,
                                          control_socket_in_use)})
