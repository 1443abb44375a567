#include "adapters/store/lmdb_private_copy.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "adapters/store/lmdb_env.hpp"
#include "adapters/store/lmdb_env_internal.hpp"

namespace mtasts::store::lmdb {

namespace {

class Descriptor {
 public:
  explicit Descriptor(int fd) : fd_(fd) {}
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  ~Descriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  [[nodiscard]] int get() const { return fd_; }

 private:
  int fd_;
};

// 0, ENODATA when the file ends first, or errno.
int read_at(int fd, char* out, std::size_t length, off_t offset) {
  while (length > 0) {
    const ssize_t n = ::pread(fd, out, length, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return ENODATA;
    out += n;
    length -= static_cast<std::size_t>(n);
    offset += n;
  }
  return 0;
}

int write_at(int fd, const char* in, std::size_t length, off_t offset) {
  while (length > 0) {
    const ssize_t n = ::pwrite(fd, in, length, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return EIO;
    in += n;
    length -= static_cast<std::size_t>(n);
    offset += n;
  }
  return 0;
}

constexpr int kCopyAttempts = 8;

}  // namespace

// Copies the latest committed state of the file that `live` (an MDB_NOLOCK | MDB_RDONLY handle)
// has open, for reading without a reader slot.
//
// Why the copy is a sound snapshot. Say LMDB, opening the copy, picks transaction X from the
// meta pages copied first. A writer never overwrites a page of the two committed states before
// its own: transaction W reuses only pages freed by W-2 or earlier (with no reader slot taken,
// LMDB's oldest reader is W-1), and it writes its pages (pwrite, fdatasync) before its meta page
// (meta page W & 1). So the pages of X stay as they are while X+1 and X+2 write. After the copy
// we check that the latest transaction is at most X+1, so no writer past X+2 can have written
// while we copied, and that the file's meta page of X is byte for byte the one copied: a meta
// page that was still being written when the copy began, torn in the copy, reads differently at
// the end (the next writer cannot start before it is complete), and X+2 overwriting it changes
// it too. Then every page of X in the copy is X's, and LMDB reads a consistent tree that nothing
// changes underneath. Reading the shared file itself with MDB_NOLOCK would not be safe: a writer
// two commits later may rewrite pages under the reader (garbage sizes and offsets: wrong values,
// SIGBUS, SIGSEGV), which no check after the read can undo.
//
// Commits landing faster than the file is copied make every attempt fail: EBUSY.
std::expected<std::shared_ptr<const PrivateCopy>, int> make_private_copy(MDB_env* live) {
  mdb_filehandle_t fd = -1;
  MDB_stat stat{};
  if (const int rc = ::mdb_env_get_fd(live, &fd); rc != MDB_SUCCESS) return std::unexpected(rc);
  if (const int rc = ::mdb_env_stat(live, &stat); rc != MDB_SUCCESS) return std::unexpected(rc);
  const std::size_t page = stat.ms_psize;
  if (page == 0) return std::unexpected(MDB_CORRUPTED);
  std::vector<char> buffer(std::max(2 * page, std::size_t{256} << 10));
  std::vector<char> copied_metas(2 * page);  // pages 0 and 1
  std::vector<char> file_meta(page);
  int busy = EBUSY;
  for (int attempt = 0; attempt < kCopyAttempts; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(attempt));
    MDB_envinfo before{};
    if (const int rc = ::mdb_env_info(live, &before); rc != MDB_SUCCESS) {
      return std::unexpected(rc);
    }
    const auto length = (static_cast<std::uint64_t>(before.me_last_pgno) + 1) * page;
    if (length > kMaxPrivateCopyBytes) return std::unexpected(EFBIG);
    Descriptor memfd(::memfd_create("mtasts-lmdb-copy", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (memfd.get() < 0) return std::unexpected(errno);
    int rc = 0;
    for (std::uint64_t offset = 0; rc == 0 && offset < length; offset += buffer.size()) {
      const auto n =
          static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), length - offset));
      rc = read_at(fd, buffer.data(), n, static_cast<off_t>(offset));
      if (rc != 0) break;
      if (offset == 0) std::memcpy(copied_metas.data(), buffer.data(), copied_metas.size());
      rc = write_at(memfd.get(), buffer.data(), n, static_cast<off_t>(offset));
      if (rc != 0) return std::unexpected(rc);  // no memory for the copy
    }
    if (rc == ENODATA) {  // shorter than its meta page said: being replaced or truncated
      busy = EIO;
      continue;
    }
    if (rc != 0) return std::unexpected(rc);
    if (::fcntl(memfd.get(), F_ADD_SEALS,
                F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
      return std::unexpected(errno);
    }
    // LMDB opens a path: this process's name for the memfd (needs /proc).
    auto copy = open_env(fmt::format("/proc/self/fd/{}", memfd.get()),
                         kEnvFlags | MDB_NOLOCK | MDB_RDONLY, 0, 0400, 0);
    if (!copy && is_corruption(copy.error())) {
      // Not a sound copy after all (e.g. its meta page names pages past the copied length).
      // The file itself opened soundly: no reason to call it corrupt.
      busy = EIO;
      continue;
    }
    if (!copy) return std::unexpected(copy.error());
    MDB_envinfo info{};
    MDB_envinfo after{};
    int checked = ::mdb_env_info(copy->env, &info);
    const auto x = static_cast<std::uint64_t>(info.me_last_txnid);
    const std::size_t meta = (x & 1U) * page;
    if (checked == MDB_SUCCESS) {
      checked = read_at(fd, file_meta.data(), page, static_cast<off_t>(meta));
    }
    if (checked == MDB_SUCCESS) checked = ::mdb_env_info(live, &after);
    if (checked != MDB_SUCCESS) {
      ::mdb_env_close(copy->env);
      return std::unexpected(checked);
    }
    if (static_cast<std::uint64_t>(after.me_last_txnid) > x + 1 ||
        std::memcmp(file_meta.data(), copied_metas.data() + meta, page) != 0) {
      ::mdb_env_close(copy->env);
      busy = EBUSY;
      continue;
    }
    return std::make_shared<const PrivateCopy>(copy->env, x);
  }
  return std::unexpected(busy);
}

}  // namespace mtasts::store::lmdb
