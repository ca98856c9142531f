// The control core: lifecycle, control loop, request dispatch, reload
// orchestration, snapshots as the core's part plus every module's (daemon.h).
#include "control/core/daemon.h"

#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cstring>
#include <functional>

#include "control/bridge/bridge.h"
#include "control/core/ctl_server.h"
#include "control/core/log.h"
#include "control/core/module.h"
#include "control/core/netlink.h"
#include "control/core/socket_path.h"
#include "control/core/view.h"
#include "control/fast/fast_control.h"
#include "control/nat/nat.h"
#include "control/overlay/overlay.h"
#include "control/dns/dns.h"
#include "control/services/services.h"
#include "control/ports/ports.h"
#include "dataplane/core/clock.h"
#include "dataplane/ports/dpdk_env.h"

namespace dpsw {

using nlohmann::json;

// Only an absent path or a socket may be there (a live one is refused by setup(): `dpsw --check` of a running config passes).
static SocketPathState control_socket_state(const Config& cfg) {
  try {
    return check_socket_path(cfg.sw.control_socket, "switch.control_socket");
  } catch (const std::runtime_error& e) {
    throw ConfigError(cfg.path + ": " + e.what());
  }
}

// ConfigError unless every core of `cores` (the switch key `key`) is one this process may run on.
static void check_cores(const Config& cfg, const std::vector<int>& cores, const std::string& key) {
  cpu_set_t allowed;
  sched_getaffinity(0, sizeof allowed, &allowed);
  for (size_t i = 0; i < cores.size(); i++) {
    int c = cores[i];
    if (c >= CPU_SETSIZE || !CPU_ISSET(c, &allowed))
      throw ConfigError(cfg.path + ": switch." + key + "[" + std::to_string(i) + "]: core " + std::to_string(c) +
                        " is not available on this machine (" + std::to_string(CPU_COUNT(&allowed)) + " usable cores)");
  }
}

void preflight(const Config& cfg, const Plan& plan, const DaemonOptions& opt) { Daemon(cfg, plan, opt).preflight(); }

// The order of the checks is the order of the first error a config with
// several problems reports: the control socket, the cores, every module's
// preflight() (each endpoint's namespace and socket, the uplink interface),
// the XDP object, every module's preflight_objects() (the fast tier's).
void Daemon::preflight() const {
  control_socket_state(cfg_);
  check_cores(cfg_, cfg_.sw.workers, "workers");
  if (cfg_.sw.steer_cores) check_cores(cfg_, *cfg_.sw.steer_cores, "fast_path_steering.cores");
  if (cfg_.sw.control_cores) check_cores(cfg_, *cfg_.sw.control_cores, "control_cores");
  for (const auto& m : modules_) m->preflight();
  if (access(opt_.bpf_object.c_str(), R_OK) != 0)
    throw ConfigError("BPF object " + opt_.bpf_object + " is not readable (use --bpf-object)");
  for (const auto& m : modules_) m->preflight_objects();
}

void read_uplink_mtu(Config& cfg) {
  if (!cfg.uplink || !if_nametoindex(cfg.uplink->interface.c_str())) return;
  Rtnl rt;
  cfg.uplink->mtu = rt.link_mtu(cfg.uplink->interface);
  resolve_defaults(cfg);
}

Daemon::Daemon(Config cfg, Plan plan, DaemonOptions opt) : Core(std::move(cfg), std::move(plan), std::move(opt)) {
  // The control modules, in the order their hooks run.
  Core& core = *this;
  auto ports = std::make_unique<Ports>(core);
  auto fast = std::make_unique<FastControl>(core);
  auto bridge = std::make_unique<Bridge>(core, *fast, *ports);
  auto nat = std::make_unique<Nat>(core, *bridge, *fast);
  modules_.push_back(std::move(bridge));
  modules_.push_back(std::move(ports));
  modules_.push_back(std::move(fast));
  modules_.push_back(std::make_unique<Overlay>(core, *nat));
  // NAT's contribute() puts the uplink in front of the flood and rx lists the
  // modules before it filled (those after it add no port); services add
  // published ports after NAT's, and DNS answers their names (its counters
  // add the fast tier's DNS answers, which the fast module writes first).
  modules_.push_back(std::move(nat));
  modules_.push_back(std::make_unique<Services>(core));
  modules_.push_back(std::make_unique<Dns>(core));

  // One table of control verbs, the core's and every module's: a name taken
  // twice refuses the start (and `dpsw --check`, which builds a Daemon too)
  // here, before anything is made.
  verbs_.add("show", [this](const VerbRegistry::Request& r) {
    return show(r.args.empty() ? "views" : r.args[0],  // `show` alone lists the views
                std::vector<std::string>(r.args.begin() + (r.args.empty() ? 0 : 1), r.args.end()));
  });
  verbs_.add("reload", [this](const VerbRegistry::Request&) { return reload(); });
  verbs_.add("version", [](const VerbRegistry::Request&) { return json{{"version", DPSW_VERSION}, {"protocol", kCtlProtocolVersion}}; });
  for (const auto& m : modules_) m->verbs(verbs_);
}

Daemon::~Daemon() { teardown(); }

void Daemon::setup() {
  set_up_ = true;  // from here on teardown() undoes whatever was made, also when setup fails half way
  rlimit rl{RLIM_INFINITY, RLIM_INFINITY};
  setrlimit(RLIMIT_MEMLOCK, &rl);  // UMEMs are locked memory on older kernels

  place_control_thread(false);
  journal_ = std::make_unique<Journal>(cfg_.sw.state_dir, cfg_.sw.name);
  if (int n = journal_->recover()) LOG_WARN("removed %d namespaces/links left by an earlier run of '%s'", n, cfg_.sw.name.c_str());

  try {
    if (control_socket_state(cfg_) == SocketPathState::kLive)
      throw ConfigError(cfg_.path + ": switch.control_socket: " + cfg_.sw.control_socket + " is in use by another running dpsw");
    for (const auto& m : modules_) m->prepare();  // names to create are free (stale ones were just removed)

    // Its routed-flow map (shared with the fast tier) holds two entries per
    // flow, at most every flow of the connection table, capped at 1M entries
    // (the map is not preallocated, but its bucket array follows the cap).
    xdp_ = std::make_unique<XdpProgram>(opt_.bpf_object, uint32_t(std::min<uint64_t>(2ULL * cfg_.sw.conntrack_size, 1u << 20)));
    Dataplane::Options dopt;
    dopt.cores = cfg_.sw.workers;
    dopt.mac.size = cfg_.sw.mac_table_size;
    dopt.mac.aging_ms = cfg_.sw.mac_aging_s * 1000;
    dopt.mac.confirm_ms = std::min<uint32_t>(1000, dopt.mac.aging_ms / 2);
    dopt.mac.refresh_ms = dopt.mac.confirm_ms;
    dopt.idle = cfg_.sw.blocks() ? Dataplane::Options::Idle::kBlock : Dataplane::Options::Idle::kPoll;
    dopt.idle_after_us = cfg_.sw.idle_after_us;
    dp_ = std::make_unique<Dataplane>(dopt);
    for (const auto& m : modules_) m->start();
    check_modules(cfg_, plan_);
    add_bds(cfg_);  // every network's bridge domain, before the modules' apply() (the overlay's tunnels join them)
    apply_modules();
    for (const auto& m : modules_) m->attach();
    publish_snapshot();
    dp_->start();
    for (const auto& m : modules_) m->restore();
    ctl_ = std::make_unique<CtlServer>(cfg_.sw.control_socket, [this](const json& r) { return handle(r); });
  } catch (...) {
    teardown();
    throw;
  }
}

void Daemon::publish_snapshot() {
  auto s = std::make_unique<Snapshot>();
  s->generation = ++generation_;
  s->rx_ports.resize(dp_->workers());
  s->ports.resize(ports_.size());
  s->bds.resize(bd_name_.size());
  for (size_t i = 0; i < bd_name_.size(); i++) s->bds[i].name = bd_name_[i];
  for (const auto& m : modules_) m->contribute(*s);
  dp_->publish(std::move(s));
  for (const auto& m : modules_) m->published();
}

json Daemon::reload() {
  Config next = load_config(cfg_.path);
  // Persisted networks and endpoints are not the file's: the file's difference leaves them be.
  for (const auto& n : cfg_.networks)
    if (n.persist) next.networks.push_back(n);
  for (const auto& e : cfg_.endpoints)
    if (e.persist) next.endpoints.push_back(e);
  if (next.uplink && cfg_.uplink) {
    next.uplink->mtu = cfg_.uplink->mtu;
    resolve_defaults(next);
  }
  check_config(next);  // the file's items against the persisted ones (names, subnets, published ports)
  ConfigDiff d = diff_configs(cfg_, next);
  if (!d.switch_changed.empty()) {
    std::string keys;
    for (auto& k : d.switch_changed) keys += (keys.empty() ? "" : ", ") + (k == "uplink" ? k : "switch." + k);
    throw ConfigError(cfg_.path + ": " + keys + " cannot change while dpsw runs (restart it); nothing was changed");
  }
  Plan kept = kept_plan(plan_, d);  // what the reload changes is planned from scratch
  Plan np = make_plan(next, &kept);
  check_modules(next, np);
  Reload r{.diff = d, .next = &next, .plan = &np};
  for (const auto& m : modules_) m->reload_check(r);  // against this machine: a rejected reload changes nothing
  if (d.empty()) return {{"applied", r.applied}, {"unchanged", true}};

  // Everything validated: apply.
  for (const auto& m : modules_) m->reload_replace(r);
  cfg_ = std::move(next);
  plan_ = std::move(np);
  r.next = &cfg_;  // what reload_update() sees: the config in force
  r.plan = &plan_;
  // From here on the new config is in force: whatever fails below is
  // reported ("NAME: error"), the other modules go on, and the snapshot is
  // published regardless (nothing created by this reload may be left out of it).
  auto each = [&](const std::function<void(Module&)>& hook) {
    for (const auto& m : modules_) {
      try {
        hook(*m);
      } catch (const std::exception& e) {
        r.fail(m->name(), e);
      }
    }
  };
  each([&](Module& m) { m.reload_update(r); });
  each([](Module& m) { m.apply(); });  // e.g. the overlay follows the new peer lists
  publish_snapshot();  // published ports, allow, internal: in place
  LOG_INFO("reload: %s", r.applied.dump().c_str());
  if (!r.failed.empty()) throw std::runtime_error("reload applied, except: " + r.failed);
  return {{"applied", r.applied}, {"unchanged", false}};
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
  LOG_INFO("ready: %zu ports, %zu networks, %u workers on cores [%s], the control thread on %s, control socket %s", ports_.size(),
           cfg_.networks.size(), dp_->workers(), cores.c_str(), control_cores_.c_str(), cfg_.sw.control_socket.c_str());
  uint32_t last_maint = now_ms();
  std::vector<pollfd> fds;
  for (;;) {
    fds.assign({{sfd.fd, POLLIN, 0}});
    ctl_->fill_pollfds(fds);  // control clients never block this loop: ageing and signals keep their pace
    const int ctl_wait = ctl_->next_timeout_ms();
    // A module that polls (the fast tier installing just-established flows) wakes the loop as often as it asks.
    int cap = 200;
    bool polling = false;
    for (auto& m : modules_)
      if (const int ms = m->poll_ms(); ms >= 0) cap = std::min(cap, ms), polling = true;
    int r = poll(fds.data(), fds.size(), ctl_wait >= 0 ? std::min(ctl_wait, cap) : cap);
    if (r < 0 && errno != EINTR) break;
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo si;
      if (read(sfd.fd, &si, sizeof si) == sizeof si) {
        LOG_INFO("signal %s: shutting down", strsignal(int(si.ssi_signo)));
        break;
      }
    }
    ctl_->on_events(fds.data() + 1, r > 0 ? fds.size() - 1 : 0);
    uint32_t now = now_ms();
    if (polling)
      for (auto& m : modules_) m->between_ticks(now);
    if (now - last_maint >= 250) {
      dp_->maintain(now, cfg_.sw.mac_aging_s * 1000);
      for (auto& m : modules_) m->tick(now);
      for (auto& m : modules_) m->tick_done(now);
      last_maint = now;
    }
  }
  teardown();
  return 0;
}

void Daemon::teardown() {
  if (!set_up_) return;  // never set up (`dpsw --check`'s Daemon), or torn down already
  set_up_ = false;
  ctl_.reset();
  if (dp_) {
    dp_->stop();  // workers gone: ports can be released without a grace period
    dp_->synchronize();  // runs what defer() still holds (it touches ports_ and the MAC table), while they are whole
  }
  for (const auto& m : modules_) m->detach();  // what joined the networks, before what it uses
  for (auto m = modules_.rbegin(); m != modules_.rend(); ++m) (*m)->stop();  // reverse order: users before what they use
  dp_.reset();
  xdp_.reset();
  DpdkEnv::shutdown();  // no-op unless a port (vhost-user) brought DPDK up
  if (journal_) {
    try {
      Rtnl rt;
      for (const auto& l : rt.links_with_alias_prefix(journal_->alias_tag())) rt.delete_link(l);
    } catch (const std::exception& e) {
      LOG_ERR("teardown: %s", e.what());
    }
    journal_->clear();
    journal_.reset();
    if (removed_links_ || removed_netns_) LOG_INFO("removed %zu links and %zu namespaces", removed_links_, removed_netns_);
  }
  removed_links_ = removed_netns_ = 0;
  ports_.clear();
}

CtlReply Daemon::handle(const json& req) { return verbs_.dispatch(req); }

// Every view of `show` is declared once, here or in its feature's module
// (Module::views(), asked between `ports` and `counters`): the rows of its
// answer (the reply's "result", which scripts read) and how a person reads
// them (the reply's "view", see view.h). dpswctl prints any view from that
// description.
CtlReply Daemon::show(const std::string& what, const std::vector<std::string>& args) {
  using view::col, view::line, view::pick, view::table;
  auto port_counters = [&](uint16_t id) {
    auto t = dp_->port_totals(id);
    json extra = json::object();
    for (const auto& m : modules_)  // what a module counts for the port (the kernel tier's own frames)
      if (json x = m->port_counters(id, t); x.is_object()) extra.update(x);
    json drops = json::object();
    for (size_t d = 0; d < kDropReasons; d++)
      if (t.drops[d]) drops[std::string(drop_reason_name(Drop(d)))] = t.drops[d];
    json j{{"rx_packets", t.rx_packets}, {"rx_bytes", t.rx_bytes}, {"tx_packets", t.tx_packets},
           {"tx_bytes", t.tx_bytes}, {"flood_packets", t.flood_packets}, {"drops", drops}};
    j.update(extra);
    return j;
  };
  using Shown = ViewRegistry::Entry;
  ViewRegistry reg{args, {}};
  std::vector<Shown>& views = reg.entries;

  views.push_back({{"ports", "", "every port: endpoint, network, addresses, owning worker, packets",
                    {table("", {col("ID", "id"), col("PORT", "name"), col("KIND", "kind"), col("ENDPOINT", "endpoint"),
                                col("NETWORK", "network"), col("MAC", "mac"), col("IP", "ip"), col("WORKER", "worker"),
                                col("RX", "counters.rx_packets"), col("TX", "counters.tx_packets")})}},
                   0, [&] {
    json out = json::array();
    const Snapshot& s = dp_->snapshot();
    for (uint16_t id = 0; id < ports_.size(); id++) {
      const PortRec& pr = ports_[id];
      if (!pr.used() || port_hidden(id)) continue;  // hidden: e.g. a removed tunnel awaiting its grace period
      json p;
      for (const auto& m : modules_)  // a port of a module's own kind (a tunnel)
        if (p.is_null()) p = m->port_row(id, pr);
      if (p.is_null()) {
        p = {{"id", id}, {"name", pr.host_ifname}, {"kind", pr.kind == PortRec::Kind::kPunt ? "punt" : pr.port->kind()}, {"endpoint", pr.endpoint},
             {"network", pr.network}, {"ifname", pr.ifname}, {"mac", mac_to_string(pr.mac)},
             {"ip", ipv4_to_string(pr.ip)}, {"worker", s.port(id) ? s.port(id)->owner : 0},
             {"link", pr.port->link_up() ? "up" : "down"}, {"link_changes", pr.port->link_changes()}};
      }
      p["counters"] = port_counters(id);
      out.push_back(p);
    }
    return out;
  }});

  for (auto& m : modules_) m->views(reg);

  views.push_back({{"counters", "", "packets and drops by port, worker load, table occupancy",
                    {table("ports", {col("PORT", "@key"), col("ENDPOINT", "endpoint"), col("RX_PKTS", "rx_packets"),
                                     col("RX_BYTES", "rx_bytes"), col("TX_PKTS", "tx_packets"), col("TX_BYTES", "tx_bytes"),
                                     col("FLOODED", "flood_packets"), col("DROPS", "drops")}),
                     table("workers", {col("WORKER", "worker"), col("CORE", "core"), col("LOOPS", "loops"),
                                       col("BUSY(cycles)", "busy_percent", "percent"),
                                       col("PKTS/BUSY_LOOP", "pkts_per_busy_loop", "ratio"), col("LEARN_SKIPPED", "learn_skipped")}),
                     line("mac table: {mac_table.entries}/{mac_table.capacity} entries; "
                          "xdp: {xdp.redirected} redirected, {xdp.passed_no_socket} passed (no socket)"),
                     // The modules' summary members (counters() below), in the order these lines
                     // always had: not the modules' order (Ports comes first), so declared here.
                     line("conntrack: {conntrack.flows}/{conntrack.capacity} flows; refused (table full) {conntrack.refused_full}, "
                          "early drops {conntrack.early_drop}")
                         .only_if("conntrack"),
                     line("fast tier fdb: {fast_tier.fdb_entries}/{fast_tier.fdb_capacity} entries, {fast_tier.fdb_refused} refused; "
                          "routed flows in the kernel: {fast_tier.nat_flows}/{fast_tier.nat_capacity}, {fast_tier.nat_refused} refused, "
                          "{fast_tier.nat_forwarded} packets forwarded")
                         .only_if("fast_tier"),
                     line("dpdk mbufs: {dpdk.mbufs_available}/{dpdk.mbufs_total} available").only_if("dpdk")}},
                   0, [&] {
    json ports = json::object();
    uint64_t rx = 0;
    for (uint16_t id = 0; id < ports_.size(); id++) {
      const PortRec& pr = ports_[id];
      if (!pr.used() || port_hidden(id)) continue;
      ports[pr.host_ifname] = port_counters(id);
      ports[pr.host_ifname]["endpoint"] = pr.endpoint;
      ports[pr.host_ifname]["network"] = pr.network;
      rx += ports[pr.host_ifname]["rx_packets"].get<uint64_t>();
    }
    json workers = json::array();
    for (unsigned w = 0; w < dp_->workers(); w++) {
      auto& c = dp_->worker(w).counters();
      const uint64_t busy_loops = c.busy_loops.get(), busy = c.busy_cycles.get(), idle = c.idle_cycles.get();
      json j = {{"worker", w}, {"core", cfg_.sw.workers[w]}, {"loops", c.loops.get()},
                {"busy_loops", busy_loops}, {"busy_cycles", busy},
                {"idle_cycles", idle}, {"sleeps", c.sleeps.get()},
                {"learn_skipped", c.learn_skipped.get()}};
      j["busy_percent"] = busy + idle > 0 ? 100.0 * double(busy) / (double(busy) + double(idle)) : 0.0;  // the real load
      if (dp_->workers() == 1)  // average burst (ports are not per worker: only with one worker)
        j["pkts_per_busy_loop"] = busy_loops > 0 ? double(rx) / double(busy_loops) : 0.0;
      workers.push_back(j);
    }
    auto [redir, passed] = xdp_->stats();
    json out{{"ports", ports}, {"workers", workers},
             {"mac_table", {{"entries", dp_->macs().count()}, {"capacity", dp_->macs().capacity()}}},
             {"xdp", {{"redirected", redir}, {"passed_no_socket", passed}}}};
    for (const auto& m : modules_) m->counters(out);  // "dpdk", "conntrack", "fast_tier"
    return out;
  }});

  views.push_back({{"drops", "", "every drop reason: where it is counted, frames dropped (all ports), what it means",
                    {table("", {col("REASON", "reason"), col("NODES", "nodes"), col("DROPPED", "packets"), col("MEANING", "meaning")})}},
                   0, [&] {
    // One row per reason of the one table (DPSW_DROP_REASONS), summed over
    // the ports with what the modules count for them (the kernel tier's).
    json total = json::object();
    for (uint16_t id = 0; id < ports_.size(); id++) {
      if (!ports_[id].used() || port_hidden(id)) continue;
      const json c = port_counters(id);  // named: a range-for over a temporary's member would dangle
      for (const auto& [reason, n] : c["drops"].items()) total[reason] = total.value(reason, uint64_t(0)) + n.get<uint64_t>();
    }
    json out = json::array();
    for (const DropReason& r : kDropReasonTable) {
      const std::string name(r.name);
      out.push_back({{"reason", name}, {"nodes", std::string(r.nodes)}, {"packets", total.value(name, uint64_t(0))},
                     {"meaning", std::string(r.text)}});
    }
    return out;
  }});
  views.push_back({{"views", "", "this list (`show` alone)", {table("", {col("VIEW", "name"), col("ARGS", "args"), col("ABOUT", "about")})}},
                   0, [&] {
    json out = json::array();
    for (const auto& v : views) out.push_back({{"name", v.view.name}, {"args", v.view.args}, {"about", v.view.about}});
    return out;
  }});

  auto it = std::find_if(views.begin(), views.end(), [&](const Shown& v) { return v.view.name == what; });
  if (it == views.end()) {
    std::string names;
    for (const auto& v : views) names += (names.empty() ? "" : ", ") + v.view.name + (v.view.args.empty() ? "" : " " + v.view.args);
    throw std::runtime_error("cannot show '" + what + "': expected " + names);
  }
  if (args.size() > it->max_args)
    throw std::runtime_error("show " + what + ": unexpected '" + args[it->max_args] + "' (usage: show " + what +
                             (it->view.args.empty() ? "" : " " + it->view.args) + ")");
  CtlReply r(it->rows());
  r.extra["view"] = it->view.describe();
  return r;
}

}  // namespace dpsw
