"""A dpsw process started from a configuration given as Python data.

The configuration is a dict shaped like the YAML file (SPEC section 3),
rendered with PyYAML: `Dpsw.config` is that dict, `write_config()` writes
it (or a changed copy, or raw text for files that must be broken on purpose).
"""
import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import yaml

from . import topo
from .env import DPSW, DPSWCTL, worker_core
from .proc import LabError, ns_popen, sh


class _Dumper(yaml.SafeDumper):
    """Block mappings, sequences indented under their key ("  - name: a"),
    lists of scalars in flow style ("networks: [a, b]")."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _represent_list(dumper, data):
    flow = all(not isinstance(x, (dict, list, tuple)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(tuple, _represent_list)


def render_config(cfg):
    """The YAML text of a configuration dict (keys in the order given)."""
    return yaml.dump(cfg, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1 << 16)


class Dpsw:
    """One dpsw instance: its configuration, its process, its control socket.

    name: the instance name (at most 6 characters; default a new per-run
    prefix "t" + 4 hex digits); dpsw names every namespace and link it makes
    NAME-..., and cleanup() removes whatever is left with that prefix.
    networks, endpoints: the lists of the config file; endpoints may be a
    function of the instance's directory (for vhost_socket paths).
    switch: keys of `switch:` besides name, control_socket and state_dir
    (workers defaults to [worker_core()]); nothing else is implied.
    uplink: True = an outside namespace of our own (NAME-out, OUTSIDE_IP)
    behind a new veth NAME-up that dpsw uses as its uplink at HOST_IP; or a
    dict {interface, address, gateway?} naming an existing interface (e.g.
    an underlay link). netns: run dpsw in that namespace (dpsw --netns)."""
    OUTSIDE_IP, HOST_IP = topo.OUTSIDE_IP, topo.HOST_IP

    def __init__(self, networks, endpoints, name=None, switch=None, uplink=False, netns=None):
        self.name = name or topo.new_prefix("t")
        self.dir = tempfile.mkdtemp(prefix=f"dpsw-{self.name}-")
        self.sock = os.path.join(self.dir, "ctl.sock")
        self.cfg_path = os.path.join(self.dir, "dpsw.yaml")
        self.log_path = os.path.join(self.dir, "dpsw.log")
        self.proc = None
        self.netns = netns
        self.made = topo.Topology(self.name + "-")  # what the lab makes for this instance (the outside)
        sw = {"name": self.name, "workers": [worker_core()], "control_socket": self.sock, "state_dir": self.dir,
              "persist_dir": self.dir}
        sw.update(switch or {})
        self.config = {"switch": sw}
        if isinstance(uplink, dict):
            self.uplink_if = uplink["interface"]
            self.config["uplink"] = {"port": {"kind": "afxdp", "interface": self.uplink_if}, "address": uplink["address"]}
            if uplink.get("gateway"):
                self.config["uplink"]["gateway"] = uplink["gateway"]
        elif uplink:
            self.uplink_if = f"{self.name}-up"
            try:
                self.made.outside(self.ns("out"), self.uplink_if)
            except BaseException:
                self.cleanup()
                raise
            self.config["uplink"] = {"port": {"kind": "afxdp", "interface": self.uplink_if},
                                     "address": topo.HOST_IP + "/24", "gateway": topo.OUTSIDE_IP}
        # Copies: a test changing self.config changes no module-level list of its own.
        self.config["networks"] = copy.deepcopy(list(networks))
        self.config["endpoints"] = copy.deepcopy(list(endpoints(self.dir) if callable(endpoints) else endpoints))
        self.write_config()

    # ---- configuration ----
    def write_config(self, cfg=None):
        """Writes the config file: self.config (default), another dict, or text as is."""
        text = cfg if isinstance(cfg, (str, bytes)) else render_config(self.config if cfg is None else cfg)
        with open(self.cfg_path, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)

    def copy_config(self):
        """A deep copy of self.config to change and write_config() (self.config stays the base)."""
        return copy.deepcopy(self.config)

    def endpoint(self, name, cfg=None):
        """Endpoint `name` of cfg (default self.config): its dict, to change."""
        return self._entry(cfg, "endpoints", name)

    def network(self, name, cfg=None):
        """Network `name` of cfg (default self.config): its dict, to change."""
        return self._entry(cfg, "networks", name)

    def _entry(self, cfg, key, name):
        for x in (self.config if cfg is None else cfg)[key]:
            if x["name"] == name:
                return x
        raise LabError(f"no {key} entry '{name}' in the config")

    # ---- process ----
    def start(self, timeout=20):
        """Starts dpsw and waits until its control socket accepts connections."""
        cmd = [DPSW, "--config", self.cfg_path] + (["--netns", self.netns] if self.netns else [])
        with open(self.log_path, "a") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise LabError(f"dpsw exited with {self.proc.returncode}:\n{self.read_log()}")
            if os.path.exists(self.sock):
                try:
                    s = socket.socket(socket.AF_UNIX)
                    s.connect(self.sock)
                    s.close()
                    return self
                except OSError:
                    pass
            time.sleep(0.05)
        raise LabError("dpsw did not become ready:\n" + self.read_log())

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Sends sig and waits; returns the exit code (None if never started)."""
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise LabError("dpsw did not stop within %ds" % timeout)

    def read_log(self):
        try:
            with open(self.log_path) as f:
                return f.read()
        except OSError:
            return ""

    # ---- control ----
    def ctl(self, *args, raw=False):
        """dpswctl ARGS: parsed --json output, or the text (raw)."""
        cmd = [DPSWCTL, "--socket", self.sock] + ([] if raw else ["--json"]) + list(args)
        r = sh(*cmd)
        return r.stdout if raw else json.loads(r.stdout)

    def counters(self):
        return self.ctl("show", "counters")

    def port_of(self, endpoint, network):
        for p in self.ctl("show", "ports"):
            if p["endpoint"] == endpoint and p["network"] == network:
                return p
        raise LabError(f"no port for {endpoint} on {network}")

    def ports(self):
        """`show ports` without the fast tier's punt ports."""
        return [p for p in self.ctl("show", "ports") if p["kind"] != "punt"]

    # ---- namespaces ----
    def ns(self, endpoint):
        """The namespace of an endpoint dpsw created (or of ours: "out")."""
        return f"{self.name}-{endpoint}"

    def run(self, endpoint, *cmd, check_rc=True, timeout=60):
        return sh("ip", "netns", "exec", self.ns(endpoint), *cmd, check_rc=check_rc, timeout=timeout)

    def popen(self, endpoint, *cmd, **kw):
        return ns_popen(self.ns(endpoint), *cmd, **kw)

    def leftovers(self):
        """Namespaces, links and XDP programs that carry this instance's prefix."""
        return topo.prefixed(self.name + "-")

    def endpoint_links(self):
        """leftovers() without the fast tier's punt veths (one pair per worker)."""
        ns, links = self.leftovers()
        return ns, [l for l in links if not re.search(r"-puntx?\d+\b", l)]

    def cleanup(self):
        """Ends dpsw (SIGTERM first: it removes what it made), then removes
        whatever carries the prefix, and the instance's directory."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(f"/var/run/dpdk/dpsw-{self.name}", ignore_errors=True)
        self.made.teardown()
        topo.remove_prefixed(self.name + "-")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None and self.proc is not None:
            print("---- dpsw log ----\n" + self.read_log(), file=sys.stderr)
        self.cleanup()
        return False
