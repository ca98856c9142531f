// Docker's remote driver calls against a fake dpsw: what each call asks of
// the control socket, replays and unknown ids, published ports.
#include "control/docker/docker.h"

#include <gtest/gtest.h>

#include <map>

namespace dpsw::docker {
namespace {

using nlohmann::json;

// A tiny dpsw: networks and endpoints by name, refusals worded like the daemon's.
struct FakeDpsw {
  std::map<std::string, json> nets, eps;
  std::vector<json> requests;
  bool down = false;

  json operator()(const json& r) {
    if (down) throw std::runtime_error("cannot reach dpsw at /x.sock: Connection refused");
    requests.push_back(r);
    const std::string cmd = r["cmd"];
    const std::string verb = r["args"][0];
    auto refuse = [](const std::string& e) { return json{{"ok", false}, {"error", e}}; };
    auto ok = [](const json& x) { return json{{"ok", true}, {"result", x}}; };
    if (cmd == "show" && verb == "networks") {
      json out = json::array();
      for (auto& [n, s] : nets) out.push_back(s);
      return ok(out);
    }
    if (cmd == "show" && verb == "endpoints") {
      json out = json::array();
      for (auto& [n, s] : eps)
        if (r["args"].size() == 1 || r["args"][1] == n) out.push_back(s);
      if (r["args"].size() == 2 && out.empty()) return refuse("unknown endpoint '" + r["args"][1].get<std::string>() + "'");
      return ok(out);
    }
    if (cmd == "network" && verb == "add") {
      const std::string n = r["spec"]["name"];
      if (nets.count(n)) return refuse("network add: name: network '" + n + "' is defined twice");
      nets[n] = r["spec"];
      return ok(json::object());
    }
    if (cmd == "network" && verb == "del") {
      if (!nets.erase(r["args"][1].get<std::string>())) return refuse("network del: unknown network 'x'");
      return ok(json::object());
    }
    if (cmd == "endpoint" && verb == "add") {
      json s = r["spec"];
      const std::string n = s["name"];
      if (eps.count(n)) return refuse("endpoint add: name: endpoint '" + n + "' is defined twice");
      s["attachments"] = {{{"ifname", "dh0000abcd"}, {"gateway", "172.30.0.1"}, {"mac", s.value("mac", "02:42:ac:1e:00:02")},
                           {"ip", s.value("ip", "172.30.0.2") + "/16"}}};
      eps[n] = s;
      return ok(s);
    }
    if (cmd == "endpoint" && verb == "del") {
      if (!eps.erase(r["args"][1].get<std::string>())) return refuse("endpoint del: unknown endpoint 'x'");
      return ok(json::object());
    }
    if (cmd == "endpoint" && verb == "update") {
      const std::string n = r["spec"]["name"];
      if (!eps.count(n)) return refuse("endpoint update: unknown endpoint '" + n + "'");
      for (auto& [k, v] : eps)
        for (const auto& p : r["spec"]["publish"])
          if (k != n && v.contains("publish") && std::find(v["publish"].begin(), v["publish"].end(), p) != v["publish"].end())
            return refuse("publish: " + p.get<std::string>() + " overlaps " + p.get<std::string>() + " of endpoint '" + k + "'");
      eps[n]["publish"] = r["spec"]["publish"];
      return ok(eps[n]);
    }
    return refuse("unknown command");
  }
};

const std::string kNet = "3f0c8a2d9b1e4c7a8f6d5e4c3b2a1908f7e6d5c4b3a29180706f5e4d3c2b1a09";
const std::string kEp = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

struct DriverTest : ::testing::Test {
  FakeDpsw fake;
  Driver drv{[this](const json& r) { return fake(r); }};
  json net_body() {
    return {{"NetworkID", kNet},
            {"Options", {{"com.docker.network.generic", {{"dpsw.mtu", "1400"}, {"com.docker.network.bridge.name", "x"}}}}},
            {"IPv4Data", {{{"AddressSpace", "LocalDefault"}, {"Pool", "172.30.0.0/16"}, {"Gateway", "172.30.0.1/16"}}}},
            {"IPv6Data", json::array()}};
  }
};

TEST_F(DriverTest, ActivateAndCapabilities) {
  EXPECT_EQ(drv.handle("Plugin.Activate", {}), json({{"Implements", {"NetworkDriver"}}}));
  EXPECT_EQ(drv.handle("NetworkDriver.GetCapabilities", {})["Scope"], "local");
  EXPECT_THROW(drv.handle("NetworkDriver.Frobnicate", {}), UnknownMethod);
}

TEST_F(DriverTest, NetworkLifecycleWithReplaysAndOptions) {
  EXPECT_EQ(drv.handle("NetworkDriver.CreateNetwork", net_body()), json::object());
  const json& spec = fake.nets.at("dk-3f0c8a2d9b1e");
  EXPECT_EQ(spec["subnet"], "172.30.0.0/16");
  EXPECT_EQ(spec["gateway"], "172.30.0.1");
  EXPECT_EQ(spec["mtu"], 1400);
  EXPECT_EQ(spec["persist"], true);
  EXPECT_EQ(drv.handle("NetworkDriver.CreateNetwork", net_body()), json::object());  // replayed
  json bad = net_body();
  bad["Options"]["com.docker.network.generic"]["dpsw.colour"] = "red";
  EXPECT_NE(drv.handle("NetworkDriver.CreateNetwork", bad)["Err"].get<std::string>().find("dpsw.colour"), std::string::npos);
  bad = net_body();
  bad["IPv6Data"] = {{{"Pool", "fd00::/64"}}};
  EXPECT_TRUE(drv.handle("NetworkDriver.CreateNetwork", bad).contains("Err"));
  EXPECT_EQ(drv.handle("NetworkDriver.DeleteNetwork", {{"NetworkID", kNet}}), json::object());
  EXPECT_TRUE(fake.nets.empty());
  EXPECT_EQ(drv.handle("NetworkDriver.DeleteNetwork", {{"NetworkID", kNet}}), json::object());  // unknown: fine
  EXPECT_TRUE(drv.handle("NetworkDriver.DeleteNetwork", json::object()).contains("Err"));       // no id at all
}

TEST_F(DriverTest, EndpointJoinPublishAndTeardown) {
  drv.handle("NetworkDriver.CreateNetwork", net_body());
  json ce = {{"NetworkID", kNet}, {"EndpointID", kEp}, {"Interface", {{"Address", "172.30.0.5/16"}, {"MacAddress", ""}}}};
  json r = drv.handle("NetworkDriver.CreateEndpoint", ce);
  EXPECT_EQ(r, json({{"Interface", {{"MacAddress", "02:42:ac:1e:00:02"}}}}));  // the MAC only: Docker gave the address
  const json& spec = fake.eps.at("dk-9a8b7c6d5e4f");
  EXPECT_EQ(spec["ip"], "172.30.0.5");
  EXPECT_EQ(spec["handoff"], true);
  EXPECT_EQ(spec["labels"][kLabelEndpoint], kEp);
  EXPECT_EQ(drv.handle("NetworkDriver.CreateEndpoint", ce), r);  // replayed
  json j = drv.handle("NetworkDriver.Join", {{"NetworkID", kNet}, {"EndpointID", kEp}, {"SandboxKey", "/var/run/docker/netns/x"}});
  EXPECT_EQ(j["InterfaceName"], json({{"SrcName", "dh0000abcd"}, {"DstPrefix", "eth"}}));
  EXPECT_EQ(j["Gateway"], "172.30.0.1");
  // Published ports; HostPort 0 takes the first free port of Docker's range.
  fake.eps["other"] = {{"name", "other"}, {"publish", {"49153:80/tcp"}}};
  json pm = {{"NetworkID", kNet}, {"EndpointID", kEp},
             {"Options", {{"com.docker.network.portmap", {{{"Proto", 6}, {"Port", 80}, {"HostPort", 18080}},
                                                          {{"Proto", 17}, {"Port", 53}, {"HostPort", 0}},
                                                          {{"Proto", 6}, {"Port", 81}, {"HostPort", 0}}}}}}};
  EXPECT_EQ(drv.handle("NetworkDriver.ProgramExternalConnectivity", pm), json::object());
  EXPECT_EQ(fake.eps.at("dk-9a8b7c6d5e4f")["publish"], json({"18080:80/tcp", "49153:53/udp", "49154:81/tcp"}));  // per protocol
  json lo = pm;
  lo["Options"]["com.docker.network.portmap"] = {{{"Proto", 6}, {"Port", 80}, {"HostPort", 8080}, {"HostIP", "127.0.0.1"}}};
  EXPECT_TRUE(drv.handle("NetworkDriver.ProgramExternalConnectivity", lo).contains("Err"));
  EXPECT_EQ(drv.handle("NetworkDriver.RevokeExternalConnectivity", {{"NetworkID", kNet}, {"EndpointID", kEp}}), json::object());
  EXPECT_EQ(fake.eps.at("dk-9a8b7c6d5e4f")["publish"], json::array());
  EXPECT_EQ(drv.handle("NetworkDriver.Leave", {{"NetworkID", kNet}, {"EndpointID", kEp}}), json::object());
  EXPECT_EQ(drv.handle("NetworkDriver.DeleteEndpoint", {{"NetworkID", kNet}, {"EndpointID", kEp}}), json::object());
  EXPECT_FALSE(fake.eps.count("dk-9a8b7c6d5e4f"));
  EXPECT_EQ(drv.handle("NetworkDriver.DeleteEndpoint", {{"NetworkID", kNet}, {"EndpointID", kEp}}), json::object());  // replayed
  EXPECT_EQ(drv.handle("NetworkDriver.RevokeExternalConnectivity", {{"NetworkID", kNet}, {"EndpointID", kEp}}), json::object());
  EXPECT_TRUE(drv.handle("NetworkDriver.Join", {{"NetworkID", kNet}, {"EndpointID", kEp}}).contains("Err"));
}

TEST_F(DriverTest, ADaemonThatIsDownIsAnErrNotACrash) {
  fake.down = true;
  json r = drv.handle("NetworkDriver.CreateNetwork", net_body());
  EXPECT_NE(r["Err"].get<std::string>().find("dpsw is not serving"), std::string::npos);
  EXPECT_TRUE(drv.handle("NetworkDriver.DeleteEndpoint", {{"NetworkID", kNet}, {"EndpointID", kEp}}).contains("Err"));
}

}  // namespace
}  // namespace dpsw::docker
