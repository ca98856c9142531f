// The CNI plugin's logic: configuration and environment checks with the
// spec's error codes, attachment names, results per version, GC's choice.
#include "control/cni/cni.h"

#include <gtest/gtest.h>

namespace dpsw::cni {
namespace {

using nlohmann::json;

const std::map<std::string, std::string> kEnv = {
    {"CNI_CONTAINERID", "abc123"}, {"CNI_NETNS", "/run/netns/x"}, {"CNI_IFNAME", "eth0"}};

json conf(const std::string& version = "1.0.0") { return {{"cniVersion", version}, {"name", "podnet"}, {"type", "dpsw-cni"}, {"network", "pods"}}; }

int code_of(const std::string& cmd, const std::string& text, std::map<std::string, std::string> env = kEnv) {
  try {
    parse_invocation(cmd, text, env);
  } catch (const Error& e) {
    return e.code;
  }
  return 0;
}

TEST(Cni, ErrorsCarryTheSpecsCodes) {
  EXPECT_EQ(code_of("ADD", conf().dump()), 0);
  EXPECT_EQ(code_of("ADD", "{nope"), kDecodeFailure);
  EXPECT_EQ(code_of("ADD", "[1]"), kDecodeFailure);
  EXPECT_EQ(code_of("ADD", conf("0.2.0").dump()), kIncompatibleVersion);
  json c = conf();
  c.erase("cniVersion");
  EXPECT_EQ(code_of("ADD", c.dump()), kInvalidConfig);
  c = conf();
  c["socket"] = "relative.sock";
  EXPECT_EQ(code_of("ADD", c.dump()), kInvalidConfig);
  c = conf();
  c["ipam"] = {{"type", "host-local"}};
  EXPECT_EQ(code_of("ADD", c.dump()), kUnsupportedField);
  auto env = kEnv;
  env.erase("CNI_CONTAINERID");
  EXPECT_EQ(code_of("ADD", conf().dump(), env), kInvalidEnv);
  env = kEnv;
  env["CNI_IFNAME"] = "a/b";
  EXPECT_EQ(code_of("ADD", conf().dump(), env), kInvalidEnv);
  env = kEnv;
  env.erase("CNI_NETNS");
  EXPECT_EQ(code_of("ADD", conf().dump(), env), kInvalidEnv);
  EXPECT_EQ(code_of("DEL", conf().dump(), env), 0);  // DEL needs no namespace
  EXPECT_EQ(code_of("GC", conf("1.1.0").dump()), kInvalidConfig);  // no list: GC would remove everything
  // Verbs newer than the configuration's version (as libcni's skel answers).
  EXPECT_EQ(code_of("STATUS", conf("1.0.0").dump()), kIncompatibleVersion);
  EXPECT_EQ(code_of("GC", conf("1.0.0").dump()), kIncompatibleVersion);
  EXPECT_EQ(code_of("STATUS", conf("1.1.0").dump()), 0);
  json check = conf("0.3.1");
  check["prevResult"] = json::object();
  EXPECT_EQ(code_of("CHECK", check.dump()), kIncompatibleVersion);
  EXPECT_EQ(code_of("CHECK", conf("0.4.0").dump()), kInvalidConfig);  // CHECK needs prevResult
  check["cniVersion"] = "0.4.0";
  EXPECT_EQ(code_of("CHECK", check.dump()), 0);
  EXPECT_EQ(code_of("VERSION", ""), 0);
  EXPECT_EQ(code_of("FROB", conf().dump()), kInvalidEnv);
  json e = error_json("0.4.0", Error(kTryAgainLater, "later", "why"));
  EXPECT_EQ(e, json({{"cniVersion", "0.4.0"}, {"code", 11}, {"msg", "later"}, {"details", "why"}}));
}

TEST(Cni, AddressesMacsAndPortsFromEveryPlace) {
  json c = conf();
  c["runtimeConfig"] = {{"ips", {"10.1.0.5/24"}}, {"mac", "02:00:00:00:00:05"},
                        {"portMappings", {{{"hostPort", 8080}, {"containerPort", 80}}, {{"hostPort", 53}, {"containerPort", 53}, {"protocol", "UDP"}}}}};
  Invocation inv = parse_invocation("ADD", c.dump(), kEnv);
  json spec = add_spec(inv);
  EXPECT_EQ(spec["ip"], "10.1.0.5");
  EXPECT_EQ(spec["mac"], "02:00:00:00:00:05");
  EXPECT_EQ(spec["publish"], json({"8080:80/tcp", "53:53/udp"}));
  EXPECT_EQ(spec["networks"], json({"pods"}));
  EXPECT_EQ(spec["ifname"], "eth0");
  EXPECT_EQ(spec["labels"][kLabelContainer], "abc123");
  auto env = kEnv;
  env["CNI_ARGS"] = "IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.1.0.9";
  EXPECT_EQ(add_spec(parse_invocation("ADD", conf().dump(), env))["ip"], "10.1.0.9");
  env["CNI_ARGS"] = "IP=10.1.0.9";
  EXPECT_EQ(code_of("ADD", c.dump(), env), kUnsupportedField);  // two different addresses asked
  c = conf();
  c["runtimeConfig"] = {{"ips", {"fd00::1/64"}}};
  EXPECT_EQ(code_of("ADD", c.dump()), kUnsupportedField);
  c = conf();
  c.erase("network");
  EXPECT_EQ(parse_invocation("ADD", c.dump(), kEnv).network, "podnet");  // default: the CNI network's name
}

TEST(Cni, EndpointNamesAreStableDnsLabels) {
  const std::string a = endpoint_name("0123456789abcdef0123", "eth0");
  EXPECT_EQ(a, endpoint_name("0123456789abcdef0123", "eth0"));
  EXPECT_NE(a, endpoint_name("0123456789abcdef0123", "eth1"));
  EXPECT_NE(a, endpoint_name("0123456789abcdef0124", "eth0"));  // same 12-character prefix, another container
  EXPECT_EQ(a.rfind("cni-0123456789ab-", 0), 0u);
  for (const std::string& n : {a, endpoint_name("A_b.C-d", "x"), endpoint_name("___", "eth0")}) {
    EXPECT_LE(n.size(), 63u);
    for (char ch : n) EXPECT_TRUE(std::islower((unsigned char)ch) || std::isdigit((unsigned char)ch) || ch == '-') << n;
  }
}

TEST(Cni, ResultsInTheVersionAsked) {
  json ep = {{"name", "cni-x"}, {"attachments", {{{"network", "pods"}, {"ifname", "eth0"}, {"host_ifname", "t-1234"}, {"mac", "02:42:0a:01:00:02"},
                                                  {"ip", "10.1.0.2/24"}, {"gateway", "10.1.0.1"}, {"mtu", 1500}, {"default_route", true}}}}};
  for (const std::string v : supported_versions()) {
    Invocation inv = parse_invocation("ADD", conf(v).dump(), kEnv);
    json r = add_result(inv, ep, "aa:bb:cc:dd:ee:ff");
    EXPECT_EQ(r["cniVersion"], v);
    EXPECT_EQ(r["interfaces"][1]["sandbox"], "/run/netns/x");
    EXPECT_EQ(r["interfaces"][1]["mac"], "02:42:0a:01:00:02");
    EXPECT_EQ(r["interfaces"][0]["mac"], "aa:bb:cc:dd:ee:ff");
    EXPECT_EQ(r["ips"][0]["interface"], 1);
    EXPECT_EQ(r["ips"][0].contains("version"), v[0] == '0') << v;
    EXPECT_EQ(r["interfaces"][1].contains("mtu"), v == "1.1.0") << v;
    EXPECT_EQ(r["routes"], json({{{"dst", "0.0.0.0/0"}, {"gw", "10.1.0.1"}}}));
  }
  // Chained after another plugin: its result, with ours after it.
  json c = conf();
  c["prevResult"] = {{"cniVersion", "1.0.0"}, {"interfaces", {{{"name", "lo"}, {"sandbox", "/run/netns/x"}}}},
                     {"ips", {{{"address", "127.0.0.1/8"}, {"interface", 0}}}}, {"dns", {{"nameservers", {"10.0.0.53"}}}}};
  json r = add_result(parse_invocation("ADD", c.dump(), kEnv), ep, "");
  ASSERT_EQ(r["interfaces"].size(), 3u);
  EXPECT_EQ(r["interfaces"][2]["name"], "eth0");
  EXPECT_EQ(r["ips"][1]["interface"], 2);
  EXPECT_EQ(r["ips"][0]["address"], "127.0.0.1/8");
  EXPECT_EQ(r["dns"]["nameservers"][0], "10.0.0.53");
  ep["attachments"][0]["default_route"] = false;  // an overlay: no way out through it
  EXPECT_TRUE(add_result(parse_invocation("ADD", conf().dump(), kEnv), ep, "")["routes"].empty());
}

TEST(Cni, GcRemovesOnlyItsOwnStaleAttachments) {
  json c = conf("1.1.0");
  c["cni.dev/valid-attachments"] = {{{"containerID", "keep"}, {"ifname", "eth0"}}};
  Invocation inv = parse_invocation("GC", c.dump(), {});
  auto ep = [](const std::string& name, const std::string& id, const std::string& ifname, const std::string& net) {
    return json{{"name", name}, {"labels", {{kLabelContainer, id}, {kLabelIfname, ifname}, {kLabelNetwork, net}}}};
  };
  json eps = {ep("a", "keep", "eth0", "podnet"), ep("b", "keep", "eth1", "podnet"), ep("c", "gone", "eth0", "podnet"),
              ep("d", "gone", "eth0", "othernet"), json{{"name", "plain"}}};
  EXPECT_EQ(stale_endpoints(inv, eps), (std::vector<std::string>{"b", "c"}));
}

}  // namespace
}  // namespace dpsw::cni
