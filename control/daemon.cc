#include "control/daemon.h"

#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <set>

#include "control/ctl_server.h"
#include "control/log.h"
#include "control/netlink.h"
#include "dataplane/clock.h"

namespace dpsw {

using nlohmann::json;

namespace {
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};
const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kBridge: return "bridge";
    case Mode::kNone: return "none";
    case Mode::kHost: return "host";
    case Mode::kContainer: return "container";
  }
  return "?";
}
}  // namespace

void preflight(const Config& cfg, const Plan& plan, const DaemonOptions& opt) {
  cpu_set_t allowed;
  sched_getaffinity(0, sizeof allowed, &allowed);
  for (size_t i = 0; i < cfg.sw.workers.size(); i++) {
    int c = cfg.sw.workers[i];
    if (c >= CPU_SETSIZE || !CPU_ISSET(c, &allowed))
      throw ConfigError(cfg.path + ": switch.workers[" + std::to_string(i) + "]: core " + std::to_string(c) +
                        " is not available on this machine (" + std::to_string(CPU_COUNT(&allowed)) + " usable cores)");
  }
  for (const auto& ep : plan.endpoints) {
    struct stat st;
    if (!ep.create_netns && !ep.netns_path.empty() && stat(ep.netns_path.c_str(), &st) != 0)
      throw ConfigError(cfg.path + ": endpoint '" + ep.name + "': netns " + ep.netns_path + " does not exist");
  }
  if (access(opt.bpf_object.c_str(), R_OK) != 0)
    throw ConfigError("BPF object " + opt.bpf_object + " is not readable (use --bpf-object)");
}

Daemon::Daemon(Config cfg, Plan plan, DaemonOptions opt) : cfg_(std::move(cfg)), plan_(std::move(plan)), opt_(std::move(opt)) {}

Daemon::~Daemon() { teardown(); }

void Daemon::setup() {
  rlimit rl{RLIM_INFINITY, RLIM_INFINITY};
  setrlimit(RLIMIT_MEMLOCK, &rl);  // UMEMs are locked memory on older kernels

  journal_ = std::make_unique<Journal>(cfg_.sw.state_dir, cfg_.sw.name);
  if (int n = journal_->recover()) LOG_WARN("removed %d namespaces/links left by an earlier run of '%s'", n, cfg_.sw.name.c_str());

  try {
    if (CtlServer::in_use(cfg_.sw.control_socket))
      throw ConfigError(cfg_.path + ": switch.control_socket: " + cfg_.sw.control_socket + " is in use by another running dpsw");
    // Names we are about to create must be free now (stale ones were just removed).
    Rtnl rt;
    for (const auto& ep : plan_.endpoints) {
      if (ep.create_netns && netns::exists(ep.netns_name))
        throw ConfigError(cfg_.path + ": endpoint '" + ep.name + "': namespace " + ep.netns_name + " already exists and was not created by this instance");
      for (const auto& a : ep.attachments)
        if (rt.ifindex(a.host_ifname))
          throw ConfigError(cfg_.path + ": endpoint '" + ep.name + "': link " + a.host_ifname + " already exists");
    }

    xdp_ = std::make_unique<XdpProgram>(opt_.bpf_object);
    Dataplane::Options dopt;
    dopt.cores = cfg_.sw.workers;
    dopt.mac.size = cfg_.sw.mac_table_size;
    dopt.mac.aging_ms = cfg_.sw.mac_aging_s * 1000;
    dopt.mac.confirm_ms = std::min<uint32_t>(1000, dopt.mac.aging_ms / 2);
    dopt.mac.refresh_ms = dopt.mac.confirm_ms;
    dopt.idle = cfg_.sw.idle_block ? Dataplane::Options::Idle::kBlock : Dataplane::Options::Idle::kPoll;
    dopt.idle_after_us = cfg_.sw.idle_after_us;
    dp_ = std::make_unique<Dataplane>(dopt);

    for (const auto& ep : plan_.endpoints) create_endpoint(ep);
    publish_snapshot();
    dp_->start();
    ctl_ = std::make_unique<CtlServer>(cfg_.sw.control_socket, [this](const json& r) { return handle(r); });
  } catch (...) {
    teardown();
    throw;
  }
}

void Daemon::create_endpoint(const PlannedEndpoint& ep) {
  if (ep.mode == Mode::kHost || ep.mode == Mode::kContainer) return;  // nothing of its own to create
  if (ep.create_netns) {
    journal_->record("netns", ep.netns_name);
    netns::create(ep.netns_name);
    created_netns_.push_back(ep.netns_name);
  }
  Fd ns(netns::open_path(ep.netns_path));
  Rtnl host;
  Rtnl inside(ns.fd);
  inside.set_up("lo");
  // Like Docker: containers on IPv4-only networks have IPv6 off (no ND/MLD chatter).
  in_netns(ns.fd, [] { sysctl_write("net/ipv6/conf/all/disable_ipv6", "1"); sysctl_write("net/ipv6/conf/default/disable_ipv6", "1"); });

  for (size_t i = 0; i < ep.attachments.size(); i++) {
    const PlannedAttachment& a = ep.attachments[i];
    journal_->record("link", a.host_ifname);
    host.create_veth(a.host_ifname, journal_->alias_tag() + ep.name + ":" + a.network, a.ifname, ns.fd, a.mac, a.mtu);
    try {
      sysctl_write("net/ipv6/conf/" + a.host_ifname + "/disable_ipv6", "1");
    } catch (const std::exception&) {
    }
    host.set_up(a.host_ifname);
    inside.add_address(a.ifname, a.ip, a.prefix_len);
    // AF_XDP hands frames over as they are; a partial checksum left for
    // offload would arrive unfinished, so the container computes its own.
    in_netns(ns.fd, [&] { ethtool_set_tx_csum(a.ifname, false); });
    inside.set_up(a.ifname);
    if (i == 0) inside.add_default_route(a.gateway);

    PortRec pr;
    pr.id = uint16_t(ports_.size());
    if (pr.id >= kMaxPorts) throw std::runtime_error("too many ports (max " + std::to_string(kMaxPorts) + ")");
    pr.endpoint = ep.name;
    pr.network = a.network;
    pr.host_ifname = a.host_ifname;
    pr.ifname = a.ifname;
    pr.ifindex = host.ifindex(a.host_ifname);
    pr.bd = a.bd;
    pr.mac = a.mac;
    pr.ip = a.ip;
    pr.mtu = a.mtu;
    pr.port = std::make_unique<AfxdpPort>(a.host_ifname, AfxdpPort::Options{});
    xdp_->bind_socket(pr.ifindex, pr.id, pr.port->fd());
    xdp_->attach(pr.ifindex, a.host_ifname);
    LOG_INFO("endpoint %s: %s %s/%u on network %s via %s (port %u)", ep.name.c_str(), mac_to_string(a.mac).c_str(),
             ipv4_to_string(a.ip).c_str(), a.prefix_len, a.network.c_str(), a.host_ifname.c_str(), pr.id);
    ports_.push_back(std::move(pr));
  }
}

void Daemon::publish_snapshot() {
  auto s = std::make_unique<Snapshot>();
  s->generation = ++generation_;
  s->bds.resize(cfg_.networks.size());
  for (size_t i = 0; i < cfg_.networks.size(); i++) s->bds[i].name = cfg_.networks[i].name;
  s->rx_ports.resize(dp_->workers());
  s->ports.resize(ports_.size());
  for (const auto& pr : ports_) {
    PortEntry& pe = s->ports[pr.id];
    pe.port = pr.port.get();
    pe.bd = pr.bd;
    pe.owner = uint16_t(pr.id % dp_->workers());
    pe.max_frame = pr.mtu + kEthHdrLen;
    s->bds[pr.bd].ports.push_back(pr.id);
    s->rx_ports[pe.owner].push_back(pr.id);
  }
  dp_->publish(std::move(s));
}

int Daemon::run() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  Fd sfd(signalfd(-1, &set, SFD_CLOEXEC));
  std::string cores;
  for (int c : cfg_.sw.workers) {
    if (!cores.empty()) cores += ",";
    cores += std::to_string(c);
  }
  LOG_INFO("ready: %zu ports, %zu networks, %u workers on cores [%s], control socket %s", ports_.size(),
           cfg_.networks.size(), dp_->workers(), cores.c_str(), cfg_.sw.control_socket.c_str());
  uint32_t last_maint = now_ms();
  for (;;) {
    pollfd fds[2] = {{sfd.fd, POLLIN, 0}, {ctl_->fd(), POLLIN, 0}};
    int r = poll(fds, 2, 200);
    if (r < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si;
      if (read(sfd.fd, &si, sizeof si) == sizeof si) {
        LOG_INFO("signal %s: shutting down", strsignal(int(si.ssi_signo)));
        break;
      }
    }
    if (fds[1].revents & POLLIN) ctl_->on_readable();
    uint32_t now = now_ms();
    if (now - last_maint >= 250) {
      dp_->maintain(now, cfg_.sw.mac_aging_s * 1000);
      last_maint = now;
    }
  }
  teardown();
  return 0;
}

void Daemon::teardown() {
  ctl_.reset();
  if (dp_) dp_->stop();
  for (auto& pr : ports_) {
    if (xdp_) {
      xdp_->unbind_socket(pr.ifindex, pr.id);
      xdp_->detach(pr.ifindex);
    }
    pr.port.reset();
  }
  dp_.reset();
  xdp_.reset();
  if (journal_) {
    try {
      Rtnl rt;
      for (auto& pr : ports_) rt.delete_link(pr.host_ifname);
      for (const auto& l : rt.links_with_alias_prefix(journal_->alias_tag())) rt.delete_link(l);
    } catch (const std::exception& e) {
      LOG_ERR("teardown: %s", e.what());
    }
    for (auto& n : created_netns_) netns::remove(n);
    journal_->clear();
    journal_.reset();
    if (!ports_.empty() || !created_netns_.empty())
      LOG_INFO("removed %zu links and %zu namespaces", ports_.size(), created_netns_.size());
  }
  ports_.clear();
  created_netns_.clear();
}

json Daemon::handle(const json& req) {
  std::string cmd = req.value("cmd", "");
  std::vector<std::string> args;
  if (req.contains("args")) args = req["args"].get<std::vector<std::string>>();
  if (cmd == "show") {
    if (args.empty()) throw std::runtime_error("show needs what to show: ports, networks, endpoints, mac, counters, version");
    std::string what = args[0];
    args.erase(args.begin());
    return show(what, args);
  }
  if (cmd == "version") return {{"version", DPSW_VERSION}, {"protocol", kCtlProtocolVersion}};
  throw std::runtime_error("unknown command '" + cmd + "'");
}

json Daemon::show(const std::string& what, const std::vector<std::string>& args) {
  auto port_counters = [&](const PortRec& pr) {
    auto t = dp_->port_totals(pr.id);
    json drops = json::object();
    for (size_t d = 0; d < kDropReasons; d++)
      if (t.drops[d]) drops[std::string(drop_reason_name(Drop(d)))] = t.drops[d];
    return json{{"rx_packets", t.rx_packets}, {"rx_bytes", t.rx_bytes}, {"tx_packets", t.tx_packets},
                {"tx_bytes", t.tx_bytes}, {"flood_packets", t.flood_packets}, {"drops", drops}};
  };
  if (what == "ports") {
    json out = json::array();
    const Snapshot& s = dp_->snapshot();
    for (const auto& pr : ports_) {
      json p = {{"id", pr.id}, {"name", pr.host_ifname}, {"kind", pr.port->kind()}, {"endpoint", pr.endpoint},
                {"network", pr.network}, {"ifname", pr.ifname}, {"mac", mac_to_string(pr.mac)},
                {"ip", ipv4_to_string(pr.ip)}, {"worker", s.port(pr.id) ? s.port(pr.id)->owner : 0}};
      p["counters"] = port_counters(pr);
      out.push_back(p);
    }
    return out;
  }
  if (what == "networks") {
    json out = json::array();
    for (size_t i = 0; i < cfg_.networks.size(); i++) {
      const auto& n = cfg_.networks[i];
      json eps = json::array();
      for (const auto& pr : ports_)
        if (pr.bd == i) eps.push_back(pr.endpoint);
      out.push_back({{"name", n.name}, {"driver", "bridge"}, {"subnet", prefix_to_string(n.subnet)},
                     {"gateway", ipv4_to_string(n.gateway)}, {"mtu", n.mtu}, {"internal", n.internal}, {"endpoints", eps}});
    }
    return out;
  }
  if (what == "endpoints") {
    json out = json::array();
    for (const auto& ep : plan_.endpoints) {
      json atts = json::array();
      for (const auto& a : ep.attachments)
        atts.push_back({{"network", a.network}, {"ifname", a.ifname}, {"host_ifname", a.host_ifname},
                        {"mac", mac_to_string(a.mac)}, {"ip", ipv4_to_string(a.ip) + "/" + std::to_string(a.prefix_len)}});
      json e = {{"name", ep.name}, {"mode", mode_name(ep.mode)}, {"netns", ep.netns_path}, {"attachments", atts}};
      if (ep.mode == Mode::kContainer) e["joins"] = ep.joins;
      out.push_back(e);
    }
    return out;
  }
  if (what == "mac") {
    int bd = -1;
    if (!args.empty()) {
      for (size_t i = 0; i < cfg_.networks.size(); i++)
        if (cfg_.networks[i].name == args[0]) bd = int(i);
      if (bd < 0) throw std::runtime_error("unknown network '" + args[0] + "'");
    }
    json out = json::array();
    uint32_t now = now_ms();
    dp_->macs().for_each([&](const MacTable::Entry& e) {
      if (bd >= 0 && e.bd != bd) return;
      std::string port = e.port < ports_.size() ? ports_[e.port].host_ifname : std::to_string(e.port);
      std::string ep = e.port < ports_.size() ? ports_[e.port].endpoint : "";
      out.push_back({{"network", e.bd < cfg_.networks.size() ? cfg_.networks[e.bd].name : "?"},
                     {"mac", mac_to_string(e.mac)}, {"port", port}, {"endpoint", ep},
                     {"age_ms", int32_t(now - e.last_seen_ms) < 0 ? 0 : now - e.last_seen_ms},
                     {"established", e.established}});
    });
    return out;
  }
  if (what == "counters") {
    json ports = json::object();
    for (const auto& pr : ports_) {
      ports[pr.host_ifname] = port_counters(pr);
      ports[pr.host_ifname]["endpoint"] = pr.endpoint;
      ports[pr.host_ifname]["network"] = pr.network;
    }
    json workers = json::array();
    for (unsigned w = 0; w < dp_->workers(); w++) {
      auto& c = dp_->worker(w).counters();
      workers.push_back({{"worker", w}, {"core", cfg_.sw.workers[w]}, {"loops", c.loops.get()},
                         {"busy_loops", c.busy_loops.get()}, {"busy_cycles", c.busy_cycles.get()},
                         {"idle_cycles", c.idle_cycles.get()}, {"sleeps", c.sleeps.get()},
                         {"learn_skipped", c.learn_skipped.get()}});
    }
    auto [redir, passed] = xdp_->stats();
    return {{"ports", ports}, {"workers", workers},
            {"mac_table", {{"entries", dp_->macs().count()}, {"capacity", dp_->macs().capacity()}}},
            {"xdp", {{"redirected", redir}, {"passed_no_socket", passed}}}};
  }
  throw std::runtime_error("cannot show '" + what + "': expected ports, networks, endpoints, mac [NETWORK], counters");
}

}  // namespace dpsw
