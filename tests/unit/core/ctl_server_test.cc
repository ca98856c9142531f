// The control socket against a generated corpus of hostile input (issue 18):
// invalid UTF-8 at every position, truncation, NUL bytes, deep nesting, huge
// lines, slow and non-reading clients. Every client gets one well-formed JSON
// line back (or a clean close), the server survives, and a normal request
// still succeeds afterwards.
#include "control/core/ctl_server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <thread>

#include <gtest/gtest.h>

#include "control/core/socket_path.h"

namespace dpsw {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/dpsw-ctltest-XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// What the daemon's handler does: quote its input in errors (here also raw
// Latin-1 bytes, as an error about a config file saved in Latin-1 would).
json handler(const json& req) {
  const std::string cmd = req.value("cmd", "");
  if (cmd == "echo") return req;
  if (cmd == "reload") throw std::runtime_error("/etc/dpsw.yaml:3: unknown key 'caf\xe9' (\xff\xfe)");
  if (cmd == "latin1") return {{"path", "/tmp/caf\xe9"}};
  if (cmd == "big") return std::string(1 << 20, 'x');  // more than a socket buffer holds
  if (cmd == "throw_int") throw 42;
  if (cmd == "sleep") {  // a long request, like a reload
    std::this_thread::sleep_for(std::chrono::milliseconds(req.value("ms", 0)));
    return "slept";
  }
  throw std::runtime_error("unknown command '" + cmd + "'");
}

// A reply with members beside "result", as `show` adds "view"; they never override the envelope.
CtlReply serve(const json& req) {
  if (req.value("cmd", "") != "extra") return handler(req);
  CtlReply r(json::array({1, 2}));
  r.extra = {{"view", {{"name", "x"}}}, {"ok", false}, {"result", "not this"}, {"v", 2}};
  return r;
}

// A CtlServer served by its own thread, like the daemon's control loop.
struct Server {
  TempDir dir;
  std::string sock = dir.path + "/ctl.sock";
  CtlServer srv;
  std::atomic<bool> stop{false};  // relaxed: only ends the loop, publishes nothing
  std::thread th;
  explicit Server(CtlServer::Limits l = {}) : srv(sock, serve, l) {
    th = std::thread([this] {
      while (!stop.load(std::memory_order_relaxed)) srv.poll_once(20);
    });
  }
  ~Server() {
    stop.store(true, std::memory_order_relaxed);
    th.join();
  }
};

int connect_to(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  timeval tv{20, 0};  // a hung server fails the test instead of hanging it
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return fd;
}

bool send_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(size_t(n));
  }
  return true;
}

std::string read_all(int fd) {
  std::string in;
  char buf[65536];
  for (ssize_t n; (n = read(fd, buf, sizeof buf)) > 0;) in.append(buf, size_t(n));
  return in;
}

// One exchange: the bytes, then (optionally) EOF on our side; returns everything read back.
std::string talk(const std::string& sock, std::string_view bytes, bool shut_wr = false) {
  int fd = connect_to(sock);
  EXPECT_GE(fd, 0) << "the server is gone";
  if (fd < 0) return "";
  send_all(fd, bytes);
  if (shut_wr) shutdown(fd, SHUT_WR);
  std::string r = read_all(fd);
  close(fd);
  return r;
}

// One line of JSON (valid UTF-8: nlohmann's parser rejects anything else), an object with ok == false and an error.
json expect_error_reply(const std::string& reply, const std::string& what) {
  EXPECT_TRUE(!reply.empty() && reply.back() == '\n' && reply.find('\n') == reply.size() - 1) << what << ": " << reply.substr(0, 200);
  json j;
  try {
    j = json::parse(reply);
  } catch (const std::exception& e) {
    ADD_FAILURE() << what << ": reply is not JSON (" << e.what() << "): " << reply.substr(0, 200);
    return j;
  }
  EXPECT_TRUE(j.is_object() && j.value("v", 0) == 1 && j.value("ok", true) == false && j.contains("error") &&
              j["error"].is_string() && !j["error"].get<std::string>().empty())
      << what << ": " << j.dump(-1, ' ', false, json::error_handler_t::replace).substr(0, 200);
  return j;
}

void expect_echo_works(const std::string& sock) {
  const std::string r = talk(sock, R"({"v":1,"cmd":"echo","args":["ok"]})" "\n");
  json j = json::parse(r);
  ASSERT_TRUE(j["ok"].get<bool>()) << r;
  EXPECT_EQ(j["result"]["args"][0], "ok");
}

const std::vector<std::string> kRequests = {
    R"({"v":1,"cmd":"echo","args":["show","ports"]})",
    R"({"v":1,"cmd":"network","args":["add"],"spec":{"name":"n1","subnet":"10.0.0.0/24","peers":["198.51.100.2"]}})",
    R"({"cmd":"reload","args":[]})",
};

TEST(CtlServer, InvalidUtf8AtEveryPosition) {
  Server s;
  std::mt19937 rng(18);  // deterministic corpus
  const unsigned char bad[] = {0x80, 0xbf, 0xc0, 0xc3, 0xe9, 0xed, 0xf5, 0xfe, 0xff};
  int n = 0;
  for (const auto& req : kRequests)
    for (size_t i = 0; i <= req.size(); i++) {
      const char b = char(bad[rng() % sizeof bad]);
      std::string ins = req, rep = req;
      ins.insert(i, 1, b);
      if (i < req.size()) rep[i] = b;
      expect_error_reply(talk(s.sock, ins + "\n"), "insert at " + std::to_string(i) + " of " + req);
      if (i < req.size()) expect_error_reply(talk(s.sock, rep + "\n"), "replace at " + std::to_string(i) + " of " + req);
      n += 2;
    }
  EXPECT_GT(n, 200);
  expect_echo_works(s.sock);
}

TEST(CtlServer, NulBytesAndTruncation) {
  Server s;
  for (const auto& req : kRequests)
    for (size_t i = 0; i < req.size(); i++) {
      std::string nul = req;
      nul.insert(i, 1, '\0');
      expect_error_reply(talk(s.sock, nul + "\n"), "NUL at " + std::to_string(i));
      expect_error_reply(talk(s.sock, req.substr(0, i) + "\n"), "truncated to " + std::to_string(i));
      // No newline, then EOF: the bytes are the request.
      if (i > 0) expect_error_reply(talk(s.sock, req.substr(0, i), true), "truncated to " + std::to_string(i) + ", EOF");
    }
  expect_error_reply(talk(s.sock, std::string(1000, '\0') + "\n"), "NULs");
  expect_echo_works(s.sock);
}

TEST(CtlServer, RandomBytes) {
  Server s;
  std::mt19937 rng(1818);
  for (int i = 0; i < 300; i++) {
    std::string line(rng() % 400, '\0');
    for (auto& c : line) c = char(rng() % 3 ? rng() % 256 : "{}[]\",:\\"[rng() % 8]);
    std::replace(line.begin(), line.end(), '\n', ' ');
    const std::string r = talk(s.sock, line + "\n");
    json j = json::parse(r);  // well-formed (an error, almost surely)
    EXPECT_TRUE(j.is_object() && j.contains("ok")) << r;
  }
  expect_echo_works(s.sock);
}

TEST(CtlServer, ErrorsQuotingInvalidUtf8AreReplaced) {
  Server s;
  json j = expect_error_reply(talk(s.sock, R"({"v":1,"cmd":"reload"})" "\n"), "reload");
  EXPECT_NE(j["error"].get<std::string>().find("caf\xef\xbf\xbd"), std::string::npos) << j["error"];  // U+FFFD
  j = json::parse(talk(s.sock, R"({"v":1,"cmd":"latin1"})" "\n"));
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_EQ(j["result"]["path"], "/tmp/caf\xef\xbf\xbd");
  j = expect_error_reply(talk(s.sock, R"({"v":1,"cmd":"throw_int"})" "\n"), "non-std exception");
  EXPECT_NE(j["error"].get<std::string>().find("internal error"), std::string::npos);
  expect_error_reply(talk(s.sock, R"({"v":"1","cmd":"echo"})" "\n"), "v as a string");
  expect_error_reply(talk(s.sock, "[1,2]\n"), "not an object");
  expect_echo_works(s.sock);
}

TEST(CtlServer, ReplyMembersBesideResult) {
  Server s;
  const json j = json::parse(talk(s.sock, R"({"v":1,"cmd":"extra"})" "\n"));
  EXPECT_EQ(j, json({{"v", 1}, {"ok", true}, {"result", {1, 2}}, {"view", {{"name", "x"}}}}));
}

TEST(CtlServer, DeepNesting) {
  Server s;
  auto nested = [](int depth, bool objects) {
    std::string open, close;
    for (int i = 0; i < depth; i++) {
      open += objects ? R"({"a":)" : "[";
      close += objects ? "}" : "]";
    }
    return R"({"v":1,"cmd":"echo","spec":)" + open + "1" + close + "}";
  };
  // The request object itself is one level: 63 more fit in 64.
  for (bool objects : {false, true}) {
    json j = json::parse(talk(s.sock, nested(63, objects) + "\n"));
    EXPECT_TRUE(j["ok"].get<bool>()) << objects;
    // 200k levels of {"a": would exceed the size limit: 150k (900 KB) is the deepest object nesting that fits.
    for (int depth : {64, 65, 1000, 100000, objects ? 150000 : 200000}) {
      json e = expect_error_reply(talk(s.sock, nested(depth, objects) + "\n"), "depth " + std::to_string(depth));
      EXPECT_NE(e["error"].get<std::string>().find("nested too deeply (more than 64 levels"), std::string::npos) << e["error"];
    }
  }
  // Unbalanced: only openers, 200k of them, with and without a newline.
  expect_error_reply(talk(s.sock, std::string(200000, '[') + "\n"), "200k [");
  expect_error_reply(talk(s.sock, std::string(200000, '{'), true), "200k { then EOF");
  // Brackets inside a string do not nest.
  json j = json::parse(talk(s.sock, R"({"v":1,"cmd":"echo","x":")" + std::string(100000, '[') + "\\\"{{\"}\n"));
  EXPECT_TRUE(j["ok"].get<bool>());
  expect_echo_works(s.sock);
}

TEST(CtlServer, HugeLines) {
  Server s;
  const std::string huge(2 << 20, 'x');
  json e = expect_error_reply(talk(s.sock, huge + "\n"), "2 MiB line");
  EXPECT_EQ(e["error"], "request too large (2097152 bytes, limit 1048576)");
  e = expect_error_reply(talk(s.sock, R"({"v":1,"cmd":"echo","x":")" + huge + "\"}\n"), "2 MiB string");
  EXPECT_NE(e["error"].get<std::string>().find("request too large"), std::string::npos);
  e = expect_error_reply(talk(s.sock, huge, true), "2 MiB, no newline, EOF");
  EXPECT_EQ(e["error"], "request too large (2097152 bytes, limit 1048576)");
  // Exactly at the limit is not too large (it is simply not JSON).
  e = expect_error_reply(talk(s.sock, std::string(1 << 20, 'x') + "\n"), "1 MiB");
  EXPECT_EQ(e["error"].get<std::string>().find("too large"), std::string::npos) << e["error"];
  expect_echo_works(s.sock);
}

TEST(CtlServer, SlowClientsBlockNobody) {
  CtlServer::Limits l;
  l.deadline_ms = 1500;
  Server s(l);
  // 16 clients dribbling a byte every 300 ms: each is cut off at its deadline with an error.
  std::vector<std::thread> slow;
  std::atomic<int> timed_out{0};  // relaxed: read after join()
  for (int i = 0; i < 16; i++)
    slow.emplace_back([&] {
      int fd = connect_to(s.sock);
      if (fd < 0) return;
      const std::string req = R"({"v":1,"cmd":"echo","args":[]})" "\n";
      for (char c : req) {
        if (send(fd, &c, 1, MSG_NOSIGNAL) != 1) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
      }
      std::string r = read_all(fd);
      close(fd);
      if (r.find("timed out") != std::string::npos) timed_out.fetch_add(1, std::memory_order_relaxed);
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  for (int i = 0; i < 5; i++) {  // meanwhile, others are served at once
    const auto t0 = Clock::now();
    expect_echo_works(s.sock);
    EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1000));
  }
  // A client that never reads a large answer does not hold the server either.
  int lazy = connect_to(s.sock);
  ASSERT_TRUE(send_all(lazy, R"({"v":1,"cmd":"big"})" "\n"));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto t0 = Clock::now();
  expect_echo_works(s.sock);
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1000));
  for (auto& t : slow) t.join();
  EXPECT_EQ(timed_out.load(std::memory_order_relaxed), 16);
  // By now the lazy client was dropped: what it reads ends early.
  std::this_thread::sleep_for(std::chrono::milliseconds(l.deadline_ms));
  EXPECT_LT(read_all(lazy).size(), size_t(1 << 20));
  close(lazy);
  // Clients that leave before the answer (EPIPE on the server's side).
  for (int i = 0; i < 50; i++) {
    int fd = connect_to(s.sock);
    send_all(fd, R"({"v":1,"cmd":"big"})" "\n");
    close(fd);
  }
  expect_echo_works(s.sock);
}

TEST(CtlServer, LongRequestDoesNotExpireClientsThatSentMeanwhile) {
  CtlServer::Limits l;
  l.deadline_ms = 1000;
  Server s(l);
  int waiting = connect_to(s.sock);  // accepted before the long request
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  std::thread slow([&] { EXPECT_TRUE(json::parse(talk(s.sock, R"({"v":1,"cmd":"sleep","ms":2000})" "\n"))["ok"].get<bool>()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the handler runs; the deadline passes during it
  ASSERT_TRUE(send_all(waiting, R"({"v":1,"cmd":"echo","args":["late"]})" "\n"));
  json j = json::parse(read_all(waiting));
  close(waiting);
  slow.join();
  EXPECT_TRUE(j["ok"].get<bool>()) << j;
  expect_echo_works(s.sock);
}

TEST(CtlServer, ClientLimit) {
  CtlServer::Limits l;
  l.max_clients = 4;
  Server s(l);
  std::vector<int> idle;
  for (int i = 0; i < 4; i++) idle.push_back(connect_to(s.sock));
  json e = expect_error_reply(talk(s.sock, R"({"v":1,"cmd":"echo"})" "\n"), "fifth client");
  EXPECT_NE(e["error"].get<std::string>().find("too many control clients at once (limit 4)"), std::string::npos) << e["error"];
  for (int fd : idle) close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  expect_echo_works(s.sock);
}

TEST(CtlServer, NestingDepthScan) {
  EXPECT_EQ(CtlServer::nesting_depth("{}", 64), 1);
  EXPECT_EQ(CtlServer::nesting_depth(R"({"a":[{"b":"[[[\"{{"}]})", 64), 3);
  EXPECT_EQ(CtlServer::nesting_depth(std::string(1000000, '['), 64), 65);  // stops early
  EXPECT_EQ(CtlServer::nesting_depth("]]]]{", 64), 1);
}

TEST(SocketPath, OnlyAbsentOrSocket) {
  TempDir d;
  const std::string p = d.path + "/x";
  EXPECT_EQ(check_socket_path(p, "switch.control_socket"), SocketPathState::kAbsent);
  {
    std::ofstream(p) << "switch:\n  name: keep\n";
  }
  try {
    check_socket_path(p, "switch.control_socket");
    ADD_FAILURE() << "a regular file was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(std::string(e.what()), "switch.control_socket: " + p + " exists and is not a socket; refusing to replace it");
  }
  EXPECT_THROW((CtlServer{p, handler}), std::runtime_error);
  std::ifstream f(p);
  std::string text((std::istreambuf_iterator<char>(f)), {});
  EXPECT_EQ(text, "switch:\n  name: keep\n");  // untouched
  const std::string dir = d.path + "/dir", link = d.path + "/link", fifo = d.path + "/fifo", dangling = d.path + "/dangling";
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  ASSERT_EQ(symlink(p.c_str(), link.c_str()), 0);
  ASSERT_EQ(symlink("/nonexistent/sock", dangling.c_str()), 0);
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  for (const auto& q : {dir, link, dangling, fifo}) {
    EXPECT_THROW(check_socket_path(q, "k"), std::runtime_error) << q;
    EXPECT_THROW((CtlServer{q, handler}), std::runtime_error) << q;
  }
  struct stat st;
  EXPECT_EQ(lstat(link.c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_THROW(check_socket_path(d.path + "/" + std::string(200, 'a'), "k"), std::runtime_error);
  // A stale socket (bound, never listened on) is replaced; a live one is refused.
  const std::string stale = d.path + "/stale.sock";
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, stale.c_str());
    ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    close(fd);
  }
  EXPECT_EQ(check_socket_path(stale, "k"), SocketPathState::kStale);
  {
    CtlServer live(stale, handler);
    EXPECT_EQ(check_socket_path(stale, "k"), SocketPathState::kLive);
    EXPECT_THROW((CtlServer{stale, handler}), std::runtime_error);
  }
  EXPECT_EQ(check_socket_path(stale, "k"), SocketPathState::kAbsent);  // removed by its owner
}

}  // namespace
}  // namespace dpsw
