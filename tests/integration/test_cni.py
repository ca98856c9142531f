#!/usr/bin/env python3
"""The CNI plugin (dpsw-cni) driven as a runtime drives it: CNI_* variables,
the network configuration on stdin, the result or error on stdout. Every
verb and the conformance cases of the issue; two namespaces attached through
it ping each other through dpsw; published ports from the portMappings
capability answer from an outside namespace."""
import json
import os
import signal
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab import cni  # noqa: E402
from lab.env import DPSWCTL  # noqa: E402
from lab.proc import nsx, sh  # noqa: E402
from lab.testing import Dpsw, check, scenario_main  # noqa: E402
from lab.traffic import ping_ns, tcp_transfer_ns  # noqa: E402

NETS = [{"name": "pods", "subnet": "10.230.0.0/24"}, {"name": "other", "subnet": "10.231.0.0/24"}]


class Runtime(cni.Runtime):
    """The lab's runtime against one dpsw, making container namespaces as runtimes do."""

    def __init__(self, d, **conf):
        super().__init__(cni.dpsw_conf(d, **conf))
        self.d = d

    def netns(self, tag):
        """A container's namespace as runtimes make it (a bind mount under /run/netns, nothing set up)."""
        name = self.d.made.netns(f"{self.d.name}-{tag}", setup=False)
        return name, f"/run/netns/{name}"


def ctl_fail(d, *args):
    r = sh(DPSWCTL, "--socket", d.sock, *args, check_rc=False)
    check(r.returncode != 0, f"dpswctl {' '.join(args)} should have failed: {r.stdout}")
    return r.stderr.strip()


def inside(ns, *cmd):
    return nsx(ns, *cmd).stdout


def addr_of(ns, ifname="eth0"):
    j = json.loads(inside(ns, "ip", "-j", "addr", "show", "dev", ifname))[0]
    return j["address"], [f'{a["local"]}/{a["prefixlen"]}' for a in j.get("addr_info", []) if a["family"] == "inet"]


def cni_endpoints(d):
    return [e for e in d.ctl("show", "endpoints") if any(k.startswith("cni.dpsw/") for k in e.get("labels", {}))]


def verbs_and_conformance():
    with Dpsw(NETS, []) as d:
        d.start()
        rt = Runtime(d)
        # VERSION: every version the plugin speaks; needs no daemon.
        v = rt.ok("VERSION", stdin='{"cniVersion":"0.4.0"}')
        check(v["supportedVersions"] == ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] and v["cniVersion"] == "0.4.0", str(v))
        rt.ok("STATUS", conf=dict(rt.conf, cniVersion="1.1.0"))
        rt.fails(50, "STATUS", conf=dict(rt.conf, cniVersion="1.1.0", network="nope"))
        rt.fails(1, "STATUS")  # a 1.1 verb: not for a 1.0.0 configuration

        # ADD in each result version: the result describes what is really in the namespace.
        made = {}
        for tag, version in (("c1", "1.0.0"), ("c2", "1.1.0"), ("c3", "0.4.0"), ("c4", "0.3.1")):
            ns, path = rt.netns(tag)
            res = rt.ok("ADD", f"id-{tag}", path, conf=dict(rt.conf, cniVersion=version))
            check(res["cniVersion"] == version, str(res))
            host, ctr = res["interfaces"]
            mac, addrs = addr_of(ns)
            check(ctr["name"] == "eth0" and ctr["sandbox"] == path and ctr["mac"] == mac, f"{version}: {res} vs {mac}")
            check(host["name"] and "sandbox" not in host, str(res))
            ip = res["ips"][0]
            check(addrs == [ip["address"]] and ip["gateway"] == "10.230.0.1" and ip["interface"] == 1, f"{res} vs {addrs}")
            check(("version" in ip) == version.startswith("0."), f"{version}: ips[].version only before 1.0: {ip}")
            check(("mtu" in ctr) == (version == "1.1.0"), f"{version}: interfaces[].mtu only in 1.1: {ctr}")
            check(res["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.230.0.1"}], str(res["routes"]))
            route = inside(ns, "ip", "route", "show", "default")
            check("via 10.230.0.1 dev eth0" in route, route)
            made[tag] = (ns, path, ip["address"].split("/")[0], res)
        # Two attached namespaces reach each other (and the gateway) through dpsw.
        ping_ns(made["c1"][0], made["c2"][2], expect=True)
        ping_ns(made["c4"][0], "10.230.0.1", expect=True)
        eps = cni_endpoints(d)
        check(len(eps) == 4 and all(e["labels"]["cni.dpsw/network"] == "podnet" for e in eps), str(eps))

        # A second ADD of the same attachment is an error and changes nothing.
        rt.fails(101, "ADD", "id-c1", made["c1"][1])
        check(addr_of(made["c1"][0])[1] == [made["c1"][3]["ips"][0]["address"]], "a refused ADD changed the container")
        check(len(cni_endpoints(d)) == 4, "a refused ADD changed dpsw")

        # CHECK: fine, then a lost address, a missing interface, an unknown container.
        c1ns, c1path = made["c1"][0], made["c1"][1]
        prev = dict(rt.conf, prevResult=made["c1"][3])
        rt.ok("CHECK", "id-c1", c1path, conf=prev)
        inside(c1ns, "ip", "addr", "flush", "dev", "eth0")
        out = rt.fails(102, "CHECK", "id-c1", c1path, conf=prev)
        check("address" in out["msg"], str(out))
        inside(c1ns, "ip", "link", "set", "eth0", "down")
        inside(c1ns, "ip", "link", "set", "eth0", "name", "renamed")
        out = rt.fails(102, "CHECK", "id-c1", c1path, conf=prev)
        check("missing" in out["msg"], str(out))
        rt.fails(3, "CHECK", "id-nobody", c1path, conf=prev)
        rt.fails(7, "CHECK", "id-c1", c1path)  # no prevResult

        # DEL: twice, for an unknown container, with no namespace, after the namespace is gone.
        check(rt.ok("DEL", "id-c1", c1path) is None, "DEL prints nothing")
        rt.ok("DEL", "id-c1", c1path)
        rt.ok("DEL", "id-nobody", "")
        rt.ok("DEL", "id-c3", "")
        sh("ip", "netns", "del", made["c2"][0])
        rt.ok("DEL", "id-c2", made["c2"][1])
        left = [e["labels"]["cni.dpsw/container-id"] for e in cni_endpoints(d)]
        check(left == ["id-c4"], f"after DEL: {left}")
        _, links = d.endpoint_links()
        check(len(links) == 1, f"DEL left links behind: {links}")

        # GC keeps the valid attachments of its own network only.
        _, p5 = rt.netns("c5")
        _, p6 = rt.netns("c6")
        rt.ok("ADD", "id-c5", p5)
        rt.ok("ADD", "id-c6", p6)
        _, p7 = rt.netns("c7")
        other = Runtime(d, name="othernet", network="other")
        other.ok("ADD", "id-c7", p7)
        rt.fails(7, "GC", conf=dict(rt.conf, cniVersion="1.1.0"))  # no list of valid attachments: nothing is removed
        rt.ok("GC", conf=dict(rt.conf, cniVersion="1.1.0", **{"cni.dev/valid-attachments": [{"containerID": "id-c5", "ifname": "eth0"}]}))
        left = sorted(e["labels"]["cni.dpsw/container-id"] for e in cni_endpoints(d))
        check(left == ["id-c5", "id-c7"], f"after GC: {left}")
        rt.ok("GC", conf=dict(rt.conf, cniVersion="1.1.0", **{"cni.dev/attachments": []}))  # libcni's key too
        left = sorted(e["labels"]["cni.dpsw/container-id"] for e in cni_endpoints(d))
        check(left == ["id-c7"], f"after the second GC: {left}")

        # Requested address and MAC (capabilities and CNI_ARGS).
        ns8, p8 = rt.netns("c8")
        res = rt.ok("ADD", "id-c8", p8, conf=dict(rt.conf, runtimeConfig={"ips": ["10.230.0.77/24"], "mac": "02:aa:bb:cc:dd:08"}))
        check(res["ips"][0]["address"] == "10.230.0.77/24" and addr_of(ns8) == ("02:aa:bb:cc:dd:08", ["10.230.0.77/24"]), str(res))
        _, p9 = rt.netns("c9")
        res = rt.ok("ADD", "id-c9", p9, ifname="net1", cni_args="IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.230.0.78")
        check(res["ips"][0]["address"] == "10.230.0.78/24" and res["interfaces"][1]["name"] == "net1", str(res))
        rt.fails(100, "ADD", "id-c10", p9, ifname="net2", cni_args="IP=10.230.0.78")  # taken: dpsw says so
        check("10.230.0.78" in rt.call("ADD", "id-c10", p9, ifname="net2", cni_args="IP=10.230.0.78")[1]["msg"], "dpsw's reason")

        # Bad input: each with its code, nothing attached.
        before = len(cni_endpoints(d))
        _, p = rt.netns("bad")
        rt.fails(6, "ADD", "id-bad", p, stdin="{not json")
        rt.fails(1, "ADD", "id-bad", p, conf=dict(rt.conf, cniVersion="0.2.0"))
        rt.fails(7, "ADD", "id-bad", p, conf={k: v for k, v in rt.conf.items() if k != "cniVersion"})
        rt.fails(7, "ADD", "id-bad", p, conf={k: v for k, v in rt.conf.items() if k != "name"})
        rt.fails(4, "ADD", "", p)
        rt.fails(4, "ADD", "id/bad", p)
        rt.fails(4, "ADD", "id-bad", "")
        rt.fails(4, "ADD", "id-bad", p, ifname="")
        rt.fails(4, "ADD", "id-bad", p, ifname="x" * 16)
        rt.fails(4, "ADD", "id-bad", p, env={"CNI_COMMAND": "FROB"})
        rt.fails(2, "ADD", "id-bad", p, conf=dict(rt.conf, ipam={"type": "host-local"}))
        rt.fails(2, "ADD", "id-bad", p, conf=dict(rt.conf, runtimeConfig={"ips": ["fd00::5/64"]}))
        rt.fails(2, "ADD", "id-bad", p, conf=dict(rt.conf, runtimeConfig={
            "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp", "hostIP": "127.0.0.1"}]}))
        rt.fails(7, "ADD", "id-bad", p, conf=dict(rt.conf, runtimeConfig={"portMappings": [{"hostPort": 0, "containerPort": 80}]}))
        rt.fails(100, "ADD", "id-bad", p, conf=dict(rt.conf, network="nope"))
        check(len(cni_endpoints(d)) == before and "eth0" not in inside(f"{d.name}-bad", "ip", "-o", "link"), "bad input attached something")

        # A stopped daemon: STATUS says not available, ADD and DEL say try again later (the runtime retries DEL).
        d.stop()
        rt.fails(50, "STATUS", conf=dict(rt.conf, cniVersion="1.1.0"))
        rt.fails(11, "ADD", "id-late", p)
        rt.fails(11, "DEL", "id-c8", p8)
        rt.fails(11, "CHECK", "id-c8", p8, conf=dict(rt.conf, prevResult=res))
        rt.ok("VERSION", stdin="")


def attachments_survive_restart():
    """Attachments are made again, with the same address and MAC, after a
    clean restart and after kill -9; a reload keeps them; one whose container
    went away while dpsw was down is dropped (logged), not a failed start."""
    with Dpsw(NETS, [{"name": "fixed", "networks": ["pods"]}]) as d:
        d.start()
        rt = Runtime(d)
        (a_ns, a), (b_ns, b) = rt.netns("a"), rt.netns("b")
        ra = rt.ok("ADD", "id-a", a)
        rt.ok("ADD", "id-b", b, conf=dict(rt.conf, runtimeConfig={"mac": "02:aa:00:00:00:0b"}))
        want = {ns: addr_of(ns) for ns in (a_ns, b_ns)}
        ip_b = want[b_ns][1][0].split("/")[0]
        ping_ns(a_ns, ip_b, expect=True)
        # A reload of a changed file keeps them; a file endpoint added now gets an address
        # of its own, which it must not take from them at the next start.
        d.config["endpoints"].append({"name": "late", "networks": ["pods"]})
        d.write_config()
        out = d.ctl("reload")
        check(len(cni_endpoints(d)) == 2 and d.ctl("show", "endpoints", "late"), f"reload dropped attachments: {out}")
        bad = d.copy_config()
        bad["endpoints"].append({"name": "clash", "networks": ["pods"], "ip": ip_b})
        d.write_config(bad)
        err = ctl_fail(d, "reload")
        check(f"{ip_b} is already used" in err, err)
        d.write_config()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            d.stop(sig)
            d.start()
            check({ns: addr_of(ns) for ns in (a_ns, b_ns)} == want, f"after {sig.name}: not the same interfaces")
            ping_ns(a_ns, ip_b, expect=True)
            rt.ok("CHECK", "id-a", a, conf=dict(rt.conf, prevResult=ra))
        rt.ok("DEL", "id-a", a)
        d.stop()
        d.start()
        left = [e["labels"]["cni.dpsw/container-id"] for e in cni_endpoints(d)]
        check(left == ["id-b"], f"a deleted attachment came back: {left}")
        d.stop()
        sh("ip", "netns", "del", b_ns)
        d.start()
        check(cni_endpoints(d) == [], "an attachment whose namespace is gone was made")
        check("cannot be made again, dropped" in d.read_log(), "the dropped attachment is not logged")
        d.stop()
        d.start()  # and it stays dropped
        check(cni_endpoints(d) == [] and d.read_log().count("cannot be made again, dropped") == 1, "dropped once and for all")


def parallel_adds():
    """Sixteen ADDs at once (different containers): all attached, distinct addresses, and all DELs leave nothing."""
    with Dpsw(NETS, []) as d:
        d.start()
        rt = Runtime(d)
        paths = {f"p{i}": rt.netns(f"p{i}") for i in range(16)}
        results, errors = {}, []

        def add(tag):
            rc, out, err = rt.call("ADD", f"id-{tag}", paths[tag][1])
            (results.__setitem__(tag, out) if rc == 0 else errors.append((tag, rc, out, err)))

        threads = [threading.Thread(target=add, args=(t,)) for t in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(not errors, f"parallel ADDs failed: {errors}")
        ips = {r["ips"][0]["address"] for r in results.values()}
        check(len(ips) == 16, f"addresses not distinct: {sorted(ips)}")
        ping_ns(paths["p0"][0], results["p15"]["ips"][0]["address"].split("/")[0], expect=True)
        threads = [threading.Thread(target=lambda t=t: rt.ok("DEL", f"id-{t}", paths[t][1])) for t in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        check(cni_endpoints(d) == [], "DEL left endpoints")
        _, links = d.endpoint_links()
        check(links == [], f"DEL left links: {links}")
        for tag, (ns, _) in paths.items():
            check("eth0" not in inside(ns, "ip", "-o", "link"), f"{tag} kept its interface")


def port_mappings():
    """The portMappings capability publishes on the uplink: an outside client reaches the container, its address kept."""
    with Dpsw(NETS, [], uplink=True) as d:
        d.start()
        rt = Runtime(d)
        ns, path = rt.netns("web")
        res = rt.ok("ADD", "id-web", path, conf=dict(rt.conf, runtimeConfig={
            "portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]}))
        ep = cni_endpoints(d)[0]
        check(ep["publish"] == ["18080:80/tcp"], str(ep))
        peer = tcp_transfer_ns(d.ns("out"), ns, d.HOST_IP, size=1 << 20, port=18080, listen_port=80)
        check(peer == d.OUTSIDE_IP, f"the container saw {peer}, not the client {d.OUTSIDE_IP}")
        # Out through NAT too (the default route the result names).
        check(res["routes"][0]["gw"] == "10.230.0.1", str(res))
        ping_ns(ns, d.OUTSIDE_IP, expect=True)
        rt.ok("DEL", "id-web", path)
        r = subprocess.run(["ip", "netns", "exec", d.ns("out"), "python3", "-c",
                            "import socket; s=socket.socket(); s.settimeout(2); s.connect(('%s', 18080))" % d.HOST_IP],
                           capture_output=True, text=True)
        check(r.returncode != 0, "the published port outlived DEL")


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (verbs_and_conformance, attachments_survive_restart, parallel_adds, port_mappings)})
