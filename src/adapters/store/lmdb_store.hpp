// PolicyStore over one LMDB file in the layout of lmdb_layout.hpp (design §2.2).
//
// One short transaction per call; no transaction is held across a call (so never across a
// co_await). Opening is lazy: the constructor only remembers the path, the first call opens the
// file (in the process that makes it, e.g. an Exim delivery process after fork), and a process
// forked after that reopens it by itself. Conditions worth a log line (a corrupt file moved
// aside, a malformed record ignored) are kept as notices for the caller to log.
#pragma once

#include <array>
#include <cstddef>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "adapters/store/lmdb_database.hpp"
#include "adapters/store/lmdb_layout.hpp"
#include "adapters/store/policy_store.hpp"

namespace mtasts::store {

class LmdbStore final : public PolicyStore {
 public:
  using Options = LmdbOptions;

  // Lazy: nothing is opened until the first call.
  explicit LmdbStore(std::string path, Options options = {});
  // Opens (creating the file, not its directory) now, so configuration errors surface early.
  [[nodiscard]] static std::expected<std::unique_ptr<LmdbStore>, Error> open(std::string path,
                                                                             Options options = {});

  [[nodiscard]] std::expected<std::optional<CacheEntry>, Error> load(
      std::string_view domain) override;
  [[nodiscard]] std::expected<void, Error> save(std::string_view domain,
                                                const CacheEntry& entry) override;
  [[nodiscard]] std::expected<bool, Error> erase(std::string_view domain) override;
  // Several domains in one write transaction (one commit, one sync): all of them or none. An
  // entry that cannot be stored (bad domain, unencodable) is left out and its error returned in
  // `rejected`, by position; the others are still written.
  struct SaveAllResult {
    std::vector<std::pair<std::size_t, Error>> rejected;
  };
  [[nodiscard]] std::expected<SaveAllResult, Error> save_all(
      const std::vector<std::pair<std::string, CacheEntry>>& entries);
  [[nodiscard]] std::expected<std::vector<std::pair<std::string, CacheEntry>>, Error> list()
      override;

  // Sentences for the admin's log, oldest first; take_notices() also clears them.
  [[nodiscard]] std::vector<std::string> notices() const { return db_.notices(); }
  [[nodiscard]] std::vector<std::string> take_notices() { return db_.take_notices(); }
  // The current map size in octets (it grows on demand up to Options::max_map_size).
  [[nodiscard]] std::expected<std::size_t, Error> map_size() { return db_.map_size(); }
  [[nodiscard]] const std::string& path() const { return db_.path(); }

 private:
  // The last few records decoded, with the raw values they came from. A cache hit in an Exim
  // process asks for the same domain again and again; when the stored octets are unchanged the
  // decoded entry is reused instead of parsing the extras JSON on every call.
  struct Memo {
    lmdb::Snapshot snapshot;  // the committed state `raw` was read from
    std::array<std::optional<std::string>, layout::kFields.size()> raw;
    layout::Decoded decoded;
  };
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view text) const noexcept {
      return std::hash<std::string_view>{}(text);
    }
  };
  [[nodiscard]] layout::Decoded decode_memoized(std::string_view domain,
                                                const layout::RawRecord& raw,
                                                const lmdb::Snapshot& snapshot);
  // The memo of `domain` when nothing was committed to the file since it was read.
  [[nodiscard]] std::optional<layout::Decoded> unchanged_memo(std::string_view domain);

  lmdb::Database db_;
  std::size_t memo_capacity_;
  std::mutex memo_mutex_;
  std::unordered_map<std::string, Memo, StringHash, std::equal_to<>> memo_;  // by domain
};

}  // namespace mtasts::store
