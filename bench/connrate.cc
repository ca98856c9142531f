// dpsw-connrate: short TCP connections per second, for the benchmark harness.
//
//   dpsw-connrate server --port P [--address IP] [--threads N]
//   dpsw-connrate client --address IP --port P [--concurrency N] [--duration S]
//                        [--bytes N] [--timeout S]
//
// One connection: the client connects, sends a request of --bytes bytes (the
// last one a newline), reads the echo until the server closes, then closes.
// The server echoes what it reads and closes once it has echoed the newline:
// the server closes first, so TIME_WAIT stays on the server's side and a
// client port is free again as soon as its connection ends. The client keeps
// --concurrency connections in flight (nonblocking sockets, one epoll) for
// --duration seconds and prints one JSON line: completed connections/s,
// failures by cause, connect latency (connect() until the client's loop sees
// the handshake done: with many in flight, its own queueing counts too) and
// transaction latency (connect() to the server's close), p50/p99, and the
// ephemeral port range its connections take their ports from (the
// namespace's net.ipv4.ip_local_port_range; at most --concurrency are in use
// at once). A connection that neither completes nor fails within --timeout
// counts as "timeout"; one that cannot start (e.g. EADDRNOTAVAIL: no port
// left) counts under its errno and the slot retries 1 ms later. The client
// never waits beyond --duration (plus a moment to close what is in flight).
//
// The server runs until SIGINT/SIGTERM, then prints one JSON line of its own
// counts. It prints "listening" once its sockets accept connections.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kUsage =
    "usage: dpsw-connrate server --port P [--address IP] [--threads N]\n"
    "       dpsw-connrate client --address IP --port P [--concurrency N] [--duration S] [--bytes N] [--timeout S]";
constexpr unsigned kMaxBytes = 65536;

int fail(const std::string& msg) {
  std::fprintf(stderr, "dpsw-connrate: %s\n%s\n", msg.c_str(), kUsage);
  return 2;
}

double us_since(Clock::time_point t0, Clock::time_point t1) { return std::chrono::duration<double, std::micro>(t1 - t0).count(); }

// Nearest-rank percentile q (0..1) of v (sorted in place); null if empty.
std::string percentile(std::vector<float>& v, double q) {
  if (v.empty()) return "null";
  std::sort(v.begin(), v.end());
  size_t i = size_t(std::ceil(q * double(v.size())));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", double(v[std::min(v.size(), std::max<size_t>(i, 1)) - 1]));
  return buf;
}

std::string errno_name(int e) {
  switch (e) {
    case ECONNREFUSED: return "ECONNREFUSED";
    case ECONNRESET: return "ECONNRESET";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EADDRNOTAVAIL: return "EADDRNOTAVAIL";
    case EADDRINUSE: return "EADDRINUSE";
    case EHOSTUNREACH: return "EHOSTUNREACH";
    case ENETUNREACH: return "ENETUNREACH";
    case EPIPE: return "EPIPE";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case ENOBUFS: return "ENOBUFS";
    case EAGAIN: return "EAGAIN";
    default: return "errno" + std::to_string(e);
  }
}

// ---- server ----
std::atomic<bool> g_stop{false};

struct ServerCounts {
  std::atomic<uint64_t> accepted{0}, echoed{0}, aborted{0};
};

struct ServerConn {
  std::string pending;  // read, not yet written back
  bool newline = false;  // the request's end was read
};

// One thread: its own SO_REUSEPORT listener (the kernel spreads connections
// over the threads' listeners) and its own epoll.
void serve(int lfd, ServerCounts& n) {
  int ep = epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::vector<ServerConn> conns;
  std::vector<epoll_event> evs(256);
  char buf[4096];
  auto finish = [&](int fd, bool ok) {
    conns[size_t(fd)] = {};
    close(fd);  // the server's close comes first: TIME_WAIT stays here
    (ok ? n.echoed : n.aborted)++;
  };
  while (!g_stop.load(std::memory_order_relaxed)) {
    int k = epoll_wait(ep, evs.data(), int(evs.size()), 100);
    for (int i = 0; i < k; i++) {
      int fd = evs[size_t(i)].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (c < 0) break;  // EAGAIN, or an aborted handshake: nothing to keep
          n.accepted++;
          if (conns.size() <= size_t(c)) conns.resize(size_t(c) + 1024);
          conns[size_t(c)] = {};
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLOUT | EPOLLET;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      ServerConn& c = conns[size_t(fd)];
      bool gone = false, broken = false;
      for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r > 0) {
          c.pending.append(buf, size_t(r));
          if (buf[r - 1] == '\n') c.newline = true;
        } else {
          gone = r == 0;
          broken = r < 0 && errno != EAGAIN;
          break;
        }
      }
      while (!c.pending.empty() && !broken) {
        ssize_t w = write(fd, c.pending.data(), c.pending.size());
        if (w < 0) {
          broken = errno != EAGAIN;
          break;  // EAGAIN: EPOLLOUT (edge) calls again
        }
        c.pending.erase(0, size_t(w));
      }
      if (broken || (gone && !c.newline)) finish(fd, false);
      else if (c.newline && c.pending.empty()) finish(fd, true);
    }
  }
  close(ep);
}

int server(const std::string& address, unsigned port, unsigned threads) {
  in_addr a{};
  if (!inet_aton(address.c_str(), &a)) return fail("bad --address " + address);
  // SIGINT/SIGTERM end the server: blocked in every thread, taken by sigwait below.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  ServerCounts n;
  std::vector<int> lfds;
  for (unsigned t = 0; t < threads; t++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(uint16_t(port));
    sa.sin_addr = a;
    if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 || listen(fd, 4096) < 0) {
      std::fprintf(stderr, "dpsw-connrate: cannot listen on %s:%u: %s\n", address.c_str(), port, std::strerror(errno));
      return 1;
    }
    lfds.push_back(fd);
  }
  std::vector<std::thread> pool;
  for (int fd : lfds) pool.emplace_back(serve, fd, std::ref(n));
  std::printf("listening\n");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&sigs, &sig);
  g_stop = true;
  for (auto& t : pool) t.join();
  std::printf("{\"mode\": \"server\", \"accepted\": %llu, \"echoed\": %llu, \"aborted\": %llu}\n",
              (unsigned long long)n.accepted.load(), (unsigned long long)n.echoed.load(), (unsigned long long)n.aborted.load());
  return 0;
}

// ---- client ----
struct Slot {
  enum State { kIdle, kConnecting, kSending, kReceiving } state = kIdle;
  int fd = -1;
  Clock::time_point start, deadline;  // kIdle: deadline = when to start again
  size_t sent = 0, received = 0;
};

std::string port_range() {
  std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
  unsigned lo = 0, hi = 0;
  return f >> lo >> hi ? std::to_string(lo) + "-" + std::to_string(hi) : "unknown";
}

int client(const std::string& address, unsigned port, unsigned concurrency, double duration, unsigned bytes, double timeout) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(uint16_t(port));
  if (!inet_aton(address.c_str(), &sa.sin_addr)) return fail("bad --address " + address);
  signal(SIGPIPE, SIG_IGN);
  const std::string request = std::string(bytes - 1, 'x') + "\n";
  const auto tmo = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout));
  int ep = epoll_create1(EPOLL_CLOEXEC);
  std::vector<Slot> slots(concurrency);
  std::vector<float> connect_us, txn_us;
  connect_us.reserve(1 << 20);
  txn_us.reserve(1 << 20);
  std::map<std::string, uint64_t> errors;
  uint64_t completed = 0, started = 0;
  char buf[4096];

  auto end_slot = [&](Slot& s, const char* error, Clock::time_point now) {
    if (s.fd >= 0) close(s.fd);  // a normal close (the server has closed first on success)
    s.fd = -1;
    s.state = Slot::kIdle;
    s.deadline = now;
    if (error) errors[error]++;
  };
  auto begin = [&](Slot& s, Clock::time_point now) {
    s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s.fd < 0) {
      end_slot(s, errno_name(errno).c_str(), now);
      s.deadline = now + std::chrono::milliseconds(1);
      return;
    }
    int one = 1;
    setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    s.start = now;
    s.deadline = now + tmo;
    s.sent = s.received = 0;
    started++;
    s.state = Slot::kConnecting;
    if (connect(s.fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 && errno != EINPROGRESS) {
      end_slot(s, errno_name(errno).c_str(), now);  // e.g. EADDRNOTAVAIL: no local port left
      s.deadline = now + std::chrono::milliseconds(1);
      return;
    }
    // Registered once the handshake is under way (edge-triggered: one event when it completes).
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = &s;
    epoll_ctl(ep, EPOLL_CTL_ADD, s.fd, &ev);
  };
  // Moves the slot on as far as it goes without blocking.
  auto progress = [&](Slot& s, uint32_t events, Clock::time_point now) {
    if (s.state == Slot::kConnecting) {
      if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err) return end_slot(s, errno_name(err).c_str(), now);
      connect_us.push_back(float(us_since(s.start, now)));
      s.state = Slot::kSending;
    }
    if (s.state == Slot::kSending) {
      while (s.sent < request.size()) {
        ssize_t w = send(s.fd, request.data() + s.sent, request.size() - s.sent, MSG_NOSIGNAL);
        if (w < 0) {
          if (errno == EAGAIN) return;
          return end_slot(s, errno_name(errno).c_str(), now);
        }
        s.sent += size_t(w);
      }
      s.state = Slot::kReceiving;
    }
    for (;;) {
      ssize_t r = read(s.fd, buf, sizeof buf);
      if (r > 0) {
        s.received += size_t(r);
        continue;
      }
      if (r < 0 && errno == EAGAIN) return;
      if (r < 0) return end_slot(s, errno_name(errno).c_str(), now);
      if (s.received != request.size()) return end_slot(s, "short_reply", now);  // closed before the whole echo
      completed++;
      txn_us.push_back(float(us_since(s.start, now)));
      return end_slot(s, nullptr, now);
    }
  };

  const auto t0 = Clock::now();
  const auto end = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration));
  for (Slot& s : slots) begin(s, t0);
  std::vector<epoll_event> evs(std::max(64u, concurrency));
  auto scanned = t0;
  for (;;) {
    auto now = Clock::now();
    if (now >= end) break;
    int wait_ms = int(std::clamp<double>(std::chrono::duration<double, std::milli>(end - now).count(), 0, 5));
    int k = epoll_wait(ep, evs.data(), int(evs.size()), wait_ms);
    now = Clock::now();
    if (now >= end) break;  // what completes after the end does not count
    for (int i = 0; i < k; i++) {
      Slot& s = *static_cast<Slot*>(evs[size_t(i)].data.ptr);
      progress(s, evs[size_t(i)].events, now);
      if (s.state == Slot::kIdle && s.deadline <= now) begin(s, now);
    }
    if (k <= 0 || now - scanned >= std::chrono::milliseconds(5)) {  // timeouts and retries
      scanned = now;
      for (Slot& s : slots) {
        if (s.state != Slot::kIdle && now >= s.deadline) end_slot(s, "timeout", now);
        if (s.state == Slot::kIdle && now >= s.deadline) begin(s, now);
      }
    }
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  uint64_t in_flight = 0;
  for (Slot& s : slots) {
    if (s.state != Slot::kIdle) in_flight++;
    if (s.fd >= 0) close(s.fd);
  }
  close(ep);
  uint64_t failed = 0;
  std::string errs;
  for (auto& [name, count] : errors) {
    failed += count;
    errs += (errs.empty() ? "" : ", ") + ("\"" + name + "\": " + std::to_string(count));
  }
  std::printf(
      "{\"mode\": \"client\", \"target\": \"%s:%u\", \"duration_s\": %.3f, \"concurrency\": %u, \"bytes\": %u, "
      "\"started\": %llu, \"completed\": %llu, \"conn_per_s\": %.1f, \"failed\": %llu, \"errors\": {%s}, "
      "\"in_flight_at_end\": %llu, \"connect_p50_us\": %s, \"connect_p99_us\": %s, \"txn_p50_us\": %s, \"txn_p99_us\": %s, "
      "\"local_ports\": \"%s\"}\n",
      address.c_str(), port, secs, concurrency, bytes, (unsigned long long)started, (unsigned long long)completed,
      double(completed) / secs, (unsigned long long)failed, errs.c_str(), (unsigned long long)in_flight,
      percentile(connect_us, 0.50).c_str(), percentile(connect_us, 0.99).c_str(), percentile(txn_us, 0.50).c_str(),
      percentile(txn_us, 0.99).c_str(), port_range().c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string mode, address;
  unsigned port = 0, threads = 1, concurrency = 32, bytes = 64;
  double duration = 5, timeout = 3;
  po::options_description d("Options");
  d.add_options()("help,h", "help")("address,a", po::value(&address),
                                      "server: address to listen on (default 0.0.0.0); client: the server's address")(
      "port,p", po::value(&port), "TCP port, 1..65535")("threads,t", po::value(&threads), "server: threads (default 1)")(
      "concurrency,c", po::value(&concurrency), "client: connections in flight (default 32)")(
      "duration,d", po::value(&duration), "client: seconds (default 5)")(
      "bytes,b", po::value(&bytes), "client: request size, echoed back, 1..65536 (default 64)")(
      "timeout", po::value(&timeout), "client: seconds a connection may take before it counts as failed (default 3)");
  po::options_description hidden;
  hidden.add_options()("mode", po::value(&mode));
  po::options_description all;
  all.add(d).add(hidden);
  po::positional_options_description pos;
  pos.add("mode", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(pos).run(), vm);
    if (vm.count("help")) {
      std::cout << kUsage << "\n" << d << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    return fail(e.what());
  }
  if (mode != "server" && mode != "client") return fail(mode.empty() ? "missing mode: server or client" : "unknown mode '" + mode + "'");
  if (port < 1 || port > 65535) return fail("--port must be 1..65535");
  if (mode == "server") {
    if (vm.count("concurrency") || vm.count("duration") || vm.count("bytes") || vm.count("timeout"))
      return fail("--concurrency, --duration, --bytes and --timeout are client options");
    if (threads < 1 || threads > 256) return fail("--threads must be 1..256");
    return server(address.empty() ? "0.0.0.0" : address, port, threads);
  }
  if (vm.count("threads")) return fail("--threads is a server option");
  if (address.empty()) return fail("client needs --address");
  if (concurrency < 1 || concurrency > 65536) return fail("--concurrency must be 1..65536");
  if (!(duration > 0) || duration > 86400) return fail("--duration must be above 0 (seconds)");
  if (bytes < 1 || bytes > kMaxBytes) return fail("--bytes must be 1..65536");
  if (!(timeout > 0)) return fail("--timeout must be above 0 (seconds)");
  return client(address, port, concurrency, duration, bytes, timeout);
}
