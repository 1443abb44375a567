#include "adapters/store/lmdb_database.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <thread>

#include <fmt/format.h>

#include "adapters/store/lmdb_files.hpp"
#include "adapters/store/lmdb_fork_registry.hpp"

namespace mtasts::store::lmdb {

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
      if (!txn && txn.error() == EDEADLK) {
        return std::unexpected(
            error("a second write transaction on this thread refused (a write begun inside a write "
                  "callback?): LMDB's writer lock is not recursive",
                  EDEADLK));
      }
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
