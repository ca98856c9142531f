// VXLAN encap/decap against frames captured from the Linux kernel's own
// vxlan device (VNI 42, 198.51.100.11 -> 198.51.100.10, dstport 4789).
#include "dataplane/overlay/vxlan.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "tests/fixtures/frames.h"

namespace dpsw {
namespace {

std::vector<uint8_t> hex(const std::string& h) {
  std::vector<uint8_t> v;
  for (size_t i = 0; i + 1 < h.size(); i += 2) v.push_back(uint8_t(std::stoi(h.substr(i, 2), nullptr, 16)));
  return v;
}

// Captured on the underlay veth (tcpdump); UDP checksum bytes (40-41) hold the
// veth offload's partial sum and are not compared.
const char* kKernelFrame =
    "86109559c7500a6068acad6008004500007e817c00004011a476c633640bc633640ae0a112b5006a54f80800000000002a00333300000016020000"
    "000b0186dd600000000024000100000000000000000000000000000000ff0200000000000000000000000000163a000502000001008f0064890000"
    "000104000000ff0200000000000000000001ff000b01";

TEST(Vxlan, DecapsKernelFrames) {
  auto f = hex(kKernelFrame);
  VxlanInfo vi;
  ASSERT_EQ(vxlan_decap(f.data(), uint32_t(f.size()), &vi), VxlanDecap::kOk);
  EXPECT_EQ(vi.vni, 42u);
  EXPECT_EQ(vi.src_ip, 0xc633640bu);
  EXPECT_EQ(vi.dst_ip, 0xc633640au);
  EXPECT_EQ(vi.inner_len, f.size() - kVxlanOverhead);
  EXPECT_EQ(mac_from_bytes(vi.inner + 6), 0x020000000b01ULL);  // the kernel vxlan device's MAC, 02:00:00:00:0b:01
}

TEST(Vxlan, EncapReproducesTheKernelsBytes) {
  auto f = hex(kKernelFrame);
  VxlanEncap e;
  e.dst_mac = mac_from_bytes(f.data());
  e.src_mac = mac_from_bytes(f.data() + 6);
  e.src_ip = 0xc633640b;
  e.dst_ip = 0xc633640a;
  e.vni = 42;
  e.ttl = 64;
  e.df = false;
  std::vector<uint8_t> out(f.size());
  uint32_t n = vxlan_encap(e, f.data() + kVxlanOverhead, uint32_t(f.size() - kVxlanOverhead), out.data(), 0x817c, 0xe0a1);
  ASSERT_EQ(n, f.size());
  for (size_t i = 0; i < f.size(); i++) {
    if (i == 40 || i == 41) continue;  // UDP checksum: ours is 0 (allowed for IPv4), the capture's is a partial sum
    ASSERT_EQ(out[i], f[i]) << "byte " << i;
  }
  EXPECT_EQ(out[40], 0);
  EXPECT_EQ(out[41], 0);
}

TEST(Vxlan, RoundTripWithDfAndEntropy) {
  auto inner = test::icmp_echo(0x020000000002ULL, 0x020000000001ULL, 0x0a2a0001, 0x0a2a0002, 100);
  VxlanEncap e{0x02aa00000001ULL, 0x02bb00000001ULL, 0xc633640a, 0xc633640b, 0xabcdef, 17, true};
  std::vector<uint8_t> out(inner.size() + kVxlanOverhead);
  vxlan_encap(e, inner.data(), uint32_t(inner.size()), out.data());
  EXPECT_EQ(csum::of(out.data() + 14, 20), 0) << "outer IP checksum";
  EXPECT_EQ(out[14 + 6] & 0x40, 0x40) << "DF";
  EXPECT_EQ(out[14 + 8], 17) << "TTL";
  uint16_t sport = load_be16(out.data() + 34);
  EXPECT_GE(sport, 49152);
  VxlanInfo vi;
  ASSERT_EQ(vxlan_decap(out.data(), uint32_t(out.size()), &vi), VxlanDecap::kOk);
  EXPECT_EQ(vi.vni, 0xabcdefu);
  EXPECT_EQ(std::vector<uint8_t>(vi.inner, vi.inner + vi.inner_len), inner);
  // The same inner flow always gets the same port; different flows spread.
  EXPECT_EQ(vxlan_src_port(inner.data(), uint32_t(inner.size())), sport);
  std::set<uint16_t> ports;
  for (uint32_t i = 0; i < 64; i++) {
    auto x = test::icmp_echo(0x020000000002ULL, 0x020000000001ULL, 0x0a2a0001 + i, 0x0a2a0002, 10);
    ports.insert(vxlan_src_port(x.data(), uint32_t(x.size())));
  }
  EXPECT_GT(ports.size(), 48u);
}

TEST(Vxlan, BadFramesSayWhatIsWrong) {
  auto f = hex(kKernelFrame);
  VxlanInfo vi;
  auto with = [&](size_t at, uint8_t v) {
    auto g = f;
    g[at] = v;
    return vxlan_decap(g.data(), uint32_t(g.size()), &vi);
  };
  EXPECT_EQ(vxlan_decap(f.data(), 40, &vi), VxlanDecap::kTruncated);
  EXPECT_EQ(vxlan_decap(f.data(), 10, &vi), VxlanDecap::kNotVxlan);
  EXPECT_EQ(with(37, 0x99), VxlanDecap::kNotVxlan);   // another UDP port
  EXPECT_EQ(with(42, 0x00), VxlanDecap::kBadFlags);   // I flag clear
  EXPECT_EQ(with(24, 0x00), VxlanDecap::kBadIp);      // header checksum broken (TTL changed)
  EXPECT_EQ(with(20, 0x20), VxlanDecap::kFragment);   // MF set
  EXPECT_EQ(with(23, 6), VxlanDecap::kNotVxlan);      // TCP
}

}  // namespace
}  // namespace dpsw
