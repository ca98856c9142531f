// The control socket (issue 18): the rule for its path.
#include "control/ctl_server.h"

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

#include "control/socket_path.h"

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

json handler(const json& req) { return req; }

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
    EXPECT_TRUE(CtlServer::in_use(stale));
    EXPECT_THROW((CtlServer{stale, handler}), std::runtime_error);
  }
  EXPECT_EQ(check_socket_path(stale, "k"), SocketPathState::kAbsent);  // removed by its owner
}

}  // namespace
}  // namespace dpsw
