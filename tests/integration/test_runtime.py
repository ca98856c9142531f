#!/usr/bin/env python3
"""Runtime control: dpswctl add/del/reload while workers forward."""
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab.env import DPSWCTL  # noqa: E402
from lab.proc import sh  # noqa: E402
from lab.testing import Dpsw, check, scenario_main  # noqa: E402
from lab.traffic import ping, tcp_transfer_ns  # noqa: E402

NETS = [{"name": "a", "subnet": "10.210.1.0/24"}, {"name": "b", "subnet": "10.210.2.0/24"}]
EPS = [{"name": "c1", "networks": ["a"], "ip": "10.210.1.11"}, {"name": "c2", "networks": ["a"], "ip": "10.210.1.12"}]


def ctl_fail(d, *args):
    r = sh(DPSWCTL, "--socket", d.sock, *args, check_rc=False)
    check(r.returncode != 0, f"dpswctl {' '.join(args)} should have failed: {r.stdout}")
    return r.stderr.strip()


def state(d):
    """Everything a change could touch, without counters."""
    ports = [{k: v for k, v in p.items() if k != "counters"} for p in d.ctl("show", "ports")]
    macs = sorted((m["network"], m["mac"], m["port"]) for m in d.ctl("show", "mac"))
    return {"ports": ports, "networks": d.ctl("show", "networks"), "endpoints": d.ctl("show", "endpoints"), "macs": macs,
            "leftovers": d.leftovers()}


def ns_inode(d, ep):
    return os.stat(f"/var/run/netns/{d.ns(ep)}").st_ino


def verbs():
    with Dpsw(NETS[:1], EPS) as d:
        d.start()
        out = d.ctl("network", "add", "b", "--subnet", "10.210.2.0/24", "--mtu", "1400", "--internal", raw=True)
        check(out.strip() == "network b added", out)
        nets = {n["name"]: n for n in d.ctl("show", "networks")}
        check(nets["b"]["subnet"] == "10.210.2.0/24" and nets["b"]["mtu"] == 1400 and nets["b"]["internal"], str(nets))
        out = d.ctl("endpoint", "add", "x", "--network", "b", "--network", "a", "--ip", "10.210.2.7", raw=True)
        check("endpoint x added" in out and "eth0 on b: 10.210.2.7/24" in out and "eth1 on a: 10.210.1." in out, out)
        r = d.ctl("endpoint", "add", "y", "--network", "b")  # --json
        check(r["name"] == "y" and r["attachments"][0]["ip"] == "10.210.2.2/24", str(r))
        ping(d, "x", "10.210.2.2")  # new endpoints forward at once
        ping(d, "x", "10.210.1.12")
        d.run("x", "ip", "link", "show", "eth0")
        check("mtu 1400" in d.run("x", "ip", "link", "show", "eth0").stdout, "network MTU not applied")
        check(d.ctl("show", "conntrack") == [], "conntrack should be empty without NAT")
        check("no tracked connections" in d.ctl("show", "conntrack", raw=True), "conntrack table for people")
        check(d.ctl("endpoint", "del", "x", raw=True).strip() == "endpoint x removed", "endpoint del output")
        d.ctl("endpoint", "del", "y")
        check(not any(e["name"] in ("x", "y") for e in d.ctl("show", "endpoints")), "endpoints not removed")
        check(d.ctl("network", "del", "b", raw=True).strip() == "network b removed", "network del output")
        check([n["name"] for n in d.ctl("show", "networks")] == ["a"], "network not removed")
        ns, links = d.endpoint_links()
        check(sorted(ns) == sorted([d.ns("c1"), d.ns("c2")]) and len(links) == 2, f"removal left {ns} {links}")
        check(d.ctl("reload", raw=True).strip() == "reload: no changes", "reload of an unchanged file")
        ping(d, "c1", "10.210.1.12")


def rejected_changes_change_nothing():
    with Dpsw(NETS, EPS + [{"name": "side", "mode": "container:c1"}]) as d:
        d.start()
        ping(d, "c1", "10.210.1.12", count=1)
        before = state(d)
        errors = [
            (("endpoint", "add", "z", "--network", "nowhere"), "unknown network 'nowhere'"),
            (("endpoint", "add", "z", "--network", "a", "--ip", "10.210.1.12"), "already used by another endpoint"),
            (("endpoint", "add", "z", "--network", "a", "--ip", "10.210.1.1"), "gateway address"),
            (("endpoint", "add", "z", "--network", "a", "--ip", "banana"), "'banana' is not an IPv4 address"),
            (("endpoint", "add", "z", "--network", "a", "--colour", "red"), "colour: unknown key"),
            (("endpoint", "add", "c1", "--network", "a"), "endpoint 'c1' is defined twice"),
            (("endpoint", "add", "z", "--network", "a", "--netns", "/nonexistent/ns"), "does not exist"),
            (("endpoint", "del", "ghost"), "unknown endpoint 'ghost'"),
            (("endpoint", "del", "c1"), "is joined by 'side'"),
            (("network", "add", "n", "--subnet", "10.210.1.128/25"), "overlaps network 'a'"),
            (("network", "add", "n", "--subnet", "10.210.9.0/33"), "is not an IPv4 prefix"),
            (("network", "add", "a", "--subnet", "10.99.0.0/24"), "network 'a' is defined twice"),
            (("network", "del", "a"), "still has endpoints: c1, c2"),
            (("network", "del", "ghost"), "unknown network 'ghost'"),
            (("network", "frobnicate"), "expected add or del"),
        ]
        for args, want in errors:
            err = ctl_fail(d, *args)
            check(want in err, f"dpswctl {' '.join(args)}: expected '{want}' in: {err}")
        # A reload of a broken file, and of a switch change, are refused whole.
        bad = d.copy_config()
        d.network("b", bad)["subnet"] = "10.210.2.0/99"
        bad["endpoints"].append({"name": "extra", "networks": ["a"]})
        d.write_config(bad)
        check("10.210.2.0/99" in ctl_fail(d, "reload"), "reload of a bad file")
        bad = d.copy_config()
        bad["switch"]["mac_table"]["aging_s"] = 30
        d.endpoint("c2", bad)["name"] = "c9"
        d.write_config(bad)
        check("switch.mac_table.aging_s cannot change while dpsw runs" in ctl_fail(d, "reload"), "reload of a switch change")
        d.write_config()
        after = state(d)
        check(before == after, f"a rejected change changed state:\nbefore {before}\nafter  {after}")
        ping(d, "c1", "10.210.1.12", count=1)


def reload_applies_only_the_difference():
    with Dpsw(NETS, EPS + [{"name": "c3", "networks": ["b"]}]) as d:
        d.start()
        ping(d, "c1", "10.210.1.12", count=1)
        keep = {p["endpoint"]: p for p in d.ctl("show", "ports") if p["endpoint"] in ("c1", "c2")}
        inodes = {e: ns_inode(d, e) for e in ("c1", "c2")}
        cfg = d.copy_config()
        cfg["endpoints"].remove(d.endpoint("c3", cfg))
        d.network("b", cfg)["mtu"] = 1300
        cfg["endpoints"].append({"name": "c4", "networks": ["a", "b"]})
        d.write_config(cfg)
        r = d.ctl("reload")
        a = r["applied"]
        check(a["endpoints_added"] == ["c4"] and a["endpoints_removed"] == ["c3"] and a["networks_updated"] == ["b"]
              and a["networks_changed"] == [] and a["endpoints_changed"] == [], f"reload diff: {a}")
        now = {p["endpoint"]: p for p in d.ctl("show", "ports")}
        for e in ("c1", "c2"):
            same = {k: keep[e][k] for k in ("id", "name", "mac", "ip")} == {k: now[e][k] for k in ("id", "name", "mac", "ip")}
            check(same and ns_inode(d, e) == inodes[e], f"untouched {e} was recreated or renumbered: {keep[e]} -> {now[e]}")
        check(not os.path.exists(f"/var/run/netns/{d.ns('c3')}"), "removed endpoint's namespace is still there")
        check("mtu 1300" in d.run("c4", "ip", "link", "show", "eth1").stdout, "changed network's MTU not applied")
        c4_ip = [p["ip"] for p in d.ctl("show", "ports") if p["endpoint"] == "c4" and p["network"] == "a"][0]
        ping(d, "c1", c4_ip)
        ping(d, "c1", "10.210.1.12")


def zero_loss_during_churn():
    """A paced flow between two untouched containers loses nothing while other
    endpoints and networks are added and removed and the config is reloaded."""
    with Dpsw(NETS[:1], EPS) as d:
        d.start()
        ping(d, "c1", "10.210.1.12", count=1)
        count = 1000
        flow = d.popen("c1", "ping", "-i", "0.01", "-c", str(count), "-W", "1", "10.210.1.12",
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        changes = 0
        deadline = time.time() + 8
        i = 0
        while flow.poll() is None and time.time() < deadline:
            i += 1
            d.ctl("endpoint", "add", f"x{i}", "--network", "a")  # same network as the flow: floods, learning
            d.ctl("network", "add", f"n{i}", "--subnet", f"10.211.{i % 250}.0/24")
            d.ctl("endpoint", "add", f"y{i}", "--network", f"n{i}", "--network", "a")
            d.ctl("endpoint", "del", f"x{i}")
            d.ctl("endpoint", "del", f"y{i}")
            d.ctl("network", "del", f"n{i}")
            more = d.copy_config()
            more["endpoints"].append({"name": f"r{i}", "networks": ["a"]})
            d.write_config(more)
            d.ctl("reload")
            d.write_config()
            d.ctl("reload")
            changes += 8
        out = flow.communicate(timeout=30)[0]
        m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
        check(m is not None, out)
        sent, got = int(m.group(1)), int(m.group(2))
        print(f"{changes} changes applied while {sent} pings crossed; {got} answered")
        check(changes >= 16, f"too few changes happened during the flow ({changes})")
        check(sent == count and got == count, f"lost {sent - got} of {sent} pings during churn:\n{out[-400:]}")
        check(d.leftovers()[0] == [d.ns("c1"), d.ns("c2")] or sorted(d.leftovers()[0]) == sorted([d.ns("c1"), d.ns("c2")]),
              f"churn left namespaces: {d.leftovers()}")


def list_flags():
    """Flags whose config keys are lists (--allow, --publish, --network,
    --peer) repeat or take commas, and reach the daemon as lists (issue 14:
    --allow and --publish were always rejected, "expected a list")."""
    with Dpsw(NETS[:1], EPS, uplink=True) as d:
        d.start()
        d.ctl("network", "add", "n", "--subnet", "10.210.9.0/24", "--allow", "a")
        r = d.ctl("endpoint", "add", "x", "--network", "n", "--publish", "8080:80/tcp", "--publish", "5353:53/udp")
        ip = r["attachments"][0]["ip"].split("/")[0]
        check(r["publish"] == ["8080:80/tcp", "5353:53/udp"], f"publish: {r}")
        ping(d, "c1", ip)  # routed: n allows a
        peer = tcp_transfer_ns(d.ns("out"), d.ns("x"), Dpsw.HOST_IP, size=1 << 20, port=8080, listen_port=80)
        check(peer == Dpsw.OUTSIDE_IP, f"published port: the container saw {peer}")


def adopt_proc_netns_at_runtime():
    with Dpsw(NETS[:1], EPS) as d:
        d.start()
        holder = subprocess.Popen(["unshare", "--net", "sleep", "120"])  # a "container" handed over by PID
        try:
            time.sleep(0.3)
            path = f"/proc/{holder.pid}/ns/net"
            r = d.ctl("endpoint", "add", "handed", "--network", "a", "--netns", path)
            ip = r["attachments"][0]["ip"].split("/")[0]
            ping(d, "c1", ip)
            links = sh("nsenter", f"--net={path}", "ip", "-o", "link").stdout
            check("eth0" in links, links)
            d.ctl("endpoint", "del", "handed")
            links = sh("nsenter", f"--net={path}", "ip", "-o", "link").stdout
            check("eth0" not in links and ": lo:" in links, f"only what dpsw created should go: {links}")
            check(holder.poll() is None, "the adopted namespace's process should be untouched")
        finally:
            holder.kill()
            holder.wait()


def persisted_items_updates_and_handoff():
    """persist: true networks and endpoints come back after a restart and stay
    through a reload; `endpoint update` changes published ports in place (and
    what persists); a handoff endpoint's container end waits in dpsw's
    namespace until a runtime moves and configures it, then forwards."""
    with Dpsw(NETS[:1], EPS, uplink=True) as d:
        d.start()
        d.ctl("network", "add", "kept", "--subnet", "10.210.9.0/24", "--persist", "true")
        d.ctl("endpoint", "add", "held", "--network", "kept", "--persist", "true", "--label", "app=web", raw=True)
        check(d.ctl("show", "endpoints", "held")[0]["labels"] == {"app": "web"}, "labels")
        out = d.ctl("endpoint", "update", "held", "--publish", "18081:81/tcp", raw=True)
        check(out.strip() == "endpoint held updated", out)
        held = d.ctl("show", "endpoints", "held")
        ctl_fail(d, "endpoint", "update", "held", "--ip", "10.210.9.9")  # not in place
        check(d.ctl("show", "endpoints", "held") == held, "a refused update changed the endpoint")
        d.ctl("network", "add", "loose", "--subnet", "10.210.8.0/24")
        err = ctl_fail(d, "endpoint", "add", "x", "--network", "loose", "--persist", "true")
        check("added at runtime without persist" in err, err)
        d.ctl("network", "del", "loose")
        ctl_fail(d, "endpoint", "update", "nobody", "--publish", "1:1/tcp")
        d.ctl("reload")
        check([e["name"] for e in d.ctl("show", "endpoints")] == ["c1", "c2", "held"], "reload kept persisted items")
        before = d.ctl("show", "endpoints", "held")[0]
        d.stop()
        d.start()
        after = d.ctl("show", "endpoints", "held")[0]
        check(after["attachments"] == before["attachments"] and after["publish"] == ["18081:81/tcp"], f"{before} vs {after}")
        peer = tcp_transfer_ns(d.ns("out"), d.ns("held"), d.HOST_IP, size=1 << 20, port=18081, listen_port=81)
        check(peer == d.OUTSIDE_IP, f"published port after restart: peer {peer}")
        d.ctl("endpoint", "update", "held", "--publish", "none")
        check("publish" not in d.ctl("show", "endpoints", "held")[0], "publish none")
        # A refused deletion writes nothing: the network stays saved.
        saved = os.path.join(d.dir, f"{d.name}.persisted.json")
        check("still has endpoints" in ctl_fail(d, "network", "del", "kept"), "network del with an endpoint on it")
        check([n["name"] for n in json.load(open(saved))["networks"]] == ["kept"], "a refused network del changed the saved file")
        d.ctl("endpoint", "del", "held")
        d.ctl("network", "del", "kept")
        check(json.load(open(saved)) == {"networks": [], "endpoints": []}, "deleted items are still saved")
        d.stop()
        d.start()
        check([n["name"] for n in d.ctl("show", "networks")] == ["a"], "deleted persisted items came back")

        # Handoff: a runtime (here: this test) moves the container end and configures it.
        r = d.ctl("endpoint", "add", "moved", "--network", "a", "--handoff", "true")
        att = r["attachments"][0]
        check(att["ifname"].startswith("dh") and f"{att['ifname']}:" in sh("ip", "-o", "link").stdout, str(att))
        ns = d.made.netns(f"{d.name}-moved")
        sh("ip", "link", "set", att["ifname"], "netns", ns, "name", "eth0")
        sh("ip", "-n", ns, "addr", "add", att["ip"], "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", att["gateway"])
        check(sh("ip", "-n", ns, "link", "show", "eth0").stdout.count(att["mac"]) == 1, "MAC kept")
        ping(d, "c1", att["ip"].split("/")[0])
        d.ctl("endpoint", "del", "moved")
        check("eth0" not in sh("ip", "-n", ns, "-o", "link").stdout, "the moved end went with the endpoint")


if __name__ == "__main__":
    scenario_main({f.__name__: f for f in (verbs, rejected_changes_change_nothing, reload_applies_only_the_difference,
                                          zero_loss_during_churn, adopt_proc_netns_at_runtime, list_flags,
                                          persisted_items_updates_and_handoff)})
