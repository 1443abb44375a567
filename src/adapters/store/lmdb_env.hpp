// RAII over liblmdb: one environment per file per process, read and write transactions as
// distinct non-copyable types, and a Database that keeps a cache file usable through LMDB's
// operational errors (map full, map resized, reader table full, corrupt file, fork).
//
// Nothing here logs: conditions an admin should hear about (a corrupt file moved aside, a file
// replaced on disk, a lock file this user cannot write) become notices the caller logs
// (Database::take_notices or LmdbOptions::on_notice).
#pragma once

#include <lmdb.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.hpp"

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

// A non-owning reference to a callable, for callbacks that never outlive the call.
template <class Signature>
class FunctionRef;

template <class R, class... Args>
class FunctionRef<R(Args...)> {
 public:
  template <class F>
  requires(!std::is_same_v<std::remove_cvref_t<F>, FunctionRef> &&
           std::is_invocable_r_v<R, F&, Args...>) FunctionRef(F&& f)
  noexcept  // NOLINT(google-explicit-constructor): a reference type
      : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
        call_([](void* object, Args... args) -> R {
          return std::invoke(*static_cast<std::remove_reference_t<F>*>(object),
                             std::forward<Args>(args)...);
        }) {}

  R operator()(Args... args) const { return call_(object_, std::forward<Args>(args)...); }

 private:
  void* object_;
  R (*call_)(void*, Args...);
};

// Returned by a write callback to end the transaction without committing and without error.
inline constexpr int kRollback = 1 << 24;

// "MDB_MAP_FULL: Environment mapsize limit reached" style text for an LMDB or errno code.
[[nodiscard]] std::string describe(int rc);

// True for codes that mean the file is not (or no longer) a sound LMDB file.
[[nodiscard]] bool is_corruption(int rc);

// Increases in every child after fork(); an environment opened under another generation belongs
// to an ancestor process and must not be used.
[[nodiscard]] unsigned long fork_generation();

// The size liblmdb gives a new "-lock" file for this many reader slots (mdb_env_setup_locks:
// sizeof(MDB_txninfo) + (max_readers - 1) * sizeof(MDB_reader)); 0 means LMDB's default, 126.
[[nodiscard]] std::size_t lock_file_size(unsigned max_readers);

// A reader whose user cannot write "<path>-lock" gets no reader slot, and LMDB's reads without
// one (MDB_NOLOCK) are only safe while no writer runs. Such a reader reads a private, sealed copy
// of the file instead (Environment::open; make_private_copy in lmdb_env.cpp), checked after
// copying to hold one committed state whole, and made again when the file has a newer
// transaction. Files larger than this are refused.
inline constexpr std::size_t kMaxPrivateCopyBytes = std::size_t{64} << 20;

class Environment;
struct PrivateCopy;  // lmdb_env.cpp

// Which committed state of which file a read saw: equal stamps, equal contents. Lets a caller
// keep what it decoded from a snapshot until anything is committed to the file.
struct Snapshot {
  dev_t device = 0;
  ino_t inode = 0;
  std::uint64_t txn_id = 0;
  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

// A read-only transaction on the unnamed database. Values it returns point into the map and stay
// valid until it ends. Ends (mdb_txn_abort) in its destructor.
class ReadTxn {
 public:
  ReadTxn(const ReadTxn&) = delete;
  ReadTxn& operator=(const ReadTxn&) = delete;
  ReadTxn(ReadTxn&& other) noexcept;
  ReadTxn& operator=(ReadTxn&&) = delete;
  ~ReadTxn();

  // The value, std::nullopt when the key is absent, or an LMDB error code.
  [[nodiscard]] std::expected<std::optional<std::string_view>, int> get(std::string_view key) const;
  // Calls fn(key, value) for every record in key order until it returns false.
  [[nodiscard]] std::expected<void, int> for_each(
      FunctionRef<bool(std::string_view, std::string_view)> fn) const;
  // The committed state this transaction reads.
  [[nodiscard]] Snapshot snapshot() const;

 private:
  friend class Environment;
  ReadTxn(MDB_txn* txn, MDB_dbi dbi, std::shared_lock<std::shared_mutex> lock, dev_t device,
          ino_t inode, std::shared_ptr<const PrivateCopy> copy) noexcept;
  MDB_txn* txn_;
  MDB_dbi dbi_;
  dev_t device_;
  ino_t inode_;
  std::shared_lock<std::shared_mutex> resize_lock_;  // released after the txn ends
  std::shared_ptr<const PrivateCopy> copy_;          // what txn_ reads, when it reads a copy
};

// A write transaction on the unnamed database. Aborts in its destructor unless committed.
class WriteTxn {
 public:
  WriteTxn(const WriteTxn&) = delete;
  WriteTxn& operator=(const WriteTxn&) = delete;
  WriteTxn(WriteTxn&& other) noexcept;
  WriteTxn& operator=(WriteTxn&&) = delete;
  ~WriteTxn();

  [[nodiscard]] std::expected<std::optional<std::string_view>, int> get(std::string_view key) const;
  [[nodiscard]] std::expected<void, int> put(std::string_view key, std::string_view value);
  // true when the key existed.
  [[nodiscard]] std::expected<bool, int> del(std::string_view key);
  // Durable when it succeeds (default sync flags). The transaction is over either way.
  [[nodiscard]] std::expected<void, int> commit();

 private:
  friend class Environment;
  WriteTxn(MDB_txn* txn, MDB_dbi dbi, std::shared_lock<std::shared_mutex> lock) noexcept;
  MDB_txn* txn_;
  MDB_dbi dbi_;
  std::shared_lock<std::shared_mutex> resize_lock_;
};

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

  [[nodiscard]] std::expected<ReadTxn, int> begin_read();
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
};

// The cache file at a path, kept usable: opened lazily, reopened in a forked child, a corrupt
// file moved aside to "<path>.corrupt-<unix seconds>" and replaced by an empty one, the map grown
// on demand. Each read()/write() is one short transaction; nothing is held between calls.
// Thread-safe; callbacks must not start another transaction on the same thread.
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

}  // namespace lmdb
}  // namespace mtasts::store
