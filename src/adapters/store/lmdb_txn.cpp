#include "adapters/store/lmdb_txn.hpp"

namespace mtasts::store::lmdb {

namespace {

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

}  // namespace

// ---------------------------------------------------------------------------------------------
// ReadTxn

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

// ---------------------------------------------------------------------------------------------
// WriteTxn

WriteTxn::WriteTxn(MDB_txn* txn, MDB_dbi dbi, std::shared_lock<std::shared_mutex> lock,
                   WriterThread* writer) noexcept
    : txn_(txn), dbi_(dbi), writer_(writer), resize_lock_(std::move(lock)) {}

WriteTxn::WriteTxn(WriteTxn&& other) noexcept
    : txn_(std::exchange(other.txn_, nullptr)),
      dbi_(other.dbi_),
      writer_(other.writer_),
      resize_lock_(std::move(other.resize_lock_)) {}

MDB_txn* WriteTxn::release() noexcept {
  // Cleared while this thread still holds LMDB's writer lock: no other thread of ours can have
  // stored its id meanwhile, and the next one to get the lock stores its own.
  if (txn_ != nullptr) writer_->store(std::thread::id{});
  return std::exchange(txn_, nullptr);
}

WriteTxn::~WriteTxn() {
  // Not committed: nothing happened.
  if (MDB_txn* txn = release(); txn != nullptr) ::mdb_txn_abort(txn);
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
  const int rc = ::mdb_txn_commit(release());
  if (rc != MDB_SUCCESS) return std::unexpected(rc);
  return {};
}

}  // namespace mtasts::store::lmdb
