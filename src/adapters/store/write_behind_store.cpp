#include "adapters/store/write_behind_store.hpp"

#include <fmt/format.h>

#include "adapters/store/lmdb_layout.hpp"

namespace mtasts::store {

WriteBehindStore::WriteBehindStore(std::shared_ptr<LmdbStore> inner, ErrorHandler on_error)
    : WriteBehindStore(std::move(inner), std::move(on_error), Options{}) {}

WriteBehindStore::WriteBehindStore(std::shared_ptr<LmdbStore> inner, ErrorHandler on_error,
                                   Options options)
    : inner_(std::move(inner)),
      on_error_(std::move(on_error)),
      options_(options),
      writer_([this] { run(); }) {}

WriteBehindStore::~WriteBehindStore() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_.notify_all();
  writer_.join();  // the writer commits what is pending before it returns
}

std::expected<std::optional<CacheEntry>, Error> WriteBehindStore::load(std::string_view domain) {
  {
    std::lock_guard lock(mutex_);
    if (const auto found = pending_.find(std::string(domain)); found != pending_.end()) {
      return found->second.entry;
    }
  }
  return inner_->load(domain);
}

std::expected<void, Error> WriteBehindStore::save(std::string_view domain,
                                                  const CacheEntry& entry) {
  // The errors a commit would report for this entry, now, to the caller.
  if (!layout::is_storable_domain(domain)) {
    return std::unexpected(
        Error{ErrorCategory::store,
              fmt::format("not a normalized domain name, cannot be a cache key: \"{}\"",
                          domain.substr(0, 100))});
  }
  if (auto encoded = layout::encode(entry); !encoded) return std::unexpected(encoded.error());
  {
    std::lock_guard lock(mutex_);
    auto found = pending_.find(std::string(domain));
    if (found != pending_.end() || pending_.size() < options_.max_pending) {
      Pending& slot = found != pending_.end() ? found->second : pending_[std::string(domain)];
      slot.entry = entry;
      slot.version = ++last_version_;
      work_.notify_one();
      return {};
    }
  }
  // The queue is full and the domain is not in it: commit this one here (backpressure).
  return inner_->save(domain, entry);
}

std::expected<bool, Error> WriteBehindStore::erase(std::string_view domain) {
  std::lock_guard commit(commit_mutex_);  // no batch is being written meanwhile
  bool was_pending = false;
  std::vector<std::function<void()>> ready;
  {
    std::lock_guard lock(mutex_);
    was_pending = pending_.erase(std::string(domain)) > 0;
    // flush() and waiters must not wait for a batch that will never run.
    if (pending_.empty()) committed_version_ = last_version_;
    ready = take_ready_waiters();
  }
  idle_.notify_all();
  for (const auto& done : ready) done();
  auto erased = inner_->erase(domain);
  if (!erased) return std::unexpected(erased.error());
  return *erased || was_pending;
}

std::expected<std::vector<std::pair<std::string, CacheEntry>>, Error> WriteBehindStore::list() {
  flush();
  return inner_->list();
}

void WriteBehindStore::flush() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = last_version_;
  idle_.wait(lock, [&] { return committed_version_ >= target; });
}

void WriteBehindStore::when_committed(std::function<void()> done) {
  {
    std::lock_guard lock(mutex_);
    if (committed_version_ < last_version_) {
      waiters_.push_back(Waiter{last_version_, std::move(done)});
      return;
    }
  }
  done();
}

std::size_t WriteBehindStore::pending() const {
  std::lock_guard lock(mutex_);
  return pending_.size();
}

std::uint64_t WriteBehindStore::commits() const {
  std::lock_guard lock(mutex_);
  return commits_;
}

std::vector<std::function<void()>> WriteBehindStore::take_ready_waiters() {
  std::vector<std::function<void()>> ready;
  std::erase_if(waiters_, [&](Waiter& waiter) {
    if (waiter.version > committed_version_) return false;
    ready.push_back(std::move(waiter.done));
    return true;
  });
  return ready;
}

void WriteBehindStore::run() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      work_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, nothing left
    }
    std::unique_lock commit(commit_mutex_);
    std::vector<std::pair<std::string, CacheEntry>> batch;
    std::vector<std::uint64_t> versions;
    std::uint64_t top = 0;
    {
      std::lock_guard lock(mutex_);
      if (pending_.empty()) continue;  // an erase() took the last one (and settled flush())
      batch.reserve(pending_.size());
      versions.reserve(pending_.size());
      // Copies: until committed, load() keeps answering from pending_.
      for (const auto& [domain, slot] : pending_) {
        batch.emplace_back(domain, slot.entry);
        versions.push_back(slot.version);
      }
      top = last_version_;
    }
    std::vector<std::string> failures;
    std::vector<std::function<void()>> ready;
    auto saved = inner_->save_all(batch);
    if (!saved) {
      failures.push_back(
          fmt::format("cache commit of {} entries failed, they will be fetched "
                      "again: {}",
                      batch.size(), saved.error().reason));
    } else {
      for (const auto& [index, error] : saved->rejected) {
        failures.push_back(
            fmt::format("cache entry for {} not stored: {}", batch[index].first, error.reason));
      }
    }
    {
      std::lock_guard lock(mutex_);
      for (std::size_t i = 0; i < batch.size(); ++i) {
        const auto found = pending_.find(batch[i].first);
        // A newer save of the domain waits for the next batch.
        if (found != pending_.end() && found->second.version == versions[i]) pending_.erase(found);
      }
      committed_version_ = top;
      ++commits_;
      ready = take_ready_waiters();
    }
    commit.unlock();
    idle_.notify_all();
    for (const auto& done : ready) done();
    if (on_error_) {
      for (const std::string& failure : failures) on_error_(failure);
    }
  }
}

}  // namespace mtasts::store
