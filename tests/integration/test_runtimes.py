#!/usr/bin/env python3
"""Real container runtimes attach their containers to dpsw (issue 17).

podman: Podman 4.3 with its CNI backend and a conflist naming dpsw-cni runs
two containers that ping each other through dpsw; `-p` answers from an
outside namespace with the client's address kept; `podman rm -f` leaves no
veth, no dpsw endpoint and no published port.

Podman is kept apart from the machine's own: its storage, run directory,
containers.conf (CONTAINERS_CONF) and CNI config directory are the test's.
Images are made offline from busybox-static (`podman import`). Machine facts
(this VM): crun refuses its hybrid cgroup layout, so runc runs the
containers; the sandbox grants no CAP_SYS_RESOURCE, so the containers'
rlimits are set no higher than the test's own (nofile) and a low nproc.
"""
import json
import os
import resource
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab.env import BUILD  # noqa: E402
from lab.proc import nsx, sh  # noqa: E402
from lab.testing import SKIP, Dpsw, check, scenario_main  # noqa: E402

PLUGIN_DIR = os.path.join(BUILD, "control")
NETS = [{"name": "pods", "subnet": "10.233.0.0/24"}]
HTTP_GET = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
print(data.decode(errors="replace"))
"""


def need(tool, package):
    if not shutil.which(tool):
        print(f"SKIP: {tool} is not installed (scripts/install-deps.sh installs {package})")
        sys.exit(SKIP)


class Podman:
    """podman with the test's own storage, configuration and CNI network `net` (dpsw network `network`)."""

    def __init__(self, d, net="dpswnet", network="pods"):
        need("podman", "podman")
        need("runc", "runc")
        need("busybox", "busybox-static")
        self.dir = tempfile.mkdtemp(prefix=f"dpsw-{d.name}-podman-")
        self.net = net
        os.makedirs(f"{self.dir}/net.d")
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        with open(f"{self.dir}/containers.conf", "w") as f:
            f.write(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", "nproc=1024:1024"]\n'
                    f'[network]\nnetwork_backend = "cni"\ncni_plugin_dirs = ["{PLUGIN_DIR}", "/usr/lib/cni"]\n'
                    f'network_config_dir = "{self.dir}/net.d"\n'
                    '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\nruntime = "runc"\n')
        # The conflist a user writes (README "Use with Podman"); cniVersion 1.0.0: Debian's libcni knows no newer.
        with open(f"{self.dir}/net.d/{net}.conflist", "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": net, "plugins": [
                {"type": "dpsw-cni", "network": network, "socket": d.sock, "capabilities": {"portMappings": True}}]}, f)
        self.env = dict(os.environ, CONTAINERS_CONF=f"{self.dir}/containers.conf")
        img = f"{self.dir}/img"
        os.makedirs(f"{img}/bin")
        os.makedirs(f"{img}/www")
        shutil.copy(shutil.which("busybox"), f"{img}/bin/busybox")
        for applet in ("sh", "ping", "sleep", "httpd", "ip", "cat"):
            os.symlink("busybox", f"{img}/bin/{applet}")
        with open(f"{img}/www/index.html", "w") as f:
            f.write("hello from a podman container\n")
        sh("tar", "-C", img, "-cf", f"{self.dir}/img.tar", ".")
        self("import", f"{self.dir}/img.tar", "localhost/dpsw-busybox")

    def __call__(self, *args, check_rc=True, timeout=120):
        return sh("podman", "--root", f"{self.dir}/root", "--runroot", f"{self.dir}/run", "--storage-driver", "overlay",
                  *args, check_rc=check_rc, timeout=timeout, env=self.env)

    def run(self, name, *cmd, publish=None):
        return self("run", "-d", "--name", name, "--network", self.net, *(["-p", publish] if publish else []),
                    "localhost/dpsw-busybox", *cmd).stdout.strip()

    def cleanup(self):
        self("rm", "-af", "-t", "0", check_rc=False)
        self("system", "reset", "-f", check_rc=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def cni_endpoints(d):
    return [e for e in d.ctl("show", "endpoints") if "cni.dpsw/container-id" in e.get("labels", {})]


def podman():
    with Dpsw(NETS, [], uplink=True) as d:
        d.start()
        pm = Podman(d)
        try:
            c1 = pm.run("c1", "sleep", "600")
            web = pm.run("web", "httpd", "-f", "-v", "-p", "80", "-h", "/www", publish="18080:80")
            eps = {e["labels"]["cni.dpsw/container-id"]: e for e in cni_endpoints(d)}
            check(set(eps) == {c1, web}, f"dpsw endpoints {list(eps)} are not the containers {c1} {web}")
            web_ip = eps[web]["attachments"][0]["ip"].split("/")[0]
            inspect = json.loads(pm("inspect", "web").stdout)[0]["NetworkSettings"]["Networks"]["dpswnet"]
            check(inspect["IPAddress"] == web_ip and inspect["Gateway"] == "10.233.0.1", f"podman's view: {inspect}")
            out = pm("exec", "c1", "ping", "-c", "3", "-W", "2", web_ip).stdout
            check(" 0% packet loss" in out, out)
            # Published: an outside client reaches the container at the host's address, and is seen as itself.
            page = nsx(d.ns("out"), "python3", "-c", HTTP_GET, d.HOST_IP, "18080").stdout
            check("hello from a podman container" in page, page)
            log = pm("logs", "web").stdout + pm("logs", "web").stderr
            check(d.OUTSIDE_IP in log, f"the container did not see the client {d.OUTSIDE_IP}: {log}")
            # Out through NAT.
            out = pm("exec", "c1", "ping", "-c", "2", "-W", "2", d.OUTSIDE_IP).stdout
            check(" 0% packet loss" in out, out)
            # podman rm -f: nothing of the containers is left in dpsw or on the machine.
            pm("rm", "-f", "-t", "0", "c1", "web")
            check(cni_endpoints(d) == [], f"endpoints left: {cni_endpoints(d)}")
            _, links = d.endpoint_links()
            check([l for l in links if not l.startswith(d.uplink_if)] == [], f"links left: {links}")
            r = nsx(d.ns("out"), "python3", "-c", HTTP_GET, d.HOST_IP, "18080", check_rc=False)
            check(r.returncode != 0, "the published port outlived the container")
            flows = [f for f in d.ctl("show", "conntrack") if web_ip in json.dumps(f)]
            check(flows == [], f"the container's flows outlived it: {flows}")
        finally:
            pm.cleanup()


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (podman,)})
