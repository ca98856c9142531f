#include "control/core/socket_path.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace dpsw {

SocketPathState check_socket_path(const std::string& path, const std::string& key, bool probe_it) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    throw std::runtime_error(key + ": '" + path + "' is not usable as a Unix socket path (1.." +
                             std::to_string(sizeof addr.sun_path - 1) + " bytes)");
  struct stat st;
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return SocketPathState::kAbsent;
    throw std::runtime_error(key + ": " + path + ": " + std::strerror(errno));
  }
  if (!S_ISSOCK(st.st_mode))
    throw std::runtime_error(key + ": " + path + " exists and is not a socket; refusing to replace it");
  if (!probe_it) return SocketPathState::kSocket;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  // Non-blocking: a live server whose backlog is full answers EAGAIN instead of stalling us.
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (probe < 0) throw std::runtime_error(key + ": " + path + ": socket: " + std::strerror(errno));
  int r = connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int e = errno;
  close(probe);
  if (r == 0 || e == EAGAIN || e == EINPROGRESS) return SocketPathState::kLive;
  if (e == ECONNREFUSED) return SocketPathState::kStale;  // nobody listens
  if (e == ENOENT) return SocketPathState::kAbsent;       // removed meanwhile
  throw std::runtime_error(key + ": " + path + ": " + std::strerror(e));
}

}  // namespace dpsw
