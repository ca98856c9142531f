// A control module: one feature's control side (networks and endpoints,
// the fast tier, the overlay, ...) behind a few hooks the Daemon calls at
// fixed points of setup, a reload, the maintenance tick, snapshot
// compilation, `show`, request dispatch and teardown. The Daemon keeps the
// lifecycle, the control loop, the port registry (Core), the journal,
// request dispatch and the orchestration of a reload; a feature's own
// state, its control verbs and the code that knows it live in its module.
//
// Every hook has a default that does nothing, so a module implements only
// what its feature takes part in. Hooks run on the control thread, in the
// order of Core::modules_ (Daemon::Daemon() lists them once).
//
//   preflight()  `dpsw --check` and before setup, on a Daemon that made
//                nothing, after the core's checks of the control socket and
//                the cores: checks of cfg_/plan_ that depend on this machine
//                (namespaces, sockets, interfaces); throws ConfigError
//   preflight_objects()  then, after the core's check of the XDP object:
//                the module's own BPF objects (files it will load)
//   verbs(r)     the Daemon's constructor (so `dpsw --check` too):
//                registers its control verbs (a name registered twice
//                refuses the start)
//   prepare()    setup, before anything is made (right after the journal's
//                recovery): what it will create can be (names are free);
//                throws ConfigError
//   start()      setup, once, right after the dataplane exists: the
//                module's own kernel and dataplane state (the uplink)
//   check()      on the whole next config and plan, before anything changes
//                (setup after every start(), `add`, reload): throws
//                ConfigError and the change is refused, all or nothing
//   apply()      setup (after check()), a network added, a reload: bring the
//                module's state in line with cfg_ (which already holds the
//                new config; every network has its bridge domain); the
//                caller publishes the result. In a reload a throw is
//                reported as "NAME: error" and the other modules go on
//   attach()     setup, after every apply(): what joins the networks (the
//                endpoints); then the first snapshot is published
//   restore()    setup, once the workers run, before the control socket
//                opens: makes again what it kept from the last run (the
//                persisted endpoints); what cannot be made is logged and
//                dropped, never a failed start
//   reload_check(r)    a reload, after every check(): against this machine
//                      (throws ConfigError: nothing changed); names in
//                      r.applied what it will change. cfg_/plan_: the old
//                      config; *r.next/*r.plan: the new one
//   reload_replace(r)  then, before the new config is in force (the same
//                      cfg_ and *r.next as above): takes down what goes or
//                      is recreated, makes what comes (the bridge module
//                      first makes *r.next's bridge domains, Core::add_bds);
//                      what fails is r.fail()ed and dropped from
//                      *r.next/*r.plan
//   reload_update(r)   then, with cfg_/plan_ holding the new config (r.next
//                      and r.plan point at them): changes in place; a throw
//                      is reported as "NAME: error" like apply()'s; then
//                      every apply() and one snapshot
//   release_port a port's records are being freed (after the snapshot without
//                it, before its Port closes)
//   contribute() its part of every snapshot, after the core's (bridge
//                domains' names); NAT, the last module that adds ports,
//                puts the uplink in front of the flood and rx lists the
//                others filled (services, then DNS, come after it: they
//                add published ports and names, no port)
//   published()  after every snapshot is published (the machine's files that
//                follow it: the DNS module's resolv.conf of each namespace)
//   tick(now)    every maintenance tick (250 ms), after the MAC table's
//   tick_done(now)  then, once every module's tick() ran (e.g. after NAT's expiry)
//   between_ticks(now)  every pass of the daemon's loop, which wakes at least
//                every poll_ms() (when that is not -1; the fast tier: flows
//                the workers just established into the kernel)
//   views()      declares its `show` views
//   network_removed(bd)  a network is going: before the snapshot without it
//   network_gone(bd)     ...and after the grace period (no worker forwards in it)
//   network_mtu(name)    a network's MTU changed in place (cfg_ holds the new one)
//   port_counters(id, t) `show ports`/`counters`: add what it counts for port
//                id (e.g. frames the kernel forwarded) to t; returns a member
//                to show beside them (null: none)
//   port_row(id, pr)     `show ports`: the row of a port of its kind (null: not its)
//   port_hidden(id)      `show ports`/`counters`/`drops`: true for a port of its
//                        own on its way out (a retiring tunnel: its id stays
//                        taken until the module frees it), left out
//   counters(out)        `show counters`: its summary member(s)
//   mac_row(e, row)      `show mac`: what it knows of MAC table entry e, as
//                        members of its row (the kernel tier forwards on it too)
//   detach()     teardown, after the workers stopped, before every stop():
//                releases what joined the networks (the endpoints), counted
//                in Core::removed_links_/removed_netns_ for teardown's log
//   stop()       teardown, after every detach(), in reverse order (users
//                before what they use)
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/core/core.h"
#include "control/core/verbs.h"
#include "control/core/view.h"
#include "dataplane/core/dataplane.h"
#include "dataplane/core/snapshot.h"

namespace dpsw {

// One reload as the modules take part in it (Daemon::reload()).
struct Reload {
  const ConfigDiff& diff;  // cfg_ -> next
  // The config to be in force and its plan. In reload_check() and
  // reload_replace() the reload's own (cfg_/plan_ are still the old ones;
  // reload_replace() drops from them what it could not make); from
  // reload_update() on, when they are in force, cfg_ and plan_ themselves.
  Config* next;
  Plan* plan;
  nlohmann::json applied = nlohmann::json::object();  // the reply's "applied" (and the log's)
  std::string failed{};    // what could not be applied: the error "reload applied, except: ..."
  void fail(const std::string& what, const std::exception& e) { failed += (failed.empty() ? "" : "; ") + what + ": " + e.what(); }
};

// The views of one `show` request: the daemon's own and every module's, in
// the order they are declared (which is the order `show` alone lists them).
struct ViewRegistry {
  struct Entry {
    view::View view;
    size_t max_args;                      // arguments it takes (view.args says which)
    std::function<nlohmann::json()> rows;  // the result
  };
  const std::vector<std::string>& args;  // the request's arguments after the view's name
  std::vector<Entry> entries;
};

class Module {
 public:
  explicit Module(Core& core) : core_(core) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual const char* name() const = 0;  // in logs and in a reload's partial-failure reply
  virtual void preflight() const {}
  virtual void preflight_objects() const {}
  virtual void prepare() const {}
  virtual void check(const Config& /*next*/, const Plan& /*plan*/) const {}
  virtual void start() {}
  virtual void apply() {}
  virtual void attach() {}
  virtual void restore() {}  // after start-up, workers running: make again what was kept from the last run
  virtual void reload_check(Reload& /*r*/) const {}
  virtual void reload_replace(Reload& /*r*/) {}
  virtual void reload_update(Reload& /*r*/) {}
  virtual void release_port(uint16_t /*id*/, const PortRec& /*pr*/) {}
  virtual void contribute(Snapshot& /*s*/) const {}
  virtual void published() {}
  virtual void tick(uint32_t /*now*/) {}
  virtual void tick_done(uint32_t /*now*/) {}  // after every module's tick() (NAT's expiry among them)
  virtual int poll_ms() const { return -1; }  // how soon it wants between_ticks() (-1: never)
  virtual void between_ticks(uint32_t /*now*/) {}
  virtual void views(ViewRegistry& /*r*/) {}
  virtual void verbs(VerbRegistry& /*r*/) {}
  virtual void detach() {}
  virtual void stop() {}
  virtual void network_removed(uint16_t /*bd*/) {}
  virtual void network_gone(uint16_t /*bd*/) {}
  virtual void network_mtu(const std::string& /*network*/) {}
  virtual nlohmann::json port_counters(uint16_t /*id*/, Dataplane::PortTotals& /*t*/) const { return nullptr; }
  virtual nlohmann::json port_row(uint16_t /*id*/, const PortRec& /*pr*/) const { return nullptr; }
  virtual bool port_hidden(uint16_t /*id*/) const { return false; }
  virtual void counters(nlohmann::json& /*out*/) const {}
  virtual void mac_row(const MacTable::Entry& /*e*/, nlohmann::json& /*row*/) const {}

 protected:
  Core& core_;
};

}  // namespace dpsw
