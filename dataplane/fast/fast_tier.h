// The in-kernel fast tier's control side: loads bpf/fast_l2.bpf.o, attaches
// its TC programs and keeps its maps in step with dpsw's own tables.
//
// Where frames go (see bpf/fast_l2.bpf.c and dataplane/fast/fast_port.h):
//   container -> host veth ingress (TC) -> known (network, dst MAC) of another
//   fast-tier endpoint: bpf_redirect_peer into that container, GSO intact;
//   anything else: tagged with the port id, out of the punt veth -> AF_XDP
//   punt port -> dpsw's pipeline. dpsw -> FastPort -> punt port (tagged) ->
//   punt veth ingress (TC) -> tag popped, bpf_redirect_peer into the container.
//   Established routed flows dpsw installed (dpsw_fast_nat, FastControl::
//   sync_nat), stateless routes between allowed networks and VXLAN tunnels:
//   rewritten (or encapsulated, decapsulated) at the TC ingress of the port
//   they arrive on and sent on (see bpf/fast_l2.bpf.c). A veth uplink is
//   served like an endpoint (add_uplink); a NIC's XDP program passes the
//   routed flows' packets up to dpsw_fast_uplink_in (attach_uplink).
//
// Ordering rules the daemon follows: a port's maps are filled before its TC
// program is attached (no frame of it is ever passed to the host stack), and
// its map entries are removed before the port leaves the snapshot, so the
// fast tier never redirects to an endpoint that is going away.
//
// Control thread only. No pins: the programs live as long as the links they
// are attached to or this object, whichever goes first.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/core/ether.h"
#include "dataplane/nat/conntrack.h"

struct bpf_object;
struct dpsw_punt_share;

namespace dpsw {

class FastTier {
 public:
  // Loads the object; throws std::runtime_error naming the file on failure.
  // fdb_entries: the kernel fdb map's size. The daemon makes it the MAC
  // table's size (every learned MAC) plus room for every port's own MAC, so
  // learning can never crowd out an endpoint. nat_map_fd: the routed-flow
  // map of the XDP program (XdpProgram::nat_map_fd()), which this object
  // shares (-1: its own, of the default size: tests).
  FastTier(const std::string& object_path, uint32_t fdb_entries, int nat_map_fd = -1);
  ~FastTier();  // detaches every program it attached
  FastTier(const FastTier&) = delete;
  FastTier& operator=(const FastTier&) = delete;

  // A punt veth's near end: frames dpsw sends to fast-tier ports arrive here.
  void attach_punt(int ifindex, const std::string& ifname);
  // A fast-tier endpoint's host veth: registers it (frames the tier cannot
  // decide go out of punt veth `punt_ifindex`), then attaches the program.
  // `worker` owns the punt veth (its share applies to the port's punted
  // frames); `mtu`: the network's (longer frames are dropped as oversize).
  void add_port(int ifindex, const std::string& ifname, uint16_t port, uint16_t bd, int punt_ifindex, unsigned worker,
                uint32_t mtu);
  void set_mtu(uint16_t port, uint32_t mtu);  // the network's MTU changed
  // A service backend's ports (its packets from them are VIP replies: the
  // kernel tier's NAT entries, else punted); empty: none.
  struct SvcRange {
    uint8_t proto;
    uint16_t lo, hi;
    bool operator==(const SvcRange&) const = default;
  };
  void set_service_ports(uint16_t port, const std::vector<SvcRange>& ranges);
  // Removes the port's map entries (its MACs included) and detaches.
  void remove_port(uint16_t port);
  bool has_port(uint16_t port) const { return ports_.count(port) != 0; }

  // (network, MAC) behind a fast-tier port. `planned`: the endpoint's own MAC
  // (kept until remove_port); otherwise learned, replaced by sync_learned().
  // Ignored unless `port` is a fast-tier port of network `bd` (or a tunnel
  // of it, or the punted uplink on its segment: an outside host, which a
  // macvlan endpoint reaches out of the uplink); throws when the kernel map
  // refuses it (full).
  void add_mac(uint16_t bd, Mac mac, uint16_t port, bool planned);
  // The MACs dpsw's MAC table holds behind fast-tier ports, (bd, mac) -> port:
  // installs new ones, moves changed ones, removes the rest (planned stay).
  void sync_learned(const std::map<std::pair<uint16_t, Mac>, uint16_t>& learned);
  size_t fdb_size() const { return fdb_.size(); }
  uint32_t fdb_capacity() const { return fdb_capacity_; }
  uint64_t fdb_refused() const { return refused_; }  // learned MACs the full map refused (their frames are punted)
  bool has_mac(uint16_t bd, Mac mac) const { return fdb_.count({bd, mac}) != 0; }
  bool is_planned(uint16_t bd, Mac mac) const {
    auto it = fdb_.find({bd, mac});
    return it != fdb_.end() && it->second.planned;
  }
  // The ports map as the kernel holds it (tests, `show fast`).
  struct KernelPort {
    int ifindex;
    uint16_t port, bd;
    int punt;
  };
  std::vector<KernelPort> dump_ports() const;
  // Every (bd, MAC) -> port entry as the kernel map holds it (tests, `show mac`).
  std::vector<std::pair<std::pair<uint16_t, Mac>, uint16_t>> dump_fdb() const;

  struct PortStats {
    uint64_t rx_packets = 0, rx_bytes = 0, tx_packets = 0, tx_bytes = 0;
    uint64_t punt_share_drops = 0;  // punted frames over the port's share of a congested punt port
    uint64_t oversize = 0;          // frames longer than the network's MTU allows
  };
  PortStats stats(uint16_t port) const;  // summed over CPUs
  struct Events {
    uint64_t punted = 0, no_port = 0, punt_bad_tag = 0, punt_no_peer = 0;
    uint64_t steered = 0;  // known unicast sent to another core through a punt veth's ingress
    uint64_t bad_src = 0;  // dropped: multicast, zero or dpsw's router MAC as source (never a container's)
    uint64_t punt_share = 0;  // dropped: over the port's share of a congested punt port
    uint64_t nat_forwarded = 0;  // routed packets the kernel tier rewrote and sent on (dpsw_fast_nat)
    uint64_t nat_error = 0;      // dropped: a routed packet's rewrite failed half way
    uint64_t vxlan_encap = 0, vxlan_decap = 0;  // overlay frames the kernel tier encapsulated / decapsulated
    uint64_t vxlan_error = 0;    // dropped: an encapsulation or decapsulation failed half way
    uint64_t routed = 0;         // routed between allowed networks by the kernel tier
    uint64_t dns_answered = 0;   // DNS queries answered by the kernel tier (dpsw_fast_dns)
  };
  Events events() const;

  // Steering (bpf/fast_l2.bpf.c): a port sending more than `per_ms` non-GSO,
  // non-TCP frames in a millisecond on one CPU has them delivered
  // through its punt veth's near end, whose RPS mask (the daemon's to set)
  // moves the receive work to another core; 0 turns steering off.
  // steer_cores: that mask's cores; a frame RPS would steer to the core it
  // is on stays on the direct path (over DPSW_STEER_MAX_CPUS cores: steered
  // as RPS picks).
  // router_mac: dpsw's own, dropped as a container's source.
  void set_conf(uint32_t steer_per_ms, const std::vector<int>& steer_cores, Mac router_mac);
  // The uplink (its dpsw port id): replies of routed flows in the map are
  // delivered from its TC ingress (dpsw_fast_uplink_in). Only our filter is
  // added to its clsact qdisc and removed again (the qdisc only if we made
  // it): the uplink is the user's interface.
  void attach_uplink(int ifindex, const std::string& ifname, uint16_t port);
  // A veth uplink served like a fast-tier port (no XDP on it): registered
  // in network `bd` with its own MAC (routed frames from the outside are sent
  // to it), punting through `punt_ifindex` (worker `worker`'s), then
  // dpsw_fast_ingress attached (our filter only, as above). What dpsw sends
  // to it through the punt port leaves through it.
  void add_uplink(int ifindex, const std::string& ifname, uint16_t port, uint16_t bd, int punt_ifindex, unsigned worker,
                  uint32_t mtu, Mac mac, uint32_t ip);
  // That uplink's peer, as the caller found it (and keeps it current):
  // frames unicast to the peer's MAC within its MTU are delivered into it
  // directly (bpf_redirect_peer) while it is in another namespace, without
  // XDP, and the uplink is up; everything else is transmitted by the veth.
  struct UplinkPeer {
    bool elsewhere = false, up = false, xdp = false;
    Mac mac = 0;
    uint32_t mtu = 0;
    bool operator==(const UplinkPeer&) const = default;
  };
  void set_uplink_peer(const UplinkPeer& p);
  const UplinkPeer& uplink_peer() const { return uplink_peer_; }
  bool uplink_into_peer() const {  // what dpsw_fast_conf.uplink_redirect_peer says
    return uplink_punted_ && uplink_peer_.elsewhere && uplink_peer_.up && !uplink_peer_.xdp && uplink_peer_.mac && uplink_peer_.mtu;
  }
  // A fast-tier port whose container interface has (xdp) or no longer has
  // an XDP program, as the caller found it: frames into it go through the
  // host veth's transmit, which runs that program, instead of straight into
  // the interface (bpf_redirect_peer skips it). Unknown ports: ignored.
  void set_xdp_peer(uint16_t port, bool xdp);
  bool xdp_peer(uint16_t port) const { return xdp_peers_.count(port) != 0; }
  // VXLAN tunnels of overlay networks (a punted uplink only): the kernel tier
  // encapsulates frames for MACs learned behind tunnel port `port` (add_mac)
  // and decapsulates frames from (vni, vtep) to local fast-tier endpoints.
  // Addresses in host order. del_tunnel() removes its MACs first.
  struct TunnelEntry {
    uint32_t vtep = 0, local_ip = 0, vni = 0;
    int uplink_ifindex = 0;
    Mac smac = 0, dmac = 0;  // the uplink's, the next hop's
    uint16_t uplink_port = 0, bd = 0, mtu = 0;
    bool operator==(const TunnelEntry&) const = default;
  };
  // Routing between allowed bridge networks (bpf dpsw_fast_route/_allow):
  // sync_routes() makes the maps hold exactly these (addresses host order):
  // endpoint address -> where it lives; (from network, to network) -> the
  // source network's prefix, for allowed pairs. Only fast-tier ports are
  // taken as destinations.
  struct RouteEntry {
    uint16_t port = 0, bd = 0;
    Mac mac = 0;
    uint32_t mtu = 0;
    bool operator==(const RouteEntry&) const = default;
  };
  void sync_routes(const std::map<uint32_t, RouteEntry>& routes,
                   const std::map<std::pair<uint16_t, uint16_t>, std::pair<uint32_t, uint32_t>>& allowed);
  void drop_routes_to(uint16_t port);  // a port that goes: no packet is routed to it any more
  size_t route_count() const { return routes_.size(); }
  void put_tunnel(uint16_t port, const TunnelEntry& t);
  void del_tunnel(uint16_t port);
  const std::map<uint16_t, TunnelEntry>& tunnels() const { return tunnels_; }
  bool has_tunnel(uint16_t port) const { return tunnels_.count(port) != 0; }
  bool uplink_punted() const { return uplink_punted_; }
  uint16_t uplink_port() const { return uplink_port_; }
  bool uplink_made_qdisc() const { return uplink_made_qdisc_; }  // the clsact qdisc on the uplink is ours (removed with our filter)
  void detach_uplink();  // either kind, its map entries too

  // Routed flows the kernel tier forwards itself (bpf dpsw_fast_nat): a
  // packet arriving on port in_port (a fast-tier port, or the uplink) with tuple k (as conntrack
  // keys it: host order) is rewritten to xsip:xsport -> xdip:xdport, gets
  // the Ethernet header smac -> dmac and goes out of ifindex (dpsw port
  // out_port). nat_put() adds or replaces (false: the map is full);
  // nat_last_seen(): the entry's latest packet (ns, CLOCK_MONOTONIC; 0: none
  // yet or no entry); *closed: the kernel tier marked it closed (a FIN or
  // RST it punted).
  struct NatEntry {
    uint16_t in_port = 0, out_port = 0;
    uint32_t xsip = 0, xdip = 0;
    uint16_t xsport = 0, xdport = 0;
    int ifindex = 0;
    Mac smac = 0, dmac = 0;
    bool peer = false;  // delivered into the container behind host veth ifindex (bpf_redirect_peer)
    bool operator==(const NatEntry&) const = default;
  };
  // dpsw_fast_dns (dpsw_abi.h): the names the kernel tier answers. `wire`:
  // the name in wire form, lower case (at most DPSW_DNS_NAME_MAX bytes);
  // addresses host order. dns_put: false when the map refused (full).
  struct DnsEntry {
    uint32_t addr = 0, gateway = 0, ttl = 0;
    bool operator==(const DnsEntry&) const = default;
  };
  bool dns_put(uint16_t bd, const std::string& wire, const DnsEntry& e);
  void dns_del(uint16_t bd, const std::string& wire);
  bool nat_put(const FlowKey& k, const NatEntry& e);
  void nat_del(const FlowKey& k);
  uint64_t nat_last_seen(const FlowKey& k, bool* closed = nullptr) const;
  bool nat_has(const FlowKey& k) const;  // an entry for k, whatever it says
  size_t nat_count() const;  // entries the kernel map holds (walks it: views and tests)
  uint32_t nat_capacity() const { return nat_capacity_; }
  int uplink_ifindex() const { return uplink_ifindex_; }

  // Fair punting: worker w's slot in the memory-mapped dpsw_fast_punt_share
  // map, which that worker (and only it) writes (dataplane/fast/punt_share.h).
  // Valid as long as this object.
  uint32_t* punt_share(unsigned worker);

 private:
  struct PortInfo {
    int ifindex;
    uint16_t bd;
  };
  struct FdbEntry {
    uint16_t port;
    bool planned;
  };
  void attach(int ifindex, int prog_fd, const std::string& ifname);
  void detach(int ifindex);
  void del_fdb(uint16_t bd, Mac mac);
  void drop_macs_of(uint16_t port);  // every fdb entry behind a port or tunnel

  bpf_object* obj_ = nullptr;
  int ingress_fd_ = -1, punt_fd_ = -1, uplink_fd_ = -1;
  int uplink_ifindex_ = 0;
  bool uplink_made_qdisc_ = false;
  bool uplink_punted_ = false;
  Mac uplink_mac_ = 0;
  uint32_t uplink_ip_ = 0;
  UplinkPeer uplink_peer_;
  uint16_t uplink_bd_ = 0;
  int tunnels_map_ = -1, vni_map_ = -1;
  std::map<uint16_t, TunnelEntry> tunnels_;  // what dpsw_fast_tunnels holds
  int route_map_ = -1, allow_map_ = -1, dns_map_ = -1, xdp_peers_map_ = -1;
  std::set<uint16_t> xdp_peers_;  // what dpsw_fast_xdp_peers holds (by port; the map by ifindex)
  std::map<uint32_t, RouteEntry> routes_;     // what dpsw_fast_route holds
  std::map<std::pair<uint16_t, uint16_t>, std::pair<uint32_t, uint32_t>> allowed_;  // ...and dpsw_fast_allow
  void hook_uplink(int ifindex, const std::string& ifname, int prog_fd);  // our filter on its ingress
  uint32_t steer_per_ms_ = 0;
  std::vector<int> steer_cores_;
  Mac router_mac_ = 0;
  uint16_t uplink_port_ = 0;
  void write_conf();
  int ports_map_ = -1, peer_map_ = -1, fdb_map_ = -1, stats_map_ = -1, events_map_ = -1, conf_map_ = -1, nat_map_ = -1;
  uint32_t fdb_capacity_ = 0, nat_capacity_ = 0;
  struct dpsw_punt_share* share_ = nullptr;  // mmap of dpsw_fast_punt_share
  size_t share_len_ = 0;
  uint64_t refused_ = 0;
  std::map<uint16_t, PortInfo> ports_;
  std::map<std::pair<uint16_t, Mac>, FdbEntry> fdb_;  // what the kernel map holds
  std::set<int> attached_;                            // ifindexes with our clsact hook
};

}  // namespace dpsw
