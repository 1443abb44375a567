// WriteBehindStore: saves are visible at once in this process, committed in groups by the writer
// thread, and never lost or resurrected by flush, erase, list and destruction.
#include "adapters/store/write_behind_store.hpp"

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "unit/adapters/temp_dir.hpp"

namespace mtasts::store {
namespace {

namespace fs = std::filesystem;

// Each test's own directory.
class TempDir : public test_support::TempDir {
 public:
  TempDir() : test_support::TempDir("mtasts-wbs-test") {}
};

CacheEntry enforce_entry(std::string id) {
  CacheEntry entry;
  CachedPolicy cached;
  cached.policy.mode = Mode::enforce;
  cached.policy.max_age = 604800;
  cached.policy.mx = {"mx1.example.com"};
  cached.id = std::move(id);
  cached.fetched_at = 1700000000;
  cached.expires_at = 1700604800;
  cached.text = "version: STSv1\nmode: enforce\nmx: mx1.example.com\nmax_age: 604800\n";
  entry.policy = cached;
  entry.checked_at = 1700000100;
  entry.next_check = 1700086500;
  return entry;
}

std::string id_of(const std::expected<std::optional<CacheEntry>, Error>& loaded) {
  if (!loaded || !*loaded || !(*loaded)->policy) return "";
  return (*loaded)->policy->id;
}

struct Fixture {
  TempDir dir;
  std::shared_ptr<LmdbStore> inner;
  std::mutex errors_mutex;
  std::vector<std::string> errors;

  Fixture() {
    auto opened = LmdbStore::open(dir.file("cache.mdb"));
    if (!opened) std::abort();
    inner = std::shared_ptr<LmdbStore>(std::move(*opened));
  }
  std::unique_ptr<WriteBehindStore> make(WriteBehindStore::Options options = {}) {
    return std::make_unique<WriteBehindStore>(
        inner,
        [this](const std::string& error) {
          std::lock_guard lock(errors_mutex);
          errors.push_back(error);
        },
        options);
  }
  // What another process sees: a separate store on the same file.
  std::string committed_id(const std::string& domain) {
    LmdbStore other(dir.file("cache.mdb"));
    return id_of(other.load(domain));
  }
};

TEST(WriteBehindStore, SavedEntryIsVisibleAtOnceAndCommittedByFlush) {
  Fixture f;
  auto store = f.make();
  ASSERT_TRUE(store->save("a.example", enforce_entry("one")));
  EXPECT_EQ(id_of(store->load("a.example")), "one");
  store->flush();
  EXPECT_EQ(store->pending(), 0u);
  EXPECT_EQ(f.committed_id("a.example"), "one");
  EXPECT_TRUE(f.errors.empty());
}

TEST(WriteBehindStore, WhenCommittedIsCalledOnlyAfterTheCommit) {
  Fixture f;
  auto store = f.make();
  ASSERT_TRUE(store->save("b.example", enforce_entry("two")));
  std::promise<std::string> seen;
  store->when_committed([&] { seen.set_value(f.committed_id("b.example")); });
  auto future = seen.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_EQ(future.get(), "two");
}

TEST(WriteBehindStore, WhenCommittedWithNothingPendingIsCalledAtOnce) {
  Fixture f;
  auto store = f.make();
  bool called = false;
  store->when_committed([&] { called = true; });
  EXPECT_TRUE(called);
}

TEST(WriteBehindStore, ManyConcurrentSavesShareCommits) {
  Fixture f;
  auto store = f.make();
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const std::string domain = fmt::format("d{}-{}.example", t, i);
        ASSERT_TRUE(store->save(domain, enforce_entry(fmt::format("id{}x{}", t, i))));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  store->flush();
  EXPECT_LT(store->commits(), static_cast<std::uint64_t>(kThreads * kPerThread));
  auto listed = f.inner->list();
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(WriteBehindStore, TheLatestSaveOfADomainWins) {
  Fixture f;
  auto store = f.make();
  for (int i = 0; i < 500; ++i) {
    ASSERT_TRUE(store->save("same.example", enforce_entry(fmt::format("v{}", i))));
  }
  EXPECT_EQ(id_of(store->load("same.example")), "v499");
  store->flush();
  EXPECT_EQ(f.committed_id("same.example"), "v499");
}

TEST(WriteBehindStore, EraseDropsAPendingSaveAndIsNotUndoneByTheWriter) {
  Fixture f;
  auto store = f.make();
  for (int round = 0; round < 200; ++round) {
    const std::string domain = fmt::format("e{}.example", round);
    ASSERT_TRUE(store->save(domain, enforce_entry("x")));
    auto erased = store->erase(domain);
    ASSERT_TRUE(erased);
    EXPECT_TRUE(*erased);
    EXPECT_EQ(id_of(store->load(domain)), "");
  }
  store->flush();  // must not wait for a batch that will never come
  auto listed = store->list();
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty()) << listed->front().first;
}

TEST(WriteBehindStore, ListIncludesWhatWasJustSaved) {
  Fixture f;
  auto store = f.make();
  ASSERT_TRUE(store->save("l.example", enforce_entry("listed")));
  auto listed = store->list();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ(listed->front().first, "l.example");
}

TEST(WriteBehindStore, DestructionCommitsWhatIsPending) {
  Fixture f;
  {
    auto store = f.make();
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(store->save(fmt::format("p{}.example", i), enforce_entry("kept")));
    }
  }
  for (int i = 0; i < 50; ++i) EXPECT_EQ(f.committed_id(fmt::format("p{}.example", i)), "kept");
}

TEST(WriteBehindStore, BadDomainIsRejectedAtSave) {
  Fixture f;
  auto store = f.make();
  auto saved = store->save("Not A Domain", enforce_entry("x"));
  ASSERT_FALSE(saved);
  EXPECT_EQ(saved.error().category, ErrorCategory::store);
  EXPECT_EQ(store->pending(), 0u);
}

TEST(WriteBehindStore, AFullQueueCommitsSynchronously) {
  Fixture f;
  auto store = f.make(WriteBehindStore::Options{.max_pending = 1});
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(store->save(fmt::format("q{}.example", i), enforce_entry("q")));
  }
  store->flush();
  for (int i = 0; i < 100; ++i) EXPECT_EQ(f.committed_id(fmt::format("q{}.example", i)), "q");
}

TEST(WriteBehindStore, ACommitThatFailsIsReportedAndReleasesWaiters) {
  TempDir dir;
  const std::string path = dir.file("cache.mdb");
  LmdbOptions options;
  options.initial_map_size = std::size_t{1} << 20;
  options.max_map_size = std::size_t{1} << 20;  // far too small for the entries below
  auto opened = LmdbStore::open(path, options);
  ASSERT_TRUE(opened);
  std::atomic<int> failures{0};
  WriteBehindStore store(std::shared_ptr<LmdbStore>(std::move(*opened)),
                         [&](const std::string& error) {
                           EXPECT_NE(error.find("full"), std::string::npos) << error;
                           ++failures;
                         });
  CacheEntry big = enforce_entry("big");
  big.policy->text = std::string(60000, 'x');
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(store.save(fmt::format("f{}.example", i), big));
  std::promise<void> released;
  store.when_committed([&] { released.set_value(); });
  ASSERT_EQ(released.get_future().wait_for(std::chrono::seconds(20)), std::future_status::ready);
  store.flush();
  EXPECT_GE(failures.load(), 1);
  EXPECT_EQ(store.pending(), 0u);
}

}  // namespace
}  // namespace mtasts::store
