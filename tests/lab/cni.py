"""Driving a CNI plugin as a container runtime does: CNI_* variables, the
network configuration on stdin, the result or error (JSON) on stdout. Used by
the CNI tests and by bench/cni (dpsw-cni against containernetworking-plugins'
bridge plugin)."""
import json
import os
import subprocess

from .env import BUILD
from .proc import LabError

DPSW_CNI = os.path.join(BUILD, "control", "dpsw-cni")


class Runtime:
    """A runtime with one network configuration (conf) and one plugin.
    in_ns: run the plugin inside that namespace of ours (the bridge plugin
    makes its bridge where it runs)."""

    def __init__(self, conf, plugin=DPSW_CNI, in_ns=None):
        self.conf, self.plugin, self.in_ns = conf, plugin, in_ns

    def call(self, command, container="", netns="", ifname="eth0", conf=None, stdin=None, cni_args=None, env=None):
        """Runs the plugin: (exit code, parsed stdout or None, stderr)."""
        e = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
        e.update({"CNI_COMMAND": command, "CNI_CONTAINERID": container, "CNI_NETNS": netns, "CNI_IFNAME": ifname,
                  "CNI_PATH": os.path.dirname(self.plugin)})
        if cni_args is not None:
            e["CNI_ARGS"] = cni_args
        e.update(env or {})
        text = stdin if stdin is not None else json.dumps(conf if conf is not None else self.conf)
        cmd = (["ip", "netns", "exec", self.in_ns] if self.in_ns else []) + [self.plugin]
        r = subprocess.run(cmd, input=text, env=e, capture_output=True, text=True, timeout=60)
        try:
            out = json.loads(r.stdout) if r.stdout.strip() else None
        except ValueError:
            raise LabError(f"{self.plugin} {command}: stdout is not JSON: {r.stdout!r} {r.stderr}")
        return r.returncode, out, r.stderr

    def ok(self, command, *a, **kw):
        rc, out, err = self.call(command, *a, **kw)
        if rc != 0:
            raise LabError(f"{command} failed ({rc}): {out} {err}")
        return out

    def fails(self, code, command, *a, **kw):
        rc, out, err = self.call(command, *a, **kw)
        if not (rc != 0 and out and out.get("code") == code and out.get("msg") and out.get("cniVersion")):
            raise LabError(f"{command} should fail with CNI code {code} (and say so in cniVersion/code/msg): rc {rc}, {out}, {err}")
        return out


def dpsw_conf(d, name="podnet", network="pods", version="1.0.0", **extra):
    """A network configuration naming dpsw-cni for dpsw `d` (the lab's Dpsw)."""
    return {"cniVersion": version, "name": name, "type": "dpsw-cni", "network": network, "socket": d.sock, **extra}
