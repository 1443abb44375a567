// PolicyStore for the daemon: save() returns at once and a writer thread commits what was saved,
// many domains per LMDB transaction. A commit's sync takes milliseconds; done on the event loop
// it stalled every other client, and one sync per fetched domain capped cold lookups at the
// disk's sync rate.
//
// Group commit: whoever must not go on before its entry is durable (the daemon answers a client
// only then, so the CLI and Exim's own lmdb lookup see what the daemon answered) asks
// when_committed() and is called back; every save that arrives while a commit syncs joins the
// next one. Reads in this process see saved entries at once (pending ones first). A crash loses
// only entries not yet committed, which nobody was told about; every committed one stays intact.
//
// Bounded: at most `max_pending` domains wait; beyond that save() commits synchronously itself
// (backpressure rather than unbounded memory). Destruction commits what is pending.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "adapters/store/lmdb_store.hpp"
#include "adapters/store/policy_store.hpp"

namespace mtasts::store {

class WriteBehindStore final : public SharedStore {
 public:
  struct Options {
    // Domains waiting for a commit; beyond it save() commits synchronously. Each commit takes
    // everything pending, so this also bounds a transaction.
    std::size_t max_pending = 65536;
  };
  // Called on the writer thread when a commit fails (the entries are dropped: the next lookup
  // fetches again, as after a failed synchronous save).
  using ErrorHandler = std::function<void(const std::string&)>;

  WriteBehindStore(std::shared_ptr<LmdbStore> inner, ErrorHandler on_error);
  WriteBehindStore(std::shared_ptr<LmdbStore> inner, ErrorHandler on_error, Options options);
  ~WriteBehindStore() override;
  WriteBehindStore(const WriteBehindStore&) = delete;
  WriteBehindStore& operator=(const WriteBehindStore&) = delete;

  [[nodiscard]] std::expected<std::optional<CacheEntry>, Error> load(
      std::string_view domain) override;
  // Checks the domain and the entry now (errors are returned, as from LmdbStore::save), then
  // queues it.
  [[nodiscard]] std::expected<void, Error> save(std::string_view domain,
                                                const CacheEntry& entry) override;
  // Synchronous; a pending save of the domain is dropped, and a batch being committed is waited
  // for, so the erase cannot be undone by it.
  [[nodiscard]] std::expected<bool, Error> erase(std::string_view domain) override;
  // Commits what is pending first, so the list is complete.
  [[nodiscard]] std::expected<std::vector<std::pair<std::string, CacheEntry>>, Error> list()
      override;

  // Blocks until everything saved before the call is committed (or failed).
  void flush() override;
  // Calls `done` (on the writer thread, or at once on the caller's when nothing is pending) when
  // everything saved before the call is committed or failed. `done` must be quick and must not
  // call back into this store (post it to an event loop).
  void when_committed(std::function<void()> done) override;
  [[nodiscard]] std::size_t pending() const;
  [[nodiscard]] std::uint64_t commits() const;

  [[nodiscard]] const std::string& path() const override { return inner_->path(); }
  [[nodiscard]] std::vector<std::string> take_notices() override { return inner_->take_notices(); }
  [[nodiscard]] LmdbStore& inner() { return *inner_; }

 private:
  struct Pending {
    CacheEntry entry;
    std::uint64_t version = 0;
  };
  void run();
  // The waiters whose saves are all committed, removed from waiters_ (mutex_ held).
  std::vector<std::function<void()>> take_ready_waiters();

  std::shared_ptr<LmdbStore> inner_;
  ErrorHandler on_error_;
  Options options_;

  mutable std::mutex mutex_;
  std::condition_variable work_;  // the writer waits for pending entries or stop
  std::condition_variable idle_;  // flush() waits for the writer to catch up
  std::unordered_map<std::string, Pending> pending_;
  std::uint64_t last_version_ = 0;       // of the latest save()
  std::uint64_t committed_version_ = 0;  // every save up to this version is done
  std::uint64_t commits_ = 0;
  bool stopping_ = false;
  struct Waiter {
    std::uint64_t version;
    std::function<void()> done;
  };
  std::vector<Waiter> waiters_;

  // Held from taking a batch until it is committed; erase() takes it too. Lock order:
  // commit_mutex_, then mutex_.
  std::mutex commit_mutex_;
  std::thread writer_;  // last: started when everything above exists
};

}  // namespace mtasts::store
