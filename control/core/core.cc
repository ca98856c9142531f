#include "control/core/core.h"

#include <sched.h>

#include <cerrno>
#include <cstring>

#include "control/core/module.h"
#include "control/core/log.h"
#include "control/core/netlink.h"

namespace dpsw {

// Measured (NAT round trips, sockperf at 2000/s on the containers' core):
// with the control thread's periodic work (the 5-50 ms fast-tier installs,
// the 250 ms tick) on that core, p99.9 was 50-131 us against 36-79 us with
// it on the worker's (4 runs each, one dpsw, alternating).
void Core::place_control_thread(bool vhost) {
  const SwitchConfig& sw = cfg_.sw;
  bool polled = !sw.blocks() || vhost;
  for (const auto& ep : plan_.endpoints) polled |= ep.port == PortKind::kVhost;
  cpu_set_t set;
  CPU_ZERO(&set);
  std::string where;
  if (sw.control_cores || !polled) {
    for (int c : sw.control_cores.value_or(sw.workers)) CPU_SET(c, &set);
    if (sw.control_cores && polled)
      for (int c : sw.workers)
        if (CPU_ISSET(c, &set)) LOG_WARN("switch.control_cores includes core %d, where a worker polls: both slow down", c);
  } else {
    // Every core this process may use but the polled workers': from the mask
    // it started with (a later call must not shrink it to an earlier choice).
    static const cpu_set_t start = [] {
      cpu_set_t s;
      sched_getaffinity(0, sizeof s, &s);
      return s;
    }();
    cpu_set_t rest = start;
    for (int c : sw.workers) CPU_CLR(c, &rest);
    if (CPU_COUNT(&rest) == 0) where = "every core (the workers poll all of them)";
    set = CPU_COUNT(&rest) ? rest : start;
  }
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    LOG_WARN("cannot place the control thread (switch.control_cores): %s", strerror(errno));
    control_cores_ = "every core (not placed)";
    return;
  }
  if (where.empty()) {
    for (int c = 0; c < CPU_SETSIZE; c++)
      if (CPU_ISSET(c, &set)) where += (where.empty() ? "cores [" : ",") + std::to_string(c);
    where += "]";
  }
  if (!control_cores_.empty() && where != control_cores_) LOG_INFO("the control thread moves to %s (a worker now polls)", where.c_str());
  control_cores_ = where;
}

// Out of line: Module is complete here.
Core::Core(Config cfg, Plan plan, DaemonOptions opt) : cfg_(std::move(cfg)), plan_(std::move(plan)), opt_(std::move(opt)) {}
Core::~Core() = default;

uint16_t Core::new_port_id() {
  uint16_t id = 0;
  while (id < ports_.size() && ports_[id].used()) id++;
  if (id >= kMaxPorts) throw std::runtime_error("too many ports (max " + std::to_string(kMaxPorts) + ")");
  if (id == ports_.size()) ports_.emplace_back();
  return id;
}

void Core::open_afxdp(uint16_t id, PortRec& pr, const std::string& ifname) {
  auto port = std::make_unique<AfxdpPort>(ifname, AfxdpPort::Options{});
  const int fd = port->fd();
  pr.port = std::move(port);
  pr.kind = PortRec::Kind::kAfxdp;
  xdp_->bind_socket(pr.ifindex, id, fd);
  xdp_->attach(pr.ifindex, ifname);
}

uint16_t Core::add_bd(const NetworkConfig& network) {
  if (network.driver == Driver::kMacvlan) {  // the uplink's segment itself (a macvlan network needs an uplink)
    const uint16_t up = bd_of_.at(kUplinkNetwork);
    bd_name_[up] = network.name;
    bd_of_[network.name] = up;
    return up;
  }
  uint16_t id = 0;
  while (id < bd_name_.size() && !bd_name_[id].empty()) id++;
  if (id == bd_name_.size()) bd_name_.emplace_back();
  bd_name_[id] = network.name;
  bd_of_[network.name] = id;
  return id;
}

int Core::uplink_bd() const {
  auto it = bd_of_.find(kUplinkNetwork);
  return it == bd_of_.end() ? -1 : it->second;
}

void Core::add_bds(const Config& cfg) {
  for (const auto& n : cfg.networks)
    if (!bd_of_.count(n.name)) add_bd(n);
}

void Core::check_modules(const Config& next, const Plan& plan) const {
  for (const auto& m : modules_) m->check(next, plan);
}

void Core::apply_modules() {
  for (const auto& m : modules_) m->apply();
}

void Core::network_removed_modules(uint16_t bd) {
  for (const auto& m : modules_) m->network_removed(bd);
}

void Core::network_gone_modules(uint16_t bd) {
  for (const auto& m : modules_) m->network_gone(bd);
}

void Core::network_mtu_modules(const std::string& network) {
  for (const auto& m : modules_) m->network_mtu(network);
}

void Core::mac_row_modules(const MacTable::Entry& e, nlohmann::json& row) const {
  for (const auto& m : modules_) m->mac_row(e, row);
}

bool Core::port_hidden(uint16_t id) const {
  for (const auto& m : modules_)
    if (m->port_hidden(id)) return true;
  return false;
}

void Core::release(EndpointRec& rec, bool keep_netns) {
  for (uint16_t id : rec.ports) {
    PortRec& pr = ports_[id];
    if (dp_) dp_->macs().flush_port(id);
    for (auto& m : modules_) m->release_port(id, pr);
    if (xdp_ && pr.xdp()) {
      xdp_->unbind_socket(pr.ifindex, id);
      xdp_->detach(pr.ifindex);
    }
    pr.port.reset();  // closes the socket / vhost device (and leaves the worker's epoll set)
    pr = PortRec{};
  }
  try {
    Rtnl rt;
    for (const auto& l : rec.links) rt.delete_link(l);  // takes the container end with it
  } catch (const std::exception& e) {
    LOG_ERR("removing links: %s", e.what());
  }
  if (rec.created_netns && !keep_netns) netns::remove(rec.netns_name);
  if (!rec.sysctls.empty()) {
    try {
      Fd ns(netns::open_path(rec.netns_path));
      in_netns(ns.fd, [&] {
        for (auto it = rec.sysctls.rbegin(); it != rec.sysctls.rend(); ++it) sysctl_write(it->first, it->second);
      });
    } catch (const std::exception& e) {
      LOG_ERR("restoring sysctls in %s: %s", rec.netns_path.c_str(), e.what());
    }
  }
  rec = EndpointRec{};
}

}  // namespace dpsw
