// dpsw-pktgen: a fast UDP frame generator for the benchmark harness.
// AF_PACKET + sendmmsg (64 frames per syscall), qdisc bypass; valid IPv4 and
// UDP checksums so the receiver's kernel would accept every frame. Run it
// inside the sending container's namespace; it prints frames sent and pps.
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace po = boost::program_options;

static bool parse_mac(const std::string& s, uint8_t* out) {
  return std::sscanf(s.c_str(), "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &out[0], &out[1], &out[2], &out[3], &out[4], &out[5]) == 6;
}

static uint16_t csum(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += uint32_t(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += uint32_t(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return uint16_t(~sum);
}

int main(int argc, char** argv) {
  std::string iface = "eth0", dst_mac, src_mac, dst_ip, src_ip;
  unsigned size = 64, flows = 16, batch = 64;
  double duration = 5, rate = 0;
  po::options_description d("dpsw-pktgen: send UDP frames as fast as possible (or at --rate)\nOptions");
  d.add_options()("help,h", "help")("iface,i", po::value(&iface), "interface (default eth0)")(
      "dst-mac", po::value(&dst_mac)->required(), "destination MAC")("src-mac", po::value(&src_mac)->required(), "source MAC")(
      "dst-ip", po::value(&dst_ip)->required(), "destination IPv4")("src-ip", po::value(&src_ip)->required(), "source IPv4")(
      "size,s", po::value(&size), "frame size in bytes without FCS, 60..1514 (default 64)")(
      "flows", po::value(&flows), "distinct UDP source ports (default 16)")("duration,d", po::value(&duration), "seconds (default 5)")(
      "rate", po::value(&rate), "frames per second, 0 = unlimited");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, d), vm);
    if (vm.count("help")) {
      std::cout << d << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "dpsw-pktgen: %s\n", e.what());
    return 2;
  }
  if (size < 60) size = 60;  // the minimum Ethernet frame without FCS
  if (size > 1514) {
    std::fprintf(stderr, "dpsw-pktgen: --size %u above 1514\n", size);
    return 2;
  }
  uint8_t dmac[6], smac[6];
  in_addr dip{}, sip{};
  if (!parse_mac(dst_mac, dmac) || !parse_mac(src_mac, smac) || !inet_aton(dst_ip.c_str(), &dip) || !inet_aton(src_ip.c_str(), &sip)) {
    std::fprintf(stderr, "dpsw-pktgen: bad MAC or IPv4 address\n");
    return 2;
  }
  int fd = socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) {
    perror("socket");
    return 1;
  }
  int one = 1;
  setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = int(if_nametoindex(iface.c_str()));
  if (!sll.sll_ifindex || bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) < 0) {
    std::fprintf(stderr, "dpsw-pktgen: cannot bind to %s\n", iface.c_str());
    return 1;
  }
  // One template frame per flow.
  std::vector<std::vector<uint8_t>> frames(flows, std::vector<uint8_t>(size, 0));
  for (unsigned f = 0; f < flows; f++) {
    uint8_t* p = frames[f].data();
    std::memcpy(p, dmac, 6);
    std::memcpy(p + 6, smac, 6);
    p[12] = 0x08, p[13] = 0x00;
    uint8_t* ip = p + 14;
    uint16_t ip_len = uint16_t(size - 14), udp_len = uint16_t(ip_len - 20);
    ip[0] = 0x45, ip[2] = uint8_t(ip_len >> 8), ip[3] = uint8_t(ip_len), ip[8] = 64, ip[9] = 17;
    std::memcpy(ip + 12, &sip, 4);
    std::memcpy(ip + 16, &dip, 4);
    uint16_t c = csum(ip, 20);
    ip[10] = uint8_t(c >> 8), ip[11] = uint8_t(c);
    uint8_t* udp = ip + 20;
    uint16_t sport = uint16_t(10000 + f), dport = 9;
    udp[0] = uint8_t(sport >> 8), udp[1] = uint8_t(sport), udp[2] = uint8_t(dport >> 8), udp[3] = uint8_t(dport);
    udp[4] = uint8_t(udp_len >> 8), udp[5] = uint8_t(udp_len);
    for (unsigned i = 8; i < udp_len; i++) udp[i] = uint8_t(i);
    // UDP checksum over the pseudo-header.
    uint32_t ps = 0;
    for (int i = 0; i < 8; i += 2) ps += uint32_t(ip[12 + i] << 8 | ip[13 + i]);
    ps += 17 + udp_len;
    uint16_t uc = csum(udp, udp_len, ps);
    if (!uc) uc = 0xffff;
    udp[6] = uint8_t(uc >> 8), udp[7] = uint8_t(uc);
  }
  std::vector<iovec> iov(batch);
  std::vector<mmsghdr> msgs(batch);
  for (unsigned i = 0; i < batch; i++) {
    iov[i] = {frames[i % flows].data(), size};
    msgs[i] = {};
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  using clk = std::chrono::steady_clock;
  auto t0 = clk::now();
  auto end = t0 + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(duration));
  uint64_t sent = 0, errors = 0;
  for (;;) {
    auto now = clk::now();
    if (now >= end) break;
    unsigned n = batch;
    if (rate > 0) {
      double due = std::chrono::duration<double>(now - t0).count() * rate - double(sent);
      if (due < 1) {
        usleep(50);
        continue;
      }
      n = unsigned(std::min<double>(due, batch));
    }
    int r = sendmmsg(fd, msgs.data(), n, 0);
    if (r > 0) sent += unsigned(r);
    else errors++;
  }
  double secs = std::chrono::duration<double>(clk::now() - t0).count();
  std::printf("sent %llu frames in %.3f s: %.0f pps (%u bytes, %u flows, %llu send errors)\n", (unsigned long long)sent, secs,
              double(sent) / secs, size, flows, (unsigned long long)errors);
  close(fd);
  return 0;
}
