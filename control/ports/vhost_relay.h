// vhost-user relay: stands between applications and DPDK's vhost-user
// backend, so no application can stall the backend or take another's port.
//
// Why: DPDK's vhost library serves every vhost-user socket from one event
// thread and reads a message's payload with a blocking read: a client that
// sends a 12-byte header and then nothing freezes every vhost endpoint (and
// teardown). A server-mode socket also accepts any number of connections,
// so a second application silently takes the port over.
//
// How: the backend (net_vhost PMD) listens on a private socket in dpsw's
// state directory. For each endpoint the relay owns the socket the
// application sees: it listens on it (server mode) or connects to the
// application's (client mode, retrying every second), connects to the
// private socket once an application is there, and copies messages between
// the two. Messages towards the backend are forwarded only whole (header,
// payload and their file descriptors, at most kMaxPayload bytes); an
// application that leaves a message unfinished for kStallMs, or does not
// read what the backend sends for as long, is disconnected and logged. A
// second connection on a server-mode socket is refused (closed at once,
// logged) while one is active. Messages from the backend are relayed as
// they come (the backend is trusted).
//
// Threading: one thread of its own (poll loop); add()/remove() are called by
// the control thread and return at once (remove() waits for the thread to
// let go of the endpoint, which never blocks on I/O).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dpsw {

class VhostRelay {
 public:
  static constexpr uint32_t kMaxPayload = 64 * 1024;
  static constexpr int kStallMs = 2000;

  VhostRelay();
  ~VhostRelay();  // closes every socket it holds (server-mode paths are removed)
  VhostRelay(const VhostRelay&) = delete;
  VhostRelay& operator=(const VhostRelay&) = delete;

  // `app_path`: the socket the application sees; `backend_path`: the PMD's
  // private listening socket. Server mode binds app_path now (throws
  // std::runtime_error naming it); the caller has checked the path first.
  void add(const std::string& name, const std::string& app_path, const std::string& backend_path, bool client);
  void remove(const std::string& name);

  struct Stats {
    uint64_t sessions = 0, refused = 0, stalled = 0, messages = 0;
  };
  Stats stats(const std::string& name) const;

 private:
  struct Endpoint;
  void run();
  void wake();

  mutable std::mutex mu_;  // endpoints_ (control thread <-> relay thread; never on the fast path)
  std::vector<std::shared_ptr<Endpoint>> endpoints_;
  int wake_fd_ = -1;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace dpsw
