// Replacing a file so that readers see the old or the new content and never a mix: write a
// temporary file in the same directory, fsync it, rename it over the target, fsync the
// directory. Exim's cdb lookup and the next mtastsd start read files written this way.
#pragma once

#include <sys/types.h>

#include <expected>
#include <functional>
#include <string>
#include <string_view>

namespace mtasts::daemon {

// Writes the new content with `write(fd)` (true on success; errno tells why not) into
// "<path>.tmp.XXXXXX", gives it `mode`, and renames it over `path`. The temporary file is
// removed on failure. The error names the step and the system's reason.
[[nodiscard]] std::expected<void, std::string> replace_file(
    const std::string& path, mode_t mode, const std::function<bool(int fd)>& write);

// replace_file() with a string as the content.
[[nodiscard]] std::expected<void, std::string> replace_file(const std::string& path, mode_t mode,
                                                            std::string_view content);

// The whole file, or std::unexpected(errno) (ENOENT when it does not exist). At most `limit`
// octets are read (EFBIG past it).
[[nodiscard]] std::expected<std::string, int> read_file(const std::string& path, std::size_t limit);

}  // namespace mtasts::daemon
