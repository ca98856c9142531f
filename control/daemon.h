// The dpsw daemon's control thread: turns a Config into namespaces, veths,
// AF_XDP ports and a dataplane snapshot, serves the control socket, ages the
// MAC table, and tears everything down on SIGINT/SIGTERM.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/config.h"
#include "control/journal.h"
#include "dataplane/afxdp_port.h"
#include "dataplane/dataplane.h"

namespace dpsw {

class CtlServer;

struct DaemonOptions {
  std::string bpf_object;
};

// Checks that depend on this machine (cores, namespaces to adopt, BPF
// object), without changing anything. Throws ConfigError.
void preflight(const Config& cfg, const Plan& plan, const DaemonOptions& opt);

class Daemon {
 public:
  Daemon(Config cfg, Plan plan, DaemonOptions opt);
  ~Daemon();  // tears down whatever exists

  void setup();  // creates everything; on failure undoes it and throws
  int run();     // control loop until SIGINT/SIGTERM; returns exit code
  void teardown();

  nlohmann::json handle(const nlohmann::json& req);  // control socket requests

 private:
  struct PortRec {
    uint16_t id;
    std::string endpoint, network, host_ifname, ifname;
    int ifindex = 0;
    uint16_t bd = 0;
    Mac mac = 0;
    uint32_t ip = 0;
    uint32_t mtu = 1500;
    std::unique_ptr<AfxdpPort> port;
  };
  void create_endpoint(const PlannedEndpoint& ep);
  void publish_snapshot();
  nlohmann::json show(const std::string& what, const std::vector<std::string>& args);

  Config cfg_;
  Plan plan_;
  DaemonOptions opt_;
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<XdpProgram> xdp_;
  std::unique_ptr<Dataplane> dp_;
  std::unique_ptr<CtlServer> ctl_;
  std::vector<PortRec> ports_;
  std::vector<std::string> created_netns_;
  uint64_t generation_ = 0;
};

}  // namespace dpsw
