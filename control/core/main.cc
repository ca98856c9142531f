// dpsw: the switch daemon.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <boost/program_options.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <stdexcept>

#include "control/bridge/persisted.h"
#include "control/core/config.h"
#include "control/core/daemon.h"
#include "control/core/log.h"

namespace po = boost::program_options;
using namespace dpsw;

static std::string default_bpf_object() {
  if (const char* e = getenv("DPSW_BPF_OBJECT")) return e;
  if (access(DPSW_BPF_BUILD_OBJECT, R_OK) == 0) return DPSW_BPF_BUILD_OBJECT;
  return DPSW_BPF_INSTALL_OBJECT;
}

int main(int argc, char** argv) {
  po::options_description desc(
      "dpsw " DPSW_VERSION " - userspace poll-mode switch for container networks\n\n"
      "Usage: dpsw --config FILE [--check] [--log-level LEVEL] [--netns NAME|PATH]\n\nOptions");
  std::string config_path, level = "info", bpf_object = default_bpf_object(), netns_arg;
  desc.add_options()
      ("help,h", "show this help and exit")
      ("version", "print the version and exit")
      ("config,c", po::value(&config_path), "configuration file (YAML, see config/demo.yaml)")
      ("check", "validate the configuration (and this machine's cores/namespaces) and exit; creates nothing")
      ("log-level", po::value(&level), "error | warn | info | debug (default: info)")
      ("bpf-object", po::value(&bpf_object),
       "XDP object to load (default: the one built with dpsw); the fast tier's fast_l2.bpf.o is taken from the same directory")
      ("netns", po::value(&netns_arg),
       "run in this network namespace (a name in /var/run/netns or a path): the uplink and the host ends of "
       "container links live there; container namespaces are still named in /var/run/netns. Lets several "
       "dpsw \"hosts\" share one machine");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).run(), vm);
    po::notify(vm);
  } catch (const po::error& e) {
    std::fprintf(stderr, "dpsw: %s\nTry 'dpsw --help'.\n", e.what());
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (vm.count("version")) {
    std::printf("dpsw %s\n", DPSW_VERSION);
    return 0;
  }
  LogLevel ll;
  if (!parse_log_level(level, &ll)) {
    std::fprintf(stderr, "dpsw: --log-level: '%s' is not one of error, warn, info, debug\n", level.c_str());
    return 2;
  }
  set_log_level(ll);
  if (config_path.empty()) {
    std::fprintf(stderr, "dpsw: --config FILE is required\nTry 'dpsw --help'.\n");
    return 2;
  }

  if (!netns_arg.empty()) {
    // Before anything else (and before any thread): every thread inherits it.
    std::string path = netns_arg.find('/') == std::string::npos ? "/var/run/netns/" + netns_arg : netns_arg;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
      std::fprintf(stderr, "dpsw: --netns: cannot enter network namespace %s: %s\n", path.c_str(), strerror(errno));
      return 2;
    }
    close(fd);
  }

  Config cfg;
  Plan plan;
  // The fast tier's object sits next to the XDP one (both built into bpf/, installed together).
  const size_t slash = bpf_object.rfind('/');
  DaemonOptions opt{bpf_object, (slash == std::string::npos ? std::string() : bpf_object.substr(0, slash + 1)) + "fast_l2.bpf.o"};
  try {
    cfg = load_config(config_path);
    read_uplink_mtu(cfg);  // an overlay network's MTU follows it
    check_config(cfg);
    // The persisted endpoints (made again once running) keep their addresses and MACs.
    const std::vector<Reservation> reserved = persisted_reservations(cfg);
    plan = make_plan(cfg, nullptr, &reserved);
    try {
      preflight(cfg, plan, opt);
    } catch (const std::logic_error& e) {  // a control verb registered twice (the Daemon's verb table): refuses the start too
      std::fprintf(stderr, "dpsw: %s\n", e.what());
      return 1;
    }
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "dpsw: %s\n", e.what());
    return 2;
  }
  if (vm.count("check")) {
    std::printf("%s: OK (%zu networks, %zu endpoints, %zu workers)\n", config_path.c_str(), cfg.networks.size(),
                cfg.endpoints.size(), cfg.sw.workers.size());
    return 0;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "dpsw: must run as root (needs CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_BPF)\n");
    return 1;
  }

  // Block the stop signals in every thread; the control loop reads them from a signalfd.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  try {
    Daemon d(std::move(cfg), std::move(plan), opt);
    d.setup();
    return d.run();
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "dpsw: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpsw: %s (everything created so far was removed)\n", e.what());
    return 1;
  }
}
