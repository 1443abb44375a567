// The two pieces of systemd mtastsd uses (libsystemd, sd-daemon(3)): socket activation and
// readiness notification. Both are no-ops when the daemon was not started by systemd.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace mtasts::daemon {

struct InheritedSocket {
  int fd = -1;
  std::string name;  // FileDescriptorName= of the socket unit ("" or the unit name if unset)
};

// The listening sockets systemd passed (sd_listen_fds_with_names); empty when none. The
// LISTEN_* variables are removed from the environment. Each fd is marked close-on-exec.
[[nodiscard]] std::vector<InheritedSocket> inherited_sockets();

// sd_notify(0, state), e.g. "READY=1", "STOPPING=1", "RELOADING=1", "STATUS=...".
void notify(std::string_view state);

}  // namespace mtasts::daemon
