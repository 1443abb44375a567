#include "daemon/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

namespace mtasts::daemon {
namespace {

std::string directory_of(const std::string& path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

}  // namespace

std::expected<void, std::string> replace_file(const std::string& path, mode_t mode,
                                              const std::function<bool(int fd)>& write) {
  std::string temporary = path + ".tmp.XXXXXX";
  std::vector<char> name(temporary.begin(), temporary.end());
  name.push_back('\0');
  const int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) {
    return std::unexpected(
        fmt::format("cannot create a temporary file beside {}: {}", path, std::strerror(errno)));
  }
  temporary.assign(name.data());
  auto fail = [&](std::string_view step) {
    const int saved = errno;
    ::close(fd);
    ::unlink(temporary.c_str());
    return std::unexpected(fmt::format("{} {}: {}", step, temporary, std::strerror(saved)));
  };
  // mkstemp creates 0600; readers such as Exim's user need the configured mode.
  if (::fchmod(fd, mode) != 0) return fail("chmod");
  errno = EIO;
  if (!write(fd)) return fail("write");
  if (::fsync(fd) != 0) return fail("fsync");
  if (::close(fd) != 0) {
    const int saved = errno;
    ::unlink(temporary.c_str());
    return std::unexpected(fmt::format("close {}: {}", temporary, std::strerror(saved)));
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    const int saved = errno;
    ::unlink(temporary.c_str());
    return std::unexpected(
        fmt::format("rename {} to {}: {}", temporary, path, std::strerror(saved)));
  }
  // The rename is durable once the directory is synced.
  const std::string directory = directory_of(path);
  const int dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
  return {};
}

std::expected<void, std::string> replace_file(const std::string& path, mode_t mode,
                                              std::string_view content) {
  return replace_file(path, mode, [content](int fd) { return write_all(fd, content); });
}

std::expected<std::string, int> read_file(const std::string& path, std::size_t limit) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::unexpected(errno);
  std::string text;
  char buffer[16384];
  for (;;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int saved = errno;
      ::close(fd);
      return std::unexpected(saved);
    }
    if (n == 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    if (text.size() > limit) {
      ::close(fd);
      return std::unexpected(EFBIG);
    }
  }
  ::close(fd);
  return text;
}

}  // namespace mtasts::daemon
