#include "service/daemon_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

namespace mtasts {
namespace {

constexpr std::size_t kMaxAnswer = 4096;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

std::unexpected<DaemonError> failed(DaemonFailure failure, std::string reason) {
  return std::unexpected(DaemonError{failure, std::move(reason)});
}

std::string errno_text(int error) {
  return std::strerror(error);
}

int remaining_ms(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(left.count());
}

}  // namespace

std::expected<std::string, DaemonError> ask_daemon(const std::string& socket_path,
                                                   std::string_view request,
                                                   std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof address.sun_path) {
    return failed(DaemonFailure::unreachable,
                  fmt::format("socket path \"{}\" is empty or longer than {} octets", socket_path,
                              sizeof address.sun_path - 1));
  }
  std::memcpy(address.sun_path, socket_path.data(), socket_path.size());
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return failed(DaemonFailure::failed, "socket: " + errno_text(errno));
  // A Unix connect waits for room in a full backlog; SO_SNDTIMEO bounds that wait (Linux).
  timeval send_timeout{};
  send_timeout.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  send_timeout.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    const int error = errno;
    const bool nobody = error == ENOENT || error == ECONNREFUSED || error == ENOTSOCK;
    return failed(nobody ? DaemonFailure::unreachable : DaemonFailure::failed,
                  fmt::format("connect to {}: {}", socket_path, errno_text(error)));
  }
  const std::string line = fmt::format("{}\n", request);
  std::size_t sent = 0;
  while (sent < line.size()) {
    const ssize_t n = ::send(fd.get(), line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return failed(DaemonFailure::failed, "send: " + errno_text(errno));
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fd.get(), SHUT_WR);
  std::string answer;
  char buffer[1024];
  for (;;) {
    pollfd wait{fd.get(), POLLIN, 0};
    const int ready = ::poll(&wait, 1, remaining_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return failed(DaemonFailure::failed, "poll: " + errno_text(errno));
    if (ready == 0) {
      return failed(DaemonFailure::failed,
                    fmt::format("no answer from mtastsd within {} ms", timeout.count()));
    }
    const ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return failed(DaemonFailure::failed, "recv: " + errno_text(errno));
    if (n == 0) return answer;
    answer.append(buffer, static_cast<std::size_t>(n));
    if (answer.size() > kMaxAnswer) {
      return failed(DaemonFailure::failed,
                    fmt::format("answer from mtastsd longer than {} octets", kMaxAnswer));
    }
  }
}

}  // namespace mtasts
