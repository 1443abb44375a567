// What lmdb_env.cpp shares with lmdb_private_copy.cpp: the flags every handle on a cache file is
// opened with, and the function that opens one. Not for use outside src/adapters/store/lmdb_*.
#pragma once

#include <lmdb.h>
#include <sys/stat.h>

#include <cstddef>
#include <expected>
#include <memory>
#include <string>

namespace mtasts::store::lmdb {

struct PrivateCopy;

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
// With MDB_NOTLS a thread holding a write transaction may also begin read transactions (they see
// the last committed state, not its uncommitted writes); a second write transaction would wait
// for the writer mutex it holds itself, so Environment::begin_write refuses it.
//
// No MDB_NOSYNC / MDB_NOMETASYNC / MDB_WRITEMAP: a commit is durable when it returns.
inline constexpr unsigned kEnvFlags = MDB_NOSUBDIR | MDB_NOTLS;

struct OpenedHandle {
  MDB_env* env;
  struct stat file;
  bool fresh;  // no transaction was ever committed: the file was just created
  std::shared_ptr<const PrivateCopy> copy;  // lock-free: env only reads the meta pages
};

// mdb_env_create + mdb_env_open with these flags, and the checks every open needs (lmdb_env.cpp).
[[nodiscard]] std::expected<OpenedHandle, int> open_env(const std::string& path, unsigned flags,
                                                        unsigned max_readers, unsigned file_mode,
                                                        std::size_t initial_map_size);

}  // namespace mtasts::store::lmdb
