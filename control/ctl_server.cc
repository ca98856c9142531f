#include "control/ctl_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "control/log.h"
#include "control/socket_path.h"

namespace dpsw {

CtlServer::CtlServer(std::string path, Handler h) : path_(std::move(path)), handler_(std::move(h)) {
  auto slash = path_.rfind('/');
  if (slash != std::string::npos && slash > 0) mkdir(path_.substr(0, slash).c_str(), 0755);
  switch (check_socket_path(path_, "control socket")) {  // throws unless absent or a socket
    case SocketPathState::kLive:
      throw std::runtime_error("control socket " + path_ + " is in use by another running dpsw (set switch.control_socket)");
    case SocketPathState::kStale:
      unlink(path_.c_str());
      break;
    case SocketPathState::kAbsent:
      break;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.c_str(), path_.size());  // length checked above
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw std::runtime_error("control socket: " + std::string(std::strerror(errno)));
  mode_t old = umask(0077);
  int r = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old);
  if (r < 0 || listen(fd, 16) < 0) {
    int e = errno;
    close(fd);
    throw std::runtime_error("control socket " + path_ + ": " + std::strerror(e));
  }
  fd_ = fd;  // bound: the path is ours from here on
  chmod(path_.c_str(), 0600);
}

bool CtlServer::in_use(const std::string& path) {
  try {
    return check_socket_path(path, "socket") == SocketPathState::kLive;
  } catch (const std::exception&) {
    return false;  // not a socket at all: nobody answers on it
  }
}

CtlServer::~CtlServer() {
  if (fd_ < 0) return;  // never bound: the path is not ours
  close(fd_);
  unlink(path_.c_str());
}

void CtlServer::on_readable() {
  int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
  if (c < 0) return;
  timeval tv{1, 0};
  setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  nlohmann::json resp;
  ucred cred{};
  socklen_t cl = sizeof cred;
  if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != 0) {
    resp = {{"v", kCtlProtocolVersion}, {"ok", false}, {"error", "permission denied: the control socket is for root only"}};
    LOG_WARN("control socket: refused a client with uid %u", cred.uid);
  } else {
    std::string line;
    char buf[4096];
    while (line.find('\n') == std::string::npos && line.size() < (1 << 20)) {
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, size_t(n));
    }
    try {
      auto req = nlohmann::json::parse(line.substr(0, line.find('\n')));
      if (!req.is_object()) throw std::runtime_error("request is not a JSON object");
      if (req.value("v", kCtlProtocolVersion) != kCtlProtocolVersion)
        throw std::runtime_error("unsupported protocol version (this daemon speaks v" + std::to_string(kCtlProtocolVersion) + ")");
      resp = {{"v", kCtlProtocolVersion}, {"ok", true}, {"result", handler_(req)}};
    } catch (const std::exception& e) {
      resp = {{"v", kCtlProtocolVersion}, {"ok", false}, {"error", e.what()}};
    }
  }
  std::string out = resp.dump() + "\n";
  size_t off = 0;
  while (off < out.size()) {
    ssize_t n = write(c, out.data() + off, out.size() - off);
    if (n <= 0) break;
    off += size_t(n);
  }
  close(c);
}

}  // namespace dpsw
