#include "adapters/store/lmdb_env.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace mtasts::store::lmdb {

namespace {

// MDB_NOSUBDIR: the path names the data file itself ("<path>-lock" beside it), as the Perl tool
// and Exim's lmdb lookup expect.
//
// MDB_NOTLS: reader slots belong to transactions instead of threads. We want that because
//  - the daemon and the Exim module run many coroutines on one thread; without it a thread may
//    hold only one read transaction at a time, and a second one (another coroutine, or a
//    read nested in a callback) would be an error or silently share the slot;
//  - slots are given back when each short read transaction ends instead of being pinned per
//    thread until the environment closes, so hundreds of concurrent Exim delivery processes
//    and a thread pool do not exhaust the reader table;
//  - a read transaction may be finished on another OS thread than it began on (we never do
//    this: no transaction is held across a call, let alone a co_await).
// The cost is one uncontended lock of the reader table mutex per read transaction (~0.1 µs).
// Write transactions stay bound to their OS thread whatever the flag; ours begin and commit
// within one synchronous call, and LMDB's write mutex serializes them across threads/processes.
//
// No MDB_NOSYNC / MDB_NOMETASYNC / MDB_WRITEMAP: a commit is durable when it returns.
constexpr unsigned kEnvFlags = MDB_NOSUBDIR | MDB_NOTLS;

std::atomic<unsigned long> g_fork_generation{0};

struct Registry {
  std::mutex mutex;
  std::map<std::pair<dev_t, ino_t>, std::weak_ptr<Environment>> envs;
};

Registry& registry() {
  static auto* instance = new Registry;  // never destroyed: usable from exit handlers
  return *instance;
}

// Keep the registry consistent across fork(): no other thread can hold its lock at the moment
// of the fork, and the child counts one more generation.
void before_fork() {
  registry().mutex.lock();
}
void after_fork_parent() {
  registry().mutex.unlock();
}
void after_fork_child() {
  registry().mutex.unlock();
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}

MDB_val to_val(std::string_view text) {
  return MDB_val{text.size(), const_cast<char*>(text.data())};
}

std::string_view from_val(const MDB_val& val) {
  return {static_cast<const char*>(val.mv_data), val.mv_size};
}

std::expected<std::optional<std::string_view>, int> get_in(MDB_txn* txn, MDB_dbi dbi,
                                                           std::string_view key) {
  MDB_val k = to_val(key);
  MDB_val v{};
  const int rc = mdb_get(txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<std::string_view>{};
  if (rc != MDB_SUCCESS) return std::unexpected(rc);
  return std::optional<std::string_view>{from_val(v)};
}

std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string lock_path(const std::string& path) {
  return path + "-lock";
}

// liblmdb 0.9's lock file with POSIX mutexes (MDB_USE_POSIX_MUTEX, its default on Linux):
// MDB_txninfo is two parts padded to a cache line each (the reader table's header with the reader
// mutex; the writer mutex) and the first reader slot; each further MDB_reader is one padded line.
constexpr std::size_t kCacheLine = 64;
constexpr unsigned kLmdbDefaultMaxReaders = 126;

constexpr std::size_t cache_lines(std::size_t size) {
  return (size + kCacheLine - 1) & ~(kCacheLine - 1);
}

struct LockHeader {  // MDB_txbody
  std::uint32_t magic;
  std::uint32_t format;
  pthread_mutex_t reader_mutex;
  std::size_t txn_id;  // txnid_t
  unsigned readers;
};

struct LockReader {  // MDB_rxbody
  std::size_t txn_id;
  pid_t pid;
  pthread_t thread;
};

bool fully_allocated(const struct stat& st) {
  return st.st_size > 0 && static_cast<long long>(st.st_blocks) * 512 >= st.st_size;
}

// The first page of a lock file holds LMDB's header and its first reader slots.
bool first_page_allocated(int fd, const struct stat& st) {
  const off_t hole = ::lseek(fd, 0, SEEK_HOLE);
  if (hole < 0) return st.st_blocks > 0;  // no SEEK_HOLE here: blocks at all, then
  return hole >= std::min<off_t>(st.st_size, ::sysconf(_SC_PAGESIZE));
}

// LMDB's first opener extends a new lock file with ftruncate, which leaves a hole, and writes its
// reader table through a shared mapping: where the file system has no block left for the hole,
// that store raises SIGBUS, and the hole stays behind for the next process. So the file gets real
// blocks here, before mdb_env_open maps it, and a full file system becomes ENOSPC (or EDQUOT).
// Returns 0 or that errno. Anything else (no right to create or write the file, a read-only file
// system, no fallocate) is left to mdb_env_open, which meets the same condition and says so.
//
// The usual case (the file exists with all its blocks) costs one stat(): no descriptor is opened,
// since closing one would drop fcntl locks this process might hold on the file.
int prepare_lock_file(const std::string& path, unsigned max_readers, unsigned file_mode) {
  const std::string lock = lock_path(path);
  struct stat st {};
  if (::stat(lock.c_str(), &st) == 0) {
    if (fully_allocated(st)) return 0;
  } else if (errno != ENOENT) {
    return 0;
  }
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, static_cast<mode_t>(file_mode));
  if (fd < 0) return 0;
  int rc = 0;
  if (::fstat(fd, &st) == 0 && !fully_allocated(st)) {
    // A lock file in use keeps its size: its users mapped that many reader slots. A new (or
    // empty) one gets the size LMDB would give it.
    const off_t size =
        st.st_size > 0 ? st.st_size : static_cast<off_t>(lock_file_size(max_readers));
    int allocated = 0;
    do {
      allocated = ::fallocate(fd, 0, 0, size);
    } while (allocated != 0 && errno == EINTR);
    if (allocated != 0 && (errno == ENOSPC || errno == EDQUOT)) {
      rc = errno;
      // A lock file another LMDB user created (ftruncate, then the header written) has its first
      // page; only its later reader slots are a hole. It is used as before, as every LMDB user
      // would: a fault needs more than a page of readers at once on a full file system.
      if (st.st_size > 0 && first_page_allocated(fd, st)) rc = 0;
    }
  }
  ::close(fd);
  return rc;
}

// A new data file gets blocks for its two meta pages before LMDB writes them: where they do not
// fit, mdb_env_open would leave a file with one meta page, which the next open takes for a corrupt
// file and moves aside. Returns 0, or ENOSPC / EDQUOT with the file left empty (an empty file is
// a new one to LMDB and to Environment::open). Anything else is left to mdb_env_open.
int prepare_data_file(const std::string& path, unsigned file_mode) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (st.st_size > 0) return 0;  // the usual case: an existing cache
  } else if (errno != ENOENT) {
    return 0;
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, static_cast<mode_t>(file_mode));
  if (fd < 0) return 0;
  int rc = 0;
  if (::fstat(fd, &st) == 0 && st.st_size == 0) {
    // FALLOC_FL_KEEP_SIZE: the size stays 0, which is how LMDB recognizes a new file.
    const auto metas = static_cast<off_t>(2 * ::sysconf(_SC_PAGESIZE));
    int allocated = 0;
    do {
      allocated = ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, metas);
    } while (allocated != 0 && errno == EINTR);
    if (allocated != 0 && (errno == ENOSPC || errno == EDQUOT)) rc = errno;
  }
  ::close(fd);
  return rc;
}

// LMDB reports a short write (the file system filled up in the middle of it) as EIO: when the
// file system has no block left, say so instead.
int disk_full_or(int rc, const std::string& path) {
  struct statvfs fs {};
  if (rc == EIO && ::statvfs(parent_directory(path).c_str(), &fs) == 0 && fs.f_bavail == 0) {
    return ENOSPC;
  }
  return rc;
}

// True when this user can neither read and write "<path>-lock" nor create it.
bool lock_file_unwritable(const std::string& path) {
  if (::faccessat(AT_FDCWD, lock_path(path).c_str(), R_OK | W_OK, AT_EACCESS) == 0) return false;
  if (errno == ENOENT) {
    return ::faccessat(AT_FDCWD, parent_directory(path).c_str(), W_OK | X_OK, AT_EACCESS) != 0;
  }
  return errno == EACCES || errno == EPERM || errno == EROFS;
}

}  // namespace

std::size_t lock_file_size(unsigned max_readers) {
  const std::size_t readers = max_readers > 0 ? max_readers : kLmdbDefaultMaxReaders;
  return cache_lines(sizeof(LockHeader)) + cache_lines(sizeof(pthread_mutex_t)) +
         readers * cache_lines(sizeof(LockReader));
}

unsigned long fork_generation() {
  static std::once_flag once;
  std::call_once(once,
                 [] { ::pthread_atfork(&before_fork, &after_fork_parent, &after_fork_child); });
  return g_fork_generation.load(std::memory_order_relaxed);
}

std::string describe(int rc) {
  const char* name = nullptr;
  switch (rc) {
    case MDB_KEYEXIST:
      name = "MDB_KEYEXIST";
      break;
    case MDB_NOTFOUND:
      name = "MDB_NOTFOUND";
      break;
    case MDB_PAGE_NOTFOUND:
      name = "MDB_PAGE_NOTFOUND";
      break;
    case MDB_CORRUPTED:
      name = "MDB_CORRUPTED";
      break;
    case MDB_PANIC:
      name = "MDB_PANIC";
      break;
    case MDB_VERSION_MISMATCH:
      name = "MDB_VERSION_MISMATCH";
      break;
    case MDB_INVALID:
      name = "MDB_INVALID";
      break;
    case MDB_MAP_FULL:
      name = "MDB_MAP_FULL";
      break;
    case MDB_DBS_FULL:
      name = "MDB_DBS_FULL";
      break;
    case MDB_READERS_FULL:
      name = "MDB_READERS_FULL";
      break;
    case MDB_TXN_FULL:
      name = "MDB_TXN_FULL";
      break;
    case MDB_MAP_RESIZED:
      name = "MDB_MAP_RESIZED";
      break;
    case MDB_BAD_TXN:
      name = "MDB_BAD_TXN";
      break;
    case MDB_BAD_VALSIZE:
      name = "MDB_BAD_VALSIZE";
      break;
    default:
      break;
  }
  const char* text = ::mdb_strerror(rc);  // handles errno values too
  if (name != nullptr) return fmt::format("{}: {}", name, text);
  return text != nullptr ? std::string(text) : fmt::format("error {}", rc);
}

bool is_corruption(int rc) {
  return rc == MDB_INVALID || rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ||
         rc == MDB_VERSION_MISMATCH;
}

// ---------------------------------------------------------------------------------------------
// ReadTxn / WriteTxn

ReadTxn::ReadTxn(MDB_txn* txn, MDB_dbi dbi, std::shared_lock<std::shared_mutex> lock, dev_t device,
                 ino_t inode, std::shared_ptr<const PrivateCopy> copy) noexcept
    : txn_(txn),
      dbi_(dbi),
      device_(device),
      inode_(inode),
      resize_lock_(std::move(lock)),
      copy_(std::move(copy)) {}

ReadTxn::ReadTxn(ReadTxn&& other) noexcept
    : txn_(std::exchange(other.txn_, nullptr)),
      dbi_(other.dbi_),
      device_(other.device_),
      inode_(other.inode_),
      resize_lock_(std::move(other.resize_lock_)),
      copy_(std::move(other.copy_)) {}

Snapshot ReadTxn::snapshot() const {
  return Snapshot{device_, inode_, static_cast<std::uint64_t>(::mdb_txn_id(txn_))};
}

ReadTxn::~ReadTxn() {
  if (txn_ != nullptr) ::mdb_txn_abort(txn_);  // before copy_ and resize_lock_ are released
}

std::expected<std::optional<std::string_view>, int> ReadTxn::get(std::string_view key) const {
  return get_in(txn_, dbi_, key);
}

std::expected<void, int> ReadTxn::for_each(
    FunctionRef<bool(std::string_view, std::string_view)> fn) const {
  MDB_cursor* cursor = nullptr;
  if (const int rc = ::mdb_cursor_open(txn_, dbi_, &cursor); rc != MDB_SUCCESS) {
    return std::unexpected(rc);
  }
  MDB_val k{};
  MDB_val v{};
  int rc = ::mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
  while (rc == MDB_SUCCESS) {
    if (!fn(from_val(k), from_val(v))) break;
    rc = ::mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
  }
  ::mdb_cursor_close(cursor);
  if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return std::unexpected(rc);
  return {};
}

WriteTxn::WriteTxn(MDB_txn* txn, MDB_dbi dbi, std::shared_lock<std::shared_mutex> lock) noexcept
    : txn_(txn), dbi_(dbi), resize_lock_(std::move(lock)) {}

WriteTxn::WriteTxn(WriteTxn&& other) noexcept
    : txn_(std::exchange(other.txn_, nullptr)),
      dbi_(other.dbi_),
      resize_lock_(std::move(other.resize_lock_)) {}

WriteTxn::~WriteTxn() {
  if (txn_ != nullptr) ::mdb_txn_abort(txn_);  // not committed: nothing happened
}

std::expected<std::optional<std::string_view>, int> WriteTxn::get(std::string_view key) const {
  return get_in(txn_, dbi_, key);
}

std::expected<void, int> WriteTxn::put(std::string_view key, std::string_view value) {
  MDB_val k = to_val(key);
  MDB_val v = to_val(value);
  if (const int rc = ::mdb_put(txn_, dbi_, &k, &v, 0); rc != MDB_SUCCESS) {
    return std::unexpected(rc);
  }
  return {};
}

std::expected<bool, int> WriteTxn::del(std::string_view key) {
  MDB_val k = to_val(key);
  const int rc = ::mdb_del(txn_, dbi_, &k, nullptr);
  if (rc == MDB_NOTFOUND) return false;
  if (rc != MDB_SUCCESS) return std::unexpected(rc);
  return true;
}

std::expected<void, int> WriteTxn::commit() {
  // mdb_txn_commit frees the transaction whether or not it succeeds.
  const int rc = ::mdb_txn_commit(std::exchange(txn_, nullptr));
  if (rc != MDB_SUCCESS) return std::unexpected(rc);
  return {};
}

// ---------------------------------------------------------------------------------------------
// Environment

// A private copy of one committed state of a cache file, for a reader that has no reader slot:
// a sealed memfd (nothing can write, grow or shrink it) opened MDB_NOLOCK | MDB_RDONLY.
struct PrivateCopy {
  PrivateCopy(MDB_env* copy_env, std::uint64_t copy_txn_id) : env(copy_env), txn_id(copy_txn_id) {}
  PrivateCopy(const PrivateCopy&) = delete;
  PrivateCopy& operator=(const PrivateCopy&) = delete;
  // No lock file, no reader slot: closing is harmless in any process, also after fork().
  ~PrivateCopy() { ::mdb_env_close(env); }

  MDB_env* env;
  std::uint64_t txn_id;
};

Environment::Environment(MDB_env* env, dev_t device, ino_t inode, bool fresh, bool read_only,
                         std::shared_ptr<const PrivateCopy> copy, const LmdbOptions& options)
    : env_(env),
      read_only_(read_only || copy != nullptr),
      lock_free_(copy != nullptr),
      copy_(std::move(copy)),
      max_readers_(options.max_readers),
      file_mode_(options.file_mode),
      pid_(::getpid()),
      generation_(fork_generation()),
      device_(device),
      inode_(inode),
      fresh_(fresh),
      initial_map_size_(options.initial_map_size),
      max_map_size_(std::max(options.max_map_size, options.initial_map_size)) {}

Environment::~Environment() {
  // LMDB forbids using an environment after fork(); closing it in the child would even clear the
  // parent's reader slots. A child just drops it (the handle and its map leak, by design).
  if (::getpid() == pid_ && env_ != nullptr) ::mdb_env_close(env_);
}

namespace {

struct OpenedHandle {
  MDB_env* env;
  struct stat file;
  bool fresh;  // no transaction was ever committed: the file was just created
  std::shared_ptr<const PrivateCopy> copy;  // lock-free: env only reads the meta pages
};

// mdb_env_create + mdb_env_open with these flags, and the checks every open needs.
std::expected<OpenedHandle, int> open_env(const std::string& path, unsigned flags,
                                          unsigned max_readers, unsigned file_mode,
                                          std::size_t initial_map_size) {
  MDB_env* raw = nullptr;
  if (const int rc = ::mdb_env_create(&raw); rc != MDB_SUCCESS) return std::unexpected(rc);
  auto fail = [&raw](int rc) -> std::expected<OpenedHandle, int> {
    ::mdb_env_close(raw);
    return std::unexpected(rc);
  };
  if (max_readers > 0) {
    if (const int rc = ::mdb_env_set_maxreaders(raw, max_readers); rc != MDB_SUCCESS) {
      return fail(rc);
    }
  }
  // No mapsize before open: an existing file keeps the (maybe larger) size recorded in it.
  if (const int rc = ::mdb_env_open(raw, path.c_str(), flags, static_cast<mdb_mode_t>(file_mode));
      rc != MDB_SUCCESS) {
    return fail(rc);
  }

  mdb_filehandle_t fd = -1;
  MDB_envinfo info{};
  MDB_stat stat{};
  if (const int rc = ::mdb_env_get_fd(raw, &fd); rc != MDB_SUCCESS) return fail(rc);
  if (const int rc = ::mdb_env_info(raw, &info); rc != MDB_SUCCESS) return fail(rc);
  if (const int rc = ::mdb_env_stat(raw, &stat); rc != MDB_SUCCESS) return fail(rc);
  struct stat file {};
  if (::fstat(fd, &file) != 0) return fail(errno);  // after mdb_env_info: the file only grows
  // A truncated file: its meta page names pages past the end. Touching them would be SIGBUS.
  const auto needed = static_cast<unsigned long long>(info.me_last_pgno + 1) * stat.ms_psize;
  if (stat.ms_psize == 0 || static_cast<unsigned long long>(file.st_size) < needed) {
    return fail(MDB_CORRUPTED);
  }
  if ((flags & MDB_RDONLY) == 0 && info.me_mapsize < initial_map_size) {
    if (const int rc = ::mdb_env_set_mapsize(raw, initial_map_size); rc != MDB_SUCCESS) {
      return fail(rc);
    }
  }
  return OpenedHandle{raw, file, info.me_last_txnid == 0, nullptr};
}

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

// Lock-free: the file opened MDB_NOLOCK | MDB_RDONLY (this handle only reads the meta pages,
// which are always in the file) and a first private copy.
std::expected<OpenedHandle, int> open_lock_free(const std::string& path, unsigned max_readers,
                                                unsigned file_mode) {
  auto live = open_env(path, kEnvFlags | MDB_NOLOCK | MDB_RDONLY, max_readers, file_mode, 0);
  if (!live) return live;
  auto copy = make_private_copy(live->env);
  if (!copy) {
    ::mdb_env_close(live->env);
    return std::unexpected(copy.error());
  }
  live->fresh = false;
  live->copy = std::move(*copy);
  return live;
}

// How the cache file is opened: read-write, MDB_RDONLY, or lock-free when MDB_RDONLY is refused
// for want of the lock file.
std::expected<OpenedHandle, int> open_handle(const std::string& path, unsigned max_readers,
                                             unsigned file_mode, std::size_t initial_map_size,
                                             bool read_only) {
  if (const int rc = prepare_lock_file(path, max_readers, file_mode); rc != 0) {
    return std::unexpected(rc);
  }
  if (!read_only) {
    if (const int rc = prepare_data_file(path, file_mode); rc != 0) return std::unexpected(rc);
  }
  const unsigned flags = kEnvFlags | (read_only ? MDB_RDONLY : 0U);
  auto opened = open_env(path, flags, max_readers, file_mode, initial_map_size);
  if (!opened && read_only && (opened.error() == EACCES || opened.error() == EPERM) &&
      lock_file_unwritable(path)) {
    return open_lock_free(path, max_readers, file_mode);
  }
  return opened;
}

}  // namespace

std::expected<std::shared_ptr<Environment>, int> Environment::open(const std::string& path,
                                                                   const LmdbOptions& options,
                                                                   const struct stat* existing,
                                                                   bool read_only) {
  const unsigned long generation = fork_generation();
  Registry& reg = registry();
  std::lock_guard lock(reg.mutex);
  std::erase_if(reg.envs, [](const auto& item) { return item.second.expired(); });
  // The caller's stat() came before this lock: another thread of ours may have created the file
  // and its environment meanwhile, and a second environment would break LMDB's locking.
  struct stat created {};
  if (existing == nullptr && ::stat(path.c_str(), &created) == 0) existing = &created;
  if (existing != nullptr) {
    // One environment per file per process: a second one would break LMDB's fcntl locking.
    if (auto it = reg.envs.find({existing->st_dev, existing->st_ino}); it != reg.envs.end()) {
      if (auto env = it->second.lock(); env && env->generation() == generation) return env;
    }
  }
  // A missing file is created read-write; so is an empty one (what a creation that found no room
  // leaves: LMDB takes it for a new file, and MDB_RDONLY would fail with ENOENT).
  read_only = read_only && existing != nullptr && existing->st_size > 0;
  auto opened = open_handle(path, options.max_readers, options.file_mode, options.initial_map_size,
                            read_only);
  if (!opened) return std::unexpected(opened.error());
  std::shared_ptr<Environment> env(new Environment(opened->env, opened->file.st_dev,
                                                   opened->file.st_ino, opened->fresh, read_only,
                                                   std::move(opened->copy), options));
  reg.envs[{opened->file.st_dev, opened->file.st_ino}] = env;
  return env;
}

std::expected<void, int> Environment::make_writable(const std::string& path) {
  std::unique_lock lock(resize_);  // waits until no transaction of ours is active
  if (!read_only_ && env_ != nullptr) return {};
  // Close first: a second handle on the file, closed later, would drop the first one's locks.
  if (env_ != nullptr) ::mdb_env_close(std::exchange(env_, nullptr));
  {
    std::lock_guard guard(copy_mutex_);
    copy_.reset();
  }
  lock_free_ = false;
  auto writable = open_handle(path, max_readers_, file_mode_, initial_map_size_, false);
  if (writable && writable->file.st_dev == device_ && writable->file.st_ino == inode_) {
    env_ = writable->env;
    read_only_ = false;
    return {};
  }
  // Replaced on disk meanwhile (Database::acquire checks before writing), or not writable by
  // this process: keep reading the file we had, read-only.
  const int rc = writable ? MDB_PANIC : writable.error();
  if (writable) ::mdb_env_close(writable->env);
  if (auto again = open_handle(path, max_readers_, file_mode_, initial_map_size_, true)) {
    if (again->file.st_dev == device_ && again->file.st_ino == inode_) {
      env_ = again->env;
      lock_free_ = again->copy != nullptr;
      std::lock_guard guard(copy_mutex_);
      copy_ = std::move(again->copy);
    } else {
      ::mdb_env_close(again->env);
    }
  }
  return std::unexpected(rc);
}

std::optional<Snapshot> Environment::latest() const {
  std::shared_lock lock(resize_);
  MDB_envinfo info{};
  if (env_ == nullptr || ::mdb_env_info(env_, &info) != MDB_SUCCESS) return std::nullopt;
  return Snapshot{device_, inode_, static_cast<std::uint64_t>(info.me_last_txnid)};
}

bool Environment::read_only() const {
  std::shared_lock lock(resize_);
  return read_only_ || env_ == nullptr;
}

bool Environment::lock_free() const {
  std::shared_lock lock(resize_);
  return lock_free_ && env_ != nullptr;
}

void Environment::drop_copy() {
  std::lock_guard guard(copy_mutex_);
  copy_.reset();
}

std::expected<std::shared_ptr<const PrivateCopy>, int> Environment::current_copy() {
  std::lock_guard guard(copy_mutex_);
  MDB_envinfo info{};
  if (const int rc = ::mdb_env_info(env_, &info); rc != MDB_SUCCESS) return std::unexpected(rc);
  if (copy_ && copy_->txn_id == static_cast<std::uint64_t>(info.me_last_txnid)) return copy_;
  auto made = make_private_copy(env_);
  if (!made) return std::unexpected(made.error());
  copy_ = std::move(*made);
  return copy_;
}

std::expected<ReadTxn, int> Environment::begin_read() {
  std::shared_lock lock(resize_);
  if (env_ == nullptr) return std::unexpected(MDB_PANIC);  // see make_writable()
  MDB_env* source = env_;
  std::shared_ptr<const PrivateCopy> copy;
  if (lock_free_) {
    auto current = current_copy();
    if (!current) return std::unexpected(current.error());
    copy = std::move(*current);
    source = copy->env;
  }
  MDB_txn* txn = nullptr;
  if (const int rc = ::mdb_txn_begin(source, nullptr, MDB_RDONLY, &txn); rc != MDB_SUCCESS) {
    return std::unexpected(rc);
  }
  MDB_dbi dbi = 0;
  if (const int rc = ::mdb_dbi_open(txn, nullptr, 0, &dbi); rc != MDB_SUCCESS) {
    ::mdb_txn_abort(txn);
    return std::unexpected(rc);
  }
  return ReadTxn(txn, dbi, std::move(lock), device_, inode_, std::move(copy));
}

std::expected<WriteTxn, int> Environment::begin_write() {
  std::shared_lock lock(resize_);
  if (env_ == nullptr) return std::unexpected(MDB_PANIC);  // see make_writable()
  MDB_txn* txn = nullptr;
  if (const int rc = ::mdb_txn_begin(env_, nullptr, 0, &txn); rc != MDB_SUCCESS) {
    return std::unexpected(rc);
  }
  MDB_dbi dbi = 0;
  if (const int rc = ::mdb_dbi_open(txn, nullptr, 0, &dbi); rc != MDB_SUCCESS) {
    ::mdb_txn_abort(txn);
    return std::unexpected(rc);
  }
  return WriteTxn(txn, dbi, std::move(lock));
}

std::expected<void, int> Environment::grow(std::size_t seen) {
  std::unique_lock lock(resize_);  // waits until no transaction of ours is active
  MDB_envinfo info{};
  if (const int rc = ::mdb_env_info(env_, &info); rc != MDB_SUCCESS) return std::unexpected(rc);
  const std::size_t current = info.me_mapsize;
  if (current > seen) return {};  // another thread grew it meanwhile
  if (current >= max_map_size_) return std::unexpected(MDB_MAP_FULL);
  std::size_t next = current > max_map_size_ / 2 ? max_map_size_ : current * 2;
  next = std::max(next, initial_map_size_);
  next &= ~std::size_t{4095};  // whole OS pages
  if (next <= current) return std::unexpected(MDB_MAP_FULL);
  if (const int rc = ::mdb_env_set_mapsize(env_, next); rc != MDB_SUCCESS) {
    return std::unexpected(rc);
  }
  return {};
}

std::expected<void, int> Environment::adopt_map_size() {
  std::unique_lock lock(resize_);
  if (env_ == nullptr) return std::unexpected(MDB_PANIC);
  if (const int rc = ::mdb_env_set_mapsize(env_, 0); rc != MDB_SUCCESS) {
    return std::unexpected(rc);
  }
  return {};
}

int Environment::clear_stale_readers() {
  std::shared_lock lock(resize_);
  int dead = 0;
  if (env_ == nullptr || ::mdb_reader_check(env_, &dead) != MDB_SUCCESS) return 0;
  return dead;
}

std::size_t Environment::map_size() const {
  std::shared_lock lock(resize_);
  MDB_envinfo info{};
  if (::mdb_env_info(env_, &info) != MDB_SUCCESS) return 0;
  return info.me_mapsize;
}

bool Environment::claim_fresh() {
  return fresh_.exchange(false);
}

// ---------------------------------------------------------------------------------------------
// Database

Database::Database(std::string path, LmdbOptions options, Initializer initializer)
    : path_(std::move(path)), options_(std::move(options)), initializer_(std::move(initializer)) {}

Database::~Database() = default;

Error Database::error(std::string_view what, int rc) const {
  return Error{ErrorCategory::store,
               fmt::format("LMDB cache {}: {}: {}", path_, what, describe(rc))};
}

Error Database::open_error(std::string_view what, int rc) const {
  const std::string lock = lock_path(path_);
  if (rc == ENOSPC || rc == EDQUOT) {
    return Error{ErrorCategory::store,
                 fmt::format("LMDB cache {}: {}: no room on its file system for the lock file {} "
                             "or the cache's first pages: {}",
                             path_, what, lock, describe(rc))};
  }
  if (::faccessat(AT_FDCWD, path_.c_str(), R_OK, AT_EACCESS) == 0 && lock_file_unwritable(path_)) {
    if (rc == EACCES || rc == EPERM) {
      return Error{ErrorCategory::store,
                   fmt::format("LMDB cache {}: {}: this user cannot write its lock file {} "
                               "(LMDB's reader table, which LMDB opens read-write): {}",
                               path_, what, lock, describe(rc))};
    }
    return Error{ErrorCategory::store,
                 fmt::format("LMDB cache {}: {}: this user cannot write its lock file {}, and "
                             "reading a private copy of the cache instead failed: {}",
                             path_, what, lock, describe(rc))};
  }
  return error(what, rc);
}

void Database::notice_locked(std::string text) {
  constexpr std::size_t kKept = 64;
  if (notices_.size() >= kKept) notices_.erase(notices_.begin());
  notices_.push_back(text);
  if (options_.on_notice) options_.on_notice(notices_.back());
}

void Database::notice(std::string text) {
  std::lock_guard lock(mutex_);
  notice_locked(std::move(text));
}

std::vector<std::string> Database::notices() const {
  std::lock_guard lock(mutex_);
  return notices_;
}

std::vector<std::string> Database::take_notices() {
  std::lock_guard lock(mutex_);
  return std::exchange(notices_, {});
}

std::expected<void, Error> Database::open() {
  auto env = acquire(false);
  if (!env) return std::unexpected(env.error());
  return {};
}

std::expected<std::shared_ptr<Environment>, Error> Database::acquire(bool for_write) {
  std::lock_guard lock(mutex_);
  if (env_ && env_->generation() != fork_generation()) {
    // Inherited across fork(): LMDB forbids using it here. Drop it, unclosed (~Environment).
    env_.reset();
  }
  if (env_ && for_write) {
    // Writes are rare and worth one stat(): another process may have moved a corrupt file
    // aside (or an admin removed it); writing into the old inode would be lost.
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0 || st.st_dev != env_->device() ||
        st.st_ino != env_->inode()) {
      notice_locked(
          fmt::format("LMDB cache {}: the file was moved or replaced; reopened it", path_));
      env_.reset();
    }
  }
  if (!env_) {
    if (auto opened = open_locked(for_write); !opened) return std::unexpected(opened.error());
  }
  if (for_write && env_->read_only()) {
    if (auto writable = env_->make_writable(path_); !writable) {
      return std::unexpected(open_error("cannot open for writing", writable.error()));
    }
  }
  return env_;
}

std::expected<void, Error> Database::open_locked(bool for_write) {
  const bool read_only = options_.read_only_until_write && !for_write;
  for (int attempt = 0;; ++attempt) {
    struct stat st {};
    const bool exists = ::stat(path_.c_str(), &st) == 0;
    auto opened = Environment::open(path_, options_, exists ? &st : nullptr, read_only);
    if (opened) {
      std::shared_ptr<Environment> env = std::move(*opened);
      // A read-only handle cannot initialize; save() writes the schema key when it is missing.
      if (initializer_ && !env->read_only() && env->claim_fresh()) {
        int rc = MDB_SUCCESS;
        {
          auto txn = env->begin_write();
          if (!txn) {
            rc = txn.error();
          } else if (rc = initializer_(*txn); rc == MDB_SUCCESS) {
            auto committed = txn->commit();
            if (!committed) rc = committed.error();
          }
        }
        if (rc != MDB_SUCCESS && rc != kRollback) {
          return std::unexpected(error("initializing", disk_full_or(rc, path_)));
        }
      }
      if (env->lock_free()) {
        const std::string lock = lock_path(path_);
        notice_locked(fmt::format(
            "LMDB cache {}: this user cannot write its lock file {} (LMDB's reader table), so it "
            "reads private copies of the cache, made again after each change, and cannot write; "
            "give it read-write access to {}",
            path_, lock, lock));
      }
      env_ = std::move(env);
      return {};
    }
    const int rc = opened.error();
    if (is_corruption(rc) && attempt == 0) {
      std::optional<std::pair<dev_t, ino_t>> file;
      if (exists) file = std::pair{st.st_dev, st.st_ino};
      if (auto moved = move_aside_locked(file, rc); !moved) return moved;
      continue;
    }
    if (rc == ENOENT) {
      // mdb_env_open creates a missing file but never a missing directory; neither do we.
      const std::string dir = parent_directory(path_);
      struct stat dst {};
      if (::stat(dir.c_str(), &dst) != 0) {
        return std::unexpected(Error{
            ErrorCategory::store,
            fmt::format("LMDB cache {}: directory {} does not exist (create it; it is not created "
                        "automatically)",
                        path_, dir)});
      }
      if (!S_ISDIR(dst.st_mode)) {
        return std::unexpected(Error{
            ErrorCategory::store, fmt::format("LMDB cache {}: {} is not a directory", path_, dir)});
      }
    }
    return std::unexpected(open_error("cannot open", rc));
  }
}

std::expected<void, Error> Database::move_aside_locked(
    std::optional<std::pair<dev_t, ino_t>> expected_file, int rc) {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};  // already gone: another process moved it
    return std::unexpected(error("stat", errno));
  }
  if (expected_file && (st.st_dev != expected_file->first || st.st_ino != expected_file->second)) {
    return {};  // another process already replaced it
  }
  const auto now = static_cast<long long>(std::time(nullptr));
  std::string aside;
  bool moved = false;
  for (int n = 0; n < 100 && !moved; ++n) {
    aside = n == 0 ? fmt::format("{}.corrupt-{}", path_, now)
                   : fmt::format("{}.corrupt-{}-{}", path_, now, n);
    if (::renameat2(AT_FDCWD, path_.c_str(), AT_FDCWD, aside.c_str(), RENAME_NOREPLACE) == 0) {
      moved = true;
    } else if (errno == EINVAL || errno == ENOSYS) {  // file system without RENAME_NOREPLACE
      struct stat taken {};
      if (::lstat(aside.c_str(), &taken) == 0) continue;
      if (::rename(path_.c_str(), aside.c_str()) != 0) {
        return std::unexpected(
            error(fmt::format("cannot move the corrupt file to {}", aside), errno));
      }
      moved = true;
    } else if (errno != EEXIST) {
      return std::unexpected(
          error(fmt::format("cannot move the corrupt file to {}", aside), errno));
    }
  }
  if (!moved)
    return std::unexpected(error("cannot find a name to move the corrupt file to", EEXIST));
  // The lock file described the old data file; a new one starts with the new file.
  ::unlink((path_ + "-lock").c_str());
  notice_locked(fmt::format(
      "LMDB cache {} is not a sound LMDB file ({}); moved it aside to {} and started an empty "
      "cache",
      path_, describe(rc), aside));
  return {};
}

std::expected<void, Error> Database::recover(const std::shared_ptr<Environment>& failed, int rc) {
  std::lock_guard lock(mutex_);
  if (env_ != failed) return {};  // another thread already dealt with it
  env_.reset();
  if (rc == MDB_PANIC) {
    notice_locked(fmt::format("LMDB cache {}: {}; reopening it", path_, describe(rc)));
  } else if (auto moved = move_aside_locked(std::pair{failed->device(), failed->inode()}, rc);
             !moved) {
    return moved;
  }
  return open_locked(false);
}

std::expected<void, Error> Database::read(FunctionRef<int(const ReadTxn&)> fn) {
  int resized = 0;
  int readers_retries = 0;
  int recoveries = 0;
  for (;;) {
    auto env = acquire(false);
    if (!env) return std::unexpected(env.error());
    int rc = MDB_SUCCESS;
    {
      auto txn = (*env)->begin_read();
      rc = txn ? fn(*txn) : txn.error();
    }  // the transaction has ended here
    if (rc == MDB_SUCCESS) return {};
    if (rc == MDB_MAP_RESIZED && resized++ < 8) {
      if (auto adopted = (*env)->adopt_map_size(); !adopted) {
        return std::unexpected(error("adopting the new map size", adopted.error()));
      }
      continue;
    }
    if (rc == MDB_READERS_FULL) {
      if (readers_retries++ >= options_.readers_full_retries) {
        return std::unexpected(error(
            fmt::format("reader table still full after {} retries (stale readers cleared); raise "
                        "max_readers or find what holds read transactions",
                        options_.readers_full_retries),
            rc));
      }
      // Slots of dead processes are freed at once; otherwise wait for a reader to finish.
      if ((*env)->clear_stale_readers() == 0)
        std::this_thread::sleep_for(options_.readers_full_pause);
      continue;
    }
    if ((*env)->lock_free()) {
      // The transaction read a private copy: there is nothing to move aside or reopen (and this
      // user may not). A writer meets the same state and recovers it; make a new copy once.
      if ((is_corruption(rc) || rc == MDB_PANIC) && recoveries++ == 0) {
        (*env)->drop_copy();
        continue;
      }
      return std::unexpected(open_error("read", rc));
    }
    if ((is_corruption(rc) || rc == MDB_PANIC) && recoveries++ == 0) {
      if (auto recovered = recover(*env, rc); !recovered) return recovered;
      continue;
    }
    return std::unexpected(error("read", rc));
  }
}

std::expected<void, Error> Database::write(FunctionRef<int(WriteTxn&)> fn) {
  int resized = 0;
  int grown = 0;
  int recoveries = 0;
  for (;;) {
    auto env = acquire(true);
    if (!env) return std::unexpected(env.error());
    const std::size_t size_before = (*env)->map_size();
    int rc = MDB_SUCCESS;
    {
      auto txn = (*env)->begin_write();
      if (!txn) {
        rc = txn.error();
      } else {
        rc = fn(*txn);
        if (rc == kRollback) return {};  // ~WriteTxn aborts
        if (rc == MDB_SUCCESS) {
          auto committed = txn->commit();
          if (!committed) rc = committed.error();
        }
      }
    }  // aborted here unless committed
    if (rc == MDB_SUCCESS) return {};
    if (rc == MDB_MAP_FULL && grown++ < 64) {
      if (auto grew = (*env)->grow(size_before); !grew) {
        if (grew.error() == MDB_MAP_FULL) {
          return std::unexpected(Error{
              ErrorCategory::store,
              fmt::format("LMDB cache {} is full: the map reached its cap of {} MiB; raise the "
                          "cap or purge entries",
                          path_, (*env)->map_size() >> 20)});
        }
        return std::unexpected(error("growing the map", grew.error()));
      }
      continue;
    }
    if (rc == MDB_MAP_RESIZED && resized++ < 8) {
      if (auto adopted = (*env)->adopt_map_size(); !adopted) {
        return std::unexpected(error("adopting the new map size", adopted.error()));
      }
      continue;
    }
    if ((is_corruption(rc) || rc == MDB_PANIC) && recoveries++ == 0) {
      if (auto recovered = recover(*env, rc); !recovered) return recovered;
      continue;
    }
    return std::unexpected(error("write", disk_full_or(rc, path_)));
  }
}

std::optional<Snapshot> Database::latest() {
  std::shared_ptr<Environment> env;
  {
    std::lock_guard lock(mutex_);
    if (!env_ || env_->generation() != fork_generation()) return std::nullopt;
    env = env_;
  }
  return env->latest();
}

std::expected<std::size_t, Error> Database::map_size() {
  auto env = acquire(false);
  if (!env) return std::unexpected(env.error());
  return (*env)->map_size();
}

}  // namespace mtasts::store::lmdb
