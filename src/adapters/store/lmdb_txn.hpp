// LMDB transactions as RAII types: ReadTxn and WriteTxn are distinct and non-copyable, a write
// aborts unless committed, and a thread holding a write transaction on an environment cannot
// begin a second one there (Environment::begin_write refuses it with EDEADLK: liblmdb's writer
// lock is not recursive, so the second begin would wait for itself forever).
#pragma once

#include <lmdb.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>

namespace mtasts::store::lmdb {

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

class Environment;
struct PrivateCopy;  // lmdb_private_copy.hpp

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

// The thread that holds an environment's write transaction, if one of this process does
// (std::thread::id{} otherwise). Set once the transaction has LMDB's writer lock and cleared
// before it gives the lock back, so only the holder ever finds its own id there.
using WriterThread = std::atomic<std::thread::id>;

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
  // `writer` already holds this thread's id; the transaction clears it when it ends.
  WriteTxn(MDB_txn* txn, MDB_dbi dbi, std::shared_lock<std::shared_mutex> lock,
           WriterThread* writer) noexcept;
  // Gives the transaction up to its caller, who ends it (abort or commit).
  [[nodiscard]] MDB_txn* release() noexcept;
  MDB_txn* txn_;
  MDB_dbi dbi_;
  WriterThread* writer_;                             // the environment's; outlives resize_lock_
  std::shared_lock<std::shared_mutex> resize_lock_;  // released after the txn ends
};

}  // namespace mtasts::store::lmdb
