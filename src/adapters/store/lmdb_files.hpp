// The files of an LMDB cache as the file system sees them, before and beside liblmdb: the size
// liblmdb gives "<path>-lock" (a copy of its private lock-file layout), blocks allocated before
// liblmdb maps or writes a file (so a full file system is ENOSPC, never SIGBUS or a half-written
// file), and whether this user may write the lock file.
#pragma once

#include <cstddef>
#include <string>

namespace mtasts::store::lmdb {

// The directory holding `path` ("." for a bare name).
[[nodiscard]] std::string parent_directory(const std::string& path);

// "<path>-lock": MDB_NOSUBDIR's lock file beside the data file.
[[nodiscard]] std::string lock_path(const std::string& path);

// The size liblmdb gives a new "-lock" file for this many reader slots (mdb_env_setup_locks:
// sizeof(MDB_txninfo) + (max_readers - 1) * sizeof(MDB_reader)); 0 means LMDB's default, 126.
[[nodiscard]] std::size_t lock_file_size(unsigned max_readers);

// Gives "<path>-lock" real blocks before mdb_env_open maps it. Returns 0, or ENOSPC / EDQUOT when
// the file system has no room for them.
[[nodiscard]] int prepare_lock_file(const std::string& path, unsigned max_readers,
                                    unsigned file_mode);

// Gives a new (missing or empty) data file blocks for its two meta pages, its size left 0.
// Returns 0, or ENOSPC / EDQUOT with the file left empty.
[[nodiscard]] int prepare_data_file(const std::string& path, unsigned file_mode);

// ENOSPC instead of `rc` when rc is EIO and the file system holding `path` has no block left
// (LMDB reports a short write as EIO); else rc.
[[nodiscard]] int disk_full_or(int rc, const std::string& path);

// True when this user can neither read and write "<path>-lock" nor create it.
[[nodiscard]] bool lock_file_unwritable(const std::string& path);

}  // namespace mtasts::store::lmdb
