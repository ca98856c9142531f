// The ports control module: vhost-user endpoints' ports, DPDK and the relay (ports.h).
#include "control/ports/ports.h"

#include <sys/stat.h>
#include <unistd.h>

#include "control/core/log.h"
#include "control/core/socket_path.h"
#include "control/ports/vhost_relay.h"
#include "dataplane/ports/dpdk_env.h"
#include "dataplane/ports/vhost_port.h"

namespace dpsw {

Ports::Ports(Core& core) : Module(core) {}
Ports::~Ports() = default;  // VhostRelay is complete here

void Ports::check_socket(const PlannedEndpoint& ep) const {
  try {
    check_socket_path(ep.vhost_socket, "endpoint '" + ep.name + "': vhost_socket", false);
  } catch (const std::runtime_error& e) {
    throw ConfigError(core_.cfg_.path + ": " + e.what());
  }
}

void Ports::preflight(const PlannedEndpoint& ep) const {
  if (ep.port == PortKind::kVhost && !ep.vhost_client) check_socket(ep);  // server mode: dpsw creates the socket (the same rule as the control socket's)
}

void Ports::check_new(const PlannedEndpoint& ep, const PlannedEndpoint* cur) const {
  // Server mode: the path must be absent or a socket (dpsw's own while the
  // endpoint exists); whether it is live is found out when it is made.
  if (!ep.vhost_client && !(cur && cur->port == PortKind::kVhost && !cur->vhost_client && cur->vhost_socket == ep.vhost_socket))
    check_socket(ep);
}

uint16_t Ports::add_vhost(const PlannedEndpoint& ep, EndpointRec& rec) {
  if (!ep.vhost_client) {
    // Server mode: the socket path is ours to create. Only an absent path or
    // a stale socket (nobody answers) may be there; never a file, never a
    // live socket (another application's, or another instance's).
    switch (check_socket_path(ep.vhost_socket, "endpoint '" + ep.name + "': vhost_socket")) {
      case SocketPathState::kLive: throw std::runtime_error("endpoint '" + ep.name + "': vhost_socket " + ep.vhost_socket + " is in use");
      case SocketPathState::kStale: unlink(ep.vhost_socket.c_str()); break;
      default: break;
    }
  }
  core_.place_control_thread(true);  // off the workers' cores before DPDK's threads and the relay's start (they now poll)
  // Workers become EAL threads (mempool caches) once DPDK is up.
  core_.dp_->set_thread_hook(&DpdkEnv::register_this_thread);
  const uint16_t id = core_.new_port_id();
  PortRec& pr = core_.ports_[id];
  pr.endpoint = ep.name;
  rec.ports.push_back(id);  // from here on release() undoes what exists
  // The backend (DPDK's net_vhost PMD) listens on a private socket; the
  // relay owns the application's socket (control/ports/vhost_relay.h: no
  // application can stall the backend or take another's port).
  const Config& cfg = core_.cfg_;
  const std::string backend = cfg.sw.state_dir + "/" + cfg.sw.name + "-" + ep.name + ".vhost.sock";
  struct stat st;
  if (lstat(backend.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(backend.c_str());  // ours, from an earlier run
  pr.port = std::make_unique<VhostPort>("vhost:" + ep.name, VhostPort::Options{backend, false, cfg.sw.name});
  if (!relay_) relay_ = std::make_unique<VhostRelay>();
  relay_->add(ep.name, ep.vhost_socket, backend, ep.vhost_client);
  pr.kind = PortRec::Kind::kVhost;
  if (!ep.vhost_client) core_.journal_->record_socket(ep.vhost_socket);  // which socket file is ours (a restart removes only that one)
  pr.host_ifname = ep.vhost_socket;
  return id;
}

void Ports::release_port(uint16_t, const PortRec& pr) {
  if (relay_ && pr.kind == PortRec::Kind::kVhost) relay_->remove(pr.endpoint);  // before its port closes
}

void Ports::stop() { relay_.reset(); }

void Ports::counters(nlohmann::json& out) const {
  out["dpdk"] = nullptr;
  if (DpdkEnv::up()) {
    auto& env = DpdkEnv::get(core_.cfg_.sw.name);
    out["dpdk"] = {{"mbufs_total", env.mbufs_total()}, {"mbufs_available", env.mbufs_available()}};
  }
}

}  // namespace dpsw
