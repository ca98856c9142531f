#include "control/ports/vhost_relay.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>

#include "control/core/log.h"

namespace dpsw {

namespace {
constexpr size_t kHeader = 12;     // vhost-user message header: request, flags, size (u32 each)
constexpr size_t kMaxFds = 32;     // file descriptors one message may carry
constexpr size_t kMaxQueued = 1 << 20;  // bytes the backend may have queued for a slow application

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void close_all(std::vector<int>& fds) {
  for (int fd : fds) close(fd);
  fds.clear();
}

bool unix_address(const std::string& path, sockaddr_un* a) {
  *a = sockaddr_un{};
  if (path.empty() || path.size() >= sizeof a->sun_path) return false;
  a->sun_family = AF_UNIX;
  std::memcpy(a->sun_path, path.c_str(), path.size());
  return true;
}

// A non-blocking connection to a listening Unix socket (-1: nobody there).
int connect_unix(const std::string& path) {
  sockaddr_un a;
  if (!unix_address(path, &a)) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// recvmsg of at most `len` bytes, collecting any file descriptors into `fds`.
// Returns bytes read, 0 at EOF, -1 with errno (EAGAIN: nothing yet), -2 when
// descriptors were cut off (too many).
ssize_t recv_with_fds(int fd, uint8_t* buf, size_t len, std::vector<int>& fds) {
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxFds)];
  iovec iov{buf, len};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl;
  m.msg_controllen = sizeof ctl;
  ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n < 0) return -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < k; i++) {
        int x;
        std::memcpy(&x, CMSG_DATA(c) + i * sizeof(int), sizeof x);
        fds.push_back(x);
      }
    }
  if (m.msg_flags & MSG_CTRUNC) return -2;
  return n;
}

// sendmsg of `len` bytes with `fds` attached (non-blocking). Returns bytes sent or -1.
ssize_t send_with_fds(int fd, const uint8_t* buf, size_t len, const std::vector<int>& fds) {
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * kMaxFds)];
  iovec iov{const_cast<uint8_t*>(buf), len};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (!fds.empty()) {
    m.msg_control = ctl;
    m.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  return sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}
}  // namespace

struct VhostRelay::Endpoint {
  std::string name, app_path, backend_path;
  bool client = false;
  int listen_fd = -1;  // server mode: the application's socket
  int app_fd = -1, be_fd = -1;
  // Application -> backend: the message being read (header, then payload) and its descriptors.
  std::vector<uint8_t> msg;
  std::vector<int> msg_fds;
  int64_t msg_since = 0;  // when its first byte came (0: none pending)
  // Backend -> application: bytes the application has not taken yet, and the
  // descriptors that go with their first byte.
  std::vector<uint8_t> out;
  std::vector<int> out_fds;
  int64_t out_since = 0;
  int64_t next_connect = 0;  // client mode: when to try the application's socket again
  int64_t next_accept = 0;   // server mode: accept paused until then (accept failed, e.g. out of descriptors)
  int64_t refused_logged = 0;
  Stats stats;

  ~Endpoint() {
    end_session();
    if (listen_fd >= 0) {
      close(listen_fd);
      unlink(app_path.c_str());  // ours: server mode
    }
  }
  void end_session() {
    if (app_fd >= 0) close(app_fd);
    if (be_fd >= 0) close(be_fd);
    app_fd = be_fd = -1;
    msg.clear();
    close_all(msg_fds);
    msg_since = 0;
    out.clear();
    close_all(out_fds);
    out_since = 0;
  }
  void drop(const char* why) {
    LOG_WARN("vhost-user %s (%s): %s; disconnected", name.c_str(), app_path.c_str(), why);
    end_session();
    next_connect = now_ms() + 1000;
  }
  // A new application connection: pair it with a backend connection.
  bool start_session(int fd) {
    int be = connect_unix(backend_path);
    if (be < 0) {
      LOG_ERR("vhost-user %s: the backend socket %s does not answer: %s", name.c_str(), backend_path.c_str(), std::strerror(errno));
      close(fd);
      return false;
    }
    app_fd = fd;
    be_fd = be;
    stats.sessions++;
    return true;
  }
  // Reads what the application sent; forwards whole messages only.
  void from_app() {
    for (;;) {
      size_t want;
      if (msg.size() < kHeader) {
        want = kHeader - msg.size();
      } else {
        uint32_t size;
        std::memcpy(&size, msg.data() + 8, 4);
        if (size > kMaxPayload) return drop("a message larger than any vhost-user message");
        want = kHeader + size - msg.size();
      }
      if (want) {
        size_t at = msg.size();
        msg.resize(at + want);
        ssize_t n = recv_with_fds(app_fd, msg.data() + at, want, msg_fds);
        if (n == -2) return drop("a message with too many file descriptors");
        if (n <= 0) {
          msg.resize(at);
          if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {  // the application left
            end_session();
            next_connect = now_ms() + 1000;
          }
          return;
        }
        msg.resize(at + size_t(n));
        if (!msg_since) msg_since = now_ms();
        if (size_t(n) < want) return;  // the rest later (kStallMs at most)
        if (msg.size() == kHeader) continue;  // header complete: now its payload (maybe none)
      }
      // A whole message: to the backend with its descriptors, in one piece.
      ssize_t s = send_with_fds(be_fd, msg.data(), msg.size(), msg_fds);
      if (s != ssize_t(msg.size())) return drop("the backend did not take a message");
      stats.messages++;
      msg.clear();
      close_all(msg_fds);  // the backend has its own copies now
      msg_since = 0;
    }
  }
  // Relays what the backend sent (queued while the application does not read).
  void from_backend() {
    uint8_t buf[16384];
    for (;;) {
      std::vector<int> fds;
      ssize_t n = recv_with_fds(be_fd, buf, sizeof buf, fds);
      if (n == -2) {
        close_all(fds);
        return drop("the backend sent too many file descriptors");
      }
      if (n <= 0) {
        close_all(fds);
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {  // the backend closed the session
          end_session();
          next_connect = now_ms() + 1000;
        }
        return;
      }
      if (!out.empty() || !out_fds.empty()) {
        if (!fds.empty()) {  // descriptors must travel with their own bytes: flush first
          flush_out();
          if (!out.empty()) {
            close_all(fds);
            return drop("it does not read what the backend sends");
          }
        }
      }
      out_fds.insert(out_fds.end(), fds.begin(), fds.end());
      if (out.empty()) out_since = now_ms();
      out.insert(out.end(), buf, buf + n);
      if (out.size() > kMaxQueued) return drop("it does not read what the backend sends");
      flush_out();
      if (app_fd < 0) return;
    }
  }
  void flush_out() {
    while (!out.empty() && app_fd >= 0) {
      ssize_t s = send_with_fds(app_fd, out.data(), out.size(), out_fds);
      if (s < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) return;
        end_session();  // the application left
        return;
      }
      close_all(out_fds);  // sent with the first byte
      out.erase(out.begin(), out.begin() + s);
      if (out.empty()) out_since = 0;  // else the clock keeps running: everything within kStallMs, not a byte at a time
    }
  }
};

VhostRelay::VhostRelay() {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::runtime_error(std::string("vhost relay: eventfd: ") + std::strerror(errno));
  thread_ = std::thread([this] { run(); });
}

VhostRelay::~VhostRelay() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  wake();
  thread_.join();
  endpoints_.clear();
  close(wake_fd_);
}

void VhostRelay::wake() {
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
}

void VhostRelay::add(const std::string& name, const std::string& app_path, const std::string& backend_path, bool client) {
  auto ep = std::make_shared<Endpoint>();
  ep->name = name;
  ep->app_path = app_path;
  ep->backend_path = backend_path;
  ep->client = client;
  if (!client) {
    sockaddr_un a;
    if (!unix_address(app_path, &a)) throw std::runtime_error("vhost_socket " + app_path + ": path too long");
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) throw std::runtime_error("vhost_socket " + app_path + ": " + std::strerror(errno));
    mode_t old = umask(0077);
    int r = bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    umask(old);
    if (r != 0 || listen(fd, 4) != 0) {
      int e = errno;
      close(fd);
      throw std::runtime_error("vhost_socket " + app_path + ": " + std::strerror(e));
    }
    ep->listen_fd = fd;
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    endpoints_.push_back(std::move(ep));
  }
  wake();
}

void VhostRelay::remove(const std::string& name) {
  std::shared_ptr<Endpoint> gone;
  {
    // The relay thread holds mu_ whenever it touches an endpoint: once we
    // have it, the endpoint is ours to close (sessions end, a server-mode
    // path is removed) before we return.
    std::lock_guard<std::mutex> g(mu_);
    auto it = std::find_if(endpoints_.begin(), endpoints_.end(), [&](const auto& e) { return e->name == name; });
    if (it == endpoints_.end()) return;
    gone = *it;
    endpoints_.erase(it);
    gone.reset();
  }
  wake();
}

VhostRelay::Stats VhostRelay::stats(const std::string& name) const {
  std::lock_guard<std::mutex> g(mu_);
  for (const auto& e : endpoints_)
    if (e->name == name) return e->stats;
  return {};
}

void VhostRelay::run() {
  std::vector<pollfd> fds;
  std::vector<std::pair<Endpoint*, int>> who;  // per pollfd: endpoint and which fd (0 listen, 1 app, 2 backend)
  for (;;) {
    fds.clear();
    who.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    who.push_back({nullptr, 0});
    {
      std::lock_guard<std::mutex> g(mu_);
      if (stop_) return;
      const int64_t now = now_ms();
      for (const auto& sp : endpoints_) {
        Endpoint& e = *sp;
        // Stalls: a message left unfinished, or output the application does not take.
        if (e.app_fd >= 0 && e.msg_since && now - e.msg_since >= kStallMs) {
          e.stats.stalled++;
          e.drop("the application left a message unfinished");
        } else if (e.app_fd >= 0 && e.out_since && now - e.out_since >= kStallMs) {
          e.stats.stalled++;
          e.drop("the application does not read");
        }
        if (e.client && e.app_fd < 0 && now >= e.next_connect) {  // client mode: (re)connect to the application
          int fd = connect_unix(e.app_path);
          e.next_connect = now + 1000;
          if (fd >= 0) e.start_session(fd);
        }
        if (e.listen_fd >= 0 && now >= e.next_accept) fds.push_back({e.listen_fd, POLLIN, 0}), who.push_back({&e, 0});
        if (e.app_fd >= 0) fds.push_back({e.app_fd, short(POLLIN | (e.out.empty() ? 0 : POLLOUT)), 0}), who.push_back({&e, 1});
        if (e.be_fd >= 0) fds.push_back({e.be_fd, POLLIN, 0}), who.push_back({&e, 2});
      }
    }
    int r = poll(fds.data(), fds.size(), 200);
    if (r < 0 && errno != EINTR) {
      LOG_ERR("vhost relay: poll: %s", std::strerror(errno));
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    if (fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!read(wake_fd_, &v, sizeof v);
    }
    std::lock_guard<std::mutex> g(mu_);
    if (stop_) return;
    for (size_t i = 1; i < fds.size(); i++) {
      if (!fds[i].revents) continue;
      Endpoint* e = who[i].first;
      // Still there (remove() may have run while we polled), and still that descriptor?
      if (std::none_of(endpoints_.begin(), endpoints_.end(), [&](const auto& sp) { return sp.get() == e; })) continue;
      switch (who[i].second) {
        case 0: {
          int c = accept4(e->listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (c < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED) e->next_accept = now_ms() + 100;  // no busy loop
            break;
          }
          if (e->app_fd >= 0) {  // one application per socket
            e->stats.refused++;
            if (now_ms() - e->refused_logged >= 1000) {  // at most one line a second
              e->refused_logged = now_ms();
              LOG_WARN("vhost-user %s (%s): refused a second connection while an application is attached (%llu so far)",
                       e->name.c_str(), e->app_path.c_str(), (unsigned long long)e->stats.refused);
            }
            close(c);
          } else {
            e->start_session(c);
          }
          break;
        }
        case 1:
          if (e->app_fd != fds[i].fd) break;
          if (fds[i].revents & POLLOUT) e->flush_out();
          if (e->app_fd >= 0 && (fds[i].revents & (POLLIN | POLLHUP | POLLERR))) e->from_app();
          break;
        case 2:
          if (e->be_fd != fds[i].fd) break;
          e->from_backend();
          break;
      }
    }
  }
}

}  // namespace dpsw
