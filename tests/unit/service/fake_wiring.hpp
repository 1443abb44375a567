// A Wiring of the map-driven fakes (fakes.hpp), so the Engine, the AnswerService and mtastsd's
// Backend run in unit tests as they do over LMDB, libunbound and Beast. The test owns the fakes;
// the wiring hands out forwarding handles to them.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "service/wiring.hpp"
#include "unit/service/fakes.hpp"

namespace mtasts::testing {

// Passes the PolicyStore calls to another store.
template <class Base>
class ForwardingStore : public Base {
 public:
  explicit ForwardingStore(store::PolicyStore& inner) : inner_(inner) {}
  std::expected<std::optional<CacheEntry>, Error> load(std::string_view domain) override {
    return inner_.load(domain);
  }
  std::expected<void, Error> save(std::string_view domain, const CacheEntry& entry) override {
    return inner_.save(domain, entry);
  }
  std::expected<bool, Error> erase(std::string_view domain) override {
    return inner_.erase(domain);
  }
  std::expected<std::vector<std::pair<std::string, CacheEntry>>, Error> list() override {
    return inner_.list();
  }

 private:
  store::PolicyStore& inner_;
};

// MemoryStore as mtastsd's store: commits are held back until release_commits() (or at once
// with auto_commit), so a test sees who waits for them.
class SharedMemoryStore final : public ForwardingStore<store::SharedStore> {
 public:
  // `memory` is only bound here, used once constructed.
  SharedMemoryStore() : ForwardingStore(memory) {}
  void flush() override { release_commits(); }
  void when_committed(std::function<void()> done) override {
    if (auto_commit) {
      done();
    } else {
      waiting.push_back(std::move(done));
    }
  }
  const std::string& path() const override { return file; }
  std::vector<std::string> take_notices() override { return {}; }

  void release_commits() {
    auto ready = std::move(waiting);
    waiting.clear();
    for (auto& done : ready) done();
  }

  MemoryStore memory;
  bool auto_commit = true;
  std::vector<std::function<void()>> waiting;
  std::string file = "/nonexistent/memory-cache";
};

class FakeWiring final : public Wiring {
 public:
  std::expected<std::unique_ptr<store::PolicyStore>, Error> open_store(
      const Config& /*config*/, std::function<void(const std::string&)> /*notice*/) override {
    return std::unique_ptr<store::PolicyStore>(std::make_unique<StoreHandle>(shared_store));
  }
  std::expected<std::shared_ptr<store::SharedStore>, Error> open_shared_store(
      const Config& /*config*/, std::function<void(const std::string&)> /*on_error*/) override {
    return std::shared_ptr<store::SharedStore>(&shared_store, [](store::SharedStore*) {});
  }
  Network network(asio::any_io_executor /*executor*/, const Config& /*config*/,
                  Concurrency /*concurrency*/) override {
    ++networks_built;
    return Network{std::make_unique<ResolverHandle>(resolver),
                   std::make_unique<FetcherHandle>(fetcher), nullptr};
  }
  // TLSRPT is driven over the real store and senders (tests/integration/test_tlsrpt_*.py).
  std::expected<std::unique_ptr<store::TlsrptStore>, Error> open_tlsrpt_store(
      const Config& /*config*/) override {
    return std::unexpected(Error{ErrorCategory::config, "the fake wiring has no TLSRPT store"});
  }
  ReportSenders report_senders(asio::any_io_executor /*executor*/, dns::Resolver& /*resolver*/,
                               const Config& /*config*/) override {
    return {};
  }

  SharedMemoryStore shared_store;
  FakeResolver resolver;
  FakeFetcher fetcher;
  int networks_built = 0;

 private:
  using StoreHandle = ForwardingStore<store::PolicyStore>;
  class ResolverHandle final : public dns::Resolver {
   public:
    explicit ResolverHandle(dns::Resolver& inner) : inner_(inner) {}
    asio::awaitable<dns::Answer<std::string>> txt(std::string name) override {
      return inner_.txt(std::move(name));
    }
    asio::awaitable<dns::Answer<dns::MxRecord>> mx(std::string name) override {
      return inner_.mx(std::move(name));
    }
    asio::awaitable<dns::Answer<std::string>> addresses(std::string name) override {
      return inner_.addresses(std::move(name));
    }
    asio::awaitable<dns::Answer<dns::TlsaRecord>> tlsa(std::string name) override {
      return inner_.tlsa(std::move(name));
    }

   private:
    dns::Resolver& inner_;
  };
  class FetcherHandle final : public https::PolicyFetcher {
   public:
    explicit FetcherHandle(https::PolicyFetcher& inner) : inner_(inner) {}
    asio::awaitable<std::expected<std::string, Error>> fetch(std::string domain) override {
      return inner_.fetch(std::move(domain));
    }

   private:
    https::PolicyFetcher& inner_;
  };
};

}  // namespace mtasts::testing
