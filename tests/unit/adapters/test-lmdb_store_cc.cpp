// LmdbStore: the design §2.2 layout byte for byte, untrusted values, and LMDB's operational
// errors (missing file/directory, corruption, map growth, full reader table, fork, many
// processes).
#include "adapters/store/lmdb_store.hpp"

#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "adapters/store/lmdb_layout.hpp"

#include "unit/adapters/temp_dir.hpp"

namespace mtasts::store {
namespace {

namespace fs = std::filesystem;

// Each test's own directory.
class TempDir : public test_support::TempDir {
 public:
  TempDir() : test_support::TempDir("mtasts-lmdb-test") {}
};

// Raw LMDB access, as Exim's lookup or the Perl tool would do it. Only call these while no
// LmdbStore of this process has the file open (LMDB: one environment per file per process).
struct RawEnv {
  MDB_env* env = nullptr;
  explicit RawEnv(const std::string& path, unsigned flags = 0) {
    EXPECT_EQ(mdb_env_create(&env), 0);
    EXPECT_EQ(mdb_env_set_mapsize(env, std::size_t{64} << 20), 0);
    EXPECT_EQ(mdb_env_open(env, path.c_str(), MDB_NOSUBDIR | flags, 0640), 0) << path;
  }
  RawEnv(const RawEnv&) = delete;
  RawEnv& operator=(const RawEnv&) = delete;
  ~RawEnv() { mdb_env_close(env); }
};

void raw_put(const std::string& path, const std::map<std::string, std::string>& records) {
  RawEnv raw(path);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(raw.env, nullptr, 0, &txn), 0);
  MDB_dbi dbi = 0;
  int rc = mdb_dbi_open(txn, nullptr, 0, &dbi);
  for (auto it = records.begin(); rc == 0 && it != records.end(); ++it) {
    MDB_val k{it->first.size(), const_cast<char*>(it->first.data())};
    MDB_val v{it->second.size(), const_cast<char*>(it->second.data())};
    rc = mdb_put(txn, dbi, &k, &v, 0);
    EXPECT_EQ(rc, 0) << it->first;
  }
  if (rc == 0) {
    EXPECT_EQ(mdb_txn_commit(txn), 0);
  } else {
    mdb_txn_abort(txn);
  }
}

std::map<std::string, std::string> raw_all(const std::string& path) {
  std::map<std::string, std::string> out;
  RawEnv raw(path, MDB_RDONLY);
  MDB_txn* txn = nullptr;
  EXPECT_EQ(mdb_txn_begin(raw.env, nullptr, MDB_RDONLY, &txn), 0);
  MDB_dbi dbi = 0;
  EXPECT_EQ(mdb_dbi_open(txn, nullptr, 0, &dbi), 0);
  MDB_cursor* cursor = nullptr;
  EXPECT_EQ(mdb_cursor_open(txn, dbi, &cursor), 0);
  MDB_val k{};
  MDB_val v{};
  for (int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
       rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
    out.emplace(std::string(static_cast<const char*>(k.mv_data), k.mv_size),
                std::string(static_cast<const char*>(v.mv_data), v.mv_size));
  }
  mdb_cursor_close(cursor);
  mdb_txn_abort(txn);
  return out;
}

std::string run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return out;
  std::array<char, 4096> buffer{};
  while (std::size_t n = std::fread(buffer.data(), 1, buffer.size(), pipe))
    out.append(buffer.data(), n);
  ::pclose(pipe);
  return out;
}

std::vector<std::string> corrupt_files(const TempDir& dir) {
  std::vector<std::string> out;
  for (const auto& item : fs::directory_iterator(dir.path())) {
    const auto name = item.path().filename().string();
    if (name.find(".corrupt-") != std::string::npos) out.push_back(name);
  }
  return out;
}

CacheEntry enforce_entry(std::string id = "20240101T000000") {
  CacheEntry entry;
  CachedPolicy cached;
  cached.policy.mode = Mode::enforce;
  cached.policy.max_age = 604800;
  cached.policy.mx = {"mx1.example.com", "*.example.net"};
  cached.id = std::move(id);
  cached.fetched_at = 1700000000;
  cached.expires_at = 1700604800;
  cached.text =
      "version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\n"
      "max_age: 604800\r\n";
  entry.policy = cached;
  entry.checked_at = 1700000100;
  entry.next_check = 1700086500;
  entry.report = "mailto:tlsrpt@example.com,https://report.example.com/v1";
  entry.txt_dnssec = "insecure";  // kept in the extras, shown by `mtasts query`
  return entry;
}

CacheEntry failing_entry() {
  CacheEntry entry;
  entry.checked_at = 1700000000;
  entry.next_check = 1700000060;
  entry.unavailable = true;
  entry.failed_id = "abc123";
  entry.failures = 3;
  entry.retry_fetch_at = 1700001200;
  entry.last_error =
      "fetch_failed: HTTP 301 from mta-sts.example.org; redirects are not allowed \"\xc3\xa9\"";
  return entry;
}

void expect_ok(const std::expected<void, Error>& result) {
  EXPECT_TRUE(result.has_value()) << (result ? "" : result.error().reason);
}

// Runs body in a forked child; returns its exit status (0 = success).
template <class F>
int in_child(F body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

TEST(LmdbStore, RoundTripOfFullEntries) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  CacheEntry testing = enforce_entry("t1");
  testing.policy->policy.mode = Mode::testing;
  testing.report.clear();
  CacheEntry none;
  none.policy = CachedPolicy{Policy{Mode::none, 86400, {}}, "n0", 1700000000, 1700086400,
                             "version: STSv1\nmode: none\nmax_age: 86400\n"};
  none.next_check = 1700000500;
  CacheEntry negative;  // "no MTA-STS here", remembered
  negative.checked_at = 1700000000;
  negative.next_check = 1700003600;
  CacheEntry report_only;
  report_only.report = "mailto:a@example.org";
  CacheEntry with_failure = enforce_entry();
  with_failure.failed_id = "newid2";
  with_failure.failures = 1;
  with_failure.retry_fetch_at = 1700000400;
  with_failure.last_error = "fetch_failed: timeout";

  const std::map<std::string, CacheEntry> entries = {{"example.com", enforce_entry()},
                                                     {"testing.example", testing},
                                                     {"none.example", none},
                                                     {"negative.example", negative},
                                                     {"failing.example", failing_entry()},
                                                     {"report.example", report_only},
                                                     {"a.example.com", with_failure}};
  {
    auto store = LmdbStore::open(path);
    ASSERT_TRUE(store) << store.error().reason;
    for (const auto& [domain, entry] : entries) expect_ok((*store)->save(domain, entry));
    for (const auto& [domain, entry] : entries) {
      auto loaded = (*store)->load(domain);
      ASSERT_TRUE(loaded) << loaded.error().reason;
      ASSERT_TRUE(loaded->has_value()) << domain;
      EXPECT_EQ(**loaded, entry) << domain;
    }
    auto missing = (*store)->load("absent.example");
    ASSERT_TRUE(missing);
    EXPECT_FALSE(missing->has_value());
    EXPECT_TRUE((*store)->notices().empty());
  }
  // Reopened: same entries, listed in domain order.
  LmdbStore store(path);
  auto listed = store.list();
  ASSERT_TRUE(listed) << listed.error().reason;
  ASSERT_EQ(listed->size(), entries.size());
  auto it = entries.begin();
  for (const auto& [domain, entry] : *listed) {
    EXPECT_EQ(domain, it->first);
    EXPECT_EQ(entry, it->second) << domain;
    ++it;
  }
  // Overwrite and erase.
  expect_ok(store.save("example.com", failing_entry()));
  EXPECT_EQ(*store.load("example.com"), failing_entry());
  EXPECT_EQ(store.erase("example.com"), true);
  EXPECT_EQ(store.erase("example.com"), false);
  EXPECT_FALSE(store.load("example.com")->has_value());
  EXPECT_EQ(store.list()->size(), entries.size() - 1);
}

TEST(LmdbStore, SeedKeysAreByteExact) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  {
    LmdbStore store(path);
    expect_ok(store.save("example.com", enforce_entry()));
  }
  const auto records = raw_all(path);
  EXPECT_EQ(records.at("example.com:mode"), "enforce");
  EXPECT_EQ(records.at("example.com:mx"), "mx1.example.com:*.example.net");
  EXPECT_EQ(records.at("example.com:expire"), "1700604800");
  EXPECT_EQ(records.at("example.com:id"), "20240101T000000");
  EXPECT_EQ(records.at("example.com:report"),
            "mailto:tlsrpt@example.com,https://report.example.com/v1");
  EXPECT_EQ(records.at("_mtasts:schema"), "1");
  const auto extras = nlohmann::json::parse(records.at("_mtasts:example.com"));
  EXPECT_EQ(extras.at("v"), 1);
  EXPECT_EQ(extras.at("fetched_at"), 1700000000);
  EXPECT_EQ(extras.at("max_age"), 604800);
  EXPECT_EQ(extras.at("next_check"), 1700086500);
  EXPECT_EQ(extras.at("txt_dnssec"), "insecure");
  EXPECT_EQ(records.at("_mtasts:example.com").find('\n'), std::string::npos);  // compact
  EXPECT_EQ(records.size(), 7U);

  // The same through Debian's lmdb-utils, as an admin would look at it (never skipped: a
  // missing program fails, naming the package).
  ASSERT_EQ(::access("/usr/bin/mdb_dump", X_OK), 0) << "apt-get install lmdb-utils";
  ASSERT_EQ(::access("/usr/bin/mdb_stat", X_OK), 0) << "apt-get install lmdb-utils";
  {
    const auto dump = run(fmt::format("/usr/bin/mdb_dump -n -p '{}'", path));
    EXPECT_NE(dump.find(" example.com:mode\n enforce\n"), std::string::npos) << dump;
    EXPECT_NE(dump.find(" example.com:mx\n mx1.example.com:*.example.net\n"), std::string::npos);
    EXPECT_NE(dump.find(" example.com:expire\n 1700604800\n"), std::string::npos);
    EXPECT_NE(dump.find(" example.com:id\n 20240101T000000\n"), std::string::npos);
    EXPECT_NE(dump.find(" _mtasts:schema\n 1\n"), std::string::npos);
  }
  {
    const auto stat = run(fmt::format("/usr/bin/mdb_stat -n '{}'", path));
    EXPECT_NE(stat.find("Entries: 7"), std::string::npos) << stat;
  }
}

TEST(LmdbStore, AbsentPolicyRemovesTheSeedKeys) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  {
    LmdbStore store(path);
    expect_ok(store.save("example.com", enforce_entry()));
    expect_ok(store.save("example.org", enforce_entry()));
    expect_ok(store.save("example.com", failing_entry()));  // no policy, no report
    CacheEntry report_only = failing_entry();
    report_only.report = "mailto:tls@example.org";
    expect_ok(store.save("example.org", report_only));
  }
  const auto records = raw_all(path);
  for (const char* field : {"mode", "mx", "expire", "id", "report"}) {
    EXPECT_FALSE(records.contains(fmt::format("example.com:{}", field))) << field;
  }
  for (const char* field : {"mode", "mx", "expire", "id"}) {
    EXPECT_FALSE(records.contains(fmt::format("example.org:{}", field))) << field;
  }
  EXPECT_EQ(records.at("example.org:report"), "mailto:tls@example.org");
  EXPECT_TRUE(records.contains("_mtasts:example.com"));
  EXPECT_FALSE(nlohmann::json::parse(records.at("_mtasts:example.com")).contains("text"));
}

TEST(LmdbStore, FileOfThePerlToolLoads) {
  TempDir dir;
  const auto path = dir.file("mta-sts.mdb");
  raw_put(path, {{"example.com:mode", "enforce"},
                 {"example.com:mx", "mx1.example.com:*.Example.NET"},
                 {"example.com:expire", "1700604800"},
                 {"example.com:id", "20190429T010101"},
                 {"example.com:report", "mailto:tls@example.com"},
                 {"none.example:mode", "none"},
                 {"none.example:mx", ""},
                 {"none.example:expire", "1700604800"},
                 {"none.example:id", "1"}});
  LmdbStore store(path);
  auto loaded = store.load("example.com");
  ASSERT_TRUE(loaded) << loaded.error().reason;
  ASSERT_TRUE(loaded->has_value());
  const CacheEntry& entry = **loaded;
  ASSERT_TRUE(entry.policy);
  EXPECT_EQ(entry.policy->policy.mode, Mode::enforce);
  EXPECT_EQ(entry.policy->policy.mx,
            (std::vector<std::string>{"mx1.example.com", "*.example.net"}));
  EXPECT_EQ(entry.policy->expires_at, 1700604800);
  EXPECT_EQ(entry.policy->id, "20190429T010101");
  EXPECT_EQ(entry.policy->fetched_at, 0);  // unknown
  EXPECT_EQ(entry.next_check, 0);          // the service re-checks DNS
  EXPECT_EQ(entry.report, "mailto:tls@example.com");
  auto none = store.load("none.example");
  ASSERT_TRUE(none && none->has_value() && (*none)->policy);
  EXPECT_EQ((*none)->policy->policy.mode, Mode::none);
  EXPECT_TRUE((*none)->policy->policy.mx.empty());
  EXPECT_EQ(store.list()->size(), 2U);
  EXPECT_TRUE(store.notices().empty());
  // Our first save adds the schema key to the old file.
  expect_ok(store.save("new.example", failing_entry()));
}

TEST(LmdbStore, PerlFileGetsTheSchemaKeyOnFirstSave) {
  TempDir dir;
  const auto path = dir.file("mta-sts.mdb");
  raw_put(path, {{"example.com:mode", "testing"}});
  {
    LmdbStore store(path);
    expect_ok(store.save("new.example", failing_entry()));
  }
  EXPECT_EQ(raw_all(path).at("_mtasts:schema"), "1");
}

struct Garbage {
  const char* name;
  std::map<std::string, std::string> records;
  bool policy_expected;  // the seed keys are sound, only something else is broken
};

TEST(LmdbStore, MalformedValuesNeverCrashNorYieldAnEnforcePolicy) {
  const std::map<std::string, std::string> good = {{"example.com:mode", "enforce"},
                                                   {"example.com:mx", "mx.example.com"},
                                                   {"example.com:expire", "1700604800"},
                                                   {"example.com:id", "abc"}};
  auto with = [&good](std::string key, std::string value) {
    auto records = good;
    records[key] = std::move(value);
    return records;
  };
  auto without = [&good](const std::string& key) {
    auto records = good;
    records.erase(key);
    return records;
  };
  const std::string huge(std::size_t{2} << 20, 'e');
  std::string huge_mx;
  while (huge_mx.size() < (std::size_t{1} << 20)) huge_mx += "mx.example.com:";
  huge_mx += "mx.example.com";
  const std::vector<Garbage> cases = {
      {"mode upper case", with("example.com:mode", "ENFORCE"), false},
      {"mode with NUL", with("example.com:mode", std::string("enforce\0", 8)), false},
      {"mode with space", with("example.com:mode", "enforce "), false},
      {"mode empty", with("example.com:mode", ""), false},
      {"mode huge", with("example.com:mode", huge), false},
      {"mode missing", without("example.com:mode"), false},
      {"expire not decimal", with("example.com:expire", "12abc"), false},
      {"expire negative", with("example.com:expire", "-5"), false},
      {"expire plus", with("example.com:expire", "+5"), false},
      {"expire overflow", with("example.com:expire", "99999999999999999999"), false},
      {"expire beyond 9999", with("example.com:expire", "9223372036854775807"), false},
      {"expire empty", with("example.com:expire", ""), false},
      {"expire missing", without("example.com:expire"), false},
      {"mx empty for enforce", with("example.com:mx", ""), false},
      {"mx missing for enforce", without("example.com:mx"), false},
      {"mx empty pattern", with("example.com:mx", "mx.example.com::mx2.example.com"), false},
      {"mx trailing colon", with("example.com:mx", "mx.example.com:"), false},
      {"mx regex", with("example.com:mx", "^mx\\.example\\.com$"), false},
      {"mx double wildcard", with("example.com:mx", "*.*.example.com"), false},
      {"mx empty label", with("example.com:mx", "mx..example.com"), false},
      {"mx trailing dot", with("example.com:mx", "mx.example.com."), false},
      {"mx bare star", with("example.com:mx", "*"), false},
      {"mx huge", with("example.com:mx", huge_mx), false},
      {"mx control", with("example.com:mx", "mx.example.com\n"), false},
      {"id with space", with("example.com:id", "a b"), false},
      {"id too long", with("example.com:id", std::string(33, 'a')), false},
      {"id empty", with("example.com:id", ""), false},
      {"id missing", without("example.com:id"), false},
      {"extras not JSON", with("_mtasts:example.com", "{not json"), true},
      {"extras array", with("_mtasts:example.com", "[1,2]"), true},
      {"extras no version", with("_mtasts:example.com", R"({"next_check":1})"), true},
      {"extras version 2", with("_mtasts:example.com", R"({"v":2,"next_check":99})"), true},
      {"extras string int", with("_mtasts:example.com", R"({"v":1,"next_check":"9"})"), true},
      {"extras float", with("_mtasts:example.com", R"({"v":1,"next_check":1.5})"), true},
      {"extras negative", with("_mtasts:example.com", R"({"v":1,"checked_at":-1})"), true},
      {"extras bool type", with("_mtasts:example.com", R"({"v":1,"unavailable":1})"), true},
      {"extras bad failed_id", with("_mtasts:example.com", R"({"v":1,"failed_id":"a-b"})"), true},
      {"extras bad dnssec status",
       with("_mtasts:example.com", R"({"v":1,"txt_dnssec":"trust me"})"), true},
      {"extras huge max_age", with("_mtasts:example.com", R"({"v":1,"max_age":99999999999})"),
       true},
      {"extras deep nesting", with("_mtasts:example.com", std::string(100000, '[')), true},
      {"extras huge", with("_mtasts:example.com", "{\"v\":1,\"text\":\"" + huge + "\"}"), true},
      {"extras truncated", with("_mtasts:example.com", R"({"v":1,"next_ch)"), true},
      {"report with space", with("example.com:report", "mailto:a b"), true},
      {"extras alone claims a policy",
       {{"_mtasts:example.com", R"({"v":1,"next_check":99999999999,"fetched_at":1})"}},
       false},
  };
  for (const auto& garbage : cases) {
    SCOPED_TRACE(garbage.name);
    TempDir dir;
    const auto path = dir.file("cache.mdb");
    raw_put(path, garbage.records);
    LmdbStore store(path);
    auto loaded = store.load("example.com");
    ASSERT_TRUE(loaded) << loaded.error().reason;
    ASSERT_TRUE(loaded->has_value());
    const CacheEntry& entry = **loaded;
    if (garbage.policy_expected) {
      ASSERT_TRUE(entry.policy);  // from the sound seed keys
      EXPECT_EQ(entry.policy->policy.mx, std::vector<std::string>{"mx.example.com"});
    } else {
      EXPECT_FALSE(entry.policy);
    }
    EXPECT_EQ(entry.next_check, 0);  // look at DNS again
    EXPECT_FALSE(store.notices().empty());
    auto listed = store.list();
    ASSERT_TRUE(listed) << listed.error().reason;
    ASSERT_EQ(listed->size(), 1U);
    EXPECT_EQ(listed->front().second, entry);
    // The next save repairs the entry.
    expect_ok(store.save("example.com", enforce_entry()));
    EXPECT_EQ(*store.load("example.com"), enforce_entry());
  }
}

TEST(LmdbStore, ForeignKeysAreIgnored) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  raw_put(path, {{"_mtasts:schema", "1"},
                 {"_mtasts:", "x"},
                 {"_mtasts:Upper.Example", "{}"},
                 {"nodomain:mode", "enforce"},
                 {"bad_domain.example:mode", "enforce"},
                 {"example.com:other", "x"},
                 {"example.com", "x"},
                 {":mode", "enforce"}});
  LmdbStore store(path);
  auto listed = store.list();
  ASSERT_TRUE(listed) << listed.error().reason;
  EXPECT_TRUE(listed->empty());
  EXPECT_FALSE(store.load("example.com")->has_value());
}

TEST(LmdbStore, RefusesWhatWouldNotReadBack) {
  TempDir dir;
  LmdbStore store(dir.file("cache.mdb"));
  CacheEntry bad_mx = enforce_entry();
  bad_mx.policy->policy.mx.push_back("mx.example.com:evil.example");
  CacheEntry no_mx = enforce_entry();
  no_mx.policy->policy.mx.clear();
  CacheEntry bad_id = enforce_entry("not an id");
  CacheEntry big_text = enforce_entry();
  big_text.policy->text.assign(layout::kMaxPolicyText + 1, 'x');
  CacheEntry bad_report = enforce_entry();
  bad_report.report = "mailto:a b";
  CacheEntry negative_time = failing_entry();
  negative_time.next_check = -1;
  for (const auto* entry : {&bad_mx, &no_mx, &bad_id, &big_text, &bad_report, &negative_time}) {
    auto saved = store.save("example.com", *entry);
    ASSERT_FALSE(saved);
    EXPECT_EQ(saved.error().category, ErrorCategory::store);
  }
  EXPECT_FALSE(store.load("example.com")->has_value());  // nothing half-written
  for (const char* domain : {"Example.com", "example.com.", "_mtasts", "a:b.example", "com", ""}) {
    SCOPED_TRACE(domain);
    EXPECT_FALSE(store.save(domain, failing_entry()));
    EXPECT_FALSE(store.load(domain));
    EXPECT_FALSE(store.erase(domain));
  }
  // last_error is cut, not refused.
  CacheEntry long_error = failing_entry();
  long_error.last_error.assign(100000, 'e');
  expect_ok(store.save("example.com", long_error));
  EXPECT_EQ((*store.load("example.com"))->last_error.size(), layout::kMaxLastError);
}

TEST(LmdbStore, MissingFileIsCreated) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  const mode_t old_umask = ::umask(022);
  auto store = LmdbStore::open(path);
  ::umask(old_umask);
  ASSERT_TRUE(store) << store.error().reason;
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0640U);
  EXPECT_EQ(::access((path + "-lock").c_str(), F_OK), 0);
  EXPECT_TRUE((*store)->list()->empty());
  store->reset();
  EXPECT_EQ(raw_all(path).at("_mtasts:schema"), "1");
}

TEST(LmdbStore, MissingDirectoryIsAClearError) {
  TempDir dir;
  const auto missing = dir.file("no/such/dir");
  const auto path = missing + "/cache.mdb";
  auto store = LmdbStore::open(path);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().category, ErrorCategory::store);
  EXPECT_NE(store.error().reason.find(missing), std::string::npos) << store.error().reason;
  EXPECT_NE(store.error().reason.find("does not exist"), std::string::npos);
  LmdbStore lazy(path);
  auto loaded = lazy.load("example.com");
  ASSERT_FALSE(loaded);
  EXPECT_NE(loaded.error().reason.find(missing), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.file("no")));  // never created
}

std::string valid_file_bytes(const TempDir& dir, int entries) {
  const auto path = dir.file("source.mdb");
  {
    LmdbStore store(path);
    for (int i = 0; i < entries; ++i) {
      expect_ok(store.save(fmt::format("d{}.example", i), enforce_entry()));
    }
  }
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TEST(LmdbStore, CorruptFileIsMovedAsideAndReplaced) {
  std::mt19937 random(42);
  std::string noise(100000, '\0');
  for (char& c : noise) c = static_cast<char>(random());
  struct Case {
    const char* name;
    std::function<std::string(const TempDir&)> bytes;
    bool moved;
  };
  const std::vector<Case> cases = {
      {"random bytes", [&](const TempDir&) { return noise; }, true},
      {"short random", [&](const TempDir&) { return noise.substr(0, 100); }, true},
      {"text file", [](const TempDir&) { return std::string("example.com enforce\n"); }, true},
      {"first page only",
       [](const TempDir& dir) { return valid_file_bytes(dir, 1).substr(0, 4096); }, true},
      {"truncated data pages",
       [](const TempDir& dir) {
         const auto bytes = valid_file_bytes(dir, 300);
         return bytes.substr(0, bytes.size() / 2);
       },
       true},
      // LMDB itself initializes an empty file as a new environment: nothing to move aside.
      {"zero length", [](const TempDir&) { return std::string(); }, false},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    TempDir dir;
    const auto path = dir.file("cache.mdb");
    write_file(path, c.bytes(dir));
    write_file(path + "-lock", "stale lock of the old file");
    std::vector<std::string> seen;
    LmdbOptions options;
    options.on_notice = [&seen](const std::string& text) { seen.push_back(text); };
    auto store = LmdbStore::open(path, options);
    ASSERT_TRUE(store) << store.error().reason;
    expect_ok((*store)->save("example.com", enforce_entry()));
    EXPECT_EQ(*(*store)->load("example.com"), enforce_entry());
    const auto aside = corrupt_files(dir);
    if (c.moved) {
      ASSERT_EQ(aside.size(), 1U);
      EXPECT_TRUE(aside[0].starts_with("cache.mdb.corrupt-")) << aside[0];
      ASSERT_EQ(seen.size(), 1U);
      EXPECT_NE(seen[0].find("moved it aside"), std::string::npos) << seen[0];
      EXPECT_EQ((*store)->take_notices(), seen);
      EXPECT_TRUE((*store)->notices().empty());
    } else {
      EXPECT_TRUE(aside.empty());
    }
    store->reset();
    EXPECT_EQ(raw_all(path).at("example.com:mode"), "enforce");  // a sound file again
  }
}

TEST(LmdbStore, PageErrorDuringAReadMovesTheFileAside) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  auto bytes = valid_file_bytes(dir, 1);
  ASSERT_GE(bytes.size(), 3U * 4096);
  std::fill(bytes.begin() + 2 * 4096, bytes.end(), '\0');  // the data pages: flags 0, no leaf
  write_file(path, bytes);
  LmdbStore store(path);
  auto loaded = store.load("d0.example");
  ASSERT_TRUE(loaded) << loaded.error().reason;
  EXPECT_FALSE(loaded->has_value());  // a new, empty cache
  ASSERT_EQ(corrupt_files(dir).size(), 1U);
  const auto notices = store.notices();
  ASSERT_EQ(notices.size(), 1U);
  EXPECT_NE(notices[0].find("MDB_"), std::string::npos) << notices[0];
  expect_ok(store.save("example.com", enforce_entry()));
  EXPECT_EQ(*store.load("example.com"), enforce_entry());
}

CacheEntry big_entry(int i) {
  CacheEntry entry = enforce_entry(fmt::format("id{}", i));
  entry.policy->text.assign(60000, static_cast<char>('a' + i % 26));
  return entry;
}

TEST(LmdbStore, MapGrowsPastItsInitialSize) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  LmdbStore store(path);
  constexpr int kEntries = 400;  // ~24 MiB of policy text
  for (int i = 0; i < kEntries; ++i) {
    auto saved = store.save(fmt::format("d{}.example", i), big_entry(i));
    ASSERT_TRUE(saved) << i << ": " << saved.error().reason;
  }
  EXPECT_GT(*store.map_size(), std::size_t{16} << 20);
  for (int i = 0; i < kEntries; i += 37) {
    EXPECT_EQ(*store.load(fmt::format("d{}.example", i)), big_entry(i));
  }
  EXPECT_EQ(store.list()->size(), static_cast<std::size_t>(kEntries));
  EXPECT_GT(fs::file_size(path), std::uintmax_t{16} << 20);
}

TEST(LmdbStore, MapCapIsAClearErrorAndKeepsWhatWasStored) {
  TempDir dir;
  LmdbOptions options;
  options.initial_map_size = std::size_t{1} << 20;
  options.max_map_size = std::size_t{4} << 20;
  LmdbStore store(dir.file("cache.mdb"), options);
  int saved = 0;
  std::optional<Error> error;
  for (int i = 0; i < 200 && !error; ++i) {
    auto result = store.save(fmt::format("d{}.example", i), big_entry(i));
    if (result) {
      ++saved;
    } else {
      error = result.error();
    }
  }
  ASSERT_TRUE(error);
  EXPECT_EQ(error->category, ErrorCategory::store);
  EXPECT_NE(error->reason.find("full"), std::string::npos) << error->reason;
  EXPECT_GT(saved, 30);
  EXPECT_EQ(*store.map_size(), std::size_t{4} << 20);
  for (int i = 0; i < saved; ++i) {
    EXPECT_EQ(*store.load(fmt::format("d{}.example", i)), big_entry(i));
  }
  EXPECT_FALSE(store.load(fmt::format("d{}.example", saved))->has_value());  // not half written
  EXPECT_TRUE(store.erase("d0.example").value_or(false));                    // still writable
}

TEST(LmdbStore, ThreadsAndTwoStoresShareOneEnvironmentWhileTheMapGrows) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  LmdbOptions options;
  options.initial_map_size = std::size_t{1} << 20;  // grows several times below
  LmdbStore first(path, options);
  LmdbStore second(path, options);  // same file: must reuse the environment
  constexpr int kThreads = 4;
  constexpr int kEntries = 30;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      LmdbStore& store = t % 2 == 0 ? first : second;
      for (int i = 0; i < kEntries; ++i) {
        const int n = t * kEntries + i;
        if (!store.save(fmt::format("d{}.example", n), big_entry(n))) ++failures;
        auto loaded = store.load(fmt::format("d{}.example", n));
        if (!loaded || !loaded->has_value() || **loaded != big_entry(n)) ++failures;
        if (!store.list()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(first.list()->size(), static_cast<std::size_t>(kThreads * kEntries));
  EXPECT_EQ(*first.map_size(), *second.map_size());
  EXPECT_GT(*first.map_size(), std::size_t{4} << 20);
}

TEST(LmdbStore, CommitsAreDurableWithoutClosing) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  const int status = in_child([&] {
    LmdbStore store(path);
    if (!store.save("example.com", enforce_entry())) return 1;
    ::_exit(0);  // no destructor, no mdb_env_close
  });
  ASSERT_EQ(status, 0);
  LmdbStore store(path);
  EXPECT_EQ(*store.load("example.com"), enforce_entry());
}

TEST(LmdbStore, ManyProcessesOnOneFile) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  constexpr int kChildren = 8;
  constexpr int kRounds = 200;
  std::vector<pid_t> children;
  for (int c = 0; c < kChildren; ++c) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      LmdbStore store(path);
      int failures = 0;
      for (int r = 0; r < kRounds; ++r) {
        const auto domain = fmt::format("c{}-r{}.example", c, r);
        CacheEntry entry = enforce_entry(fmt::format("c{}r{}", c, r));
        if (!store.save(domain, entry)) ++failures;
        auto loaded = store.load(domain);
        if (!loaded || !loaded->has_value() || **loaded != entry) ++failures;
        auto other = store.load(fmt::format("c{}-r{}.example", (c + 1) % kChildren, r / 2));
        if (!other) ++failures;  // present or not yet, never an error
      }
      ::_exit(failures == 0 ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (const pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  }
  LmdbStore store(path);
  auto listed = store.list();
  ASSERT_TRUE(listed) << listed.error().reason;
  EXPECT_EQ(listed->size(), static_cast<std::size_t>(kChildren * kRounds));
  EXPECT_TRUE(store.notices().empty());
}

TEST(LmdbStore, ChildReopensTheParentsStore) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  auto store = LmdbStore::open(path);
  ASSERT_TRUE(store) << store.error().reason;
  expect_ok((*store)->save("parent.example", enforce_entry()));
  const int status = in_child([&] {
    LmdbStore& inherited = **store;  // opened before fork(): must reopen, not reuse
    auto loaded = inherited.load("parent.example");
    if (!loaded || !loaded->has_value() || **loaded != enforce_entry()) return 1;
    if (!inherited.save("child.example", failing_entry())) return 2;
    if (!inherited.list() || inherited.list()->size() != 2) return 3;
    return 0;
  });
  EXPECT_EQ(status, 0);
  EXPECT_EQ(*(*store)->load("child.example"), failing_entry());  // parent's env still fine
  expect_ok((*store)->save("after.example", enforce_entry()));
  EXPECT_EQ((*store)->list()->size(), 3U);
}

TEST(LmdbStore, FullReaderTable) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  LmdbOptions options;
  options.max_readers = 1;  // this process creates the lock file, so this sticks
  options.readers_full_retries = 3;
  options.readers_full_pause = std::chrono::milliseconds(10);
  LmdbStore store(path, options);
  expect_ok(store.save("example.com", enforce_entry()));

  // A live process holds the only slot: bounded retries, then a clear error.
  int ready[2];
  int release[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(release), 0);
  const pid_t holder = ::fork();
  if (holder == 0) {
    MDB_env* env = nullptr;
    MDB_txn* txn = nullptr;
    if (mdb_env_create(&env) != 0 ||
        mdb_env_open(env, path.c_str(), MDB_NOSUBDIR | MDB_NOTLS, 0640) != 0 ||
        mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn) != 0) {
      ::_exit(1);
    }
    char byte = 'r';
    if (::write(ready[1], &byte, 1) != 1) ::_exit(1);
    if (::read(release[0], &byte, 1) != 1) ::_exit(1);
    ::_exit(0);  // dies holding the slot: a stale reader
  }
  char byte = 0;
  ASSERT_EQ(::read(ready[0], &byte, 1), 1);
  auto blocked = store.load("example.com");
  ASSERT_FALSE(blocked);
  EXPECT_NE(blocked.error().reason.find("reader table"), std::string::npos)
      << blocked.error().reason;

  // The holder dies without ending its transaction: its slot is cleared and reads go on.
  ASSERT_EQ(::write(release[1], &byte, 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(holder, &status, 0), holder);
  EXPECT_EQ(WEXITSTATUS(status), 0);
  auto loaded = store.load("example.com");
  ASSERT_TRUE(loaded) << loaded.error().reason;
  EXPECT_EQ(**loaded, enforce_entry());
  for (int fd : {ready[0], ready[1], release[0], release[1]}) ::close(fd);
}

TEST(LmdbStore, FileReplacedByAnotherProcessIsReopened) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  LmdbStore store(path);
  expect_ok(store.save("example.com", enforce_entry()));
  // Another process moves the file aside (as after corruption) and starts a new one.
  const int status = in_child([&] {
    if (::rename(path.c_str(), (path + ".old").c_str()) != 0) return 1;
    ::unlink((path + "-lock").c_str());
    LmdbStore other(path);
    return other.save("new.example", failing_entry()) ? 0 : 2;
  });
  ASSERT_EQ(status, 0);
  expect_ok(store.save("mine.example", failing_entry()));  // goes to the new file
  EXPECT_TRUE(store.load("new.example")->has_value());
  EXPECT_FALSE(store.load("example.com")->has_value());
}

}  // namespace
}  // namespace mtasts::store

namespace mtasts::store {
namespace {

// How this process has the data file open: the access mode of each descriptor on it.
std::vector<int> open_modes_of(const std::string& path) {
  std::vector<int> modes;
  const auto target = fs::canonical(path);
  for (const auto& item : fs::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    const auto points_to = fs::read_symlink(item.path(), error);
    if (error || points_to != target) continue;
    const int fd = std::stoi(item.path().filename().string());
    modes.push_back(::fcntl(fd, F_GETFL) & O_ACCMODE);
  }
  return modes;
}

TEST(LmdbStore, ReadOnlyUntilTheFirstWrite) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  {
    LmdbStore writer(path);
    expect_ok(writer.save("example.com", enforce_entry("first")));
  }
  LmdbOptions options;
  options.read_only_until_write = true;
  auto opened = LmdbStore::open(path, options);
  ASSERT_TRUE(opened) << opened.error().reason;
  LmdbStore& store = **opened;
  LmdbStore sharing(path, options);  // shares the environment through the registry

  EXPECT_EQ((*store.load("example.com"))->policy->id, "first");
  EXPECT_EQ(open_modes_of(path), std::vector<int>{O_RDONLY});  // no write descriptor yet

  expect_ok(store.save("example.com", enforce_entry("second")));
  EXPECT_EQ((*store.load("example.com"))->policy->id, "second");
  EXPECT_EQ((*sharing.load("example.com"))->policy->id, "second");
  const auto modes = open_modes_of(path);
  EXPECT_NE(std::find(modes.begin(), modes.end(), O_RDWR), modes.end());
  expect_ok(sharing.save("example.org", failing_entry()));
  EXPECT_EQ(*store.load("example.org"), failing_entry());
  EXPECT_TRUE(store.notices().empty());
  EXPECT_EQ(raw_all(path).count("_mtasts:schema"), 1U);
}

TEST(LmdbStore, ReadOnlyUntilWriteStillCreatesAMissingFile) {
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  LmdbOptions options;
  options.read_only_until_write = true;
  auto opened = LmdbStore::open(path, options);
  ASSERT_TRUE(opened) << opened.error().reason;
  EXPECT_TRUE(fs::exists(path));
  EXPECT_EQ(*(*opened)->load("example.com"), std::nullopt);
  expect_ok((*opened)->save("example.com", enforce_entry()));
  EXPECT_EQ(*(*opened)->load("example.com"), enforce_entry());
}

TEST(LmdbStore, RepeatedLoadsFollowChangesMadeByAnotherProcess) {
  // Loads reuse the decoded entry while the stored octets are unchanged; a write by another
  // process must still be seen at once.
  TempDir dir;
  const auto path = dir.file("cache.mdb");
  LmdbStore store(path);
  expect_ok(store.save("example.com", enforce_entry("one")));
  for (int i = 0; i < 3; ++i) EXPECT_EQ((*store.load("example.com"))->policy->id, "one");
  const int status = in_child([&] {
    LmdbStore other(path);  // the inherited environment is dropped, a new one opened
    return other.save("example.com", enforce_entry("two")) ? 0 : 1;
  });
  ASSERT_EQ(status, 0);
  EXPECT_EQ((*store.load("example.com"))->policy->id, "two");
  for (int n = 0; n < 40; ++n) {  // more domains than the memo holds
    expect_ok(store.save(fmt::format("d{}.example", n), enforce_entry(fmt::format("n{}", n))));
    EXPECT_EQ((*store.load(fmt::format("d{}.example", n)))->policy->id, fmt::format("n{}", n));
  }
  for (int n = 0; n < 40; ++n) {
    EXPECT_EQ((*store.load(fmt::format("d{}.example", n)))->policy->id, fmt::format("n{}", n));
  }
  EXPECT_TRUE(*store.erase("d3.example"));
  EXPECT_EQ(*store.load("d3.example"), std::nullopt);
}

}  // namespace
}  // namespace mtasts::store
