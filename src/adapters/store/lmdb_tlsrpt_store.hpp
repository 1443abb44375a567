// The TLSRPT store in an LMDB file of its own (MDB_NOSUBDIR: one data file, "<path>-lock" beside
// it), apart from the policy cache so that Exim's lookups and the cache's writer never wait for
// it. Three named LMDB databases ("meta" with a format version, "counts", "deliveries"), keyed so
// that a day, and a report domain within it, is a key range (lmdb_tlsrpt_layout.hpp has the
// octets). Counts saturate instead of overflowing.
//
// Readers (days, domains, tallies, delivery) run on any thread, concurrently with a writer
// (MDB_NOTLS read transactions). One open store per file per process: LMDB's locks break when a
// process opens one file twice.
#pragma once

#include <cstddef>
#include <expected>
#include <memory>
#include <string>

#include "adapters/store/tlsrpt_store.hpp"
#include "core/error.hpp"

namespace mtasts::store {

struct LmdbTlsrptStoreOptions {
  // The file's size bound: add() fails with a "full" store error beyond it (prune() old days).
  std::size_t max_bytes = std::size_t{64} << 20;
  // Mode of a created data file and of its "-lock" companion (before the umask).
  unsigned file_mode = 0640;
};

// Opens the store at `path`, creating the file when missing (its directory must exist). A file
// that is not an LMDB file, another LMDB file (such as the policy cache) or a store of an unknown
// format version is an Error{store} naming the file and what to do; it is never replaced.
[[nodiscard]] std::expected<std::unique_ptr<TlsrptStore>, Error> open_lmdb_tlsrpt_store(
    std::string path, LmdbTlsrptStoreOptions options = {});

}  // namespace mtasts::store
