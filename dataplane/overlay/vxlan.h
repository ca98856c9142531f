// VXLAN (RFC 7348) encapsulation and decapsulation over IPv4/UDP 4789, used
// by the overlay stages (stage_vxlan_*.h). Pure functions on buffers:
// no allocation, no state.
//
// Encap: outer Ethernet + IPv4 (TTL and DF as given, header checksum) + UDP
// (source port from a hash of the inner frame, so the underlay can spread
// flows; checksum 0, which RFC 7348 allows for IPv4) + VXLAN (I flag, VNI).
// Decap: validates every outer header and says what was wrong.
#pragma once

#include <cstdint>
#include <cstring>

#include "dataplane/core/checksum.h"
#include "dataplane/core/ether.h"
#include "dataplane/core/hash.h"

namespace dpsw {

constexpr uint16_t kVxlanPort = 4789;
constexpr uint32_t kVxlanOverhead = 14 + 20 + 8 + 8;  // what the underlay MTU must add

struct VxlanEncap {
  Mac src_mac = 0, dst_mac = 0;  // underlay: us, next hop
  uint32_t src_ip = 0, dst_ip = 0;
  uint32_t vni = 0;              // 24 bits
  uint8_t ttl = 64;
  bool df = false;               // the Linux vxlan default: fragmentation allowed
};

// Entropy for the outer source port (RFC 7348 §5: 49152-65535), from the
// inner Ethernet addresses and, for IPv4, the addresses and L4 ports.
inline uint16_t vxlan_src_port(const uint8_t* inner, uint32_t len) {
  uint64_t h = len >= 12 ? mac_from_bytes(inner) ^ (mac_from_bytes(inner + 6) << 7) : 0;
  if (len >= 14 + 20 && load_be16(inner + 12) == kEtherTypeIpv4) {
    const uint8_t* ip = inner + 14;
    uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4;
    h ^= uint64_t(csum::load32(ip + 12)) << 32 | csum::load32(ip + 16);
    h ^= uint64_t(ip[9]) << 56;
    if ((ip[9] == 6 || ip[9] == 17) && len >= 14 + ihl + 4) h ^= uint64_t(csum::load32(ip + ihl)) << 16;
  }
  return uint16_t(49152 + (mix64(h) % 16384));
}

// Writes kVxlanOverhead + len bytes to out (which may not overlap inner).
// ip_id: the outer IPv4 identification; src_port: 0 = vxlan_src_port(inner).
inline uint32_t vxlan_encap(const VxlanEncap& e, const uint8_t* inner, uint32_t len, uint8_t* out, uint16_t ip_id = 0,
                            uint16_t src_port = 0) {
  mac_to_bytes(e.dst_mac, out);
  mac_to_bytes(e.src_mac, out + 6);
  store_be16(out + 12, kEtherTypeIpv4);
  uint8_t* ip = out + 14;
  ip[0] = 0x45, ip[1] = 0;
  csum::store16(ip + 2, uint16_t(20 + 8 + 8 + len));
  csum::store16(ip + 4, ip_id);
  csum::store16(ip + 6, e.df ? 0x4000 : 0);
  ip[8] = e.ttl, ip[9] = 17;
  ip[10] = ip[11] = 0;
  csum::store32(ip + 12, e.src_ip);
  csum::store32(ip + 16, e.dst_ip);
  csum::store16(ip + 10, csum::of(ip, 20));
  uint8_t* udp = ip + 20;
  csum::store16(udp, src_port ? src_port : vxlan_src_port(inner, len));
  csum::store16(udp + 2, kVxlanPort);
  csum::store16(udp + 4, uint16_t(8 + 8 + len));
  csum::store16(udp + 6, 0);
  uint8_t* vx = udp + 8;
  csum::store32(vx, 0x08000000);          // flags: I (valid VNI)
  csum::store32(vx + 4, e.vni << 8);       // VNI, reserved
  std::memcpy(vx + 8, inner, len);
  return kVxlanOverhead + len;
}

enum class VxlanDecap : uint8_t { kOk, kNotVxlan, kTruncated, kBadIp, kFragment, kBadFlags };

struct VxlanInfo {
  uint32_t vni = 0, src_ip = 0, dst_ip = 0;
  uint16_t src_port = 0;
  const uint8_t* inner = nullptr;
  uint32_t inner_len = 0;
};

inline VxlanDecap vxlan_decap(const uint8_t* f, uint32_t len, VxlanInfo* info) {
  if (len < 14 + 20 || load_be16(f + 12) != kEtherTypeIpv4) return VxlanDecap::kNotVxlan;
  const uint8_t* ip = f + 14;
  const uint32_t ihl = uint32_t(ip[0] & 0x0f) * 4;
  if ((ip[0] >> 4) != 4 || ihl < 20) return VxlanDecap::kBadIp;
  if (ip[9] != 17) return VxlanDecap::kNotVxlan;
  const uint32_t tot = csum::load16(ip + 2);
  if (tot < ihl + 16 || 14 + tot > len) return VxlanDecap::kTruncated;
  if (csum::load16(ip + 6) & 0x3fff) return VxlanDecap::kFragment;  // MF or an offset: not reassembled here
  if (csum::of(ip, ihl) != 0) return VxlanDecap::kBadIp;
  const uint8_t* udp = ip + ihl;
  if (csum::load16(udp + 2) != kVxlanPort) return VxlanDecap::kNotVxlan;
  const uint32_t ulen = csum::load16(udp + 4);
  if (ulen < 16 || ihl + ulen > tot) return VxlanDecap::kTruncated;
  const uint8_t* vx = udp + 8;
  if (!(vx[0] & 0x08)) return VxlanDecap::kBadFlags;  // the VNI is not valid
  info->vni = csum::load32(vx + 4) >> 8;
  info->src_ip = csum::load32(ip + 12);
  info->dst_ip = csum::load32(ip + 16);
  info->src_port = csum::load16(udp);
  info->inner = vx + 8;
  info->inner_len = ulen - 16;
  if (info->inner_len < 14) return VxlanDecap::kTruncated;
  return VxlanDecap::kOk;
}

}  // namespace dpsw
