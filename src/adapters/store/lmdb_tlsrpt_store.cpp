#include "adapters/store/lmdb_tlsrpt_store.hpp"

#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <utility>

#include <fmt/format.h>

#include "adapters/store/lmdb_env.hpp"
#include "adapters/store/lmdb_files.hpp"
#include "adapters/store/lmdb_tlsrpt_layout.hpp"

namespace mtasts::store {
namespace {

using tlsrpt::Day;
using tlsrpt::FailureKey;
using tlsrpt::PolicyKey;
using tlsrpt::PolicyTally;
using tlsrpt::Session;
using namespace tlsrpt_layout;  // NOLINT(google-build-using-namespace): this file's own format

// Below this LMDB cannot even hold the empty databases.
constexpr std::size_t kMinBytes = std::size_t{64} << 10;

MDB_val to_val(std::string_view bytes) {
  return MDB_val{bytes.size(), const_cast<char*>(bytes.data())};
}

std::string_view from_val(const MDB_val& val) {
  return {static_cast<const char*>(val.mv_data), val.mv_size};
}

// ---------------------------------------------------------------------------------------------
// Transactions. lmdb_txn.hpp's ReadTxn/WriteTxn work on the unnamed database of an Environment
// (the cache's); these are the small equivalents for named databases.

// Aborts unless committed; holds the store's map lock (shared) until the transaction has ended.
class Transaction {
 public:
  Transaction(MDB_txn* txn, std::shared_lock<std::shared_mutex> lock) noexcept
      : txn_(txn), map_lock_(std::move(lock)) {}
  Transaction(Transaction&& other) noexcept
      : txn_(std::exchange(other.txn_, nullptr)), map_lock_(std::move(other.map_lock_)) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction() {
    if (txn_ != nullptr) ::mdb_txn_abort(txn_);
  }

  [[nodiscard]] MDB_txn* get() const { return txn_; }
  // Over either way (mdb_txn_commit frees it); durable when it returns 0.
  [[nodiscard]] int commit() { return ::mdb_txn_commit(std::exchange(txn_, nullptr)); }

 private:
  MDB_txn* txn_;
  std::shared_lock<std::shared_mutex> map_lock_;
};

// Closed before its transaction ends (a write transaction's commit frees its cursors).
class Cursor {
 public:
  Cursor(MDB_txn* txn, MDB_dbi dbi) { rc_ = ::mdb_cursor_open(txn, dbi, &cursor_); }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  ~Cursor() {
    if (cursor_ != nullptr) ::mdb_cursor_close(cursor_);
  }
  // The mdb_cursor_open result.
  [[nodiscard]] int status() const { return rc_; }
  [[nodiscard]] int get(MDB_val& key, MDB_val& value, MDB_cursor_op op) {
    return ::mdb_cursor_get(cursor_, &key, &value, op);
  }
  // The first record at or after `key`.
  [[nodiscard]] int seek(std::string_view key, MDB_val& found, MDB_val& value) {
    found = to_val(key);
    return ::mdb_cursor_get(cursor_, &found, &value, MDB_SET_RANGE);
  }
  [[nodiscard]] int del() { return ::mdb_cursor_del(cursor_, 0); }

 private:
  MDB_cursor* cursor_ = nullptr;
  int rc_ = 0;
};

// The files this process has open as a TLSRPT store: LMDB's fcntl locks break when one process
// opens a file twice (closing either handle drops the other's locks).
struct OpenFiles {
  std::mutex mutex;
  std::set<std::pair<dev_t, ino_t>> files;
};

OpenFiles& open_files() {
  static OpenFiles instance;
  return instance;
}

constexpr std::string_view kMoveAside =
    "move it aside (a new, empty store is created in its place; its counts are lost)";

// ---------------------------------------------------------------------------------------------

class LmdbTlsrptStore final : public TlsrptStore {
 public:
  LmdbTlsrptStore(std::string path, std::size_t max_bytes, MDB_env* env, dev_t device, ino_t inode)
      : path_(std::move(path)),
        max_bytes_(max_bytes),
        env_(env),
        device_(device),
        inode_(inode),
        max_key_size_(static_cast<std::size_t>(::mdb_env_get_maxkeysize(env))) {}

  LmdbTlsrptStore(const LmdbTlsrptStore&) = delete;
  LmdbTlsrptStore& operator=(const LmdbTlsrptStore&) = delete;

  ~LmdbTlsrptStore() override {
    OpenFiles& registry = open_files();
    std::lock_guard lock(registry.mutex);
    ::mdb_env_close(env_);
    registry.files.erase({device_, inode_});
  }

  // Checks (or, in a new file, writes) the format version and opens the named databases.
  std::expected<void, Error> open_databases() {
    auto txn = begin(true, "opening the store");
    if (!txn) return std::unexpected(txn.error());
    int rc = ::mdb_dbi_open(txn->get(), "meta", 0, &meta_);
    if (rc == MDB_NOTFOUND) {
      // A new file, or an LMDB file of someone else's (the policy cache keeps its records in the
      // unnamed database).
      MDB_dbi main = 0;
      MDB_stat stat{};
      rc = ::mdb_dbi_open(txn->get(), nullptr, 0, &main);
      if (rc == MDB_SUCCESS) rc = ::mdb_stat(txn->get(), main, &stat);
      if (rc != MDB_SUCCESS) return std::unexpected(failure("opening the store", rc));
      if (stat.ms_entries != 0) return std::unexpected(not_a_store("no \"meta\" database"));
      rc = ::mdb_dbi_open(txn->get(), "meta", MDB_CREATE, &meta_);
      if (rc == MDB_SUCCESS) rc = put(*txn, meta_, "format", kFormatVersion);
      if (rc == MDB_SUCCESS) rc = put(*txn, meta_, "kind", kKind);
    } else if (rc == MDB_INCOMPATIBLE) {
      return std::unexpected(not_a_store("\"meta\" is a record, not a database"));
    } else if (rc == MDB_SUCCESS) {
      auto kind = get(*txn, meta_, "kind");
      auto format = get(*txn, meta_, "format");
      if (!kind || !format) {
        return std::unexpected(failure("opening the store", kind ? format.error() : kind.error()));
      }
      if (*kind != kKind) {
        return std::unexpected(not_a_store(fmt::format("its kind is not \"{}\"", kKind)));
      }
      if (*format != kFormatVersion) {
        return std::unexpected(Error{
            ErrorCategory::store,
            fmt::format("{}: TLSRPT store format version \"{}\", this mtasts reads version {} "
                        "(written by another mtasts version?); run that version to send its "
                        "reports, or {}",
                        path_, printable(format->value_or("")), kFormatVersion, kMoveAside)});
      }
    }
    if (rc == MDB_SUCCESS) rc = ::mdb_dbi_open(txn->get(), "counts", MDB_CREATE, &counts_);
    if (rc == MDB_SUCCESS) rc = ::mdb_dbi_open(txn->get(), "deliveries", MDB_CREATE, &deliveries_);
    if (rc == MDB_INCOMPATIBLE) return std::unexpected(not_a_store("a database has other flags"));
    if (rc != MDB_SUCCESS) return std::unexpected(failure("opening the store", rc));
    return commit(*txn, "opening the store");
  }

  std::expected<void, Error> add(Day day, std::span<const Session> sessions) override {
    auto day_prefix = day_key(day);
    if (!day_prefix) return std::unexpected(day_prefix.error());
    // Summed per row first: one read-modify-write per row, however often it repeats.
    struct Increment {
      bool failure_row = false;
      std::uint64_t first = 0;   // successful, or a failure row's count
      std::uint64_t second = 0;  // failed
      std::string encoded;       // the policy or failure
    };
    std::map<std::string, Increment> rows;
    for (const Session& session : sessions) {
      auto prefix = domain_prefix(*day_prefix, session.report_domain);
      if (!prefix) return std::unexpected(prefix.error());
      for (const tlsrpt::PolicyOutcome& outcome : session.policies) {
        std::string policy = encode_policy(outcome.policy);
        auto policy_digest = sha256(policy);
        if (!policy_digest) return std::unexpected(policy_digest.error());
        std::string key = *prefix + *policy_digest;
        const std::size_t policy_prefix = key.size();
        key.push_back(kPolicyRow);
        Increment& row = rows[key];
        if (row.encoded.empty()) row.encoded = std::move(policy);
        if (outcome.failed) {
          row.second = saturating_add(row.second, 1);
        } else {
          row.first = saturating_add(row.first, 1);
        }
        for (const FailureKey& failure : outcome.failures) {
          std::string encoded = encode_failure(failure);
          auto failure_digest = sha256(encoded);
          if (!failure_digest) return std::unexpected(failure_digest.error());
          key.resize(policy_prefix);
          key.push_back(kFailureRow);
          key += *failure_digest;
          Increment& failure_row = rows[key];
          failure_row.failure_row = true;
          if (failure_row.encoded.empty()) failure_row.encoded = std::move(encoded);
          failure_row.first = saturating_add(failure_row.first, 1);
        }
      }
    }
    if (rows.empty()) return {};

    const std::string doing = fmt::format("adding {} sessions to {}", sessions.size(), *day_prefix);
    auto txn = begin(true, doing);
    if (!txn) return std::unexpected(txn.error());
    for (const auto& [key, increment] : rows) {
      MDB_val stored_key = to_val(key);
      MDB_val stored{};
      std::uint64_t first = increment.first;
      std::uint64_t second = increment.second;
      const int found = ::mdb_get(txn->get(), counts_, &stored_key, &stored);
      if (found == MDB_SUCCESS) {
        const auto counts = decode_counts(from_val(stored), increment.failure_row);
        if (!counts) return std::unexpected(damaged_row("counts", key, "is too short"));
        if (counts->encoded != increment.encoded) {
          return std::unexpected(
              damaged_row("counts", key, "holds another policy or failure than its key names"));
        }
        first = saturating_add(first, counts->first);
        second = saturating_add(second, counts->second);
      } else if (found != MDB_NOTFOUND) {
        return std::unexpected(failure(doing, found));
      }
      const std::string value =
          encode_counts(increment.failure_row, first, second, increment.encoded);
      MDB_val new_value = to_val(value);
      if (const int rc = ::mdb_put(txn->get(), counts_, &stored_key, &new_value, 0);
          rc != MDB_SUCCESS) {
        return std::unexpected(failure(doing, rc));  // the transaction aborts: nothing was added
      }
    }
    return commit(*txn, doing);
  }

  std::expected<std::vector<Day>, Error> days() override {
    auto txn = begin(false, "listing days");
    if (!txn) return std::unexpected(txn.error());
    Cursor cursor(txn->get(), counts_);
    if (cursor.status() != MDB_SUCCESS) {
      return std::unexpected(failure("listing days", cursor.status()));
    }
    std::vector<Day> days;
    MDB_val key{};
    MDB_val value{};
    int rc = cursor.get(key, value, MDB_FIRST);
    while (rc == MDB_SUCCESS) {
      const std::string_view stored = from_val(key);
      const auto day = stored.size() > kDayLength ? tlsrpt::parse_day(stored.substr(0, kDayLength))
                                                  : std::nullopt;
      if (!day) return std::unexpected(damaged_row("counts", stored, "does not start with a day"));
      days.push_back(*day);
      const auto next = successor(stored.substr(0, kDayLength));
      if (!next) break;
      rc = cursor.seek(*next, key, value);
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) {
      return std::unexpected(failure("listing days", rc));
    }
    return days;
  }

  std::expected<std::vector<std::string>, Error> domains(Day day) override {
    auto prefix = day_key(day);
    if (!prefix) return std::unexpected(prefix.error());
    const std::string doing = fmt::format("listing the report domains of {}", *prefix);
    auto txn = begin(false, doing);
    if (!txn) return std::unexpected(txn.error());
    Cursor cursor(txn->get(), counts_);
    if (cursor.status() != MDB_SUCCESS) return std::unexpected(failure(doing, cursor.status()));
    std::vector<std::string> domains;
    MDB_val key{};
    MDB_val value{};
    int rc = cursor.seek(*prefix, key, value);
    while (rc == MDB_SUCCESS && from_val(key).starts_with(*prefix)) {
      const std::string_view stored = from_val(key);
      auto domain = read_escaped(stored, prefix->size());
      if (!domain) return std::unexpected(damaged_row("counts", stored, "has no report domain"));
      domains.push_back(std::move(domain->first));
      const auto next = successor(stored.substr(0, domain->second));
      if (!next) break;
      rc = cursor.seek(*next, key, value);
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return std::unexpected(failure(doing, rc));
    return domains;
  }

  std::expected<std::vector<PolicyTally>, Error> tallies(Day day,
                                                         std::string_view report_domain) override {
    auto day_prefix = day_key(day);
    if (!day_prefix) return std::unexpected(day_prefix.error());
    std::string prefix = *day_prefix;
    append_escaped(prefix, report_domain);
    std::vector<PolicyTally> tallies;
    if (prefix.size() > max_key_size_) return tallies;  // add() refuses such a domain
    const std::string doing =
        fmt::format("reading the counts of {} on {}", printable(report_domain), *day_prefix);
    auto txn = begin(false, doing);
    if (!txn) return std::unexpected(txn.error());
    Cursor cursor(txn->get(), counts_);
    if (cursor.status() != MDB_SUCCESS) return std::unexpected(failure(doing, cursor.status()));
    std::string_view current_policy;  // the digest of tallies.back(); points into the map
    MDB_val key{};
    MDB_val value{};
    int rc = cursor.seek(prefix, key, value);
    for (; rc == MDB_SUCCESS && from_val(key).starts_with(prefix);
         rc = cursor.get(key, value, MDB_NEXT)) {
      const std::string_view stored = from_val(key);
      const std::string_view row = stored.substr(prefix.size());
      if (row.size() == kDigestLength + 1 && row.back() == kPolicyRow) {
        const auto counts = decode_counts(from_val(value), false);
        auto policy = counts ? decode_policy(counts->encoded) : std::nullopt;
        if (!policy) return std::unexpected(damaged_row("counts", stored, "holds no policy"));
        tallies.push_back(PolicyTally{std::move(*policy), counts->first, counts->second, {}});
        current_policy = row.substr(0, kDigestLength);
      } else if (row.size() == 2 * kDigestLength + 1 && row[kDigestLength] == kFailureRow) {
        if (tallies.empty() || row.substr(0, kDigestLength) != current_policy) {
          return std::unexpected(damaged_row("counts", stored, "has no policy row"));
        }
        const auto counts = decode_counts(from_val(value), true);
        auto failure = counts ? decode_failure(counts->encoded) : std::nullopt;
        if (!failure) return std::unexpected(damaged_row("counts", stored, "holds no failure"));
        std::uint64_t& count = tallies.back().failures[std::move(*failure)];
        count = saturating_add(count, counts->first);
      } else {
        return std::unexpected(damaged_row("counts", stored, "is not a policy or failure row"));
      }
    }
    if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return std::unexpected(failure(doing, rc));
    std::ranges::sort(tallies, {}, &PolicyTally::policy);
    return tallies;
  }

  std::expected<std::optional<ReportDelivery>, Error> delivery(Day day,
                                                               std::string_view report_domain,
                                                               std::string_view rua) override {
    auto key = delivery_key(day, report_domain, rua);
    if (!key) return std::unexpected(key.error());
    const std::string doing = fmt::format("reading the delivery state of {} for {}", printable(rua),
                                          printable(report_domain));
    auto txn = begin(false, doing);
    if (!txn) return std::unexpected(txn.error());
    auto value = get(*txn, deliveries_, *key);
    if (!value) return std::unexpected(failure(doing, value.error()));
    if (!*value) return std::optional<ReportDelivery>{};
    auto stored = decode_delivery(**value);
    if (!stored) return std::unexpected(damaged_row("deliveries", *key, "does not parse"));
    if (stored->rua != rua) {
      return std::unexpected(damaged_row("deliveries", *key, "holds another rua than its key"));
    }
    return std::optional<ReportDelivery>{std::move(stored->state)};
  }

  std::expected<void, Error> set_delivery(Day day, std::string_view report_domain,
                                          std::string_view rua,
                                          const ReportDelivery& state) override {
    auto key = delivery_key(day, report_domain, rua);
    if (!key) return std::unexpected(key.error());
    const std::string doing = fmt::format("recording the delivery state of {} for {}",
                                          printable(rua), printable(report_domain));
    auto txn = begin(true, doing);
    if (!txn) return std::unexpected(txn.error());
    if (const int rc = put(*txn, deliveries_, *key, encode_delivery(state, rua));
        rc != MDB_SUCCESS) {
      return std::unexpected(failure(doing, rc));
    }
    return commit(*txn, doing);
  }

  std::expected<std::size_t, Error> prune(Day oldest_kept) override {
    auto bound = day_key(oldest_kept);
    if (!bound) return std::unexpected(bound.error());
    const std::string doing = fmt::format("removing the days before {}", *bound);
    auto txn = begin(true, doing);
    if (!txn) return std::unexpected(txn.error());
    std::set<std::string> removed;
    for (const MDB_dbi dbi : {counts_, deliveries_}) {
      Cursor cursor(txn->get(), dbi);
      if (cursor.status() != MDB_SUCCESS) return std::unexpected(failure(doing, cursor.status()));
      MDB_val key{};
      MDB_val value{};
      int rc = MDB_SUCCESS;
      // Always the first record: keys sort by day, so the old days are a range at the start.
      while ((rc = cursor.get(key, value, MDB_FIRST)) == MDB_SUCCESS && from_val(key) < *bound) {
        removed.emplace(from_val(key).substr(0, kDayLength));
        if (rc = cursor.del(); rc != MDB_SUCCESS) break;
      }
      if (rc != MDB_SUCCESS && rc != MDB_NOTFOUND) return std::unexpected(failure(doing, rc));
    }
    if (auto committed = commit(*txn, doing); !committed) {
      return std::unexpected(committed.error());
    }
    if (!removed.empty()) note_prune(*bound);
    return removed.size();
  }

  const std::string& path() const override { return path_; }

 private:
  // Records the prune in "meta", in a transaction of its own. LMDB reuses the pages a commit
  // freed only from the second transaction after it on (mdb_page_alloc keeps them while a reader
  // of the state before could exist), so without this the next add() of a full store would fail
  // again. The prune stands either way; a failure here only delays the room it made.
  void note_prune(const std::string& bound) {
    auto txn = begin(true, "recording a prune");
    if (!txn || put(*txn, meta_, "pruned_before", bound) != MDB_SUCCESS) return;
    (void)txn->commit();
  }

  // Begins a transaction; adopts a map another process grew (MDB_MAP_RESIZED) and clears
  // readers of dead processes (MDB_READERS_FULL) on the way.
  std::expected<Transaction, Error> begin(bool write, std::string_view doing) {
    for (int attempt = 0;; ++attempt) {
      std::shared_lock lock(map_lock_);
      MDB_txn* txn = nullptr;
      const int rc = ::mdb_txn_begin(env_, nullptr, write ? 0U : MDB_RDONLY, &txn);
      if (rc == MDB_SUCCESS) return Transaction(txn, std::move(lock));
      lock.unlock();
      if (attempt < 3 && rc == MDB_MAP_RESIZED) {
        std::unique_lock resize(map_lock_);  // no transaction of ours may be active
        if (::mdb_env_set_mapsize(env_, 0) == MDB_SUCCESS) continue;
      } else if (attempt < 3 && rc == MDB_READERS_FULL) {
        int dead = 0;
        if (::mdb_reader_check(env_, &dead) == MDB_SUCCESS && dead > 0) continue;
      }
      return std::unexpected(failure(doing, rc));
    }
  }

  std::expected<void, Error> commit(Transaction& txn, std::string_view doing) {
    if (const int rc = txn.commit(); rc != MDB_SUCCESS) return std::unexpected(failure(doing, rc));
    return {};
  }

  static std::expected<std::optional<std::string_view>, int> get(const Transaction& txn,
                                                                 MDB_dbi dbi,
                                                                 std::string_view key) {
    MDB_val stored_key = to_val(key);
    MDB_val value{};
    const int rc = ::mdb_get(txn.get(), dbi, &stored_key, &value);
    if (rc == MDB_NOTFOUND) return std::optional<std::string_view>{};
    if (rc != MDB_SUCCESS) return std::unexpected(rc);
    return std::optional<std::string_view>{from_val(value)};
  }

  static int put(Transaction& txn, MDB_dbi dbi, std::string_view key, std::string_view value) {
    MDB_val stored_key = to_val(key);
    MDB_val stored_value = to_val(value);
    return ::mdb_put(txn.get(), dbi, &stored_key, &stored_value, 0);
  }

  // day | esc(report domain), refused when too long for the keys that start with it.
  std::expected<std::string, Error> domain_prefix(std::string_view day, std::string_view domain) {
    std::string prefix(day);
    append_escaped(prefix, domain);
    if (prefix.size() + 2 * kDigestLength + 2 > max_key_size_) {
      return std::unexpected(Error{
          ErrorCategory::store,
          fmt::format("{}: report domain \"{}\" ({} octets) is too long for a TLSRPT store key",
                      path_, printable(domain), domain.size())});
    }
    return prefix;
  }

  std::expected<std::string, Error> delivery_key(Day day, std::string_view report_domain,
                                                 std::string_view rua) {
    auto day_prefix = day_key(day);
    if (!day_prefix) return std::unexpected(day_prefix.error());
    auto key = domain_prefix(*day_prefix, report_domain);
    if (!key) return std::unexpected(key.error());
    auto rua_digest = sha256(rua);
    if (!rua_digest) return std::unexpected(rua_digest.error());
    return *key + *rua_digest;
  }

  Error failure(std::string_view doing, int rc) const {
    rc = lmdb::disk_full_or(rc, path_);
    if (rc == MDB_MAP_FULL) {
      return Error{ErrorCategory::store,
                   fmt::format("{}: full (max_bytes {}): {} stored nothing; prune old days or "
                               "raise the store's size bound",
                               path_, max_bytes_, doing)};
    }
    if (rc == ENOSPC || rc == EDQUOT) {
      return Error{ErrorCategory::store, fmt::format("{}: {}: the file system is full ({})", path_,
                                                     doing, lmdb::describe(rc))};
    }
    if (lmdb::is_corruption(rc)) {
      return Error{ErrorCategory::store, fmt::format("{}: {}: the file is damaged ({}); {}", path_,
                                                     doing, lmdb::describe(rc), kMoveAside)};
    }
    return Error{ErrorCategory::store, fmt::format("{}: {}: {}", path_, doing, lmdb::describe(rc))};
  }

  Error damaged_row(std::string_view database, std::string_view key,
                    std::string_view problem) const {
    return Error{ErrorCategory::store,
                 fmt::format("{}: the {} row \"{}\" {}: the file is damaged; {}", path_, database,
                             printable(key), problem, kMoveAside)};
  }

  Error not_a_store(std::string_view why) const {
    return Error{ErrorCategory::store,
                 fmt::format("{}: an LMDB file that is not a TLSRPT store ({}; is it the policy "
                             "cache?); configure another file for the TLSRPT store",
                             path_, why)};
  }

  std::string path_;
  std::size_t max_bytes_;
  MDB_env* env_;
  dev_t device_;
  ino_t inode_;
  std::size_t max_key_size_;
  MDB_dbi meta_ = 0;
  MDB_dbi counts_ = 0;
  MDB_dbi deliveries_ = 0;
  // Shared by every transaction; unique while adopting a map size (no transaction may be active).
  std::shared_mutex map_lock_;
};

Error open_error(const std::string& path, int rc) {
  std::string what;
  if (rc == MDB_INVALID) {
    what = fmt::format(
        "not an LMDB file ({}); it was not written by mtasts as a TLSRPT store — "
        "move it aside or configure another file for the TLSRPT store",
        lmdb::describe(rc));
  } else if (rc == MDB_VERSION_MISMATCH) {
    what =
        fmt::format("written by an incompatible liblmdb ({}); {}", lmdb::describe(rc), kMoveAside);
  } else if (lmdb::is_corruption(rc)) {
    what = fmt::format("the file is damaged ({}); {}", lmdb::describe(rc), kMoveAside);
  } else if (rc == ENOENT) {
    what = fmt::format("its directory {} does not exist; create it", lmdb::parent_directory(path));
  } else if (rc == EACCES || rc == EPERM || rc == EROFS) {
    what = fmt::format(
        "cannot open it for writing ({}); check the owner and mode of the file, of "
        "{} and of its directory",
        lmdb::describe(rc), lmdb::lock_path(path));
  } else if (rc == ENOSPC || rc == EDQUOT) {
    what = fmt::format("no room on the file system for it ({})", lmdb::describe(rc));
  } else {
    what = fmt::format("cannot open it ({})", lmdb::describe(rc));
  }
  return Error{ErrorCategory::store, fmt::format("{}: {}", path, what)};
}

// mdb_env_open with the store's flags; checks that the file holds the pages its meta page
// claims (a truncated file would raise SIGBUS when they are touched).
std::expected<struct stat, int> open_env(MDB_env* env, const std::string& path,
                                         std::size_t map_size, unsigned file_mode) {
  if (const int rc = ::mdb_env_set_maxdbs(env, 4); rc != MDB_SUCCESS) return std::unexpected(rc);
  if (const int rc = ::mdb_env_set_mapsize(env, map_size); rc != MDB_SUCCESS) {
    return std::unexpected(rc);
  }
  // MDB_NOSUBDIR: one data file, "<path>-lock" beside it. MDB_NOTLS: read transactions of other
  // threads run beside a writer without pinning a reader slot per thread. Default sync: a
  // commit is durable when it returns.
  if (const int rc = ::mdb_env_open(env, path.c_str(), MDB_NOSUBDIR | MDB_NOTLS,
                                    static_cast<mdb_mode_t>(file_mode));
      rc != MDB_SUCCESS) {
    return std::unexpected(rc);
  }
  mdb_filehandle_t fd = -1;
  MDB_envinfo info{};
  MDB_stat stat{};
  if (const int rc = ::mdb_env_get_fd(env, &fd); rc != MDB_SUCCESS) return std::unexpected(rc);
  if (const int rc = ::mdb_env_info(env, &info); rc != MDB_SUCCESS) return std::unexpected(rc);
  if (const int rc = ::mdb_env_stat(env, &stat); rc != MDB_SUCCESS) return std::unexpected(rc);
  struct stat file {};
  if (::fstat(fd, &file) != 0) return std::unexpected(errno);
  const auto needed = static_cast<unsigned long long>(info.me_last_pgno + 1) * stat.ms_psize;
  if (stat.ms_psize == 0 || static_cast<unsigned long long>(file.st_size) < needed) {
    return std::unexpected(MDB_CORRUPTED);
  }
  return file;
}

}  // namespace

std::expected<std::unique_ptr<TlsrptStore>, Error> open_lmdb_tlsrpt_store(
    std::string path, LmdbTlsrptStoreOptions options) {
  if (options.max_bytes < kMinBytes) {
    return std::unexpected(Error{ErrorCategory::config,
                                 fmt::format("{}: max_bytes {} is too small for a TLSRPT store; "
                                             "give it at least {}",
                                             path, options.max_bytes, kMinBytes)});
  }
  const auto page = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  const std::size_t map_size = (options.max_bytes + page - 1) / page * page;

  OpenFiles& registry = open_files();
  std::unique_lock lock(registry.mutex);
  struct stat existing {};
  if (::stat(path.c_str(), &existing) == 0 &&
      registry.files.contains({existing.st_dev, existing.st_ino})) {
    return std::unexpected(Error{
        ErrorCategory::store,
        fmt::format("{}: already open as a TLSRPT store in this process (LMDB allows one open per "
                    "file per process); close the other store first",
                    path)});
  }
  // Blocks for the lock file and a new file's meta pages first: a full file system is then
  // ENOSPC, not SIGBUS or a half-written file.
  if (const int rc = lmdb::prepare_lock_file(path, 0, options.file_mode); rc != 0) {
    return std::unexpected(open_error(path, rc));
  }
  if (const int rc = lmdb::prepare_data_file(path, options.file_mode); rc != 0) {
    return std::unexpected(open_error(path, rc));
  }
  MDB_env* env = nullptr;
  if (const int rc = ::mdb_env_create(&env); rc != MDB_SUCCESS) {
    return std::unexpected(open_error(path, rc));
  }
  auto file = open_env(env, path, map_size, options.file_mode);
  if (!file) {
    ::mdb_env_close(env);
    return std::unexpected(open_error(path, file.error()));
  }
  registry.files.insert({file->st_dev, file->st_ino});
  auto store = std::make_unique<LmdbTlsrptStore>(std::move(path), options.max_bytes, env,
                                                 file->st_dev, file->st_ino);
  lock.unlock();  // the store's destructor takes it
  if (auto opened = store->open_databases(); !opened) return std::unexpected(opened.error());
  return store;
}

}  // namespace mtasts::store
