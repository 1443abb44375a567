// The LMDB TLSRPT store: counts add up exactly (repeats, days, concurrent readers, saturation),
// delivery states round-trip, prune, reopen, the size bound, odd octets in every string, and
// files that are not a TLSRPT store or hold a damaged row.
#include "adapters/store/lmdb_tlsrpt_store.hpp"

#include <lmdb.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "adapters/store/lmdb_tlsrpt_layout.hpp"

#include "unit/adapters/temp_dir.hpp"

namespace mtasts::store {
namespace {

using namespace std::chrono_literals;
using namespace std::string_literals;
using tlsrpt::Day;
using tlsrpt::FailureKey;
using tlsrpt::PolicyKey;
using tlsrpt::PolicyOutcome;
using tlsrpt::PolicyTally;
using tlsrpt::PolicyType;
using tlsrpt::ResultType;
using tlsrpt::Session;

constexpr Day kDay1 = std::chrono::sys_days{2026y / 1 / 6};
constexpr Day kDay2 = std::chrono::sys_days{2026y / 1 / 7};
constexpr Day kDay3 = std::chrono::sys_days{2026y / 1 / 8};

class TempDir : public test_support::TempDir {
 public:
  TempDir() : test_support::TempDir("mtasts-tlsrpt-store-test") {}
};

std::unique_ptr<TlsrptStore> open_store(const std::string& path,
                                        LmdbTlsrptStoreOptions options = {}) {
  auto store = open_lmdb_tlsrpt_store(path, options);
  EXPECT_TRUE(store.has_value()) << (store ? "" : store.error().reason);
  return store ? std::move(*store) : nullptr;
}

PolicyKey sts_policy(std::string domain) {
  return PolicyKey{PolicyType::sts,
                   std::move(domain),
                   {"version: STSv1", "mode: enforce", "mx: mx1.example.com", "max_age: 86400"},
                   {"mx1.example.com", "*.mx.example.net"}};
}

PolicyKey tlsa_policy(std::string domain) {
  return PolicyKey{PolicyType::tlsa, std::move(domain), {"3 1 1 ABCDEF0123", "2 0 1 0011"}, {}};
}

FailureKey failure(ResultType result, std::string mx, std::string ip = "192.0.2.25") {
  FailureKey key;
  key.result = result;
  key.sending_mta_ip = "198.51.100.1";
  key.receiving_mx_hostname = std::move(mx);
  key.receiving_ip = std::move(ip);
  return key;
}

Session session(std::string report_domain, std::vector<PolicyOutcome> policies) {
  return Session{std::move(report_domain), "v=TLSRPTv1; rua=mailto:r@example.com",
                 std::move(policies)};
}

// One session, as an MTA's report of one delivery attempt would bring it.
std::expected<void, Error> add_one(TlsrptStore& store, Day day, const Session& one) {
  return store.add(day, std::span(&one, 1));
}

// What the store should say: the sessions summed the obvious way.
class Model {
 public:
  void add(Day day, const std::vector<Session>& sessions) {
    for (const Session& one : sessions) {
      for (const PolicyOutcome& outcome : one.policies) {
        PolicyTally& tally = days_[day][one.report_domain][outcome.policy];
        tally.policy = outcome.policy;
        ++(outcome.failed ? tally.failed : tally.successful);
        for (const FailureKey& key : outcome.failures) ++tally.failures[key];
      }
    }
  }
  std::vector<PolicyTally> tallies(Day day, const std::string& domain) const {
    std::vector<PolicyTally> out;
    const auto by_day = days_.find(day);
    if (by_day == days_.end()) return out;
    const auto by_domain = by_day->second.find(domain);
    if (by_domain == by_day->second.end()) return out;
    for (const auto& [policy, tally] : by_domain->second) out.push_back(tally);
    return out;  // ordered by PolicyKey, as the store's are
  }
  std::vector<std::string> domains(Day day) const {
    std::vector<std::string> out;
    if (auto it = days_.find(day); it != days_.end()) {
      for (const auto& [domain, tallies] : it->second) out.push_back(domain);
    }
    return out;
  }

 private:
  std::map<Day, std::map<std::string, std::map<PolicyKey, PolicyTally>>> days_;
};

void expect_matches(TlsrptStore& store, const Model& model, Day day) {
  auto domains = store.domains(day);
  ASSERT_TRUE(domains.has_value()) << domains.error().reason;
  EXPECT_EQ(*domains, model.domains(day));
  for (const std::string& domain : model.domains(day)) {
    auto tallies = store.tallies(day, domain);
    ASSERT_TRUE(tallies.has_value()) << tallies.error().reason;
    EXPECT_EQ(*tallies, model.tallies(day, domain)) << domain;
  }
}

std::vector<Session> mixed_sessions() {
  const FailureKey expired = failure(ResultType::certificate_expired, "mx1.example.com");
  const FailureKey mismatch = failure(ResultType::certificate_host_mismatch, "mx2.example.com");
  const FailureKey no_starttls =
      failure(ResultType::starttls_not_supported, "mx1.example.org", "2001:db8::25");
  return {
      session("example.com", {{sts_policy("example.com"), false, {}}}),
      session("example.com", {{sts_policy("example.com"), true, {expired}}}),
      session("example.com", {{sts_policy("example.com"), false, {mismatch}}}),  // next MX worked
      session("example.com", {{sts_policy("example.com"), true, {expired, mismatch}}}),
      session("example.com",
              {{tlsa_policy("example.com"), false, {}}, {sts_policy("example.com"), false, {}}}),
      session("example.org", {{PolicyKey{}, true, {no_starttls}}}),
      session("example.org", {{PolicyKey{}, false, {}}}),
  };
}

TEST(LmdbTlsrptStore, AddedSessionsSumUpExactly) {
  TempDir dir;
  auto store = open_store(dir.file("tlsrpt.lmdb"));
  ASSERT_NE(store, nullptr);
  Model model;
  const std::vector<Session> sessions = mixed_sessions();
  for (int round = 0; round < 3; ++round) {
    ASSERT_TRUE(store->add(kDay2, sessions).has_value());
    model.add(kDay2, sessions);
  }
  // One by one adds up the same.
  for (const Session& one : sessions) {
    ASSERT_TRUE(store->add(kDay2, std::span(&one, 1)).has_value());
    model.add(kDay2, {one});
  }
  expect_matches(*store, model, kDay2);

  auto tallies = store->tallies(kDay2, "example.com");
  ASSERT_TRUE(tallies.has_value());
  ASSERT_EQ(tallies->size(), 2U);
  const PolicyTally& sts = (*tallies)[1];  // sts (2) sorts after tlsa (1)
  EXPECT_EQ(sts.policy, sts_policy("example.com"));
  EXPECT_EQ(sts.successful, 4U * 3U);
  EXPECT_EQ(sts.failed, 2U * 4U);
  EXPECT_EQ(sts.failures.at(failure(ResultType::certificate_expired, "mx1.example.com")), 8U);
  EXPECT_EQ(sts.failures.at(failure(ResultType::certificate_host_mismatch, "mx2.example.com")), 8U);
  EXPECT_EQ((*tallies)[0].successful, 4U);
  EXPECT_TRUE((*tallies)[0].failures.empty());

  auto none = store->tallies(kDay2, "example.net");
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  EXPECT_TRUE(store->add(kDay2, {}).has_value());
  EXPECT_EQ(store->path(), dir.file("tlsrpt.lmdb"));
}

TEST(LmdbTlsrptStore, DaysAreKeptApartAndListedOldestFirst) {
  TempDir dir;
  auto store = open_store(dir.file("tlsrpt.lmdb"));
  ASSERT_NE(store, nullptr);
  auto empty = store->days();
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());

  Model model;
  const std::vector<Session> sessions = mixed_sessions();
  const std::vector<Session> first_two(sessions.begin(), sessions.begin() + 2);
  ASSERT_TRUE(store->add(kDay3, first_two).has_value());
  model.add(kDay3, first_two);
  ASSERT_TRUE(store->add(kDay1, sessions).has_value());
  model.add(kDay1, sessions);

  auto days = store->days();
  ASSERT_TRUE(days.has_value()) << days.error().reason;
  EXPECT_EQ(*days, (std::vector<Day>{kDay1, kDay3}));
  expect_matches(*store, model, kDay1);
  expect_matches(*store, model, kDay3);
  auto day2 = store->domains(kDay2);
  ASSERT_TRUE(day2.has_value());
  EXPECT_TRUE(day2->empty());
}

TEST(LmdbTlsrptStore, DomainsComeInStringOrder) {
  TempDir dir;
  auto store = open_store(dir.file("tlsrpt.lmdb"));
  ASSERT_NE(store, nullptr);
  std::vector<std::string> names = {"b.example",    "a.example.com", "a", "a\0b"s, "a.example",
                                    "\xff.example", "A.example",     "z", "a!"};
  std::vector<Session> sessions;
  for (const std::string& name : names) {
    sessions.push_back(session(name, {{sts_policy(name), false, {}}}));
  }
  ASSERT_TRUE(store->add(kDay2, sessions).has_value());
  ASSERT_TRUE(
      add_one(*store, kDay1, session("other.example", {{PolicyKey{}, true, {}}})).has_value());
  ASSERT_TRUE(
      add_one(*store, kDay3, session("zzz.example", {{PolicyKey{}, true, {}}})).has_value());
  std::ranges::sort(names);  // std::string compares octets unsigned, as LMDB does
  auto domains = store->domains(kDay2);
  ASSERT_TRUE(domains.has_value()) << domains.error().reason;
  EXPECT_EQ(*domains, names);
}

TEST(LmdbTlsrptStore, PruneRemovesOldDaysFromCountsAndDeliveries) {
  TempDir dir;
  auto store = open_store(dir.file("tlsrpt.lmdb"));
  ASSERT_NE(store, nullptr);
  const Day day0 = kDay1 - std::chrono::days{1};
  const std::vector<Session> sessions = mixed_sessions();
  ASSERT_TRUE(store->add(kDay1, sessions).has_value());
  ASSERT_TRUE(store->add(kDay2, sessions).has_value());
  ASSERT_TRUE(store->add(kDay3, sessions).has_value());
  const ReportDelivery sent{ReportDelivery::Status::sent, 1, 1767744000, 0, ""};
  // day0 has only a delivery state (its counts already pruned some other way).
  ASSERT_TRUE(store->set_delivery(day0, "example.com", "mailto:r@example.com", sent).has_value());
  ASSERT_TRUE(store->set_delivery(kDay1, "example.com", "mailto:r@example.com", sent).has_value());
  ASSERT_TRUE(store->set_delivery(kDay2, "example.com", "mailto:r@example.com", sent).has_value());

  auto removed = store->prune(kDay2);
  ASSERT_TRUE(removed.has_value()) << removed.error().reason;
  EXPECT_EQ(*removed, 2U);  // day0 (a delivery only) and kDay1
  auto days = store->days();
  ASSERT_TRUE(days.has_value());
  EXPECT_EQ(*days, (std::vector<Day>{kDay2, kDay3}));
  for (const Day gone : {day0, kDay1}) {
    auto state = store->delivery(gone, "example.com", "mailto:r@example.com");
    ASSERT_TRUE(state.has_value());
    EXPECT_FALSE(state->has_value());
    auto tallies = store->tallies(gone, "example.com");
    ASSERT_TRUE(tallies.has_value());
    EXPECT_TRUE(tallies->empty());
  }
  auto kept = store->delivery(kDay2, "example.com", "mailto:r@example.com");
  ASSERT_TRUE(kept.has_value());
  EXPECT_EQ(*kept, sent);
  Model model;
  model.add(kDay2, sessions);
  expect_matches(*store, model, kDay2);

  auto again = store->prune(kDay2);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(*again, 0U);
  auto all = store->prune(kDay3 + std::chrono::days{1});
  ASSERT_TRUE(all.has_value());
  EXPECT_EQ(*all, 2U);
  days = store->days();
  ASSERT_TRUE(days.has_value());
  EXPECT_TRUE(days->empty());
}

TEST(LmdbTlsrptStore, DeliveryStatesRoundTrip) {
  TempDir dir;
  auto store = open_store(dir.file("tlsrpt.lmdb"));
  ASSERT_NE(store, nullptr);
  auto missing = store->delivery(kDay2, "example.com", "mailto:r@example.com");
  ASSERT_TRUE(missing.has_value()) << missing.error().reason;
  EXPECT_FALSE(missing->has_value());

  const std::vector<ReportDelivery> states = {
      {ReportDelivery::Status::pending, 0, 0, 1767830400, ""},
      {ReportDelivery::Status::in_flight, 1, 1767830400, 1767830400, ""},
      {ReportDelivery::Status::pending, 3, 1767830400, 1767834000,
       "https://r.example.com/: HTTP 503 Service Unavailable\0after\xff"s},
      {ReportDelivery::Status::sent, 4, -1, std::numeric_limits<std::int64_t>::max(), "x"},
      {ReportDelivery::Status::given_up, std::numeric_limits<std::uint32_t>::max(), 1767830400,
       std::numeric_limits<std::int64_t>::min(), std::string(5000, 'e')},
  };
  for (const ReportDelivery& state : states) {
    ASSERT_TRUE(store->set_delivery(kDay2, "example.com", "mailto:r@example.com", state));
    auto read = store->delivery(kDay2, "example.com", "mailto:r@example.com");
    ASSERT_TRUE(read.has_value()) << read.error().reason;
    ASSERT_TRUE(read->has_value());
    EXPECT_EQ(**read, state) << to_string(state.status);
  }
  // Each (day, domain, rua) has its own row.
  const ReportDelivery other{ReportDelivery::Status::in_flight, 1, 5, 6, ""};
  ASSERT_TRUE(store->set_delivery(kDay2, "example.com", "https://r.example.com/v1", other));
  ASSERT_TRUE(store->set_delivery(kDay2, "example.com\0"s, "mailto:r@example.com", other));
  ASSERT_TRUE(store->set_delivery(kDay1, "example.com", "mailto:r@example.com", other));
  auto last = store->delivery(kDay2, "example.com", "mailto:r@example.com");
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(**last, states.back());
  auto https = store->delivery(kDay2, "example.com", "https://r.example.com/v1");
  ASSERT_TRUE(https.has_value() && https->has_value());
  EXPECT_EQ(**https, other);
  auto none = store->delivery(kDay3, "example.com", "mailto:r@example.com");
  ASSERT_TRUE(none.has_value());
  EXPECT_FALSE(none->has_value());
  // A delivery state alone makes no day with counts.
  auto days = store->days();
  ASSERT_TRUE(days.has_value());
  EXPECT_TRUE(days->empty());

  EXPECT_EQ(to_string(ReportDelivery::Status::pending), "pending");
  EXPECT_EQ(to_string(ReportDelivery::Status::in_flight), "in-flight");
  EXPECT_EQ(to_string(ReportDelivery::Status::sent), "sent");
  EXPECT_EQ(to_string(ReportDelivery::Status::given_up), "given-up");
}

TEST(LmdbTlsrptStore, ReopenKeepsEverything) {
  TempDir dir;
  const std::string path = dir.file("tlsrpt.lmdb");
  Model model;
  const ReportDelivery state{ReportDelivery::Status::in_flight, 2, 100, 200, "timeout"};
  {
    auto store = open_store(path);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->add(kDay1, mixed_sessions()).has_value());
    ASSERT_TRUE(store->add(kDay2, mixed_sessions()).has_value());
    ASSERT_TRUE(store->set_delivery(kDay1, "example.org", "mailto:t@example.org", state));
    model.add(kDay1, mixed_sessions());
    model.add(kDay2, mixed_sessions());
    // LMDB allows one open per file per process.
    auto second = open_lmdb_tlsrpt_store(path, {});
    ASSERT_FALSE(second.has_value());
    EXPECT_EQ(second.error().category, ErrorCategory::store);
    EXPECT_NE(second.error().reason.find("already open"), std::string::npos);
  }
  EXPECT_TRUE(std::filesystem::exists(path + "-lock"));
  auto store = open_store(path);
  ASSERT_NE(store, nullptr);
  auto days = store->days();
  ASSERT_TRUE(days.has_value());
  EXPECT_EQ(*days, (std::vector<Day>{kDay1, kDay2}));
  expect_matches(*store, model, kDay1);
  expect_matches(*store, model, kDay2);
  auto read = store->delivery(kDay1, "example.org", "mailto:t@example.org");
  ASSERT_TRUE(read.has_value() && read->has_value());
  EXPECT_EQ(**read, state);
  // And it keeps counting where it left off.
  ASSERT_TRUE(store->add(kDay2, mixed_sessions()).has_value());
  model.add(kDay2, mixed_sessions());
  expect_matches(*store, model, kDay2);
}

TEST(LmdbTlsrptStore, FullStoreRefusesTheWholeBatchAndKeepsEarlierCounts) {
  TempDir dir;
  const std::string path = dir.file("tlsrpt.lmdb");
  auto store = open_store(path, {.max_bytes = 256 << 10});
  ASSERT_NE(store, nullptr);
  Model model;
  const Session steady = session("steady.example", {{sts_policy("steady.example"), false, {}}});
  // Each batch brings new policies with 1 KiB policy strings until the bound is reached.
  std::optional<Error> full;
  int batch = 0;
  const auto big_batch = [&steady](int number) {
    std::vector<Session> sessions{steady};
    for (int i = 0; i < 4; ++i) {
      PolicyKey big{PolicyType::tlsa,
                    fmt::format("p{}-{}.example", number, i),
                    {std::string(1024, static_cast<char>('a' + i))},
                    {}};
      sessions.push_back(session("big.example", {{big, true, {}}}));
    }
    return sessions;
  };
  for (; batch < 500 && !full; ++batch) {
    const std::vector<Session> sessions = big_batch(batch);
    auto added = store->add(kDay2, sessions);
    if (added) {
      model.add(kDay2, sessions);
    } else {
      full = added.error();
    }
  }
  ASSERT_TRUE(full.has_value()) << "never full after " << batch << " batches";
  EXPECT_GT(batch, 2);
  EXPECT_EQ(full->category, ErrorCategory::store);
  EXPECT_NE(full->reason.find(path + ": full (max_bytes 262144"), std::string::npos)
      << full->reason;
  // Nothing of the refused batch: the steady policy counted once per batch that went in.
  expect_matches(*store, model, kDay2);
  auto steady_tally = store->tallies(kDay2, "steady.example");
  ASSERT_TRUE(steady_tally.has_value());
  ASSERT_EQ(steady_tally->size(), 1U);
  EXPECT_EQ((*steady_tally)[0].successful, static_cast<std::uint64_t>(batch - 1));
  // Pruning the day makes room again, at once: the next add may use what the prune freed.
  auto removed = store->prune(kDay3);
  ASSERT_TRUE(removed.has_value()) << removed.error().reason;
  EXPECT_EQ(*removed, 1U);
  std::vector<Session> most;
  for (int number = 0; number < (batch - 1) * 3 / 4; ++number) {
    const std::vector<Session> sessions = big_batch(number);
    most.insert(most.end(), sessions.begin(), sessions.end());
  }
  auto added = store->add(kDay3, most);
  EXPECT_TRUE(added.has_value()) << added.error().reason;
}

TEST(LmdbTlsrptStore, FilesThatAreNotAStoreAreRefusedAndLeftAlone) {
  TempDir dir;
  // Not LMDB at all: short text, and a page's worth of it.
  for (const std::string& content : {"hello\n"s, std::string(10000, 'x')}) {
    const std::string path = dir.file(fmt::format("text-{}.lmdb", content.size()));
    std::ofstream(path) << content;
    auto store = open_lmdb_tlsrpt_store(path, {});
    ASSERT_FALSE(store.has_value());
    EXPECT_EQ(store.error().category, ErrorCategory::store);
    EXPECT_NE(store.error().reason.find(path + ": not an LMDB file"), std::string::npos)
        << store.error().reason;
    EXPECT_NE(store.error().reason.find("move it aside"), std::string::npos);
    std::ifstream in(path);
    EXPECT_EQ(std::string(std::istreambuf_iterator<char>(in), {}), content);
  }

  // An LMDB file of someone else's: records in the unnamed database, as the policy cache has.
  const std::string cache = dir.file("cache.lmdb");
  {
    MDB_env* env = nullptr;
    ASSERT_EQ(mdb_env_create(&env), 0);
    ASSERT_EQ(mdb_env_open(env, cache.c_str(), MDB_NOSUBDIR, 0640), 0);
    MDB_txn* txn = nullptr;
    ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
    MDB_dbi dbi = 0;
    ASSERT_EQ(mdb_dbi_open(txn, nullptr, 0, &dbi), 0);
    MDB_val key{11, const_cast<char*>("example.com")};
    MDB_val value{5, const_cast<char*>("value")};
    ASSERT_EQ(mdb_put(txn, dbi, &key, &value, 0), 0);
    ASSERT_EQ(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
  }
  auto foreign = open_lmdb_tlsrpt_store(cache, {});
  ASSERT_FALSE(foreign.has_value());
  EXPECT_NE(foreign.error().reason.find(cache + ": an LMDB file that is not a TLSRPT store"),
            std::string::npos)
      << foreign.error().reason;

  // A missing directory.
  const std::string nowhere = dir.file("missing/tlsrpt.lmdb");
  auto no_dir = open_lmdb_tlsrpt_store(nowhere, {});
  ASSERT_FALSE(no_dir.has_value());
  EXPECT_NE(no_dir.error().reason.find("does not exist"), std::string::npos)
      << no_dir.error().reason;

  // A size bound LMDB cannot work with.
  auto tiny = open_lmdb_tlsrpt_store(dir.file("tiny.lmdb"), {.max_bytes = 4096});
  ASSERT_FALSE(tiny.has_value());
  EXPECT_EQ(tiny.error().category, ErrorCategory::config);
}

// Raw access to a closed store's named databases.
void raw_put(const std::string& path, const char* database, std::string_view key,
             std::string_view value) {
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_set_maxdbs(env, 4), 0);
  ASSERT_EQ(mdb_env_open(env, path.c_str(), MDB_NOSUBDIR, 0640), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi dbi = 0;
  ASSERT_EQ(mdb_dbi_open(txn, database, 0, &dbi), 0);
  MDB_val k{key.size(), const_cast<char*>(key.data())};
  MDB_val v{value.size(), const_cast<char*>(value.data())};
  ASSERT_EQ(mdb_put(txn, dbi, &k, &v, 0), 0);
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

TEST(LmdbTlsrptStore, UnknownFormatVersionIsRefused) {
  TempDir dir;
  const std::string path = dir.file("tlsrpt.lmdb");
  ASSERT_NE(open_store(path), nullptr);
  raw_put(path, "meta", "format", "99");
  auto store = open_lmdb_tlsrpt_store(path, {});
  ASSERT_FALSE(store.has_value());
  EXPECT_EQ(store.error().category, ErrorCategory::store);
  EXPECT_NE(store.error().reason.find(path + ": TLSRPT store format version \"99\""),
            std::string::npos)
      << store.error().reason;
  raw_put(path, "meta", "format", "1");
  EXPECT_NE(open_store(path), nullptr);
}

TEST(LmdbTlsrptStore, DamagedRowsAreErrorsNamingTheKey) {
  TempDir dir;
  const std::string path = dir.file("tlsrpt.lmdb");
  ASSERT_NE(open_store(path), nullptr);
  const std::string prefix = [] {
    std::string key = "2026-01-07";
    tlsrpt_layout::append_escaped(key, "bad.example");
    return key;
  }();
  const std::string policy_digest =
      *tlsrpt_layout::sha256(tlsrpt_layout::encode_policy(sts_policy("bad.example")));
  // A policy row too short to hold its counts.
  raw_put(path, "counts", prefix + policy_digest + '\0', "short");
  {
    auto store = open_store(path);
    ASSERT_NE(store, nullptr);
    auto tallies = store->tallies(kDay2, "bad.example");
    ASSERT_FALSE(tallies.has_value());
    EXPECT_EQ(tallies.error().category, ErrorCategory::store);
    EXPECT_NE(tallies.error().reason.find("counts row \"2026-01-07bad.example\\x00\\x01"),
              std::string::npos)
        << tallies.error().reason;
    auto domains = store->domains(kDay2);  // the key itself is sound
    ASSERT_TRUE(domains.has_value());
    EXPECT_EQ(*domains, std::vector<std::string>{"bad.example"});
    // Adding to that row reads it first: an error, and nothing of the batch is written.
    auto added = store->add(
        kDay2,
        std::vector<Session>{session("good.example", {{PolicyKey{}, true, {}}}),
                             session("bad.example", {{sts_policy("bad.example"), true, {}}})});
    ASSERT_FALSE(added.has_value());
    EXPECT_NE(added.error().reason.find("counts row \"2026-01-07bad.example"), std::string::npos)
        << added.error().reason;
    auto good = store->tallies(kDay2, "good.example");
    ASSERT_TRUE(good.has_value());
    EXPECT_TRUE(good->empty());
  }
  // A row whose key is not a day.
  raw_put(path, "counts", "garbage", "x");
  // A delivery state of an unknown version.
  const std::string rua_key = prefix + *tlsrpt_layout::sha256("mailto:r@example.com");
  raw_put(path, "deliveries", rua_key, "\x07garbage");
  auto store = open_store(path);
  ASSERT_NE(store, nullptr);
  auto days = store->days();
  ASSERT_FALSE(days.has_value());
  EXPECT_NE(days.error().reason.find("\"garbage\" does not start with a day"), std::string::npos)
      << days.error().reason;
  auto state = store->delivery(kDay2, "bad.example", "mailto:r@example.com");
  ASSERT_FALSE(state.has_value());
  EXPECT_NE(state.error().reason.find("deliveries row"), std::string::npos) << state.error().reason;
}

TEST(LmdbTlsrptStore, CountsSaturateInsteadOfOverflowing) {
  TempDir dir;
  const std::string path = dir.file("tlsrpt.lmdb");
  const PolicyKey policy = sts_policy("example.com");
  const FailureKey expired = failure(ResultType::certificate_expired, "mx1.example.com");
  ASSERT_NE(open_store(path), nullptr);
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  std::string key = "2026-01-07";
  tlsrpt_layout::append_escaped(key, "example.com");
  const std::string encoded = tlsrpt_layout::encode_policy(policy);
  key += *tlsrpt_layout::sha256(encoded);
  raw_put(path, "counts", key + '\0', tlsrpt_layout::encode_counts(false, kMax - 1, 7, encoded));
  const std::string encoded_failure = tlsrpt_layout::encode_failure(expired);
  raw_put(path, "counts", key + '\x01' + *tlsrpt_layout::sha256(encoded_failure),
          tlsrpt_layout::encode_counts(true, kMax, 0, encoded_failure));
  auto store = open_store(path);
  ASSERT_NE(store, nullptr);
  const std::vector<Session> sessions(3, session("example.com", {{policy, false, {expired}}}));
  ASSERT_TRUE(store->add(kDay2, sessions).has_value());
  auto tallies = store->tallies(kDay2, "example.com");
  ASSERT_TRUE(tallies.has_value()) << tallies.error().reason;
  ASSERT_EQ(tallies->size(), 1U);
  EXPECT_EQ((*tallies)[0].successful, kMax);
  EXPECT_EQ((*tallies)[0].failed, 7U);
  EXPECT_EQ((*tallies)[0].failures.at(expired), kMax);
}

TEST(LmdbTlsrptStore, ReadersOnOtherThreadsSeeWholeBatchesWhileAWriterAdds) {
  TempDir dir;
  auto store = open_store(dir.file("tlsrpt.lmdb"));
  ASSERT_NE(store, nullptr);
  const PolicyKey policy = sts_policy("example.com");
  const FailureKey expired = failure(ResultType::certificate_expired, "mx1.example.com");
  // Each batch: 15 successful, 5 failed with failure details.
  std::vector<Session> batch(15, session("example.com", {{policy, false, {}}}));
  batch.insert(batch.end(), 5, session("example.com", {{policy, true, {expired}}}));
  constexpr int kBatches = 500;  // 10 000 sessions

  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  std::vector<std::string> problems;
  std::thread reader([&] {
    std::uint64_t last_total = 0;
    while (!done.load()) {
      auto tallies = store->tallies(kDay2, "example.com");
      auto days = store->days();
      if (!tallies || !days) {
        problems.push_back(!tallies ? tallies.error().reason : days.error().reason);
        return;
      }
      if (tallies->empty()) continue;
      const PolicyTally& tally = tallies->front();
      const std::uint64_t total = tally.successful + tally.failed;
      // Whole batches only, never fewer than before.
      if (total % 20 != 0 || tally.successful != 3 * tally.failed || total < last_total ||
          tally.failures.at(expired) != tally.failed || *days != std::vector<Day>{kDay2}) {
        problems.push_back(fmt::format("saw {} successful, {} failed after {}", tally.successful,
                                       tally.failed, last_total));
        return;
      }
      last_total = total;
      ++reads;
    }
  });
  for (int i = 0; i < kBatches; ++i) {
    auto added = store->add(kDay2, batch);
    if (!added) {
      ADD_FAILURE() << added.error().reason;
      break;
    }
  }
  done = true;
  reader.join();
  EXPECT_TRUE(problems.empty()) << problems.front();
  EXPECT_GT(reads.load(), 0);
  auto tallies = store->tallies(kDay2, "example.com");
  ASSERT_TRUE(tallies.has_value());
  ASSERT_EQ(tallies->size(), 1U);
  EXPECT_EQ((*tallies)[0].successful, 15U * kBatches);
  EXPECT_EQ((*tallies)[0].failed, 5U * kBatches);
  EXPECT_EQ((*tallies)[0].failures.at(expired), 5U * kBatches);
}

TEST(LmdbTlsrptStore, OddOctetsInEveryStringRoundTrip) {
  TempDir dir;
  const std::string path = dir.file("tlsrpt.lmdb");
  const std::string nul_domain = "exa\0mple.com"s;
  const std::string bang_domain = "!\x01\xff.example";
  const PolicyKey odd{PolicyType::sts,
                      "pol\0icy!"s,
                      {std::string(1024, '\0'), std::string(1024, '\xff'), "!", "",
                       "a\0\x01"
                       "b"s},
                      {"mx\0.example"s, "*.!"}};
  PolicyKey long_strings{PolicyType::tlsa, "long.example", {}, {}};
  for (int i = 0; i < 8; ++i) long_strings.policy_strings.push_back(std::string(1024, 'A' + i));
  FailureKey odd_failure;
  odd_failure.result = ResultType::validation_failure;
  odd_failure.sending_mta_ip = "\0"s;
  odd_failure.receiving_mx_hostname = "mx!.example";
  odd_failure.receiving_mx_helo = std::string(1024, '\x01');
  odd_failure.additional_information = "line1\nline2\0\xff"s;
  odd_failure.failure_reason_code = "!";
  FailureKey empty_failure;  // every field absent
  const std::vector<Session> sessions = {
      session(nul_domain, {{odd, true, {odd_failure, empty_failure}}, {long_strings, false, {}}}),
      session(nul_domain, {{odd, false, {empty_failure}}}),
      session(bang_domain, {{long_strings, true, {odd_failure}}}),
      session("exa", {{odd, false, {}}}),  // a prefix of nul_domain up to its NUL
  };
  Model model;
  model.add(kDay2, sessions);
  {
    auto store = open_store(path);
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->add(kDay2, sessions).has_value());
    expect_matches(*store, model, kDay2);
  }
  auto store = open_store(path);
  ASSERT_NE(store, nullptr);
  expect_matches(*store, model, kDay2);
  const ReportDelivery state{ReportDelivery::Status::pending, 0, 0, 0, "\0!"s};
  const std::string odd_rua = "mailto:\0x@example.com?"s + std::string(2000, '!');
  ASSERT_TRUE(store->set_delivery(kDay2, nul_domain, odd_rua, state).has_value());
  auto read = store->delivery(kDay2, nul_domain, odd_rua);
  ASSERT_TRUE(read.has_value() && read->has_value());
  EXPECT_EQ(**read, state);
  auto other = store->delivery(kDay2, "exa", odd_rua);
  ASSERT_TRUE(other.has_value());
  EXPECT_FALSE(other->has_value());

  // A report domain too long for an LMDB key is refused, not truncated.
  const std::string huge(600, 'd');
  auto refused = add_one(*store, kDay2, session(huge, {{PolicyKey{}, true, {}}}));
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().reason.find("too long"), std::string::npos);
  auto nothing = store->tallies(kDay2, huge);
  ASSERT_TRUE(nothing.has_value());
  EXPECT_TRUE(nothing->empty());
  expect_matches(*store, model, kDay2);
}

}  // namespace
}  // namespace mtasts::store
