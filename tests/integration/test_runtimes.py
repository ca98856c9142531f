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
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab.env import BUILD  # noqa: E402
from lab.proc import nsx, sh, spawn  # noqa: E402
from lab.testing import SKIP, Dpsw, check, scenario_main, wait_for  # noqa: E402

PLUGIN_DIR = os.path.join(BUILD, "control")
DPSW_DOCKER = os.path.join(BUILD, "control", "dpsw-docker")
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
        self("import", busybox_image(self.dir), "localhost/dpsw-busybox")

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


def busybox_image(dir, applets=("sh", "ping", "sleep", "httpd", "ip", "cat", "nslookup")):
    """A root filesystem tarball of busybox-static with `applets` and /www/index.html."""
    img = f"{dir}/img"
    os.makedirs(f"{img}/bin")
    os.makedirs(f"{img}/www")
    os.makedirs(f"{img}/etc")
    shutil.copy(shutil.which("busybox"), f"{img}/bin/busybox")
    for applet in applets:
        os.symlink("busybox", f"{img}/bin/{applet}")
    with open(f"{img}/www/index.html", "w") as f:
        f.write("hello from a container\n")
    sh("tar", "-C", img, "-cf", f"{dir}/img.tar", ".")
    return f"{dir}/img.tar"


class Docker:
    """dockerd of our own (its sockets, data, exec root and pidfile in a
    directory of the test; no bridge, iptables or forwarding of its own, as
    in ../shared/notes/runtimes.md) and dpsw-docker serving the driver named
    after the dpsw instance, so that two runs never share a plugin socket."""

    def __init__(self, d):
        need("dockerd", "docker.io")
        need("busybox", "busybox-static")
        if not os.access(DPSW_DOCKER, os.X_OK):
            print(f"SKIP: {DPSW_DOCKER} was not built (libmicrohttpd-dev missing)")
            sys.exit(SKIP)
        self.d = d
        self.driver = d.name
        self.dir = tempfile.mkdtemp(prefix=f"dpsw-{d.name}-docker-")
        self.sock = f"{self.dir}/docker.sock"
        self.plugin = f"/run/docker/plugins/{self.driver}.sock"
        self.dockerd = self.drv = None
        try:
            self.start_driver()
            self.start_dockerd()
            self("import", busybox_image(self.dir), "dpsw-busybox")
        except BaseException:
            self.cleanup()
            raise

    def start_driver(self):
        self.drv_log = open(f"{self.dir}/dpsw-docker.log", "a")
        self.drv = spawn(DPSW_DOCKER, "--socket", self.d.sock, "--name", self.driver, "-v", stdout=self.drv_log, stderr=subprocess.STDOUT)
        wait_for(lambda: os.path.exists(self.plugin), 10, "dpsw-docker to serve " + self.plugin)

    def start_dockerd(self):
        self.log = open(f"{self.dir}/dockerd.log", "a")
        self.dockerd = spawn("dockerd", "-H", f"unix://{self.sock}", "--data-root", f"{self.dir}/root", "--exec-root", f"{self.dir}/exec",
                             "--pidfile", f"{self.dir}/docker.pid", "--bridge=none", "--iptables=false", "--ip6tables=false",
                             "--ip-forward=false", stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self("info", check_rc=False).returncode == 0, 60, "dockerd to start (its log is printed below)")

    def stop_dockerd(self):
        if self.dockerd and self.dockerd.poll() is None:
            self.dockerd.terminate()
            try:
                self.dockerd.wait(60)
            except subprocess.TimeoutExpired:
                self.dockerd.kill()
                self.dockerd.wait()

    def __call__(self, *args, check_rc=True, timeout=120):
        return sh("/usr/bin/docker", "-H", f"unix://{self.sock}", *args, check_rc=check_rc, timeout=timeout)

    def read(self, name):
        try:
            with open(f"{self.dir}/{name}") as f:
                return f.read()
        except OSError:
            return ""

    def print_logs(self):
        """dockerd's and dpsw-docker's logs (their ends) on stderr, for a failed test."""
        print("---- dockerd log ----\n" + self.read("dockerd.log")[-6000:] + "\n---- dpsw-docker log ----\n" +
              self.read("dpsw-docker.log")[-4000:], file=sys.stderr)

    def cleanup(self):
        if self.dockerd and self.dockerd.poll() is None:
            self("rm", "-f", *self("ps", "-aq", check_rc=False).stdout.split(), check_rc=False)
            self.stop_dockerd()
        if self.drv and self.drv.poll() is None:
            self.drv.terminate()
            self.drv.wait(10)
        # What dockerd may leave mounted under its directories after a failure.
        for line in reversed(open("/proc/self/mounts").read().splitlines()):
            mnt = line.split()[1]
            if mnt.startswith(self.dir):
                sh("umount", "-l", mnt, check_rc=False)
        shutil.rmtree(self.dir, ignore_errors=True)


def docker_endpoints(d):
    return [e for e in d.ctl("show", "endpoints") if "docker.dpsw/endpoint-id" in e.get("labels", {})]


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
            check("hello from a container" in page, page)
            r = pm("logs", "web")
            log = r.stdout + r.stderr  # httpd -v logs to stderr
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


def docker():
    """docker network create -d dpsw: two containers reach each other by name
    (Docker's own DNS), -p answers an outside client that the container sees
    as itself, and docker rm -f / network rm leave nothing in dpsw or on the machine."""
    with Dpsw([], [], uplink=True) as d:
        d.start()
        dk = Docker(d)
        try:
            dk("network", "create", "-d", dk.driver, "--subnet", "10.235.0.0/24", "--gateway", "10.235.0.1",
               "-o", "dpsw.mtu=1450", "dnet")
            nid = dk("network", "inspect", "-f", "{{.Id}}", "dnet").stdout.strip()
            nets = {n["name"]: n for n in d.ctl("show", "networks")}
            net = nets.get("dk-" + nid[:12])
            check(net and net["subnet"] == "10.235.0.0/24" and net["gateway"] == "10.235.0.1" and net["mtu"] == 1450, str(nets))
            for c in ("c1", "c2"):
                dk("run", "-d", "--name", c, "--network", "dnet", "dpsw-busybox", "sleep", "600")
            dk("run", "-d", "--name", "web", "--network", "dnet", "-p", "18080:80", "dpsw-busybox", "httpd", "-f", "-v", "-p", "80", "-h", "/www")
            eps = docker_endpoints(d)
            check(len(eps) == 3, f"dpsw endpoints: {eps}")
            ip = dk("inspect", "-f", "{{.NetworkSettings.Networks.dnet.IPAddress}}", "c2").stdout.strip()
            check(any(e["attachments"][0]["ip"] == ip + "/24" for e in eps), f"Docker's address {ip} is not dpsw's: {eps}")
            link = dk("exec", "c1", "ip", "link", "show", "eth0").stdout
            check("mtu 1450" in link, link)
            out = dk("exec", "c1", "ping", "-c", "3", "-W", "2", "c2").stdout  # by name: Docker's embedded DNS
            check(" 0% packet loss" in out and ip in out, out)
            out = dk("exec", "c1", "ping", "-c", "2", "-W", "2", d.OUTSIDE_IP).stdout  # out through NAT
            check(" 0% packet loss" in out, out)
            page = nsx(d.ns("out"), "python3", "-c", HTTP_GET, d.HOST_IP, "18080").stdout
            check("hello from a container" in page, page)
            r = dk("logs", "web")
            logs = r.stdout + r.stderr
            check(d.OUTSIDE_IP in logs, f"the container did not see the client {d.OUTSIDE_IP}: {logs}")
            web_ip = dk("inspect", "-f", "{{.NetworkSettings.Networks.dnet.IPAddress}}", "web").stdout.strip()
            dk("rm", "-f", "c1", "c2", "web")
            check(docker_endpoints(d) == [], f"endpoints left: {docker_endpoints(d)}")
            _, links = d.endpoint_links()
            check([l for l in links if not l.startswith(d.uplink_if)] == [], f"links left: {links}")
            check(not [l for l in sh("ip", "-o", "link").stdout.splitlines() if ": dh" in l], "a handoff end was left")
            r = nsx(d.ns("out"), "python3", "-c", HTTP_GET, d.HOST_IP, "18080", check_rc=False)
            check(r.returncode != 0, "the published port outlived the container")
            check([f for f in d.ctl("show", "conntrack") if web_ip in json.dumps(f)] == [], "the container's flows outlived it")
            dk("network", "rm", "dnet")
            check([n["name"] for n in d.ctl("show", "networks")] == [], "the network outlived docker network rm")
        except BaseException:
            dk.print_logs()
            raise
        finally:
            dk.cleanup()


def docker_restarts():
    """dpsw restarted under running containers, then dockerd restarted:
    the containers (restart policy always) get their network back, and what
    dpsw made again for the old endpoints is removed by Docker's own
    teardown: nothing leaks."""
    with Dpsw([], [], uplink=True) as d:
        d.start()
        dk = Docker(d)
        try:
            dk("network", "create", "-d", dk.driver, "--subnet", "10.236.0.0/24", "dnet")
            for c in ("c1", "c2"):
                dk("run", "-d", "--restart", "always", "--name", c, "--network", "dnet", "dpsw-busybox", "sleep", "600")
            out = dk("exec", "c1", "ping", "-c", "2", "-W", "2", "c2").stdout
            check(" 0% packet loss" in out, out)
            d.stop()
            d.start()
            check(len(docker_endpoints(d)) == 2 and len(d.ctl("show", "networks")) == 1, "dpsw did not keep Docker's network and endpoints")
            dk.stop_dockerd()
            dk.start_dockerd()
            wait_for(lambda: dk("ps", "-q", "--filter", "status=running", check_rc=False).stdout.split().__len__() == 2, 60,
                     "the containers to come back")
            out = dk("exec", "c1", "ping", "-c", "3", "-W", "2", "c2").stdout
            check(" 0% packet loss" in out, out)
            eps = docker_endpoints(d)
            check(len(eps) == 2, f"endpoints leaked or missing: {[e['name'] for e in eps]}")
            _, links = d.endpoint_links()
            check(len([l for l in links if not l.startswith(d.uplink_if)]) == 2, f"links: {links}")
            check(not [l for l in sh("ip", "-o", "link").stdout.splitlines() if ": dh" in l], "a handoff end was left behind")
            dk("rm", "-f", "c1", "c2")
            dk("network", "rm", "dnet")
            check(docker_endpoints(d) == [] and d.ctl("show", "networks") == [], "left after rm")
        except BaseException:
            dk.print_logs()
            raise
        finally:
            dk.cleanup()


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (podman, docker, docker_restarts)})
