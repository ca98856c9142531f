// dpswctl: command-line client of a running dpsw (control socket protocol v1).
#include <signal.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "control/core/ctl_client.h"
#include "control/core/view.h"

namespace po = boost::program_options;
using nlohmann::json;

static std::string s(const json& j) { return j.is_string() ? j.get<std::string>() : j.dump(); }

static bool valid_utf8(const std::string& s) {
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    uint32_t cp = len == 1 ? c : c & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    static const uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;  // overlong, too big, surrogate
    i += len;
  }
  return true;
}

static int run(int argc, char** argv);

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);  // a daemon that closes early is an error we report, not a silent death
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "dpswctl: %s\n", e.what());
  } catch (...) {
    std::fprintf(stderr, "dpswctl: unexpected error\n");
  }
  return 1;
}

static int run(int argc, char** argv) {
  std::string sock = "/run/dpsw/dpsw.sock";
  double timeout_s = 30;
  std::vector<std::string> words;
  po::options_description desc(
      "dpswctl - control a running dpsw\n\n"
      "Usage: dpswctl [--socket PATH] [--json] [--timeout S] COMMAND\n\n"
      "Commands:\n"
      "  show [VIEW [ARGS]]      the daemon's state (ports, counters, ...); `show` alone lists the views\n"
      "  network add NAME --subnet CIDR [--gateway IP] [--ip-range CIDR] [--mtu N] [--internal] [--driver bridge|macvlan|overlay]\n"
      "              [--fast-path auto|off] [--allow NET [--allow NET2 ...]]\n"
      "              [--vni N --peer IP [--peer IP ...]]   (overlay)\n"
      "  network del NAME\n"
      "  endpoint add NAME --network NET [--network NET2 ...] [--ip IP] [--mac MAC] [--mode MODE] [--netns PATH]\n"
      "               [--fast-path auto|off] [--publish 8080:80/tcp [--publish ...]] [--label KEY=VALUE ...] [--alias NAME ...]\n"
      "               [--ifname NAME]\n"
      "               [--persist true] [--handoff true]\n"
      "  endpoint update NAME [--publish 8080:80/tcp ... | --publish none] [--label KEY=VALUE ...] [--alias NAME ... | --alias none]\n"
      "                       (in place)\n"
      "  endpoint del NAME\n"
      "  service add NAME --network NET --backend EP [--backend EP2 ...] | --label KEY=VALUE  [--port 80/tcp ...] [--vip IP]\n"
      "              [--mode vip|dnsrr] [--publish 8081:80/tcp ...]\n"
      "  service del NAME\n"
      "  reload                  re-read the config file and apply only the difference\n"
      "  version\n"
      "The --flags of add are the keys of the config file (ip_range may be written --ip-range).\n\nOptions");
  desc.add_options()("help,h", "show this help")("socket,s", po::value(&sock), "control socket (default /run/dpsw/dpsw.sock)")(
      "json", "print the daemon's JSON answer (for scripts)")(
      "timeout", po::value(&timeout_s), "seconds to wait for the daemon's answer (default 30; reload can take a while)");
  po::variables_map vm;
  try {
    // Unknown --flags belong to `add` (config keys): keep them, in order, with the words.
    auto parsed = po::command_line_parser(argc, argv).options(desc).allow_unregistered().run();
    po::store(parsed, vm);
    po::notify(vm);
    words = po::collect_unrecognized(parsed.options, po::include_positional);
  } catch (const po::error& e) {
    std::fprintf(stderr, "dpswctl: %s\n", e.what());
    return 2;
  }
  if (!(timeout_s > 0 && timeout_s <= 1e6)) {
    std::fprintf(stderr, "dpswctl: --timeout: expected seconds > 0\n");
    return 2;
  }
  // What goes into the JSON request must be UTF-8 (--socket may be any path).
  for (const auto& w : words)
    if (!valid_utf8(w)) {
      int i = 1;
      while (i < argc && w != argv[i]) i++;
      std::fprintf(stderr, "dpswctl: argument %d is not valid UTF-8\n", i);
      return 2;
    }
  if (vm.count("help") || words.empty()) {
    std::cout << desc << "\n";
    return words.empty() && !vm.count("help") ? 2 : 0;
  }
  json req = {{"v", 1}, {"cmd", words[0]}};
  std::vector<std::string> args;
  const bool service = words[0] == "service";
  const bool with_spec = (words[0] == "network" || words[0] == "endpoint" || service) && words.size() >= 2 &&
                         (words[1] == "add" || (words[0] == "endpoint" && words[1] == "update"));
  if (with_spec) {
    // network/endpoint add NAME --key value ...: build the same object as a config file item.
    if (words.size() < 3 || words[2].rfind("--", 0) == 0) {
      std::fprintf(stderr, "dpswctl: %s %s needs a NAME\n", words[0].c_str(), words[1].c_str());
      return 2;
    }
    json spec = {{"name", words[2]}};
    for (size_t i = 3; i < words.size(); i++) {
      std::string k = words[i];
      if (k.rfind("--", 0) != 0) {
        std::fprintf(stderr, "dpswctl: unexpected '%s' (flags look like --subnet VALUE)\n", k.c_str());
        return 2;
      }
      k = k.substr(2);
      const std::string flag = k.substr(0, k.find('='));
      std::string v;
      if (auto eq = k.find('='); eq != std::string::npos) {
        v = k.substr(eq + 1);
        k = k.substr(0, eq);
      } else if (k == "internal") {
        v = "true";
      } else if (i + 1 < words.size()) {
        v = words[++i];
      } else {
        std::fprintf(stderr, "dpswctl: --%s needs a value\n", k.c_str());
        return 2;
      }
      std::replace(k.begin(), k.end(), '-', '_');
      if (k == "name") {  // the spec's name is the positional NAME
        if (v != words[2]) {
          std::fprintf(stderr, "dpswctl: --name '%s' differs from the NAME argument '%s' (give the name once, as NAME)\n",
                       v.c_str(), words[2].c_str());
          return 2;
        }
        continue;
      }
      if (service && (k == "label" || k == "labels")) {  // service add --label app=web: backends: { labels: {...} }
        const auto eq = v.find('=');
        if (eq == std::string::npos || eq == 0) {
          std::fprintf(stderr, "dpswctl: --%s: '%s' is not KEY=VALUE\n", flag.c_str(), v.c_str());
          return 2;
        }
        if (!spec.contains("backends") || !spec["backends"].is_object()) spec["backends"] = {{"labels", json::object()}};
        spec["backends"]["labels"][v.substr(0, eq)] = v.substr(eq + 1);
        continue;
      }
      if (service && k == "network") {  // a service has one network
        spec["network"] = v;
        continue;
      }
      // Keys that are lists in the config file: the flag may repeat, and a
      // value may hold several items separated by commas (--peer A,B).
      static const std::pair<const char*, const char*> kLists[] = {
          {"network", "networks"}, {"networks", "networks"}, {"peer", "peers"}, {"peers", "peers"},
          {"allow", "allow"}, {"publish", "publish"}, {"alias", "aliases"}, {"aliases", "aliases"},
          {"port", "ports"}, {"ports", "ports"}, {"backend", "backends"}, {"backends", "backends"}};
      const char* list = nullptr;
      for (const auto& [flag_name, key] : kLists)
        if (k == flag_name) list = key;
      if (list) {
        if (!spec.contains(list)) spec[list] = json::array();
        for (size_t a = 0, b; a <= v.size(); a = b + 1) {
          b = v.find(',', a);
          if (b == std::string::npos) b = v.size();
          if (b > a) spec[list].push_back(v.substr(a, b - a));
        }
        continue;
      }
      if (k == "label" || k == "labels") {  // --label KEY=VALUE (repeat it, or KEY=VALUE,KEY2=VALUE2)
        if (!spec.contains("labels")) spec["labels"] = json::object();
        for (size_t a = 0, b; a <= v.size(); a = b + 1) {
          b = v.find(',', a);
          if (b == std::string::npos) b = v.size();
          const std::string kv = v.substr(a, b - a);
          const auto eq = kv.find('=');
          if (kv.empty()) continue;
          if (eq == std::string::npos || eq == 0) {
            std::fprintf(stderr, "dpswctl: --%s: '%s' is not KEY=VALUE\n", flag.c_str(), kv.c_str());
            return 2;
          }
          spec["labels"][kv.substr(0, eq)] = kv.substr(eq + 1);
        }
        continue;
      }
      if (spec.contains(k)) {
        std::fprintf(stderr, "dpswctl: --%s given twice\n", flag.c_str());
        return 2;
      }
      if (k == "internal") spec[k] = v == "true" || v == "yes" || v == "1";
      else spec[k] = v;
    }
    if (words[1] == "update" && spec.contains("publish") && spec["publish"] == json::array({"none"}))
      spec["publish"] = json::array();  // --publish none: no published ports
    if (words[1] == "update" && spec.contains("aliases") && spec["aliases"] == json::array({"none"}))
      spec["aliases"] = json::array();  // --alias none: no aliases
    args = {words[1]};
    req["spec"] = spec;
  } else {
    args.assign(words.begin() + 1, words.end());
  }
  req["args"] = args;

  json resp;
  try {
    resp = dpsw::ctl_call(sock, req, timeout_s);
  } catch (const dpsw::CtlError& e) {
    std::fprintf(stderr, "dpswctl: %s%s\n", e.what(), e.kind == dpsw::CtlError::Kind::kTimeout ? " (--timeout)" : "");
    return e.kind == dpsw::CtlError::Kind::kUsage ? 2 : 1;
  }
  if (!resp.value("ok", false)) {
    std::fprintf(stderr, "dpswctl: %s\n", resp.value("error", std::string("request failed")).c_str());
    return 1;
  }
  const json& r = resp["result"];
  if (vm.count("json")) std::printf("%s\n", r.dump(2).c_str());
  else if (words[0] == "show") std::fputs(dpsw::view::render(resp.contains("view") ? resp["view"] : json(), r).c_str(), stdout);
  else if (words[0] == "reload") {
    if (r.value("unchanged", false)) {
      std::printf("reload: no changes\n");
    } else {
      for (auto& [k, v] : r["applied"].items())
        if (!v.empty()) {
          std::string names;
          for (auto& n : v) names += (names.empty() ? "" : ", ") + s(n);
          std::printf("%-18s %s\n", (k + ":").c_str(), names.c_str());
        }
    }
  } else if (service && args[0] == "add") {
    std::printf("service %s added%s%s\n", words[2].c_str(), s(r["vip"]).empty() ? "" : ": VIP ", s(r["vip"]).c_str());
  } else if (service) {
    std::printf("service %s removed\n", words.size() > 2 ? words[2].c_str() : "");
  } else if ((words[0] == "network" || words[0] == "endpoint") && args[0] == "add") {
    std::printf("%s %s added\n", words[0].c_str(), words[2].c_str());
    if (words[0] == "endpoint")
      for (auto& a : r["attachments"])
        std::printf("  %s on %s: %s %s\n", s(a["ifname"]).c_str(), s(a["network"]).c_str(), s(a["ip"]).c_str(), s(a["mac"]).c_str());
  } else if (words[0] == "endpoint" && args[0] == "update") {
    std::printf("endpoint %s updated\n", words[2].c_str());
  } else if (words[0] == "network" || words[0] == "endpoint") {
    std::printf("%s %s removed\n", words[0].c_str(), words.size() > 2 ? words[2].c_str() : "");
  } else {
    std::printf("%s\n", r.dump(2).c_str());
  }
  return 0;
}
