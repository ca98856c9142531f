// Control socket: a Unix stream socket (mode 0600, root peers only).
// Protocol v1: the client sends one JSON object on one line, e.g.
//   {"v":1,"cmd":"show","args":["ports"]}
// and reads one JSON object back, then the server closes the connection:
//   {"v":1,"ok":true,"result":...}   or   {"v":1,"ok":false,"error":"..."}
// A reply may carry more members beside "result" (CtlReply::extra: `show`
// adds "view", how to print the result); clients ignore what they do not know.
// Served from the control thread's poll loop; never touches workers directly.
// Never blocks and never throws on a client's input: every socket is
// non-blocking, each client has a deadline, requests are bounded in size and
// nesting depth before they are parsed, any exception of the handler becomes
// an error reply, and replies are always valid UTF-8 JSON (invalid bytes
// become U+FFFD).
#pragma once

#include <poll.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace dpsw {

constexpr int kCtlProtocolVersion = 1;

// What a handler answers: the result, and members of the reply beside it.
struct CtlReply {
  CtlReply(nlohmann::json r = nullptr) : result(std::move(r)) {}  // implicit: a handler may return just its result
  nlohmann::json result;
  nlohmann::json extra = nlohmann::json::object();  // never overrides "v", "ok" or "result"
};

class CtlServer {
 public:
  struct Limits {
    size_t max_request = 1 << 20;  // bytes of the request line (newline excluded)
    int max_depth = 64;            // nesting of [ and {
    int deadline_ms = 5000;        // to send a full line; again to read the reply
    size_t max_clients = 64;       // connections served at once; more are refused
  };
  using Handler = std::function<CtlReply(const nlohmann::json& request)>;
  // Throws std::runtime_error if the socket cannot be created, if the path is
  // taken by a live socket or is not a socket at all (check_socket_path()).
  CtlServer(std::string path, Handler h, Limits limits);
  CtlServer(std::string path, Handler h) : CtlServer(std::move(path), std::move(h), Limits{}) {}
  ~CtlServer();
  CtlServer(const CtlServer&) = delete;
  CtlServer& operator=(const CtlServer&) = delete;

  int fd() const { return fd_; }
  // Poll-loop integration: append the listening socket and every client with
  // the events it waits for; after poll(), pass the same entries back.
  void fill_pollfds(std::vector<pollfd>& fds) const;
  void on_events(const pollfd* fds, size_t n);
  // Milliseconds until the earliest client deadline (0 if one has passed), -1 if none.
  int next_timeout_ms() const;
  // fill_pollfds + poll + on_events, for a loop that has nothing else to wait on.
  void poll_once(int timeout_ms);
  size_t clients() const { return clients_.size(); }

  // One request line (without its newline) to one reply line (with it).
  // Bounds size and depth first; never throws.
  std::string serve_line(std::string_view line);
  static std::string error_reply(const std::string& msg);  // {"v":1,"ok":false,"error":msg}\n, never throws
  // Deepest nesting of [ and { outside strings, stopping once above `limit`. Linear, no recursion.
  static int nesting_depth(std::string_view s, int limit);

 private:
  struct Client {
    int fd = -1;
    enum class State { kReading, kDiscarding, kWriting } state = State::kReading;
    std::string in;        // bytes of the request so far
    size_t discarded = 0;  // bytes of an oversized request read and dropped
    std::string out;       // reply not yet written
    size_t out_off = 0;
    int64_t deadline_ms = 0;
  };
  void accept_clients();
  void on_client(Client& c, short revents);  // leaves c.fd < 0 once done
  void read_client(Client& c);
  void reply(Client& c, std::string line);
  void write_client(Client& c);
  void expire(int64_t now);
  void drop(Client& c);
  static int64_t now_ms();

  std::string path_;
  Handler handler_;
  Limits limits_;
  int fd_ = -1;
  std::map<int, Client> clients_;  // by fd
  int64_t full_logged_ms_ = -1;    // last "too many clients" warning
};

}  // namespace dpsw
