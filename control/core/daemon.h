// The dpsw daemon's control thread, the control core: lifecycle (setup,
// run, teardown), the control loop (signals, control clients, the 250 ms
// maintenance tick), request dispatch through one verb table, the
// orchestration of a reload, and each snapshot as the core's part (bridge
// domains' names) plus every control module's contribution.
// What is made and changed (networks, endpoints, tunnels, the uplink, ...)
// is the modules' (module.h), in the order Daemon::Daemon() lists them.
//
// A reload: load and diff the file; every module's check() of the whole
// next config and plan, and reload_check() against this machine, before
// touching anything (a rejected reload changes nothing); then every
// module's reload_replace(), the new config in force, every
// reload_update() and apply(), one snapshot. Whatever fails after the first
// change is reported, and the rest is applied.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/core/config.h"
#include "control/core/core.h"
#include "control/core/verbs.h"

namespace dpsw {

class CtlServer;
struct CtlReply;

// Checks that depend on this machine, without changing anything, in the
// order of Daemon::preflight(): control socket, cores, every module's
// (namespaces to adopt, sockets, interfaces), BPF objects. Throws
// ConfigError; std::logic_error when a control verb is registered twice.
void preflight(const Config& cfg, const Plan& plan, const DaemonOptions& opt);
// Reads the uplink interface's MTU into cfg.uplink->mtu and re-resolves the
// defaults that follow it (overlay networks' MTU). No-op without an uplink
// or when the interface is missing (preflight() reports that).
void read_uplink_mtu(Config& cfg);

// The Daemon is the Core (control/core/core.h) its modules (module.h) share:
// it owns that state and runs the lifecycle, the control loop and request
// dispatch; features take part through the modules' hooks.
class Daemon : private Core {
 public:
  // Lists the modules and builds the verb table (std::logic_error: a verb
  // registered twice). Makes nothing on this machine.
  Daemon(Config cfg, Plan plan, DaemonOptions opt);
  ~Daemon();  // tears down whatever setup() made

  void preflight() const;  // see preflight() above: the core's checks and every module's
  void setup();  // creates everything; on failure undoes it and throws
  int run();     // control loop until SIGINT/SIGTERM; returns exit code
  void teardown();  // undoes setup() (once; nothing if setup() never ran)

  CtlReply handle(const nlohmann::json& req);  // control socket requests

 private:
  nlohmann::json reload();  // the config file again: every module checks, then applies its part
  void publish_snapshot() override;
  CtlReply show(const std::string& what, const std::vector<std::string>& args);  // the views of `show`, declared once

  VerbRegistry verbs_;  // the control socket's verbs: the core's and every module's (the constructor)
  std::unique_ptr<CtlServer> ctl_;
  uint64_t generation_ = 0;
  bool set_up_ = false;  // setup() started and teardown() has not run since
};

}  // namespace dpsw
