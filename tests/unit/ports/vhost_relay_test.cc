// The vhost-user relay with a fake backend and fake applications (no DPDK):
// whole messages and their descriptors cross, a stalled or second client
// harms nobody, client mode reconnects.
#include "control/ports/vhost_relay.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace dpsw {
namespace {

namespace fs = std::filesystem;

sockaddr_un addr_of(const std::string& p) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, p.c_str(), sizeof a.sun_path - 1);
  return a;
}

int listen_at(const std::string& p) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a = addr_of(p);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0) << p;
  EXPECT_EQ(listen(fd, 8), 0);
  return fd;
}

int connect_to(const std::string& p) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a = addr_of(p);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool readable(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return poll(&p, 1, ms) == 1;
}

int accept_within(int lfd, int ms) { return readable(lfd, ms) ? accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC) : -1; }

std::string header(uint32_t req, uint32_t size) {
  std::string h(12, '\0');
  std::memcpy(h.data(), &req, 4);
  uint32_t flags = 1;
  std::memcpy(h.data() + 4, &flags, 4);
  std::memcpy(h.data() + 8, &size, 4);
  return h;
}

void send_with_fd(int sock, const std::string& bytes, int fd) {
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))];
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = ctl;
  m.msg_controllen = sizeof ctl;
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ASSERT_EQ(sendmsg(sock, &m, 0), ssize_t(bytes.size()));
}

// Reads exactly n bytes (and any descriptor) within a second.
std::string recv_exact(int sock, size_t n, int* fd_out = nullptr) {
  std::string out;
  while (out.size() < n && readable(sock, 1000)) {
    char buf[4096];
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{buf, std::min(sizeof buf, n - out.size())};
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = ctl;
    m.msg_controllen = sizeof ctl;
    ssize_t r = recvmsg(sock, &m, 0);
    if (r <= 0) break;
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
      if (c->cmsg_type == SCM_RIGHTS && fd_out) std::memcpy(fd_out, CMSG_DATA(c), sizeof(int));
    out.append(buf, size_t(r));
  }
  return out;
}

struct Dir {
  fs::path p = fs::temp_directory_path() / ("dpsw-relay-" + std::to_string(getpid()));
  Dir() { fs::create_directories(p); }
  ~Dir() { fs::remove_all(p); }
  std::string operator/(const std::string& f) const { return (p / f).string(); }
};

// A server-mode endpoint "a" with its fake backend and one application attached.
struct VhostRelayAttached : ::testing::Test {
  Dir d;
  int backend = listen_at(d / "be.sock");
  VhostRelay relay;
  int app = -1, be = -1;
  void SetUp() override {
    relay.add("a", d / "app.sock", d / "be.sock", false);
    app = connect_to(d / "app.sock");
    ASSERT_GE(app, 0);
    be = accept_within(backend, 2000);
    ASSERT_GE(be, 0);
  }
  ~VhostRelayAttached() override {
    for (int fd : {app, be, backend})
      if (fd >= 0) close(fd);
  }
};

TEST_F(VhostRelayAttached, WholeMessagesAndTheirDescriptorsCrossBothWays) {
  int pipefd[2];
  ASSERT_EQ(pipe(pipefd), 0);
  // A message in two writes, the descriptor with the first: it arrives whole, with it.
  std::string msg = header(5, 8) + std::string(8, 'x');
  send_with_fd(app, msg.substr(0, 12), pipefd[1]);
  EXPECT_FALSE(readable(be, 200));  // nothing until the message is whole
  ASSERT_EQ(write(app, msg.data() + 12, 8), 8);
  int got_fd = -1;
  EXPECT_EQ(recv_exact(be, msg.size(), &got_fd), msg);
  ASSERT_GE(got_fd, 0);
  ASSERT_EQ(write(got_fd, "ok", 2), 2);  // the descriptor works: it is the pipe
  char b[2];
  ASSERT_EQ(read(pipefd[0], b, 2), 2);
  EXPECT_EQ(std::string(b, 2), "ok");
  // A reply from the backend reaches the application.
  std::string reply = header(5, 8) + std::string(8, 'y');
  ASSERT_EQ(write(be, reply.data(), reply.size()), ssize_t(reply.size()));
  EXPECT_EQ(recv_exact(app, reply.size()), reply);
  EXPECT_EQ(relay.stats("a").messages, 1u);
  // The relay kept no copy of the descriptor: with ours closed, the pipe ends.
  close(pipefd[1]);
  close(got_fd);
  char c;
  EXPECT_EQ(read(pipefd[0], &c, 1), 0) << "a copy of the write end is still open somewhere";
  close(pipefd[0]);
}

TEST(VhostRelay, AStalledClientIsDroppedAndStallsNobody) {
  Dir d;
  int ba = listen_at(d / "ba.sock"), bb = listen_at(d / "bb.sock");
  VhostRelay relay;
  relay.add("a", d / "a.sock", d / "ba.sock", false);
  relay.add("b", d / "b.sock", d / "bb.sock", false);
  int stall = connect_to(d / "a.sock");
  std::string h = header(1, 64);
  ASSERT_EQ(write(stall, h.data(), h.size()), 12);  // a header announcing 64 bytes, then nothing
  int sa = accept_within(ba, 2000);
  ASSERT_GE(sa, 0);
  // The other endpoint works meanwhile.
  int app = connect_to(d / "b.sock");
  int sb = accept_within(bb, 2000);
  ASSERT_GE(sb, 0);
  std::string msg = header(2, 0);
  ASSERT_EQ(write(app, msg.data(), msg.size()), 12);
  EXPECT_EQ(recv_exact(sb, 12), msg);
  // The staller is disconnected within the bound; its backend never saw a byte.
  ASSERT_TRUE(readable(stall, VhostRelay::kStallMs + 1500));
  char buf[16];
  EXPECT_EQ(read(stall, buf, sizeof buf), 0);
  EXPECT_EQ(read(sa, buf, sizeof buf), 0);  // the backend's session ended too, empty
  EXPECT_EQ(relay.stats("a").stalled, 1u);
  // Removing an endpoint with a stalled client returns at once and removes its socket.
  int again = connect_to(d / "a.sock");
  ASSERT_EQ(write(again, h.data(), 5), 5);
  auto t0 = std::chrono::steady_clock::now();
  relay.remove("a");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(500));
  EXPECT_FALSE(fs::exists(d / "a.sock"));
  for (int fd : {ba, bb, stall, sa, app, sb, again}) close(fd);
}

TEST_F(VhostRelayAttached, ASecondApplicationIsRefused) {
  int second = connect_to(d / "app.sock");
  ASSERT_TRUE(readable(second, 2000));
  char buf[4];
  EXPECT_EQ(read(second, buf, sizeof buf), 0);  // closed at once
  EXPECT_EQ(relay.stats("a").refused, 1u);
  std::string msg = header(3, 0);  // the first still goes through
  ASSERT_EQ(write(app, msg.data(), msg.size()), 12);
  EXPECT_EQ(recv_exact(be, 12), msg);
  close(second);
}

TEST(VhostRelay, ClientModeConnectsAndReconnects) {
  Dir d;
  int backend = listen_at(d / "be.sock");
  int appl = listen_at(d / "app.sock");  // the application serves its socket
  VhostRelay relay;
  relay.add("a", d / "app.sock", d / "be.sock", true);
  int app = accept_within(appl, 2000);
  ASSERT_GE(app, 0);
  int be = accept_within(backend, 2000);
  ASSERT_GE(be, 0);
  close(app);  // the application restarts: the relay comes back within about a second
  char buf[4];
  ASSERT_TRUE(readable(be, 2000));
  EXPECT_EQ(read(be, buf, sizeof buf), 0);
  int app2 = accept_within(appl, 3000);
  ASSERT_GE(app2, 0);
  int be2 = accept_within(backend, 2000);
  EXPECT_GE(be2, 0);
  EXPECT_EQ(relay.stats("a").sessions, 2u);
  for (int fd : {backend, appl, be, app2, be2}) close(fd);
}

TEST_F(VhostRelayAttached, AnApplicationThatDoesNotReadIsDropped) {
  // The backend sends more than the application's socket buffer holds; the application never reads.
  std::string chunk(64 * 1024, 'z');
  for (int i = 0; i < 32; i++)
    if (send(be, chunk.data(), chunk.size(), MSG_DONTWAIT) < 0) break;
  auto t0 = std::chrono::steady_clock::now();
  bool ended = false;
  char buf[4096];
  while (!ended && std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(VhostRelay::kStallMs + 3000)) {
    if (readable(be, 100)) ended = recv(be, buf, sizeof buf, MSG_DONTWAIT) == 0;
  }
  EXPECT_TRUE(ended) << "the session of an application that does not read was kept";
}

TEST_F(VhostRelayAttached, OversizedMessagesDropTheClient) {
  std::string h = header(1, VhostRelay::kMaxPayload + 1);
  ASSERT_EQ(write(app, h.data(), h.size()), 12);
  ASSERT_TRUE(readable(app, 2000));
  char buf[4];
  EXPECT_EQ(read(app, buf, sizeof buf), 0);
  ASSERT_TRUE(readable(be, 2000));
  EXPECT_EQ(read(be, buf, sizeof buf), 0) << "the backend saw a byte of it";
}

}  // namespace
}  // namespace dpsw
