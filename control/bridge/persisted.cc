#include "control/bridge/persisted.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "control/core/ipv4.h"
#include "control/core/log.h"

namespace dpsw {

using nlohmann::json;

std::string PersistedItems::path(const SwitchConfig& sw) { return sw.persist_dir + "/" + sw.name + ".persisted.json"; }

PersistedItems PersistedItems::load(const std::string& path) {
  PersistedItems p;
  std::ifstream f(path);
  if (!f) {
    if (errno == ENOENT) return p;
    throw std::runtime_error(path + ": cannot be read: " + std::strerror(errno));
  }
  json saved;
  try {
    saved = json::parse(f);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + ": not JSON (" + e.what() + ")");
  }
  if (!saved.is_object() || !saved.contains("networks") || !saved["networks"].is_array() || !saved.contains("endpoints") ||
      !saved["endpoints"].is_array())
    throw std::runtime_error(path + ": expected {\"networks\": [...], \"endpoints\": [...]}");
  auto named = [](const json& x) { return x.is_object() && x.contains("name") && x["name"].is_string(); };
  for (const auto& n : saved["networks"]) {
    if (!named(n)) throw std::runtime_error(path + ": a network entry has no name");
    p.networks[n["name"].get<std::string>()] = n;
  }
  for (const auto& e : saved["endpoints"]) {
    if (!e.is_object() || !e.contains("spec") || !named(e["spec"]))
      throw std::runtime_error(path + ": an endpoint entry is not {\"spec\": {\"name\": ...}, ...}");
    p.endpoints[e["spec"]["name"].get<std::string>()] = e;
  }
  return p;
}

void PersistedItems::save(const std::string& path) const {
  json nets = json::array(), eps = json::array();
  for (const auto& [name, spec] : networks) nets.push_back(spec);
  for (const auto& [name, entry] : endpoints) eps.push_back(entry);
  const std::string text = json{{"networks", nets}, {"endpoints", eps}}.dump(1) + "\n";
  const std::string dir = path.substr(0, path.rfind('/')), tmp = path + ".tmp";
  mkdir(dir.c_str(), 0755);  // persist_dir (its parent must exist)
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(errno));
  bool ok = write(fd, text.data(), text.size()) == ssize_t(text.size()) && fsync(fd) == 0;
  ok = close(fd) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    unlink(tmp.c_str());
    throw std::runtime_error("cannot save " + path + ": " + why);
  }
  if (int d = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); d >= 0) {  // the rename itself, on disk
    fsync(d);
    close(d);
  }
}

std::string netns_id(const std::string& path) {
  struct stat st;
  if (path.empty() || stat(path.c_str(), &st) != 0) return "";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
}

std::string boot_id() {
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(f, id);
  return id;
}

std::vector<Reservation> persisted_reservations(const Config& cfg) {
  std::vector<Reservation> out;
  PersistedItems p;
  try {
    p = PersistedItems::load(PersistedItems::path(cfg.sw));
  } catch (const std::exception&) {
    return out;  // reported by the bridge module's restore()
  }
  for (const auto& [name, entry] : p.endpoints) {
    const json& s = entry["spec"];
    if (!s.contains("networks") || !s["networks"].is_array() || s["networks"].empty() || !s["networks"][0].is_string()) continue;
    Reservation r;
    r.network = s["networks"][0].get<std::string>();
    if (s.contains("ip") && s["ip"].is_string())
      if (auto ip = ipv4_parse(s["ip"].get<std::string>())) r.ip = *ip;
    if (s.contains("mac") && s["mac"].is_string())
      if (auto mac = mac_parse(s["mac"].get<std::string>())) r.mac = *mac;
    out.push_back(r);
  }
  return out;
}

}  // namespace dpsw
