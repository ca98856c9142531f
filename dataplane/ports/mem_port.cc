#include "dataplane/ports/mem_port.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace dpsw {

MemPort::MemPort(std::string name, Options opt)
    : Port(std::move(name)), opt_(opt), rx_(opt.ring_size), tx_(opt.ring_size) {
  if (opt.wait_fd) efd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

MemPort::~MemPort() {
  if (efd_ >= 0) close(efd_);
}

bool MemPort::inject(const std::vector<uint8_t>& frame) {
  Slot* s = rx_.producer_slot();
  if (!s || frame.size() > kMaxFrame) return false;
  s->buf.assign(frame.begin(), frame.end());
  s->len = uint32_t(frame.size());
  rx_.push();
  uint64_t one = 1;
  if (efd_ >= 0 && write(efd_, &one, sizeof one) < 0) return true;  // counter full: already readable
  return true;
}

uint32_t MemPort::rx_backlog() const { return replay_.empty() ? uint32_t(rx_.readable() - rx_lent_) : 0; }

uint16_t MemPort::rx_burst(Packet* pkts, uint16_t max) {
  if (!replay_.empty()) {
    for (uint16_t i = 0; i < max; i++) {
      auto& f = replay_[replay_pos_];
      replay_pos_ = replay_pos_ + 1 == replay_.size() ? 0 : replay_pos_ + 1;
      pkts[i].data = f.data();
      pkts[i].len = uint32_t(f.size());
      pkts[i].handle = 0;
      pkts[i].mbuf = nullptr;
    }
    return max;
  }
  if (efd_ >= 0) {
    uint64_t v;
    if (read(efd_, &v, sizeof v) < 0) {
    }  // consume the signal, then look: a later inject() signals again
  }
  size_t avail = rx_.readable() - rx_lent_;
  uint16_t n = uint16_t(std::min<size_t>(avail, max));
  for (uint16_t i = 0; i < n; i++) {
    Slot& s = rx_.peek(rx_lent_ + i);
    pkts[i].data = s.buf.data();
    pkts[i].len = s.len;
    pkts[i].handle = 0;
    pkts[i].mbuf = nullptr;
  }
  rx_lent_ += n;
  return n;
}

void MemPort::release(const Packet*, uint16_t n) {
  if (!replay_.empty()) return;
  // Slots are lent and released in order, so releasing n frees the oldest n.
  rx_.pop(n);
  rx_lent_ -= n;
}

uint16_t MemPort::tx(const Packet* const* pkts, uint16_t n, int tci) {
  uint16_t i = 0;
  if (!opt_.capture_tx) i = n;
  for (; i < n; i++) {
    Slot* s = tx_.producer_slot();
    if (!s) break;
    s->buf.assign(pkts[i]->data, pkts[i]->data + pkts[i]->len);
    if (tci >= 0 && s->buf.size() >= 12) {
      const uint8_t tag[4] = {0x81, 0x00, uint8_t(tci >> 8), uint8_t(tci)};
      s->buf.insert(s->buf.begin() + 12, tag, tag + 4);
    }
    s->len = uint32_t(s->buf.size());
    tx_.push();
  }
  tx_count_.store(tx_count_.load(std::memory_order_relaxed) + i, std::memory_order_relaxed);
  return i;
}

std::vector<std::vector<uint8_t>> MemPort::take_tx() {
  std::vector<std::vector<uint8_t>> out;
  size_t n = tx_.readable();
  for (size_t i = 0; i < n; i++) out.push_back(tx_.peek(i).buf);
  tx_.pop(n);
  return out;
}

void MemPort::set_replay(std::vector<std::vector<uint8_t>> frames) {
  replay_ = std::move(frames);
  replay_pos_ = 0;
}

}  // namespace dpsw
