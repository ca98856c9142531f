// The client side of the control socket (protocol v1, README "Changing a
// running switch"): one JSON request, one JSON answer, bounded by a timeout.
// Used by dpswctl and dpsw-cni. Blocking; one connection per call; no state.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace dpsw {

struct CtlError : std::runtime_error {
  enum class Kind {
    kUsage,        // the socket path cannot be used (too long)
    kUnreachable,  // no daemon listens there (or it accepts no connection in time)
    kTimeout,      // connected, but no answer in time
    kIo,           // the connection failed or closed without an answer
    kMalformed,    // the answer is not JSON
  };
  Kind kind;
  CtlError(Kind k, const std::string& what) : std::runtime_error(what), kind(k) {}
};

// Sends `request` to the daemon at `socket` and returns its answer
// ({"v":1,"ok":...,"result"|"error":...}) as it came; "ok": false is an
// answer, not an exception. Throws CtlError (messages name the socket).
// SIGPIPE must be ignored or blocked by the caller's process.
nlohmann::json ctl_call(const std::string& socket, const nlohmann::json& request, double timeout_s);

}  // namespace dpsw
