// Networks and endpoints added with `persist: true`: what is saved of them,
// where, and how (README "Configuration"; ARCHITECTURE "Container runtimes").
// The bridge module keeps one PersistedItems in step with what is in force;
// every change is saved (atomically) before or together with it.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "control/core/config.h"

namespace dpsw {

struct PersistedItems {
  std::map<std::string, nlohmann::json> networks;   // name -> its spec (the request's object)
  // name -> {"spec": its spec with the address and MAC it got, "netns_id": "dev:inode" of
  // the namespace it was made in and "boot_id" of that boot (absent: none of its own to check)}
  std::map<std::string, nlohmann::json> endpoints;

  static std::string path(const SwitchConfig& sw);  // persist_dir/<name>.persisted.json
  // Empty when the file does not exist; throws std::runtime_error when it
  // cannot be read or parsed (the caller moves it aside).
  static PersistedItems load(const std::string& path);
  // Atomically: a temporary file, flushed to disk, renamed over the file. Throws on failure.
  void save(const std::string& path) const;
};

// "dev:inode" of the namespace file at `path` ("" when it cannot be read):
// a namespace is the same one only while this is.
std::string netns_id(const std::string& path);
// This boot of the machine (/proc/sys/kernel/random/boot_id; "" if unreadable).
std::string boot_id();

// The addresses and MACs the persisted endpoints hold (read before the first
// plan at start-up, so that the file's endpoints leave them free).
std::vector<Reservation> persisted_reservations(const Config& cfg);

}  // namespace dpsw
