#include "dataplane/ports/afxdp_port.h"

#include "dataplane/ports/bpf_object.h"
#include "bpf/dpsw_abi.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xdp/xsk.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace dpsw {


// ---------------------------------------------------------------- XdpProgram

XdpProgram::XdpProgram(const std::string& path, uint32_t nat_entries) {
  obj_ = load_bpf_object(path, [&](bpf_object* o) {
    bpf_map* nat = bpf_object__find_map_by_name(o, "dpsw_fast_nat");
    if (!nat) throw std::runtime_error(path + ": no map dpsw_fast_nat");
    if (nat_entries)
      if (int e = bpf_map__set_max_entries(nat, nat_entries)) throw bpf_error("XDP program: sizing the routed-flow map", e);
  });
  bpf_program* prog = bpf_object__find_program_by_name(obj_, "dpsw_xsk_redirect");
  prog_fd_ = prog ? bpf_program__fd(prog) : -1;
  xsks_fd_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_xsks");
  ports_fd_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_ports");
  stats_fd_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_xdp_stats");
  nat_fd_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_fast_nat");
  conf_fd_ = bpf_object__find_map_fd_by_name(obj_, "dpsw_xdp_conf");
  if (prog_fd_ < 0 || xsks_fd_ < 0 || ports_fd_ < 0 || stats_fd_ < 0 || nat_fd_ < 0 || conf_fd_ < 0) {
    bpf_object__close(obj_);
    obj_ = nullptr;
    throw std::runtime_error(path + ": missing program dpsw_xsk_redirect or its maps");
  }
}

XdpProgram::~XdpProgram() {
  for (int ifindex : attached_) bpf_xdp_detach(ifindex, 0, nullptr);
  if (obj_) bpf_object__close(obj_);
}

void XdpProgram::attach(int ifindex, const std::string& ifname) {
  // Drop whatever a crashed run left on the interface, then attach natively.
  bpf_xdp_detach(ifindex, XDP_FLAGS_DRV_MODE, nullptr);
  bpf_xdp_detach(ifindex, XDP_FLAGS_SKB_MODE, nullptr);
  int e = bpf_xdp_attach(ifindex, prog_fd_, XDP_FLAGS_DRV_MODE, nullptr);
  if (e == -EOPNOTSUPP) e = bpf_xdp_attach(ifindex, prog_fd_, XDP_FLAGS_SKB_MODE, nullptr);
  if (e) throw bpf_error("cannot attach XDP program to " + ifname, e);
  attached_.push_back(ifindex);
}

void XdpProgram::detach(int ifindex) {
  auto it = std::find(attached_.begin(), attached_.end(), ifindex);
  if (it == attached_.end()) return;
  attached_.erase(it);
  bpf_xdp_detach(ifindex, 0, nullptr);
}

void XdpProgram::bind_socket(int ifindex, uint32_t slot, int xsk_fd) {
  uint32_t key = uint32_t(ifindex);
  if (int e = bpf_map_update_elem(xsks_fd_, &slot, &xsk_fd, 0)) throw bpf_error("xskmap update", e);
  if (int e = bpf_map_update_elem(ports_fd_, &key, &slot, 0)) throw bpf_error("port map update", e);
}

void XdpProgram::unbind_socket(int ifindex, uint32_t slot) {
  uint32_t key = uint32_t(ifindex);
  bpf_map_delete_elem(ports_fd_, &key);
  bpf_map_delete_elem(xsks_fd_, &slot);
}

std::pair<uint64_t, uint64_t> XdpProgram::stats() const {
  int ncpu = libbpf_num_possible_cpus();
  std::vector<uint64_t> v(size_t(std::max(ncpu, 1)));
  uint64_t out[DPSW_XDP_STATS] = {};
  for (uint32_t k = 0; k < DPSW_XDP_STATS; k++) {
    if (bpf_map_lookup_elem(stats_fd_, &k, v.data()) == 0)
      for (uint64_t x : v) out[k] += x;
  }
  return {out[DPSW_XDP_REDIRECTED], out[DPSW_XDP_NO_SOCKET]};
}

uint64_t XdpProgram::nat_passed() const {
  std::vector<uint64_t> v(size_t(std::max(libbpf_num_possible_cpus(), 1)));
  const uint32_t k = DPSW_XDP_NAT_PASSED;
  uint64_t n = 0;
  if (bpf_map_lookup_elem(stats_fd_, &k, v.data()) == 0)
    for (uint64_t x : v) n += x;
  return n;
}

void XdpProgram::set_uplink(int ifindex, uint16_t port) {
  const uint32_t zero = 0;
  const dpsw_xdp_conf c{uint32_t(ifindex), port};
  if (int e = bpf_map_update_elem(conf_fd_, &zero, &c, 0)) throw bpf_error("XDP program: conf map", e);
}

// ----------------------------------------------------------------- AfxdpPort

struct AfxdpPort::Rings {
  xsk_ring_prod fq{}, tx{};
  xsk_ring_cons cq{}, rx{};
};

AfxdpPort::AfxdpPort(const std::string& ifname, Options opt)
    : Port(ifname), opt_(opt), r_(std::make_unique<Rings>()) {
  area_len_ = size_t(opt_.frames) * opt_.frame_size;
  void* a = mmap(nullptr, area_len_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (a == MAP_FAILED) throw bpf_error(ifname + ": UMEM mmap", errno);
  area_ = static_cast<uint8_t*>(a);

  xsk_umem_config ucfg{};
  ucfg.fill_size = opt_.ring_size;
  ucfg.comp_size = opt_.ring_size;
  ucfg.frame_size = opt_.frame_size;
  ucfg.frame_headroom = 0;
  if (int e = xsk_umem__create(&umem_, area_, area_len_, &r_->fq, &r_->cq, &ucfg)) {
    munmap(area_, area_len_);
    throw bpf_error(ifname + ": xsk_umem__create", e);
  }
  xsk_socket_config scfg{};
  scfg.rx_size = opt_.ring_size;
  scfg.tx_size = opt_.ring_size;
  scfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;  // XdpProgram owns the program
  scfg.bind_flags = XDP_COPY | XDP_USE_NEED_WAKEUP;
  if (int e = xsk_socket__create(&xsk_, ifname.c_str(), opt_.queue, umem_, &r_->rx, &r_->tx, &scfg)) {
    xsk_umem__delete(umem_);
    munmap(area_, area_len_);
    throw bpf_error(ifname + ": AF_XDP socket (queue " + std::to_string(opt_.queue) + ")", e);
  }
  free_.reserve(opt_.frames);
  for (uint32_t i = 0; i < opt_.frames; i++) free_.push_back(uint64_t(i) * opt_.frame_size);
  // Half the frames wait in the fill ring for rx, the rest serve tx.
  uint32_t idx, n = std::min(opt_.ring_size, opt_.frames / 2);
  n = xsk_ring_prod__reserve(&r_->fq, n, &idx);
  for (uint32_t i = 0; i < n; i++) {
    *xsk_ring_prod__fill_addr(&r_->fq, idx + i) = free_.back();
    free_.pop_back();
  }
  xsk_ring_prod__submit(&r_->fq, n);
}

AfxdpPort::~AfxdpPort() {
  if (xsk_) xsk_socket__delete(xsk_);
  if (umem_) xsk_umem__delete(umem_);
  if (area_) munmap(area_, area_len_);
}

int AfxdpPort::fd() const { return xsk_socket__fd(xsk_); }

uint32_t AfxdpPort::rx_backlog() const {
  // acquire: pairs with the kernel's release of the producer index (as libxdp's own peek).
  return __atomic_load_n(r_->rx.producer, __ATOMIC_ACQUIRE) - r_->rx.cached_cons;
}

uint64_t AfxdpPort::rx_dropped() const {
  xdp_statistics st{};
  socklen_t len = sizeof st;
  if (getsockopt(fd(), SOL_XDP, XDP_STATISTICS, &st, &len) != 0) return 0;
  return st.rx_dropped + st.rx_ring_full + st.rx_fill_ring_empty_descs;
}

uint16_t AfxdpPort::rx_burst(Packet* pkts, uint16_t max) {
  uint32_t idx;
  uint32_t n = xsk_ring_cons__peek(&r_->rx, max, &idx);
  for (uint32_t i = 0; i < n; i++) {
    const xdp_desc* d = xsk_ring_cons__rx_desc(&r_->rx, idx + i);
    pkts[i].data = static_cast<uint8_t*>(xsk_umem__get_data(area_, d->addr));
    pkts[i].len = d->len;
    pkts[i].handle = xsk_umem__extract_addr(d->addr);
    pkts[i].mbuf = nullptr;
  }
  if (n) xsk_ring_cons__release(&r_->rx, n);
  return uint16_t(n);
}

void AfxdpPort::release(const Packet* pkts, uint16_t n) {
  uint32_t idx;
  uint32_t got = xsk_ring_prod__reserve(&r_->fq, n, &idx);
  for (uint32_t i = 0; i < got; i++) *xsk_ring_prod__fill_addr(&r_->fq, idx + i) = pkts[i].handle;
  xsk_ring_prod__submit(&r_->fq, got);
  for (uint32_t i = got; i < n; i++) free_.push_back(pkts[i].handle);  // capacity reserved: no allocation
}

void AfxdpPort::reap_completions() {
  uint32_t idx;
  uint32_t n = xsk_ring_cons__peek(&r_->cq, opt_.ring_size, &idx);
  for (uint32_t i = 0; i < n; i++) free_.push_back(*xsk_ring_cons__comp_addr(&r_->cq, idx + i));
  if (n) {
    xsk_ring_cons__release(&r_->cq, n);
    tx_outstanding_ -= n;
  }
}

uint16_t AfxdpPort::tx(const Packet* const* pkts, uint16_t n, int tci) {
  if (free_.size() < n) reap_completions();
  uint32_t want = std::min<uint32_t>(n, uint32_t(free_.size()));
  uint32_t idx;
  uint32_t got = xsk_ring_prod__reserve(&r_->tx, want, &idx);
  const uint32_t cap = max_frame();
  for (uint32_t i = 0; i < got; i++) {
    uint64_t addr = free_.back();
    free_.pop_back();
    // Frames never exceed the network MTU, which config keeps below cap.
    uint8_t* dst = static_cast<uint8_t*>(xsk_umem__get_data(area_, addr));
    uint32_t len = std::min(pkts[i]->len, cap);
    if (tci < 0 || len < 12) {
      std::memcpy(dst, pkts[i]->data, len);
    } else {
      len = std::min(len + 4, cap);
      std::memcpy(dst, pkts[i]->data, 12);
      const uint8_t tag[4] = {0x81, 0x00, uint8_t(tci >> 8), uint8_t(tci)};
      std::memcpy(dst + 12, tag, 4);
      std::memcpy(dst + 16, pkts[i]->data + 12, len - 16);
    }
    xdp_desc* d = xsk_ring_prod__tx_desc(&r_->tx, idx + i);
    d->addr = addr;
    d->len = len;
  }
  if (got) {
    xsk_ring_prod__submit(&r_->tx, got);
    tx_outstanding_ += got;
    // Copy mode transmits in the context of this syscall.
    if (xsk_ring_prod__needs_wakeup(&r_->tx)) sendto(fd(), nullptr, 0, MSG_DONTWAIT, nullptr, 0);
  }
  return uint16_t(got);
}

void AfxdpPort::maintain() {
  if (tx_outstanding_) {
    reap_completions();
    // A kick that met a busy ring (EAGAIN) leaves frames queued: retry.
    if (tx_outstanding_ && xsk_ring_prod__needs_wakeup(&r_->tx)) sendto(fd(), nullptr, 0, MSG_DONTWAIT, nullptr, 0);
  }
  // Keep the fill ring stocked from frames that completed tx.
  uint32_t free_fill = xsk_prod_nb_free(&r_->fq, opt_.ring_size);
  if (free_fill > opt_.ring_size / 2 && free_.size() > opt_.frames / 4) {
    uint32_t n = std::min<uint32_t>(free_fill, uint32_t(free_.size() - opt_.frames / 4));
    uint32_t idx;
    n = xsk_ring_prod__reserve(&r_->fq, n, &idx);
    for (uint32_t i = 0; i < n; i++) {
      *xsk_ring_prod__fill_addr(&r_->fq, idx + i) = free_.back();
      free_.pop_back();
    }
    xsk_ring_prod__submit(&r_->fq, n);
  }
  if (xsk_ring_prod__needs_wakeup(&r_->fq)) recvfrom(fd(), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
}

}  // namespace dpsw
