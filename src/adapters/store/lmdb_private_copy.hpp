// Reading a cache file without a reader slot (this user cannot write its "-lock" file): a
// private, sealed copy of one committed state of the file, made again when the file has a newer
// transaction. Reading the shared file itself with MDB_NOLOCK would not be safe.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <expected>
#include <memory>

namespace mtasts::store::lmdb {

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

// Copies the latest committed state of the file that `live` (an MDB_NOLOCK | MDB_RDONLY handle)
// has open, and checks the copy holds that state whole (see lmdb_private_copy.cpp for why that
// suffices). EFBIG beyond kMaxPrivateCopyBytes; EBUSY when commits kept landing during every
// attempt; EIO when the file kept being shorter than its meta page said.
[[nodiscard]] std::expected<std::shared_ptr<const PrivateCopy>, int> make_private_copy(
    MDB_env* live);

}  // namespace mtasts::store::lmdb
