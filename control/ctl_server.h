// Control socket: a Unix stream socket (mode 0600, root peers only).
// Protocol v1: the client sends one JSON object on one line, e.g.
//   {"v":1,"cmd":"show","args":["ports"]}
// and reads one JSON object back, then the server closes the connection:
//   {"v":1,"ok":true,"result":...}   or   {"v":1,"ok":false,"error":"..."}
// Served from the control thread's poll loop; never touches workers directly.
#pragma once

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace dpsw {

constexpr int kCtlProtocolVersion = 1;

class CtlServer {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;
  // Throws std::runtime_error if the socket cannot be created, if the path is
  // taken by a live socket or is not a socket at all (check_socket_path()).
  CtlServer(std::string path, Handler h);
  ~CtlServer();
  int fd() const { return fd_; }
  // A socket someone answers on belongs to a live daemon (perhaps an instance
  // with another name): never steal it. One nobody answers on is stale.
  static bool in_use(const std::string& path);
  void on_readable();  // accept and serve one client

 private:
  std::string path_;
  Handler handler_;
  int fd_ = -1;
};

}  // namespace dpsw
