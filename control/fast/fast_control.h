// The fast tier's control side as a module: the FastTier object (its BPF
// maps and TC programs) and one punt veth pair and AF_XDP port per worker,
// made when the first endpoint needs it (ensure()) and kept until teardown;
// the learned MACs it is told about on every tick; the established routed
// flows it hands to the kernel tier (sync_nat/refresh_nat); its snapshot part (the
// punt ports and their fair-share slots); the `fast` view; whether the
// kernel tier forwards on a MAC (`show mac`).
//
// The bridge module's endpoint code (control/bridge) uses the rest: ensure()
// and add_port() when it makes a fast-tier endpoint, remove_port() before
// the snapshot without it, set_mtu().
#pragma once

#include <map>
#include <memory>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "control/core/module.h"
#include "dataplane/fast/fast_tier.h"

namespace dpsw {

class FastControl : public Module {
 public:
  explicit FastControl(Core& core) : Module(core) {}
  ~FastControl() override;

  const char* name() const override { return "fast tier"; }
  void preflight_objects() const override;                      // its BPF object, if an endpoint uses it
  void release_port(uint16_t id, const PortRec& pr) override;  // out of the kernel tier's maps
  void contribute(Snapshot& s) const override;                  // the punt ports
  // Service backends' ports into the kernel's port map (their VIP replies:
  // NAT entries, else punted); the DNS names the kernel tier answers.
  void published() override;
  void tick(uint32_t now) override;       // learned MACs into the fdb; routed flows the kernel forwarded stay alive
  void tick_done(uint32_t now) override;  // after NAT's expiry: routed flows into (and out of) the kernel's map
  // Every 5 ms within a second of a flow installed that way, else every 50
  // ms (the daemon's loop calls between_ticks() on every pass, socket events too).
  int poll_ms() const override { return !nat_ready_ ? -1 : announced_at_ ? 5 : 50; }
  void between_ticks(uint32_t now) override;  // flows the workers announced (just established) into the kernel's map
  void views(ViewRegistry& r) override;                         // `fast`
  void stop() override;                                         // punt ports (after every FastPort), then the object
  nlohmann::json port_counters(uint16_t id, Dataplane::PortTotals& t) const override;  // what the kernel tier did for it
  void counters(nlohmann::json& out) const override;            // "fast_tier"
  void mac_row(const MacTable::Entry& e, nlohmann::json& row) const override;  // "fast_tier": in the kernel fdb too

  // The fast tier (object, a punt veth pair and port per worker): made when
  // the first endpoint needs it, kept until teardown. router_mac: the bridge
  // networks' gateway MAC (dpsw's own: never a container's source).
  void ensure(Mac router_mac);
  // Makes port `id` (pr: its record, filled in but for the port) a fast-tier
  // endpoint: a FastPort sending through its owner's punt port, in the
  // kernel's port map, its MAC planned in the fdb. ensure() first.
  void add_port(uint16_t id, PortRec& pr);
  void remove_port(uint16_t id);  // out of the fast tier: no frame is redirected to it any more
  // The uplink (port `id`, pr: its record but for the port) as a FastPort
  // through its owner's punt port: a veth uplink gets no XDP program (it
  // would turn GSO off on its peer); its frames are classified at TC like a
  // container's. ensure() first. Undone by release_port().
  void add_uplink(uint16_t id, PortRec& pr);
  void set_mtu(uint16_t id, uint32_t mtu);  // the host end keeps its higher MTU

 private:
  nlohmann::json events() const;  // the kernel tier's event counters (in use)
  // Fast-tier MACs learned by the MAC table (maintenance tick).
  void sync_fast_macs();
  std::map<uint16_t, std::vector<FastTier::SvcRange>> svc_ports_;  // what the kernel's port map says of each backend port
  std::map<std::pair<uint16_t, std::string>, FastTier::DnsEntry> dns_;  // what dpsw_fast_dns holds: (network, wire name)
  bool dns_full_logged_ = false;
  void sync_dns();  // dpsw_fast_dns from the snapshot's DNS table
  void sync_tunnels();  // the overlay's tunnels (a punted uplink): before their MACs
  bool tunnel_error_logged_ = false;
  void sync_routes();  // routing between allowed networks
  bool route_error_logged_ = false;
  // Routed flows handed to the kernel tier. refresh_nat() (tick, before
  // NAT's expiry): flows the kernel forwarded since the last tick are
  // refreshed in dpsw's connection table. sync_nat() (tick_done, after the
  // expiry and before the grace period that frees a flow's NAT port):
  // established flows between ports the kernel tier serves (masquerade,
  // published ports, hairpin) are installed (the way back first), entries of
  // flows that closed, expired or changed are removed (the way out first).
  void refresh_nat(uint32_t now);
  void sync_nat();
  // Between ticks (between_ticks(), every few ms) the flows the workers announced as
  // they became established (ConnTrack::announce) are installed at once,
  // bounded per call; the tick's sync_nat() still decides every flow.
  struct NatWant {
    const Flow* flow;
    FastTier::NatEntry out, back;
  };
  bool nat_want(const Flow& f, NatWant* w) const;  // the entries f should have now (false: none)
  void nat_install(const NatWant& w);              // unless the tuple has them, or the map is full
  bool nat_ready_ = false;  // sync_nat() found the uplink: routed flows may go into the kernel tier
  uint32_t announced_at_ = 0;  // ms when between_ticks() last found a flow announced (0: not within a second)
  void drop_nat_of(uint16_t port);
  void check_uplink_peer();  // where the uplink's peer is (FastTier::set_uplink_peer_elsewhere)
  // Whether containers' interfaces have an XDP program (FastTier::set_xdp_peer):
  // kXdpChecksPerTick fast-tier ports a tick, in turn from xdp_cursor_.
  void check_xdp_peers();
  static constexpr size_t kXdpChecksPerTick = 16;
  size_t xdp_cursor_ = 0;
  bool peer_error_logged_ = false;  // check_uplink_peer() could not read the peer (logged once until it can)
  void journal_uplink(const std::string& ifname);  // our TC filter (and qdisc) on the uplink, for crash recovery  // a fast-tier port goes: its flows leave the kernel map first

  std::unique_ptr<FastTier> fast_;
  struct Punt {
    EndpointRec rec;       // its port and veth pair
    uint16_t port = 0;     // port id of the AF_XDP side
    int near_ifindex = 0;  // where the fast tier sends what it punts
  };
  std::vector<Punt> punts_;  // the fast tier's punt ports: one per worker (index), owned by it
  uint64_t fast_refused_reported_ = 0;  // fast-tier fdb refusals already logged
  // What the kernel's routed-flow map holds, by conntrack tuple (packed).
  struct NatState {
    FlowKey key, reply;              // the way out's tuple, the way back's
    FastTier::NatEntry out, back;    // ifindex 0: that direction takes the punted path
    uint64_t last_seen = 0, last_seen_back = 0;  // the kernel's stamps at the previous tick
    // The conntrack flow they were made from: a new flow on the tuple (a
    // reopened connection) replaces them, also clearing the kernel's closed mark.
    const Flow* flow = nullptr;
    bool closed_seen = false;  // refresh_nat(): closed in the kernel while established here, at the last refresh
  };
  std::map<std::pair<uint64_t, uint64_t>, NatState> nat_;
  void nat_remove(const NatState& st);  // both of its entries, the way out first
  uint64_t nat_refused_ = 0;  // installs the full map refused (those flows stay on the punted path)
  size_t nat_full_at_ = 0;    // entries when the map last refused one: no retry until fewer
  bool nat_error_logged_ = false;
  bool uplink_tried_ = false;     // the uplink's TC program: attached once (or refused once, logged)
  uint32_t nat_refreshed_ = 0;    // ms of the last refresh_nat()
};

}  // namespace dpsw
