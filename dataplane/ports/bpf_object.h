// Loading dpsw's compiled BPF objects with libbpf (control thread only):
// shared by XdpProgram (afxdp_port.h) and FastTier (fast_tier.h).
#pragma once

#include <bpf/libbpf.h>

#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>

namespace dpsw {

// "what: <strerror>" for a libbpf/syscall error code (negative or positive).
inline std::runtime_error bpf_error(const std::string& what, int err) {
  return std::runtime_error(what + ": " + std::strerror(err < 0 ? -err : err));
}

// Opens and loads the object at `path`; throws std::runtime_error naming it.
// `prepare` runs between open and load (e.g. to size maps from the config).
inline bpf_object* load_bpf_object(const std::string& path, const std::function<void(bpf_object*)>& prepare = {}) {
  bpf_object* obj = bpf_object__open_file(path.c_str(), nullptr);
  if (!obj || libbpf_get_error(obj)) throw std::runtime_error("cannot open BPF object " + path);
  try {
    if (prepare) prepare(obj);
  } catch (...) {
    bpf_object__close(obj);
    throw;
  }
  if (int e = bpf_object__load(obj)) {
    bpf_object__close(obj);
    throw bpf_error("cannot load BPF object " + path, e);
  }
  return obj;
}

}  // namespace dpsw
