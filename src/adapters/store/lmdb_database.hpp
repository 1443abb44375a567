// The cache file at a path kept usable through LMDB's operational errors: opened lazily and
// again in a forked child, the map grown when full, the reader table waited for, a corrupt file
// moved aside and replaced by an empty one.
//
// Nothing here logs: conditions an admin should hear about (a corrupt file moved aside, a file
// replaced on disk, a lock file this user cannot write) become notices the caller logs
// (Database::take_notices or LmdbOptions::on_notice).
#pragma once

#include <sys/types.h>

#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "adapters/store/lmdb_env.hpp"
#include "adapters/store/lmdb_txn.hpp"
#include "core/error.hpp"

namespace mtasts::store::lmdb {

// The cache file at a path, kept usable: opened lazily, reopened in a forked child, a corrupt
// file moved aside to "<path>.corrupt-<unix seconds>" and replaced by an empty one, the map grown
// on demand. Each read()/write() is one short transaction; nothing is held between calls.
// Thread-safe; callbacks must not start another transaction on the same thread (a write begun
// inside a write callback fails with a store error naming the nesting instead of deadlocking).
class Database {
 public:
  // Runs in the first write transaction of a newly created file (e.g. to write a schema key).
  using Initializer = std::function<int(WriteTxn&)>;

  Database(std::string path, LmdbOptions options, Initializer initializer = {});
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  // Opens now rather than at the first call.
  [[nodiscard]] std::expected<void, Error> open();

  // Runs fn in a read transaction; fn returns MDB_SUCCESS or the LMDB code it met. fn may run
  // more than once (after a reopen), so it must reset what it collects.
  [[nodiscard]] std::expected<void, Error> read(FunctionRef<int(const ReadTxn&)> fn);
  // Runs fn in a write transaction and commits when it returns MDB_SUCCESS; kRollback aborts
  // quietly. fn is run again after the map grew or the file was replaced.
  [[nodiscard]] std::expected<void, Error> write(FunctionRef<int(WriteTxn&)> fn);

  // Records a notice (also passed to LmdbOptions::on_notice).
  void notice(std::string text);
  // Notices recorded so far (at most the latest 64), oldest first; take_ clears them.
  [[nodiscard]] std::vector<std::string> notices() const;
  [[nodiscard]] std::vector<std::string> take_notices();

  [[nodiscard]] std::expected<std::size_t, Error> map_size();
  [[nodiscard]] const std::string& path() const { return path_; }
  // The latest committed state of the file as this process has it open; std::nullopt when it
  // cannot be had cheaply (not open yet, inherited across fork, an error).
  [[nodiscard]] std::optional<Snapshot> latest();

 private:
  [[nodiscard]] std::expected<std::shared_ptr<Environment>, Error> acquire(bool for_write);
  [[nodiscard]] std::expected<void, Error> open_locked(bool for_write);
  [[nodiscard]] std::expected<void, Error> move_aside_locked(
      std::optional<std::pair<dev_t, ino_t>> expected_file, int rc);
  // After corruption or a fatal error met while using `failed`.
  [[nodiscard]] std::expected<void, Error> recover(const std::shared_ptr<Environment>& failed,
                                                   int rc);
  [[nodiscard]] Error error(std::string_view what, int rc) const;
  // error(), naming the file system or the lock file when either is why opening failed.
  [[nodiscard]] Error open_error(std::string_view what, int rc) const;
  void notice_locked(std::string text);

  std::string path_;
  LmdbOptions options_;
  Initializer initializer_;
  mutable std::mutex mutex_;
  std::shared_ptr<Environment> env_;
  std::vector<std::string> notices_;
};

}  // namespace mtasts::store::lmdb
