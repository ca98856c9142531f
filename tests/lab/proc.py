"""Running commands, in the root namespace or in one of ours, and processes
that must be ended (by PID, never by name) however a run ends."""
import os
import signal
import subprocess


class LabError(Exception):
    """A step of the lab failed (a command, dpsw, a check). The tests call it TestFailure."""


def sh(*cmd, check_rc=True, timeout=60, **kw):
    """Runs cmd; returns the CompletedProcess (text). check_rc: a non-zero exit raises LabError."""
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, **kw)
    if check_rc and r.returncode != 0:
        raise LabError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return r


def nsx(ns, *cmd, **kw):
    """sh() inside network namespace ns."""
    return sh("ip", "netns", "exec", ns, *cmd, **kw)


def ns_popen(ns, *cmd, **kw):
    """A process inside network namespace ns (the caller ends it; or use spawn())."""
    return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], **kw)


_started = []  # spawn()ed processes, ended by end_spawned()


def spawn(*cmd, **kw):
    """Popen, remembered so that end_spawned() ends it if it is still running."""
    p = subprocess.Popen(list(cmd), **kw)
    _started.append(p)
    return p


def end_spawned():
    """Kills (by PID) every spawn()ed process still running."""
    while _started:
        p = _started.pop()
        if p.poll() is None:
            p.kill()
            p.wait()


def kill_netns_pids(ns):
    """SIGKILL the processes inside namespace ns: only for namespaces of ours,
    whose processes we started."""
    for pid in sh("ip", "netns", "pids", ns, check_rc=False).stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def thread_cpus(pid):
    """Every thread of process pid: {tid: (its name, the cores it may run on, sorted)} (from /proc)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                text = next(l.split()[1] for l in f if l.startswith("Cpus_allowed_list:"))
        except (OSError, StopIteration):
            continue  # gone meanwhile
        cpus = []
        for part in text.split(","):  # "0,2-3"
            lo, _, hi = part.partition("-")
            cpus += range(int(lo), int(hi or lo) + 1)
        out[int(tid)] = (name, cpus)
    return out
