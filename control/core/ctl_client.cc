#include "control/core/ctl_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

namespace dpsw {

namespace {
double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + ts.tv_nsec / 1e9;
}

// Waits for `events` on fd until `deadline` (monotonic seconds). False on expiry.
bool wait_for(int fd, short events, double deadline) {
  for (;;) {
    const double left = deadline - now_s();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, int(std::ceil(std::min(left, 1e6) * 1000)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return true;  // let the read/write report the error
  }
}

struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};
}  // namespace

nlohmann::json ctl_call(const std::string& sock, const nlohmann::json& request, double timeout_s) {
  using Kind = CtlError::Kind;
  const std::string out = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  const double deadline = now_s() + timeout_s;
  sockaddr_un addr{};
  if (sock.size() >= sizeof addr.sun_path)
    throw CtlError(Kind::kUsage, "--socket: path too long (" + std::to_string(sock.size()) + " bytes, limit " +
                                     std::to_string(sizeof addr.sun_path - 1) + ")");
  Fd f{socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (f.fd < 0) throw CtlError(Kind::kIo, std::string("socket: ") + std::strerror(errno));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, sock.c_str(), sock.size());
  // connect() waits while the daemon's backlog is full: bound that by the timeout too.
  timeval tv{time_t(timeout_s), suseconds_t((timeout_s - std::floor(timeout_s)) * 1e6)};
  setsockopt(f.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(f.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0)
    throw CtlError(Kind::kUnreachable, "cannot reach dpsw at " + sock + ": " +
                                           (errno == EAGAIN || errno == EINPROGRESS ? "timed out (the daemon accepts no connections)"
                                                                                    : std::strerror(errno)));
  auto timed_out = [&] {
    char t[32];
    std::snprintf(t, sizeof t, "%g", timeout_s);
    return CtlError(Kind::kTimeout, "no answer from dpsw at " + sock + " within " + t + " s");
  };
  for (size_t off = 0; off < out.size();) {
    if (!wait_for(f.fd, POLLOUT, deadline)) throw timed_out();
    ssize_t n = send(f.fd, out.data() + off, out.size() - off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0)
      throw CtlError(Kind::kIo, "sending the request to dpsw at " + sock + " failed: " + std::strerror(errno) +
                                    (errno == EPIPE || errno == ECONNRESET ? " (the daemon closed the connection)" : ""));
    off += size_t(n);
  }
  std::string in;
  char buf[65536];
  for (;;) {
    if (!wait_for(f.fd, POLLIN, deadline)) throw timed_out();
    ssize_t n = recv(f.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n < 0) {
      if (!in.empty()) break;  // the answer came; the reset is the daemon closing
      throw CtlError(Kind::kIo, "reading the answer from dpsw at " + sock + " failed: " + std::strerror(errno) +
                                    (errno == ECONNRESET ? " (the daemon closed the connection)" : ""));
    }
    if (n == 0) break;
    in.append(buf, size_t(n));
  }
  if (in.empty()) throw CtlError(Kind::kIo, "dpsw at " + sock + " closed the connection without answering");
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception&) {
    throw CtlError(Kind::kMalformed, "malformed answer from dpsw");
  }
}

}  // namespace dpsw
