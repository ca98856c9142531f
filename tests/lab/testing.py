"""The integration tests' conventions: a scenario is a function that raises
TestFailure (or anything) to fail; scenario_main() runs the one named on the
command line (as meson's test registration does); exit 77 = skipped.

Meson runs most scenarios twice: with the in-kernel fast tier (dpsw's
default, DPSW_FAST_PATH unset or "auto") and with it off (every frame
through AF_XDP); the tests' Dpsw writes `switch.fast_path` accordingly.
"""
import os
import sys
import time

from . import dpsw as _dpsw
from .proc import LabError, sh

SKIP = 77
FAST = os.environ.get("DPSW_FAST_PATH", "auto") != "off"
TestFailure = LabError


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def wait_for(cond, timeout, what, every=0.2):
    """Polls cond() until it is true; TestFailure naming `what` after timeout seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        time.sleep(every)
    raise TestFailure(f"timed out waiting for {what}")


def require_root():
    if os.geteuid() != 0:
        print("SKIP: integration tests need root (namespaces, XDP, AF_XDP)")
        sys.exit(SKIP)


def scenario_main(scenarios):
    """scenarios: {name: function}; runs sys.argv[1]; prints PASS or FAIL: why."""
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


class Dpsw(_dpsw.Dpsw):
    """The tests' dpsw: a small MAC table (size 4096, aging_s), the fast tier
    as DPSW_FAST_PATH says, worker(s) `workers` (default: worker_core()),
    extra_switch: more `switch:` keys (Python values). With uplink=True the
    host end of the uplink has IPv6 off (no router solicitations of the host
    on the outside segment)."""

    def __init__(self, networks, endpoints, name=None, aging_s=300, workers=None, extra_switch=None, uplink=False, netns=None):
        switch = {"mac_table": {"size": 4096, "aging_s": aging_s}}
        if workers is not None:
            switch["workers"] = list(workers)
        switch.update(extra_switch or {})
        switch.setdefault("fast_path", "auto" if FAST else "off")
        super().__init__(networks, endpoints, name=name, switch=switch, uplink=uplink, netns=netns)
        if uplink is True:
            try:
                sh("sysctl", "-qw", f"net.ipv6.conf.{self.uplink_if}.disable_ipv6=1")
            except BaseException:
                self.cleanup()
                raise
