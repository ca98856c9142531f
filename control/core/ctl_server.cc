#include "control/core/ctl_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "control/core/log.h"
#include "control/core/socket_path.h"

namespace dpsw {

using nlohmann::json;

CtlServer::CtlServer(std::string path, Handler h, Limits limits)
    : path_(std::move(path)), handler_(std::move(h)), limits_(limits) {
  auto slash = path_.rfind('/');
  if (slash != std::string::npos && slash > 0) mkdir(path_.substr(0, slash).c_str(), 0755);
  switch (check_socket_path(path_, "control socket")) {  // throws unless absent or a socket
    case SocketPathState::kLive:
      throw std::runtime_error("control socket " + path_ + " is in use by another running dpsw (set switch.control_socket)");
    case SocketPathState::kStale:
      unlink(path_.c_str());
      break;
    case SocketPathState::kAbsent:
    case SocketPathState::kSocket:  // (only when not probed)
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
  if (r < 0 || listen(fd, 64) < 0) {
    int e = errno;
    close(fd);
    throw std::runtime_error("control socket " + path_ + ": " + std::strerror(e));
  }
  fd_ = fd;  // bound: the path is ours from here on
  chmod(path_.c_str(), 0600);
}


CtlServer::~CtlServer() {
  for (auto& [fd, c] : clients_) close(fd);
  if (fd_ < 0) return;  // never bound: the path is not ours
  close(fd_);
  unlink(path_.c_str());
}

int64_t CtlServer::now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string CtlServer::error_reply(const std::string& msg) {
  try {
    return json{{"v", kCtlProtocolVersion}, {"ok", false}, {"error", msg}}.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  } catch (...) {
    return "{\"v\":1,\"ok\":false,\"error\":\"internal error while reporting an error\"}\n";
  }
}

int CtlServer::nesting_depth(std::string_view s, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char ch : s) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (ch == '\\') escaped = true;
      else if (ch == '"') in_string = false;
    } else if (ch == '"') {
      in_string = true;
    } else if (ch == '[' || ch == '{') {
      if (++depth > deepest && (deepest = depth) > limit) return deepest;
    } else if ((ch == ']' || ch == '}') && depth > 0) {
      depth--;
    }
  }
  return deepest;
}

std::string CtlServer::serve_line(std::string_view line) {
  try {
    if (line.size() > limits_.max_request)
      return error_reply("request too large (" + std::to_string(line.size()) + " bytes, limit " + std::to_string(limits_.max_request) + ")");
    if (line.find_first_not_of(" \t\r") == std::string_view::npos)
      return error_reply("empty request: expected one JSON object on one line");
    if (nesting_depth(line, limits_.max_depth) > limits_.max_depth)
      return error_reply("request nested too deeply (more than " + std::to_string(limits_.max_depth) + " levels of [ and {)");
    json req;
    try {
      req = json::parse(line);
    } catch (const json::parse_error& e) {
      return error_reply(std::string("request is not valid JSON: ") + e.what());
    }
    if (!req.is_object()) return error_reply("request is not a JSON object");
    if (req.contains("v") && !(req["v"].is_number_integer() && req["v"].get<int64_t>() == kCtlProtocolVersion))
      return error_reply("unsupported protocol version (this daemon speaks v" + std::to_string(kCtlProtocolVersion) + ")");
    CtlReply r = handler_(req);
    json resp = {{"v", kCtlProtocolVersion}, {"ok", true}, {"result", std::move(r.result)}};
    if (r.extra.is_object())
      for (auto& [k, v] : r.extra.items())
        if (!resp.contains(k)) resp[k] = std::move(v);
    return resp.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  } catch (const std::exception& e) {
    return error_reply(e.what());
  } catch (...) {
    return error_reply("internal error: the request failed with an unknown exception");
  }
}

void CtlServer::fill_pollfds(std::vector<pollfd>& fds) const {
  fds.push_back({fd_, POLLIN, 0});
  for (const auto& [fd, c] : clients_) fds.push_back({fd, short(c.state == Client::State::kWriting ? POLLOUT : POLLIN), 0});
}

int CtlServer::next_timeout_ms() const {
  if (clients_.empty()) return -1;
  int64_t first = INT64_MAX;
  for (const auto& [fd, c] : clients_) first = std::min(first, c.deadline_ms);
  return int(std::clamp<int64_t>(first - now_ms(), 0, INT32_MAX));
}

void CtlServer::on_events(const pollfd* fds, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!fds[i].revents) continue;
    if (fds[i].fd == fd_) {
      accept_clients();
      continue;
    }
    auto it = clients_.find(fds[i].fd);
    if (it == clients_.end()) continue;
    try {
      on_client(it->second, fds[i].revents);
    } catch (...) {  // e.g. bad_alloc: lose this client, never the daemon
      LOG_ERR("control socket: dropped a client after an unexpected error");
      drop(it->second);
    }
  }
  expire(now_ms());
  std::erase_if(clients_, [](const auto& kv) { return kv.second.fd < 0; });
}

void CtlServer::poll_once(int timeout_ms) {
  std::vector<pollfd> fds;
  fill_pollfds(fds);
  int t = next_timeout_ms();
  if (t >= 0 && (timeout_ms < 0 || t < timeout_ms)) timeout_ms = t;
  if (poll(fds.data(), fds.size(), timeout_ms) < 0) return;
  on_events(fds.data(), fds.size());
}

void CtlServer::accept_clients() {
  std::erase_if(clients_, [](const auto& kv) { return kv.second.fd < 0; });  // closed ones do not count
  for (int i = 0; i < 64; i++) {  // bounded: a flood of connections cannot hold the loop
    int fd = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    const int64_t now = now_ms();
    if (clients_.size() >= limits_.max_clients) {
      const std::string msg = error_reply("too many control clients at once (limit " + std::to_string(limits_.max_clients) + "); try again");
      (void)!send(fd, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);  // best effort
      close(fd);
      if (full_logged_ms_ < 0 || now - full_logged_ms_ >= 10000) {
        LOG_WARN("control socket: %zu clients at once, refusing more", clients_.size());
        full_logged_ms_ = now;
      }
      continue;
    }
    Client& c = clients_[fd] = Client{};  // the number may be a client's closed in this round
    c.fd = fd;
    c.deadline_ms = now + limits_.deadline_ms;
    ucred cred{};
    socklen_t cl = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != 0) {
      LOG_WARN("control socket: refused a client with uid %u", cred.uid);
      reply(c, error_reply("permission denied: the control socket is for root only"));
    }
  }
}

void CtlServer::on_client(Client& c, short revents) {
  if (c.state == Client::State::kWriting) {
    if (revents & (POLLOUT | POLLERR | POLLHUP)) write_client(c);
  } else if (revents & (POLLIN | POLLERR | POLLHUP)) {
    read_client(c);
  }
}

void CtlServer::read_client(Client& c) {
  const size_t limit = limits_.max_request;
  auto too_large = [&](bool more) {
    return error_reply("request too large (" + std::string(more ? "more than " : "") + std::to_string(c.discarded) +
                       " bytes, limit " + std::to_string(limit) + ")");
  };
  char buf[65536];
  for (;;) {
    ssize_t n = read(c.fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) drop(c);
      return;
    }
    if (n == 0) {  // EOF: what came is the request (a client may shut down its side instead of sending '\n')
      if (c.state == Client::State::kDiscarding) reply(c, too_large(false));
      else if (c.in.empty()) drop(c);  // connected and left (e.g. a liveness probe)
      else reply(c, serve_line(c.in));
      return;
    }
    std::string_view chunk(buf, size_t(n));
    const size_t nl = chunk.find('\n');
    const size_t take = nl == std::string_view::npos ? chunk.size() : nl;
    if (c.state == Client::State::kReading && c.in.size() + take > limit) {
      // Keep reading (and dropping) to the end of the line so that the client, still sending, gets the answer.
      c.discarded = c.in.size();
      std::string().swap(c.in);
      c.state = Client::State::kDiscarding;
    }
    if (c.state == Client::State::kDiscarding) {
      c.discarded += take;
      if (nl != std::string_view::npos) return reply(c, too_large(false));
      if (c.discarded > 16 * limit) return reply(c, too_large(true));
      continue;
    }
    c.in.append(chunk.substr(0, take));
    if (nl != std::string_view::npos) return reply(c, serve_line(c.in));
  }
}

void CtlServer::reply(Client& c, std::string line) {
  std::string().swap(c.in);
  c.out = std::move(line);
  c.out_off = 0;
  c.state = Client::State::kWriting;
  c.deadline_ms = now_ms() + limits_.deadline_ms;  // a fresh deadline to read the answer
  write_client(c);
}

void CtlServer::write_client(Client& c) {
  while (c.out_off < c.out.size()) {
    ssize_t n = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) drop(c);  // the client went away (EPIPE, ECONNRESET)
      return;
    }
    c.out_off += size_t(n);
  }
  drop(c);  // answered: one request per connection
}

void CtlServer::expire(int64_t now) {
  for (auto& [fd, c] : clients_) {
    if (c.fd < 0 || c.deadline_ms > now) continue;
    if (c.state != Client::State::kWriting) {
      read_client(c);  // its line may have come while a long request (reload) held the loop
      if (c.fd < 0 || c.state == Client::State::kWriting) continue;
      LOG_DEBUG("control socket: a client sent no complete request within %d ms; closed", limits_.deadline_ms);
      const std::string msg = error_reply("request timed out: no complete line within " + std::to_string(limits_.deadline_ms) + " ms");
      (void)!send(c.fd, msg.data(), msg.size(), MSG_DONTWAIT | MSG_NOSIGNAL);  // best effort
    } else {
      LOG_DEBUG("control socket: a client did not read its answer within %d ms; closed", limits_.deadline_ms);
    }
    drop(c);
  }
}

void CtlServer::drop(Client& c) {
  if (c.fd >= 0) close(c.fd);
  c.fd = -1;  // erased by on_events()
}

}  // namespace dpsw
