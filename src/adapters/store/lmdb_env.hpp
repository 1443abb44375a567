// One open LMDB environment per cache file per process (Environment), and the options every
// part of the LMDB store shares (LmdbOptions). Transactions are in lmdb_txn.hpp; the Database
// that keeps a cache file usable through LMDB's operational errors is in lmdb_database.hpp.
//
// The environment's helpers each have a file: lmdb_fork_registry (the environments open in this
// process, and fork()), lmdb_files (the lock file's size, blocks allocated before LMDB maps a
// file), lmdb_private_copy (reading without a reader slot).
#pragma once

#include <lmdb.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>

#include "adapters/store/lmdb_txn.hpp"

namespace mtasts::store {

struct LmdbOptions {
  // The map starts at this size, or at the size the file already has when that is larger.
  std::size_t initial_map_size = std::size_t{16} << 20;
  // MDB_MAP_FULL doubles the map up to this hard cap; beyond it writes fail with a store error.
  std::size_t max_map_size = std::size_t{1} << 30;
  // Reader table slots. Only the process that creates the lock file decides.
  unsigned max_readers = 126;
  // MDB_READERS_FULL: clear stale readers (mdb_reader_check), then retry this many times with
  // this pause in between before giving up.
  int readers_full_retries = 10;
  std::chrono::milliseconds readers_full_pause{100};
  // Mode of a created data file and of its "-lock" companion (before the umask).
  unsigned file_mode = 0640;
  // Decoded entries kept by LmdbStore, reused while the stored octets are unchanged: a few for
  // an Exim process, every active domain for the daemon.
  std::size_t memo_entries = 16;
  // Open an existing file read-only (MDB_RDONLY) and switch to read-write at the first write.
  // A read-write open costs ~70 us more (write buffers, an O_DSYNC descriptor), which matters
  // to an Exim delivery process that only reads one cached answer.
  bool read_only_until_write = false;
  // Called with each notice as it is recorded (also kept for take_notices()). Runs while the
  // database's internal lock is held: it must not call back into the store.
  std::function<void(const std::string&)> on_notice;
};

namespace lmdb {

// "MDB_MAP_FULL: Environment mapsize limit reached" style text for an LMDB or errno code.
[[nodiscard]] std::string describe(int rc);

// True for codes that mean the file is not (or no longer) a sound LMDB file.
[[nodiscard]] bool is_corruption(int rc);

// A reader whose user cannot write "<path>-lock" gets no reader slot, and LMDB's reads without
// one (MDB_NOLOCK) are only safe while no writer runs. Such a reader reads a private, sealed copy
// of the file instead (Environment::open; make_private_copy in lmdb_private_copy.hpp), checked
// after copying to hold one committed state whole, and made again when the file has a newer
// transaction. Files larger than this are refused.
inline constexpr std::size_t kMaxPrivateCopyBytes = std::size_t{64} << 20;

// One open MDB_env. At most one per (device, inode) per process: open() hands out the existing
// one. Closed with the last reference, and only in the process that opened it.
class Environment {
 public:
  // `existing` is stat(path) when the file exists (to find an environment already open).
  // Errors are LMDB or errno codes; a data file shorter than its own meta page claims is
  // reported as MDB_CORRUPTED (touching the missing pages would raise SIGBUS).
  // `read_only`: open with MDB_RDONLY (only when the file exists and is not empty); see
  // make_writable().
  //
  // Before LMDB maps "<path>-lock", its blocks are allocated (fallocate): LMDB extends a new
  // lock file with ftruncate and writes its reader table through a shared mapping, which raises
  // SIGBUS where the file system has no block left. A full file system is ENOSPC (or EDQUOT)
  // instead, also for a lock file left short or sparse by an earlier crash. A new data file gets
  // the blocks of its two meta pages the same way (else a half-written file is left behind).
  //
  // A read-only open that LMDB refuses because this user cannot write (or create) the lock file
  // while it can read the data file opens "lock-free" instead: reads come from a private copy of
  // the file (see kMaxPrivateCopyBytes), never from the shared file without a reader slot.
  [[nodiscard]] static std::expected<std::shared_ptr<Environment>, int> open(
      const std::string& path, const LmdbOptions& options, const struct stat* existing,
      bool read_only = false);

  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;
  ~Environment();

  // A thread that holds a write transaction here may begin read transactions too (MDB_NOTLS:
  // they read the last committed state, not the write transaction's changes).
  [[nodiscard]] std::expected<ReadTxn, int> begin_read();
  // Waits while another thread or process holds the write transaction. EDEADLK, at once, when
  // this thread holds it: liblmdb's writer lock is not recursive, so waiting would never end.
  [[nodiscard]] std::expected<WriteTxn, int> begin_write();

  // MDB_MAP_FULL: doubles the map (no transaction of this process may be active on it; the
  // internal lock waits for them), unless it already grew past `seen` meanwhile. MDB_MAP_FULL
  // again when the cap is reached.
  [[nodiscard]] std::expected<void, int> grow(std::size_t seen);
  // MDB_MAP_RESIZED: adopts the size another process gave the map.
  [[nodiscard]] std::expected<void, int> adopt_map_size();
  // Clears reader slots of dead processes; returns how many.
  [[nodiscard]] int clear_stale_readers();

  // A read-only environment becomes read-write: the handle is closed and the file reopened
  // (two handles on one file in one process would break LMDB's fcntl locks), after every
  // transaction of this process on it has ended. When the read-write open fails the file is
  // reopened read-only and the error returned.
  [[nodiscard]] std::expected<void, int> make_writable(const std::string& path);
  [[nodiscard]] bool read_only() const;
  // Reads come from private copies (the lock file is not writable by this user); always
  // read-only.
  [[nodiscard]] bool lock_free() const;
  // Lock-free: forgets the current copy, so that the next read makes a new one.
  void drop_copy();
  // The file's latest committed state, without a transaction (reads the meta pages).
  [[nodiscard]] std::optional<Snapshot> latest() const;

  [[nodiscard]] std::size_t map_size() const;
  [[nodiscard]] dev_t device() const { return device_; }
  [[nodiscard]] ino_t inode() const { return inode_; }
  [[nodiscard]] unsigned long generation() const { return generation_; }
  // True once, for the first caller, when the file held no committed transaction when opened
  // (it was just created).
  [[nodiscard]] bool claim_fresh();

 private:
  Environment(MDB_env* env, dev_t device, ino_t inode, bool fresh, bool read_only,
              std::shared_ptr<const PrivateCopy> copy, const LmdbOptions& options);
  // Lock-free: the copy of the latest committed state, made now when the one we have is older.
  [[nodiscard]] std::expected<std::shared_ptr<const PrivateCopy>, int> current_copy();

  // nullptr only after make_writable() could reopen the file in no way. Lock-free: an
  // MDB_NOLOCK | MDB_RDONLY handle on the file that only reads its meta pages (latest()).
  MDB_env* env_;
  bool read_only_;
  bool lock_free_;
  std::mutex copy_mutex_;
  std::shared_ptr<const PrivateCopy> copy_;  // lock-free: the latest copy made (copy_mutex_)
  unsigned max_readers_;
  unsigned file_mode_;
  pid_t pid_;
  unsigned long generation_;
  dev_t device_;
  ino_t inode_;
  std::atomic<bool> fresh_;
  std::size_t initial_map_size_;
  std::size_t max_map_size_;
  mutable std::shared_mutex resize_;  // shared: a transaction is active; unique: remapping
  WriterThread writer_;               // which thread of ours holds the write transaction
};

}  // namespace lmdb
}  // namespace mtasts::store
