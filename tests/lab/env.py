"""Where the build is, and where things run."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("DPSW_BUILD", os.path.join(ROOT, "build"))
DPSW = os.path.join(BUILD, "control", "dpsw")
DPSWCTL = os.path.join(BUILD, "control", "dpswctl")
PKTGEN = os.path.join(BUILD, "bench", "dpsw-pktgen")
CONNRATE = os.path.join(BUILD, "bench", "dpsw-connrate")


def worker_core():
    """dpsw's worker core by default: core 1, leaving core 0 to the kernel side
    (ping, iperf3, the generator, the test itself); core 0 on a 1-CPU machine."""
    return 1 if (os.cpu_count() or 1) > 1 else 0


def kernel_core():
    """The core left to the kernel side (ping, iperf3, the generator): core 0.
    On a 1-CPU machine it is also worker_core()."""
    return 0
