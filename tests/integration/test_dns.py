#!/usr/bin/env python3
"""The embedded DNS responder (issue 16): names, aliases and reverse names
answered at each network's gateway, scoped like Docker's user-defined
networks, checked with real clients (glibc's resolver through getent and
ping, dig) and with malformed queries sent as raw datagrams."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # tests/: the lab package
from lab.testing import FAST, Dpsw, check, scenario_main, wait_for  # noqa: E402

OUT, HOST = Dpsw.OUTSIDE_IP, Dpsw.HOST_IP

NETS = [{"name": "front", "subnet": "10.243.1.0/24"}, {"name": "back", "subnet": "10.243.2.0/24"}]
GW_FRONT, GW_BACK = "10.243.1.1", "10.243.2.1"
EPS = [
    {"name": "web", "networks": ["front"], "ip": "10.243.1.10", "aliases": ["www", "Shop.Example"]},
    {"name": "db", "networks": ["front"], "ip": "10.243.1.11", "aliases": ["shared"]},
    {"name": "cache", "networks": ["front"], "ip": "10.243.1.12", "aliases": ["shared"]},
    {"name": "other", "networks": ["back"], "ip": "10.243.2.10"},
    {"name": "both", "networks": ["front", "back"], "ip": "10.243.1.20"},
]

# Raw queries: `python3 -c RAW SERVER HEX` sends the bytes to SERVER:53 and
# prints the answer's rcode, flags and counts ("none" when nothing came).
RAW = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1.5)
s.sendto(bytes.fromhex(sys.argv[2]), (sys.argv[1], 53))
try:
    r = s.recv(4096)
except socket.timeout:
    print("none"); sys.exit()
ext = r[-6] if r[11] and len(r) >= 23 else 0  # the OPT record (last) carries the rcode's upper bits
print("rcode=%d qr=%d id=%s qd=%d an=%d ar=%d ext=%d" % (r[3] & 15, r[2] >> 7, r[:2].hex(), r[5], r[7], r[11], ext))
"""


UDP_ECHO = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 53))
while True:
    m, a = s.recvfrom(2048); s.sendto(b"echo:" + m, a)
"""
UDP_ASK = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
for _ in range(3):
    s.sendto(b"hello", (sys.argv[1], 53))
    try:
        print(s.recv(2048).decode()); break
    except socket.timeout:
        pass
else:
    print("none")
"""


def dig(d, ep, *args):
    """dig at the endpoint's first gateway; returns (status, [answer lines])."""
    out = d.run(ep, "dig", "+tries=1", "+time=2", *args, check_rc=False).stdout
    status = next((l.split("status: ")[1].split(",")[0] for l in out.splitlines() if "status: " in l), "none")
    answers = [l.split() for l in out.split(";; ANSWER SECTION:\n")[1].split("\n\n")[0].splitlines()] if ";; ANSWER SECTION:" in out else []
    return status, answers


def addrs(answers, rtype="A"):
    return sorted(a[4] for a in answers if a[3] == rtype)


def raw(d, ep, server, hexq):
    return d.run(ep, "python3", "-c", RAW, server, hexq).stdout.strip()


def q(name, qtype=1, qd=1, flags=0x0100, extra=b"", qclass=1):
    """A query in wire format (hex)."""
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.split(".") if l) + b"\0"
    body = wire + qtype.to_bytes(2, "big") + qclass.to_bytes(2, "big")
    return (b"\x12\x34" + flags.to_bytes(2, "big") + qd.to_bytes(2, "big") + b"\0\0\0\0" + (b"\0\1" if extra else b"\0\0") + body + extra).hex()


def names_and_records():
    with Dpsw(NETS, EPS) as d:
        d.start()
        # Namespaces dpsw made are pointed at their gateway.
        conf = d.run("web", "cat", "/etc/resolv.conf").stdout
        check(f"nameserver {GW_FRONT}" in conf and "dpsw" in conf, f"resolv.conf in web's namespace: {conf!r}")
        check(f"nameserver {GW_FRONT}" in d.run("both", "cat", "/etc/resolv.conf").stdout, "both: its first network's gateway")
        # glibc's resolver: names, aliases, case, NAME.NETWORK; ping by name.
        for name, ip in [("db", "10.243.1.11"), ("DB", "10.243.1.11"), ("www", "10.243.1.10"), ("shop.example", "10.243.1.10"),
                         ("web.front", "10.243.1.10"), ("both", "10.243.1.20")]:
            out = d.run("cache", "getent", "hosts", name, check_rc=False).stdout.split()
            check(out[:1] == [ip], f"getent hosts {name} from cache: {out}")
        d.run("web", "ping", "-c", "1", "-W", "2", "db")
        # Scope: other shares no network with web; both shares back with it.
        r = d.run("web", "getent", "hosts", "other", check_rc=False)
        check(r.returncode != 0, f"web must not resolve other (no shared network): {r.stdout}")
        st, an = dig(d, "both", f"@{GW_FRONT}", "other")
        check(st == "NOERROR" and addrs(an) == ["10.243.2.10"], f"both resolves other through its shared network: {st} {an}")
        st, an = dig(d, "other", f"@{GW_BACK}", "both")
        check(addrs(an) == ["10.243.2.2"] or (st == "NOERROR" and len(addrs(an)) == 1 and addrs(an)[0].startswith("10.243.2.")),
              f"other sees both's address on back: {st} {an}")
        # Plain A queries (no EDNS) for a name with one address on the asker's network: the kernel tier
        # answers them itself (fast tier), the question echoed as asked; the same answer either way.
        k0 = d.counters()["dns"]["answered_in_kernel"]
        st, an = dig(d, "cache", f"@{GW_FRONT}", "+noedns", "WeB.FrOnT")
        check(st == "NOERROR" and an == [["WeB.FrOnT.", "600", "IN", "A", "10.243.1.10"]], f"plain A query: {st} {an}")
        check(raw(d, "cache", GW_FRONT, q("Shop.Example")).startswith("rcode=0 qr=1 id=1234 qd=1 an=1 ar=0"), "raw plain A query")
        st, an = dig(d, "cache", f"@{GW_FRONT}", "+noedns", "shared")
        check(addrs(an) == ["10.243.1.11", "10.243.1.12"], f"two addresses (dpsw's worker answers): {an}")
        # With full checksums (TX offload off: the one place this test turns it off, to show both
        # work), names of odd and even length: the answer's UDP checksum is verified by the receiver.
        d.run("cache", "ethtool", "-K", "eth0", "tx", "off")
        for name, ip in [("WeB.FrOnT", "10.243.1.10"), ("db.front", "10.243.1.11")]:
            st, an = dig(d, "cache", f"@{GW_FRONT}", "+noedns", name)
            check(st == "NOERROR" and addrs(an) == [ip], f"{name} with a full checksum: {st} {an}")
        d.run("cache", "ethtool", "-K", "eth0", "tx", "on")
        st, an = dig(d, "cache", f"@{GW_FRONT}", "+noedns", "db.front")
        check(st == "NOERROR" and addrs(an) == ["10.243.1.11"], f"db.front with a partial checksum: {st} {an}")
        k = d.counters()["dns"]["answered_in_kernel"] - k0
        check(k == 5 if FAST else k == 0, f"answered in the kernel: {k}")
        # An alias on two endpoints answers both; AAAA of a known name: NODATA.
        st, an = dig(d, "web", f"@{GW_FRONT}", "shared")
        check(st == "NOERROR" and addrs(an) == ["10.243.1.11", "10.243.1.12"], f"shared alias: {st} {an}")
        check(all(int(a[1]) == 600 for a in an), f"TTL 600 (Docker's): {an}")
        st, an = dig(d, "web", f"@{GW_FRONT}", "AAAA", "db")
        check(st == "NOERROR" and an == [], f"AAAA of db: NODATA, got {st} {an}")
        # Reverse: an endpoint's address, an unused one of the subnet.
        st, an = dig(d, "db", f"@{GW_FRONT}", "-x", "10.243.1.10")
        check(st == "NOERROR" and [a[4] for a in an] == ["web.front."], f"PTR of web: {st} {an}")
        check(d.run("db", "getent", "hosts", "10.243.1.10").stdout.split()[1:2] == ["web.front"], "getent reverse")
        st, an = dig(d, "db", f"@{GW_FRONT}", "-x", "10.243.1.200")
        check(st == "NXDOMAIN", f"PTR of an unused address of the subnet: {st}")
        # Another class: REFUSED. Malformed queries: FORMERR, never a crash.
        st, _ = dig(d, "db", f"@{GW_FRONT}", "-c", "CH", "TXT", "version.bind")
        check(st == "REFUSED", f"CHAOS class: {st}")
        check(raw(d, "db", GW_FRONT, q("db", qd=2)).startswith("rcode=1 qr=1 id=1234"), "QDCOUNT 2: FORMERR")
        loop = "123401000001000000000000" + "c00c00010001"  # a name that is a pointer to itself
        check(raw(d, "db", GW_FRONT, loop).startswith("rcode=1 "), "compression loop: FORMERR")
        check(raw(d, "db", GW_FRONT, q("db")[:30]).startswith("rcode=1 "), "truncated question: FORMERR")
        opt_v1 = b"\0" + (41).to_bytes(2, "big") + (1232).to_bytes(2, "big") + b"\0\1\0\0" + b"\0\0"  # EDNS version 1
        r = raw(d, "db", GW_FRONT, q("db", extra=opt_v1))
        check(" an=0 ar=1 ext=1" in r, f"EDNS version 1: BADVERS (16 = extended 1, header 0) in an OPT record: {r}")
        check(raw(d, "db", GW_FRONT, q("db", flags=0x8100)) == "none", "a response is never answered")
        check(raw(d, "db", GW_FRONT, "1234") == "none", "shorter than a header: no answer")
        check(raw(d, "db", GW_FRONT, q("db", flags=0x2900)).startswith("rcode=4 "), "opcode UPDATE: NOTIMP")
        check(raw(d, "db", GW_FRONT, q("db")).startswith("rcode=0 qr=1 id=1234 qd=1 an=1"), "the responder survived all that")
        c = d.counters()["dns"]
        check(c["queries"] >= 20 and c["answered"] >= 8 and c["nxdomain"] >= 1 and c["errors"] >= 4 and c["nodata"] >= 1, f"counters: {c}")
        drops = d.port_of("db", "front")["counters"]["drops"]
        check(drops.get("dns_bad", 0) >= 2, f"not-queries counted as dns_bad: {drops}")
        rows = d.ctl("show", "dns")
        check({"name": "www", "network": "front", "address": "10.243.1.10"} in rows, f"show dns: {rows[:5]}")


def follows_changes():
    with Dpsw(NETS, EPS[:2]) as d:
        d.start()
        st, _ = dig(d, "web", f"@{GW_FRONT}", "late")
        check(st == "SERVFAIL", f"late does not exist yet (not ours, and no upstream without an uplink): {st}")
        d.ctl("endpoint", "add", "late", "--network", "front", "--ip", "10.243.1.30")
        st, an = dig(d, "web", f"@{GW_FRONT}", "late")
        check(st == "NOERROR" and addrs(an) == ["10.243.1.30"], f"added endpoint answers at once: {st} {an}")
        check("nameserver" in d.run("late", "cat", "/etc/resolv.conf").stdout, "late's namespace is pointed at its gateway")
        rc_dir = f"/etc/netns/{d.ns('late')}"
        check(os.path.exists(rc_dir + "/resolv.conf"), "resolv.conf written")
        d.ctl("endpoint", "del", "late")
        st, an = dig(d, "web", f"@{GW_FRONT}", "late")
        check(st == "SERVFAIL" and addrs(an) == [], f"deleted endpoint: not ours any more at once, got {st} {an}")
        check(not os.path.exists(rc_dir), "its resolv.conf goes with it")
        # reload: aliases change in place.
        cfg = d.copy_config()
        d.endpoint("web", cfg)["aliases"] = ["portal"]
        d.write_config(cfg)
        d.ctl("reload")
        _, an = dig(d, "db", f"@{GW_FRONT}", "portal")
        check(addrs(an) == ["10.243.1.10"], f"new alias: {an}")
        st, an = dig(d, "db", f"@{GW_FRONT}", "www")
        check(st == "SERVFAIL" and addrs(an) == [], f"old alias gone: {st} {an}")
        # endpoint update: aliases in place.
        d.ctl("endpoint", "update", "db", "--alias", "store,Files")
        check(addrs(dig(d, "web", f"@{GW_FRONT}", "files")[1]) == ["10.243.1.11"], "alias added in place")
        d.ctl("endpoint", "update", "db", "--alias", "none")
        check(dig(d, "web", f"@{GW_FRONT}", "files")[0] == "SERVFAIL", "aliases cleared in place")
        # dns.enabled false: the gateway no longer answers.
        cfg["dns"] = {"enabled": False}
        d.write_config(cfg)
        d.ctl("reload")
        st, _ = dig(d, "db", f"@{GW_FRONT}", "web")
        check(st == "none", f"dns disabled: no answer expected, got {st}")
        check(not os.path.exists(f"/etc/netns/{d.ns('web')}"), "and no resolv.conf")
        ns = d.ns("web")
        d.stop()
    check(not os.path.exists(f"/etc/netns/{ns}"), "nothing left in /etc/netns")


def tcp_and_truncation():
    """Answers too big for UDP: TC there, whole over TCP (dig retries by itself, as glibc does)."""
    eps = [{"name": f"n{i}", "networks": ["front"], "aliases": ["many"]} for i in range(40)]
    with Dpsw(NETS[:1], eps) as d:
        d.start()
        st, an = dig(d, "n0", f"@{GW_FRONT}", "+tcp", "n1")
        check(st == "NOERROR" and len(addrs(an)) == 1, f"over TCP: {st} {an}")
        out = d.run("n0", "dig", "+tries=1", "+time=2", "+notcp", "+ignore", "+noedns", f"@{GW_FRONT}", "many", check_rc=False).stdout
        check(" tc " in out.split("flags:")[1].split(";")[0] + " ", f"40 addresses do not fit 512 bytes: TC expected: {out[:400]}")
        st, an = dig(d, "n0", f"@{GW_FRONT}", "+noedns", "many")  # TC, then TCP
        check(st == "NOERROR" and len(addrs(an)) == 40, f"all 40 over TCP after TC: {st} {len(an)}")
        out = d.run("n0", "getent", "ahostsv4", "many").stdout
        check(len({l.split()[0] for l in out.splitlines()}) == 40, f"glibc gets all 40 (TC then TCP): {out[:300]}")
        # getaddrinfo(AF_UNSPEC), as most programs ask: glibc sends A and AAAA back to back in one TCP segment.
        out = d.run("n0", "python3", "-c", "import socket; print(len({a[4][0] for a in socket.getaddrinfo('many', 80, type=socket.SOCK_STREAM)}))",
                    check_rc=False)
        check(out.stdout.strip() == "40", f"getaddrinfo(AF_UNSPEC) gets all 40 over TCP: {out.stdout} {out.stderr[-300:]}")
        check(d.counters()["dns"]["answered"] >= 3, "counted")


def dnsmasq(d, *extra):
    """dnsmasq in the outside namespace, answering example.test names; returns (process, its query log path)."""
    log = os.path.join(d.dir, "dnsmasq.log")
    p = d.popen("out", "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
                "--listen-address=" + OUT, "--user=root", "--pid-file=", "--log-queries", "--log-facility=" + log,
                "--address=/example.test/203.0.113.7", "--txt-record=big.example.test," + "x" * 250,
                "--txt-record=bigger.example.test," + ",".join(c * 250 for c in "ab") + "," + "c" * 100,
                *[f"--host-record=many.example.test,203.0.113.{i}" for i in range(1, 41)],
                *[f"--host-record=huge.example.test,198.51.100.{i}" for i in range(1, 101)],
                *extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: os.path.exists(log) and "started" in open(log).read(), 10, "dnsmasq to start")
    return p, log


def forwards_upstream():
    nets = [{"name": "front", "subnet": "10.243.1.0/24"}]
    eps = [{"name": "web", "networks": ["front"], "ip": "10.243.1.10"}, {"name": "db", "networks": ["front"]}]
    with Dpsw(nets, eps, uplink=True) as d:
        d.config["dns"] = {"upstream": [OUT]}
        d.write_config()
        d.start()
        p, log = dnsmasq(d)
        try:
            # glibc through the gateway: an outside name, answered by dnsmasq, relayed.
            out = d.run("web", "getent", "hosts", "www.example.test", check_rc=False).stdout.split()
            check(out[:1] == ["203.0.113.7"], f"outside name through the relay: {out}")
            st, an = dig(d, "web", f"@{GW_FRONT}", "A", "Mixed.Example.TEST")
            check(st == "NOERROR" and addrs(an) == ["203.0.113.7"], f"dig through the relay: {st} {an}")
            st, an = dig(d, "web", f"@{GW_FRONT}", "TXT", "big.example.test")
            check(st == "NOERROR" and len(an) == 1, f"TXT through the relay: {st} {an}")
            st, an = dig(d, "web", f"@{GW_FRONT}", "nothere.invalid")
            check(st in ("NXDOMAIN", "REFUSED", "SERVFAIL") and not an, f"upstream's own answer relayed: {st}")
            # Local names never go upstream; the upstream sees the host's address only.
            check(addrs(dig(d, "web", f"@{GW_FRONT}", "db")[1]), "db answered locally")
            queries = open(log).read()
            check("mixed.example.test" in queries.lower() and "from " + HOST in queries, f"dnsmasq saw the host address: {queries[-600:]}")
            check(" db " not in queries and "db\n" not in queries, f"a local name went upstream: {queries[-600:]}")
            c = d.counters()["dns"]
            check(c["forwarded"] >= 4 and c["relayed"] >= 4 and c["servfail"] == 0, f"counters: {c}")
            # Answers past 512 bytes: glibc (no EDNS) gets TC over UDP and asks again over TCP; the relay
            # asks the upstream over UDP for 1232 bytes and answers over TCP. Past 1232: SERVFAIL.
            out = d.run("web", "getent", "ahostsv4", "many.example.test", check_rc=False).stdout
            got = {l.split()[0] for l in out.splitlines()}
            check(got == {f"203.0.113.{i}" for i in range(1, 41)}, f"glibc gets all 40 addresses (TC, then TCP): {sorted(got)}")
            st, an = dig(d, "web", f"@{GW_FRONT}", "+tcp", "many.example.test")
            check(st == "NOERROR" and len(addrs(an)) == 40, f"dig +tcp through the relay: {st} {len(an)}")
            # getaddrinfo(AF_UNSPEC): after TC glibc sends A and AAAA back to back in one TCP segment; both relayed in turn.
            out = d.run("web", "python3", "-c", "import socket; print(len({a[4][0] for a in socket.getaddrinfo('many.example.test', 80, "
                        "type=socket.SOCK_STREAM)}))", check_rc=False)
            check(out.stdout.strip() == "40", f"getaddrinfo(AF_UNSPEC) through the relay over TCP: {out.stdout} {out.stderr[-300:]}")
            out = d.run("web", "dig", "+tries=1", "+time=2", "+tcp", "+noedns", f"@{GW_FRONT}", "TXT", "bigger.example.test").stdout
            check("status: NOERROR" in out and "b" * 250 in out, f"a 600-byte TXT over TCP through the relay: {out[:600]}")
            check("OPT PSEUDOSECTION" not in out, f"the EDNS record the relay added must not reach an asker that sent none: {out[:600]}")
            s0 = d.counters()["dns"]["servfail"]
            st, _ = dig(d, "web", f"@{GW_FRONT}", "+tcp", "huge.example.test")
            check(st == "SERVFAIL", f"longer than the relay's 1232 bytes: SERVFAIL over TCP expected, got {st}")
            check(d.counters()["dns"]["servfail"] == s0 + 1, "counted as SERVFAIL")
            # A dead first server: its try times out, the next server answers.
            cfg = d.copy_config()
            cfg["dns"] = {"upstream": ["198.51.100.77", OUT]}
            d.write_config(cfg)
            d.ctl("reload")
            d.run("out", "ip", "addr", "add", "198.51.100.77/24", "dev", "eth0")  # there, but nothing listens on 53
            t0 = time.time()
            st, an = dig(d, "web", f"@{GW_FRONT}", "+time=4", "retry.example.test")
            check(st == "NOERROR" and addrs(an) == ["203.0.113.7"], f"second server after a timeout: {st} {an} ({time.time() - t0:.1f} s)")
            check(d.counters()["dns"]["upstream_timeouts"] >= 1, "the first try's timeout counted")
            # Every server dead: SERVFAIL after the tries, never silence.
            p.terminate()
            p.wait()
            st, _ = dig(d, "web", f"@{GW_FRONT}", "+time=6", "gone.example.test")
            check(st == "SERVFAIL", f"no upstream answers: SERVFAIL expected, got {st}")
            check(d.counters()["dns"]["servfail"] >= 1, "SERVFAIL counted")
            check(addrs(dig(d, "web", f"@{GW_FRONT}", "db")[1]), "local answers go on")
        finally:
            if p.poll() is None:
                p.terminate()
                p.wait()


def resolver_serves(d, ep, server, name, addr, ptr_ip, ptr_name, stranger):
    """What an endpoint's resolver at `server` must do: `name` over TCP is `addr`, the PTR of `ptr_ip` is
    `ptr_name`, an outside name is relayed (the test's dnsmasq answers it), and `stranger` (an endpoint it
    shares no network with) is not found."""
    st, an = dig(d, ep, f"@{server}", "+tcp", name)
    check(st == "NOERROR" and addrs(an) == [addr], f"{ep}: {name} over TCP at {server}: {st} {an}")
    st, an = dig(d, ep, f"@{server}", "-x", ptr_ip)
    check(st == "NOERROR" and an and an[0][4] == ptr_name, f"{ep}: PTR of {ptr_ip}: {st} {an}")
    out = d.run(ep, "getent", "hosts", "www.example.test", check_rc=False).stdout.split()
    check(out[:1] == ["203.0.113.7"], f"{ep}: an outside name relayed: {out}")
    r = d.run(ep, "getent", "hosts", stranger, check_rc=False)
    check(r.returncode != 0, f"{ep} shares no network with {stranger}: {r.stdout}")


def macvlan_and_overlay():
    """Names on macvlan networks (asked at the host's address, which a macvlan endpoint reaches on its segment) and
    on overlay networks (this host's endpoints there, asked at the overlay's gateway, which every host's dpsw answers
    for its own endpoints, or at a bridge network's gateway)."""
    nets = [{"name": "lan", "driver": "macvlan", "subnet": "198.51.100.0/24"}, {"name": "front", "subnet": "10.243.1.0/24"},
            {"name": "side", "subnet": "10.243.3.0/24"},
            {"name": "ov", "driver": "overlay", "vni": 4242, "subnet": "10.243.9.0/24", "peers": ["198.51.100.99"]}]
    eps = [{"name": "m1", "networks": ["lan"], "ip": "198.51.100.20"},
           {"name": "m2", "networks": ["lan"], "ip": "198.51.100.21", "aliases": ["printer"]},
           {"name": "b1", "networks": ["front", "ov"]}, {"name": "o1", "networks": ["side", "ov"]},
           {"name": "o2", "networks": ["ov"], "ip": "10.243.9.50"}]
    with Dpsw(nets, eps, uplink=True) as d:
        d.config["dns"] = {"upstream": [OUT]}
        d.write_config()
        d.start()
        p, _ = dnsmasq(d)
        try:
            conf = d.run("m1", "cat", "/etc/resolv.conf").stdout
            check(f"nameserver {HOST}" in conf, f"a macvlan endpoint asks the host's address: {conf!r}")
            for name in ("m2", "printer", "M2.lan"):
                out = d.run("m1", "getent", "hosts", name, check_rc=False).stdout.split()
                check(out[:1] == ["198.51.100.21"], f"getent hosts {name} from m1: {out}")
            resolver_serves(d, "m1", HOST, "m2", "198.51.100.21", "198.51.100.21", "m2.lan.", "b1")
            f0 = d.counters()["dns"]["forwarded"]
            dig(d, "m1", f"@{HOST}", "-x", OUT)
            check(d.counters()["dns"]["forwarded"] == f0 + 1, "the reverse name of an outside host on the LAN is relayed, not NXDOMAIN")
            # From outside, the host's port 53 is not the responder.
            st, _ = dig(d, "out", f"@{HOST}", "m2")
            check(st == "none", f"the outside must get no answer from the host's address: {st}")
            # The overlay: b1 and o1 share only ov.
            rows = d.ctl("show", "dns")
            o1 = next((r["address"] for r in rows if r["name"] == "o1" and r["network"] == "ov"), None)
            check(o1 and o1.startswith("10.243.9."), f"o1's name on ov: {rows}")
            out = d.run("b1", "getent", "hosts", "o1", check_rc=False).stdout.split()
            check(out[:1] == [o1], f"b1 resolves o1 on the overlay: {out}")
            check(d.run("b1", "getent", "hosts", "o1.ov", check_rc=False).stdout.split()[:1] == [o1], "o1.ov")
            d.run("b1", "ping", "-c", "1", "-W", "2", "o1")
            check(f"nameserver {GW_FRONT}" in d.run("b1", "cat", "/etc/resolv.conf").stdout, "b1 asks its bridge network's gateway")
            # An endpoint on the overlay alone asks the overlay's gateway (this host's dpsw answers it, ARP and echo too).
            gw_ov = "10.243.9.1"
            check(f"nameserver {gw_ov}" in d.run("o2", "cat", "/etc/resolv.conf").stdout, "o2 asks the overlay's gateway")
            d.run("o2", "ping", "-c", "1", "-W", "2", gw_ov)
            for name in ("o1", "b1.ov", "O1.OV"):
                out = d.run("o2", "getent", "hosts", name, check_rc=False).stdout.split()
                want = o1 if name.lower().startswith("o1") else next(r["address"] for r in rows if r["name"] == "b1" and r["network"] == "ov")
                check(out[:1] == [want], f"getent hosts {name} from o2: {out}")
            resolver_serves(d, "o2", gw_ov, "o1", o1, "10.243.9.50", "o2.ov.", "m2")
            # The gateway routes nothing: with a default route through it, the outside stays unreachable.
            no_route = lambda: d.port_of("o2", "ov")["counters"]["drops"].get("no_route", 0)
            before = no_route()
            d.run("o2", "ip", "route", "add", "default", "via", gw_ov)
            r = d.run("o2", "ping", "-c", "2", "-i", "0.2", "-W", "1", OUT, check_rc=False)
            check(r.returncode != 0, f"nothing is routed through an overlay's gateway: {r.stdout}")
            check(no_route() >= before + 2, f"counted as no_route on o2's port: {no_route()} after {before}")
            # A container publishing UDP 53 on the host: that port is its, from outside and from a macvlan
            # endpoint alike (TCP 53, not published, stays the responder's for m1).
            cfg = d.copy_config()
            cfg["endpoints"].append({"name": "pub", "networks": ["front"], "publish": ["53:53/udp"]})
            d.write_config(cfg)
            d.ctl("reload")
            echo = d.popen("pub", "python3", "-c", UDP_ECHO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(0.5)
                for ep in ("out", "m1"):
                    out = d.run(ep, "python3", "-c", UDP_ASK, HOST).stdout.strip()
                    check(out == "echo:hello", f"{ep} to the host's published UDP 53 reaches pub: {out!r}")
                st, an = dig(d, "m1", f"@{HOST}", "+tcp", "m2")
                check(st == "NOERROR" and addrs(an) == ["198.51.100.21"], f"TCP 53 from m1 still answered: {st} {an}")
            finally:
                echo.terminate()
                echo.wait()
        finally:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    scenario_main({"names_and_records": names_and_records, "follows_changes": follows_changes, "forwards_upstream": forwards_upstream,
                   "tcp_and_truncation": tcp_and_truncation, "macvlan_and_overlay": macvlan_and_overlay})
