// The rule for a path where dpsw is to create a Unix socket (the control
// socket; later vhost-user sockets): only an absent path or a stale socket
// may be (re)placed. Nothing here removes anything.
#pragma once

#include <string>

namespace dpsw {

enum class SocketPathState {
  kAbsent,  // nothing there
  kStale,   // a socket nobody answers on: safe to remove
  kLive,    // a socket someone answers on (or whose backlog is full)
  kSocket,  // a socket, not probed (probe = false)
};

// lstat()s `path`. Throws std::runtime_error naming `key` and the path when it
// is anything but absent or a socket (regular file, directory, symlink,
// fifo...), when it cannot be inspected, or when it is too long for a Unix
// socket address, e.g. "switch.control_socket: /x/y exists and is not a
// socket; refusing to replace it".
// probe = false: do not connect to find out whether a socket is live (a
// vhost-user server takes any connection for an application's).
SocketPathState check_socket_path(const std::string& path, const std::string& key, bool probe = true);

}  // namespace dpsw
