// The config file on disk: which one ($MTASTS_CONFIG or the build default), read with read(2).
#include "service/config.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace mtasts {

bool config_path_is_explicit() {
  const char* path = std::getenv("MTASTS_CONFIG");
  return path != nullptr && *path != '\0';
}

std::string default_config_path() {
  if (const char* path = std::getenv("MTASTS_CONFIG"); path != nullptr && *path != '\0') {
    return path;
  }
  return MTASTS_DEFAULT_CONFIG;
}

std::expected<Config, Error> load_config(const std::string& path, bool must_exist) {
  // Plain read(2) rather than iostreams: the first iostream in a process builds the C++ locale,
  // a cost every Exim delivery process would pay before its first cached answer.
  constexpr std::size_t kMaxConfigBytes = 1 << 20;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (!must_exist && errno == ENOENT) return default_config();
    return std::unexpected(
        Error{ErrorCategory::config,
              fmt::format("cannot read config file {}: {}", path, std::strerror(errno))});
  }
  std::string text;
  char buffer[8192];
  int read_errno = 0;
  for (;;) {
    const ssize_t got = ::read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) read_errno = errno;
    if (got <= 0) break;
    text.append(buffer, static_cast<std::size_t>(got));
    if (text.size() > kMaxConfigBytes) break;
  }
  ::close(fd);
  if (read_errno != 0) {
    return std::unexpected(
        Error{ErrorCategory::config,
              fmt::format("cannot read config file {}: {}", path, std::strerror(read_errno))});
  }
  if (text.size() > kMaxConfigBytes) {
    return std::unexpected(
        Error{ErrorCategory::config, fmt::format("{}: larger than 1 MiB, refusing it", path)});
  }
  return parse_config(text, path);
}

}  // namespace mtasts
