#include "control/ctl_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "control/log.h"

namespace dpsw {

CtlServer::CtlServer(std::string path, Handler h) : path_(std::move(path)), handler_(std::move(h)) {
  sockaddr_un addr{};
  if (path_.size() >= sizeof addr.sun_path) throw std::runtime_error("control socket path too long: " + path_);
  auto slash = path_.rfind('/');
  if (slash != std::string::npos && slash > 0) mkdir(path_.substr(0, slash).c_str(), 0755);
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) throw std::runtime_error("control socket: " + std::string(std::strerror(errno)));
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path_.c_str());
  if (in_use(path_)) {
    close(fd_);
    fd_ = -1;
    throw std::runtime_error("control socket " + path_ + " is in use by another running dpsw (set switch.control_socket)");
  }
  unlink(path_.c_str());
  mode_t old = umask(0077);
  int r = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  umask(old);
  if (r < 0 || listen(fd_, 16) < 0) {
    int e = errno;
    close(fd_);
    throw std::runtime_error("control socket " + path_ + ": " + std::strerror(e));
  }
  chmod(path_.c_str(), 0600);
}

bool CtlServer::in_use(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return false;
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, path.c_str());
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  if (probe >= 0) close(probe);
  return live;
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
