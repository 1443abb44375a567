#include "daemon/datagram_receiver.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "daemon/privileges.hpp"

namespace mtasts::daemon {
namespace {

// Room for a burst: Postfix's sends never wait, so what does not fit here is lost.
constexpr int kReceiveBuffer = 8 << 20;
constexpr unsigned kBatch = 64;

std::string failure(const std::string& path, std::string_view what, int error) {
  return fmt::format("tlsrpt socket {}: {}: {}", path, what, std::strerror(error));
}

}  // namespace

std::expected<std::unique_ptr<DatagramReceiver>, std::string> DatagramReceiver::bind(
    const Config& config) {
  const std::string& path = config.tlsrpt.socket;
  std::optional<uid_t> owner;
  std::optional<gid_t> group;
  if (!config.daemon.socket_owner.empty()) {
    auto uid = lookup_user(config.daemon.socket_owner);
    if (!uid) return std::unexpected(fmt::format("socket_owner: {}", uid.error()));
    owner = *uid;
  }
  if (!config.daemon.socket_group.empty()) {
    auto gid = lookup_group(config.daemon.socket_group);
    if (!gid) return std::unexpected(fmt::format("socket_group: {}", gid.error()));
    group = *gid;
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return std::unexpected(fmt::format("tlsrpt socket {}: exists and is not a socket", path));
    }
    // A datagram socket cannot tell "in use" by connecting; a second mtastsd would have failed
    // on its stream sockets before getting here.
    if (::unlink(path.c_str()) != 0) return std::unexpected(failure(path, "unlink", errno));
  }
  const int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::unexpected(failure(path, "socket", errno));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  const mode_t old_mask = ::umask(0177);
  const int bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  const int bind_errno = errno;
  ::umask(old_mask);
  if (bound != 0) {
    ::close(fd);
    return std::unexpected(failure(path, "bind", bind_errno));
  }
  auto fail = [&](std::string_view what) {
    const int error = errno;
    ::close(fd);
    ::unlink(path.c_str());
    return std::unexpected(failure(path, what, error));
  };
  if ((owner || group) && ::chown(path.c_str(), owner ? *owner : static_cast<uid_t>(-1),
                                  group ? *group : static_cast<gid_t>(-1)) != 0) {
    return fail("chown");
  }
  if (::chmod(path.c_str(), static_cast<mode_t>(config.tlsrpt.socket_mode)) != 0) {
    return fail("chmod");
  }
  // As root (before privileges are dropped) the buffer may exceed net.core.rmem_max.
  int size = kReceiveBuffer;
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
    (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  const int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) return fail("eventfd");
  return std::unique_ptr<DatagramReceiver>(new DatagramReceiver(fd, wake, path));
}

DatagramReceiver::DatagramReceiver(int socket, int wake, std::string path)
    : socket_(socket), wake_(wake), path_(std::move(path)) {}

DatagramReceiver::~DatagramReceiver() {
  stop();
  ::close(socket_);
  ::close(wake_);
  ::unlink(path_.c_str());
}

void DatagramReceiver::start(std::function<void(std::string)> deliver,
                             std::function<void()> oversized) {
  if (thread_.joinable()) return;
  deliver_ = std::move(deliver);
  oversized_ = std::move(oversized);
  thread_ = std::thread([this] { run(); });
}

void DatagramReceiver::stop() {
  if (!thread_.joinable()) return;
  const std::uint64_t one = 1;
  (void)!::write(wake_, &one, sizeof one);
  thread_.join();
}

void DatagramReceiver::run() {
  // One more byte than accepted, so MSG_TRUNC marks an oversized datagram.
  std::vector<std::array<char, kMaxDatagram + 1>> buffers(kBatch);
  std::array<iovec, kBatch> vectors{};
  std::array<mmsghdr, kBatch> messages{};
  for (unsigned i = 0; i < kBatch; ++i) {
    vectors[i] = iovec{buffers[i].data(), buffers[i].size()};
    messages[i].msg_hdr.msg_iov = &vectors[i];
    messages[i].msg_hdr.msg_iovlen = 1;
  }
  std::array<pollfd, 2> watch{pollfd{socket_, POLLIN, 0}, pollfd{wake_, POLLIN, 0}};
  for (;;) {
    if (::poll(watch.data(), watch.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (watch[1].revents != 0) return;
    for (;;) {
      const int received = ::recvmmsg(socket_, messages.data(), kBatch, MSG_DONTWAIT, nullptr);
      if (received <= 0) break;  // EAGAIN: drained; back to poll()
      for (int i = 0; i < received; ++i) {
        const auto length = messages[i].msg_len;
        if ((messages[i].msg_hdr.msg_flags & MSG_TRUNC) != 0 || length > kMaxDatagram) {
          oversized_();
        } else {
          deliver_(std::string(buffers[i].data(), length));
        }
        messages[i].msg_hdr.msg_flags = 0;
      }
    }
  }
}

}  // namespace mtasts::daemon
