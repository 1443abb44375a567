#include "adapters/store/lmdb_store.hpp"

#include <array>
#include <map>

#include <fmt/format.h>

#include "adapters/store/lmdb_layout.hpp"

namespace mtasts::store {

namespace {

using layout::Field;
using layout::kFields;

std::expected<void, Error> check_domain(std::string_view domain) {
  if (layout::is_storable_domain(domain)) return {};
  return std::unexpected(
      Error{ErrorCategory::store,
            fmt::format("not a normalized domain name, cannot be a cache key: \"{}\"",
                        domain.substr(0, 100))});
}

std::array<std::string, kFields.size()> keys_of(std::string_view domain) {
  std::array<std::string, kFields.size()> keys;
  for (std::size_t i = 0; i < kFields.size(); ++i) keys[i] = layout::key(domain, kFields[i]);
  return keys;
}

bool same_raw(const std::array<std::optional<std::string>, kFields.size()>& kept,
              const layout::RawRecord& raw) {
  for (std::size_t i = 0; i < kFields.size(); ++i) {
    if (kept[i].has_value() != raw.values[i].has_value()) return false;
    if (kept[i] && *kept[i] != *raw.values[i]) return false;
  }
  return true;
}

// Written into every newly created file, and by save() into files the Perl tool created.
int put_schema(lmdb::WriteTxn& txn) {
  auto put = txn.put(layout::kSchemaKey, layout::kSchemaVersion);
  return put ? MDB_SUCCESS : put.error();
}

}  // namespace

LmdbStore::LmdbStore(std::string path, Options options)
    : db_(std::move(path), options, &put_schema), memo_capacity_(options.memo_entries) {}

std::expected<std::unique_ptr<LmdbStore>, Error> LmdbStore::open(std::string path,
                                                                 Options options) {
  auto store = std::make_unique<LmdbStore>(std::move(path), std::move(options));
  if (auto opened = store->db_.open(); !opened) return std::unexpected(opened.error());
  return store;
}

std::expected<std::optional<CacheEntry>, Error> LmdbStore::load(std::string_view domain) {
  if (auto valid = check_domain(domain); !valid) return std::unexpected(valid.error());
  layout::Decoded decoded;
  if (auto unchanged = unchanged_memo(domain)) {
    decoded = std::move(*unchanged);  // nothing committed since: no transaction needed
  } else {
    const auto keys = keys_of(domain);
    auto read = db_.read([&](const lmdb::ReadTxn& txn) -> int {
      layout::RawRecord raw;
      for (std::size_t i = 0; i < keys.size(); ++i) {
        auto value = txn.get(keys[i]);
        if (!value) return value.error();
        raw.values[i] = *value;
      }
      // In the transaction: the views point into the map.
      decoded = decode_memoized(domain, raw, txn.snapshot());
      return MDB_SUCCESS;
    });
    if (!read) return std::unexpected(read.error());
  }
  for (const auto& problem : decoded.problems) {
    db_.notice(fmt::format("LMDB cache {}: entry for {}: {}", db_.path(), domain, problem));
  }
  return std::move(decoded.entry);
}

std::optional<layout::Decoded> LmdbStore::unchanged_memo(std::string_view domain) {
  const auto latest = db_.latest();
  if (!latest) return std::nullopt;
  std::lock_guard lock(memo_mutex_);
  const auto found = memo_.find(domain);
  if (found == memo_.end() || found->second.snapshot != *latest) return std::nullopt;
  return found->second.decoded;
}

layout::Decoded LmdbStore::decode_memoized(std::string_view domain, const layout::RawRecord& raw,
                                           const lmdb::Snapshot& snapshot) {
  std::lock_guard lock(memo_mutex_);
  auto found = memo_.find(domain);
  if (found != memo_.end() && same_raw(found->second.raw, raw)) {
    found->second.snapshot = snapshot;
    return found->second.decoded;
  }
  if (found == memo_.end()) {
    if (memo_capacity_ == 0) return layout::decode(raw);
    // Full: forget an arbitrary entry; it is decoded again if it is asked for again.
    if (memo_.size() >= memo_capacity_) memo_.erase(memo_.begin());
    found = memo_.try_emplace(std::string(domain)).first;
  }
  Memo& memo = found->second;
  memo.snapshot = snapshot;
  for (std::size_t i = 0; i < kFields.size(); ++i) {
    memo.raw[i] = raw.values[i] ? std::optional<std::string>(*raw.values[i]) : std::nullopt;
  }
  memo.decoded = layout::decode(raw);
  return memo.decoded;
}

std::expected<void, Error> LmdbStore::save(std::string_view domain, const CacheEntry& entry) {
  // Every key of the domain in one transaction: readers see the old entry or the new one.
  auto saved = save_all({{std::string(domain), entry}});
  if (!saved) return std::unexpected(saved.error());
  if (!saved->rejected.empty()) return std::unexpected(saved->rejected.front().second);
  return {};
}

std::expected<LmdbStore::SaveAllResult, Error> LmdbStore::save_all(
    const std::vector<std::pair<std::string, CacheEntry>>& entries) {
  SaveAllResult result;
  struct Prepared {
    std::array<std::string, kFields.size()> keys;
    layout::Encoded encoded;
  };
  std::vector<Prepared> prepared;
  prepared.reserve(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& [domain, entry] = entries[i];
    if (auto valid = check_domain(domain); !valid) {
      result.rejected.emplace_back(i, valid.error());
      continue;
    }
    auto encoded = layout::encode(entry);
    if (!encoded) {
      result.rejected.emplace_back(i, encoded.error());
      continue;
    }
    prepared.push_back(Prepared{keys_of(domain), std::move(*encoded)});
  }
  if (prepared.empty()) return result;
  auto written = db_.write([&](lmdb::WriteTxn& txn) -> int {
    for (const Prepared& one : prepared) {
      for (std::size_t i = 0; i < one.keys.size(); ++i) {
        if (const auto& value = one.encoded.values[i]) {
          if (auto put = txn.put(one.keys[i], *value); !put) return put.error();
        } else if (auto del = txn.del(one.keys[i]); !del) {
          return del.error();
        }
      }
    }
    auto schema = txn.get(layout::kSchemaKey);
    if (!schema) return schema.error();
    if (!*schema) return put_schema(txn);
    return MDB_SUCCESS;
  });
  if (!written) return std::unexpected(written.error());
  return result;
}

std::expected<bool, Error> LmdbStore::erase(std::string_view domain) {
  if (auto valid = check_domain(domain); !valid) return std::unexpected(valid.error());
  const auto keys = keys_of(domain);
  bool removed = false;
  auto written = db_.write([&](lmdb::WriteTxn& txn) -> int {
    removed = false;
    for (const auto& key : keys) {
      auto del = txn.del(key);
      if (!del) return del.error();
      removed = removed || *del;
    }
    return removed ? MDB_SUCCESS : lmdb::kRollback;  // nothing to commit (and no fsync)
  });
  if (!written) return std::unexpected(written.error());
  return removed;
}

std::expected<std::vector<std::pair<std::string, CacheEntry>>, Error> LmdbStore::list() {
  std::vector<std::pair<std::string, CacheEntry>> entries;
  std::vector<std::string> problems;
  auto read = db_.read([&](const lmdb::ReadTxn& txn) -> int {
    entries.clear();
    problems.clear();
    // One walk over the database; the views stay valid until the transaction ends.
    std::map<std::string_view, layout::RawRecord> records;  // ordered by domain
    auto walked = txn.for_each([&](std::string_view key, std::string_view value) {
      if (const auto ref = layout::parse_key(key)) records[ref->domain][ref->field] = value;
      return true;
    });
    if (!walked) return walked.error();
    entries.reserve(records.size());
    for (const auto& [domain, raw] : records) {
      auto decoded = layout::decode(raw);
      for (auto& problem : decoded.problems) {
        problems.push_back(fmt::format("entry for {}: {}", domain, problem));
      }
      if (decoded.entry) entries.emplace_back(std::string(domain), std::move(*decoded.entry));
    }
    return MDB_SUCCESS;
  });
  if (!read) return std::unexpected(read.error());
  for (const auto& problem : problems) {
    db_.notice(fmt::format("LMDB cache {}: {}", db_.path(), problem));
  }
  return entries;
}

}  // namespace mtasts::store
