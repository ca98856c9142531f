#include "dataplane/counters.h"

namespace dpsw {

std::string_view drop_reason_name(Drop d) {
  switch (d) {
    case Drop::kRunt: return "runt";
    case Drop::kOversize: return "oversize";
    case Drop::kBadSrcMac: return "bad_src_mac";
    case Drop::kSamePort: return "same_port";
    case Drop::kNoNetwork: return "no_network";
    case Drop::kTxFull: return "tx_full";
    case Drop::kHandoffFull: return "handoff_full";
    case Drop::kNoRoute: return "no_route";
    case Drop::kBadIp: return "bad_ip";
    case Drop::kTtl: return "ttl";
    case Drop::kIsolated: return "isolated";
    case Drop::kInternal: return "internal";
    case Drop::kNoFlow: return "no_flow";
    case Drop::kArpMiss: return "arp_miss";
    case Drop::kCtFull: return "ct_full";
    case Drop::kVxlanBad: return "vxlan_bad";
    case Drop::kVxlanVni: return "vxlan_vni";
    case Drop::kVxlanPeer: return "vxlan_peer";
    case Drop::kTooBig: return "too_big";
    case Drop::kSplitHorizon: return "split_horizon";
    case Drop::kPuntTag: return "punt_tag";
    case Drop::kArpSpoof: return "arp_spoof";
    case Drop::kVxlanFragment: return "vxlan_fragment";
    case Drop::kBadCsum: return "bad_csum";
    case Drop::kMartian: return "martian";
    case Drop::kFragNoFlow: return "frag_no_flow";
    case Drop::kNatClash: return "nat_clash";
    case Drop::kWrongIngress: return "wrong_ingress";
    case Drop::kSpoofedSrc: return "spoofed_src";
    case Drop::kFromMacvlan: return "from_macvlan";
    case Drop::kPuntShare: return "punt_share";
    case Drop::kCount: break;
  }
  return "?";
}

}  // namespace dpsw
