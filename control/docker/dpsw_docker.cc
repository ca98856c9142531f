// dpsw-docker: Docker's remote network driver for dpsw (control/docker/docker.h).
// Serves the plugin protocol (HTTP, JSON bodies) on a Unix socket where
// dockerd discovers plugins (/run/docker/plugins/NAME.sock: `docker network
// create -d NAME`) and turns each call into control-socket requests to a
// running dpsw. libmicrohttpd serves HTTP, one call at a time (its own
// polling thread; dpsw applies changes one at a time anyway).
#include <microhttpd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

#include "control/core/ctl_client.h"
#include "control/core/socket_path.h"
#include "control/docker/docker.h"

namespace po = boost::program_options;
using nlohmann::json;

namespace {

constexpr size_t kMaxBody = 1u << 20;  // Docker's calls are a few hundred bytes

struct Server {
  dpsw::docker::Driver driver;
  bool verbose = false;
};

struct Call {
  std::string body;
  bool too_big = false;
};

MHD_Result answer(MHD_Connection* c, unsigned status, const json& body) {
  const std::string text = body.dump();
  MHD_Response* r = MHD_create_response_from_buffer(text.size(), const_cast<char*>(text.data()), MHD_RESPMEM_MUST_COPY);
  if (!r) return MHD_NO;
  MHD_add_response_header(r, "Content-Type", "application/vnd.docker.plugins.v1.2+json");
  MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method, const char*, const char* upload,
                      size_t* upload_size, void** con_cls) {
  auto* srv = static_cast<Server*>(cls);
  if (!*con_cls) {
    *con_cls = new Call;
    return MHD_YES;
  }
  auto* call = static_cast<Call*>(*con_cls);
  if (*upload_size) {  // the body arrives in pieces
    if (call->body.size() + *upload_size > kMaxBody) call->too_big = true;
    else call->body.append(upload, *upload_size);
    *upload_size = 0;
    return MHD_YES;
  }
  const std::string path = url[0] == '/' ? url + 1 : url;
  if (std::strcmp(method, "POST") != 0) return answer(c, MHD_HTTP_METHOD_NOT_ALLOWED, {{"Err", "POST only"}});
  if (call->too_big) return answer(c, MHD_HTTP_CONTENT_TOO_LARGE, {{"Err", "request body over 1 MiB"}});
  json in;
  try {
    in = call->body.find_first_not_of(" \t\r\n") == std::string::npos ? json::object() : json::parse(call->body);
  } catch (const std::exception&) {
    return answer(c, MHD_HTTP_BAD_REQUEST, {{"Err", path + ": the body is not JSON"}});
  }
  try {
    json out = srv->driver.handle(path, in);
    if (srv->verbose || out.contains("Err"))
      std::cerr << "dpsw-docker: " << path << (out.contains("Err") ? ": " + out["Err"].get<std::string>() : "") << "\n";
    return answer(c, MHD_HTTP_OK, out);
  } catch (const dpsw::docker::UnknownMethod&) {
    return answer(c, MHD_HTTP_NOT_FOUND, {{"Err", "unknown method " + path}});
  } catch (const std::exception& e) {
    return answer(c, MHD_HTTP_INTERNAL_SERVER_ERROR, {{"Err", std::string("dpsw-docker: ") + e.what()}});
  }
}

void on_completed(void*, MHD_Connection*, void** con_cls, MHD_RequestTerminationCode) {
  delete static_cast<Call*>(*con_cls);
  *con_cls = nullptr;
}

int run(int argc, char** argv) {
  std::string ctl_socket = "/run/dpsw/dpsw.sock", name = "dpsw", plugin;
  double timeout_s = 30;
  po::options_description desc(
      "dpsw-docker - Docker's remote network driver for dpsw\n\n"
      "Usage: dpsw-docker [--socket PATH] [--name NAME | --plugin PATH]\n"
      "Then: docker network create -d NAME --subnet CIDR [--gateway IP] [-o dpsw.mtu=N] [-o dpsw.internal=true] NET\n\nOptions");
  desc.add_options()("help,h", "show this help")("socket,s", po::value(&ctl_socket), "dpsw's control socket (default /run/dpsw/dpsw.sock)")(
      "name", po::value(&name), "the driver's name in Docker (default dpsw): serves /run/docker/plugins/NAME.sock")(
      "plugin", po::value(&plugin), "serve this socket path instead")("timeout", po::value(&timeout_s),
                                                                       "seconds to wait for dpsw per request (default 30)")(
      "verbose,v", "log every call");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "dpsw-docker: %s\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (name.empty() || name.find('/') != std::string::npos) {
    std::fprintf(stderr, "dpsw-docker: --name: '%s' is not a plugin name\n", name.c_str());
    return 2;
  }
  if (!(timeout_s > 0 && timeout_s <= 600)) {
    std::fprintf(stderr, "dpsw-docker: --timeout: seconds in (0, 600]\n");
    return 2;
  }
  if (plugin.empty()) plugin = "/run/docker/plugins/" + name + ".sock";

  Server srv{dpsw::docker::Driver([&](const json& req) { return dpsw::ctl_call(ctl_socket, req, timeout_s); }), vm.count("verbose") > 0};
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(plugin).parent_path(), ec);
  switch (dpsw::check_socket_path(plugin, "--plugin")) {
    case dpsw::SocketPathState::kLive:
      std::fprintf(stderr, "dpsw-docker: %s is in use (another dpsw-docker?)\n", plugin.c_str());
      return 1;
    case dpsw::SocketPathState::kStale:
    case dpsw::SocketPathState::kSocket: unlink(plugin.c_str()); break;
    case dpsw::SocketPathState::kAbsent: break;
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, plugin.c_str(), plugin.size());  // the length was checked above
  const mode_t old_mask = umask(0177);  // the socket is made 0600: root's (dockerd's) only
  const bool bound = fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  umask(old_mask);
  if (!bound || listen(fd, 64) < 0) {
    std::fprintf(stderr, "dpsw-docker: cannot serve %s: %s\n", plugin.c_str(), std::strerror(errno));
    return 1;
  }
  // The signals that end us are taken by sigwait() below, not by a handler.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);
  MHD_Daemon* d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, nullptr, nullptr, &on_request, &srv,
                                   MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, &on_completed, nullptr,
                                   MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_END);
  if (!d) {
    std::fprintf(stderr, "dpsw-docker: the HTTP server did not start\n");
    unlink(plugin.c_str());
    return 1;
  }
  std::fprintf(stderr, "dpsw-docker: serving %s for dpsw at %s\n", plugin.c_str(), ctl_socket.c_str());
  int sig = 0;
  sigwait(&stop, &sig);
  MHD_stop_daemon(d);  // closes the listening socket too
  unlink(plugin.c_str());
  std::fprintf(stderr, "dpsw-docker: stopped (%s)\n", strsignal(sig));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpsw-docker: %s\n", e.what());
  }
  return 1;
}
