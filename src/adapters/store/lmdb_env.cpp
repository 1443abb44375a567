#include "adapters/store/lmdb_env.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <thread>

#include <fmt/format.h>

#include "adapters/store/lmdb_env_internal.hpp"
#include "adapters/store/lmdb_files.hpp"
#include "adapters/store/lmdb_fork_registry.hpp"
#include "adapters/store/lmdb_private_copy.hpp"

namespace mtasts::store::lmdb {

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
// Environment

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

namespace {

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
  // This thread holds the write transaction already: mdb_txn_begin would wait for the writer
  // mutex it holds itself (not recursive), forever. Refused before resize_ is taken again too.
  // Only this thread ever stores its own id here, so no other thread's write can make it match.
  if (writer_.load() == std::this_thread::get_id()) return std::unexpected(EDEADLK);
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
  writer_.store(std::this_thread::get_id());  // cleared when the WriteTxn ends
  return WriteTxn(txn, dbi, std::move(lock), &writer_);
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

}  // namespace mtasts::store::lmdb
