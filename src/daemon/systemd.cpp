#include "daemon/systemd.hpp"

#include <fcntl.h>
#include <systemd/sd-daemon.h>

#include <cstdlib>

namespace mtasts::daemon {

std::vector<InheritedSocket> inherited_sockets() {
  char** names = nullptr;
  const int count = sd_listen_fds_with_names(1, &names);
  std::vector<InheritedSocket> sockets;
  for (int i = 0; i < count; ++i) {
    InheritedSocket socket;
    socket.fd = SD_LISTEN_FDS_START + i;
    if (names != nullptr && names[i] != nullptr) socket.name = names[i];
    (void)::fcntl(socket.fd, F_SETFD, FD_CLOEXEC);
    sockets.push_back(std::move(socket));
  }
  if (names != nullptr) {
    for (int i = 0; i < count; ++i) std::free(names[i]);
    std::free(names);
  }
  return sockets;
}

void notify(std::string_view state) {
  const std::string text(state);
  (void)sd_notify(0, text.c_str());
}

}  // namespace mtasts::daemon
