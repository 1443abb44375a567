// Map-driven fakes for unit tests of the service (mocks are for the core's neighbours only;
// integration tests use the real adapters against the test world).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "adapters/dns/resolver.hpp"
#include "adapters/https/policy_fetcher.hpp"
#include "adapters/store/policy_store.hpp"

namespace mtasts::testing {

class MemoryStore final : public store::PolicyStore {
 public:
  std::expected<std::optional<CacheEntry>, Error> load(std::string_view domain) override {
    ++loads;
    auto it = entries.find(std::string(domain));
    if (it == entries.end()) return std::optional<CacheEntry>();
    return std::optional<CacheEntry>(it->second);
  }
  std::expected<void, Error> save(std::string_view domain, const CacheEntry& entry) override {
    ++saves;
    entries[std::string(domain)] = entry;
    return {};
  }
  std::expected<bool, Error> erase(std::string_view domain) override {
    return entries.erase(std::string(domain)) > 0;
  }
  std::expected<std::vector<std::pair<std::string, CacheEntry>>, Error> list() override {
    return std::vector<std::pair<std::string, CacheEntry>>(entries.begin(), entries.end());
  }
  std::map<std::string, CacheEntry> entries;
  int loads = 0;
  int saves = 0;
};

// TXT answers by name; missing names are NXDOMAIN. Every query takes `delay` so concurrent
// callers really overlap.
class FakeResolver final : public dns::Resolver {
 public:
  asio::awaitable<dns::Answer<std::string>> txt(std::string name) override {
    ++queries[name];
    log.push_back("TXT " + name);
    co_await pause();
    auto it = txt_records.find(name);
    if (it == txt_records.end()) {
      co_return dns::Answer<std::string>{
          dns::Status::nxdomain, dns::Security::insecure, {}, 0, name, ""};
    }
    co_return it->second;
  }
  // MX, address and TLSA answers by name (for DANE); missing names are an insecure NXDOMAIN.
  asio::awaitable<dns::Answer<dns::MxRecord>> mx(std::string name) override {
    co_return co_await answer_from(mx_answers, std::move(name), "MX");
  }
  asio::awaitable<dns::Answer<std::string>> addresses(std::string name) override {
    co_return co_await answer_from(address_answers, std::move(name), "A/AAAA");
  }
  asio::awaitable<dns::Answer<dns::TlsaRecord>> tlsa(std::string name) override {
    co_return co_await answer_from(tlsa_answers, std::move(name), "TLSA");
  }
  std::map<std::string, dns::Answer<dns::MxRecord>> mx_answers;
  std::map<std::string, dns::Answer<std::string>> address_answers;
  std::map<std::string, dns::Answer<dns::TlsaRecord>> tlsa_answers;

  // `ttl` of the answer: the id it gives is current that long (RFC 8461 §8.1).
  void set_txt(const std::string& name, std::vector<std::string> records,
               std::uint32_t ttl = 3600) {
    txt_records[name] = dns::Answer<std::string>{
        dns::Status::ok, dns::Security::insecure, std::move(records), ttl, name, ""};
  }
  void set_failure(const std::string& name, dns::Status status) {
    txt_records[name] =
        dns::Answer<std::string>{status, dns::Security::indeterminate, {}, 0, name, "injected"};
  }

  std::map<std::string, dns::Answer<std::string>> txt_records;
  std::map<std::string, int> queries;
  std::vector<std::string> log;  // "<type> <name>" of every query, in the order made
  std::chrono::milliseconds delay{5};

 private:
  template <class Record>
  asio::awaitable<dns::Answer<Record>> answer_from(
      const std::map<std::string, dns::Answer<Record>>& answers, std::string name,
      const char* type) {
    ++queries[name];
    log.push_back(type + (" " + name));
    co_await pause();
    auto it = answers.find(name);
    if (it == answers.end()) {
      co_return dns::Answer<Record>{
          dns::Status::nxdomain, dns::Security::insecure, {}, 0, name, ""};
    }
    co_return it->second;
  }

  asio::awaitable<void> pause() {
    asio::steady_timer timer(co_await asio::this_coro::executor, delay);
    co_await timer.async_wait(asio::use_awaitable);
  }
};

class FakeFetcher final : public https::PolicyFetcher {
 public:
  asio::awaitable<std::expected<std::string, Error>> fetch(std::string domain) override {
    ++fetches[domain];
    asio::steady_timer timer(co_await asio::this_coro::executor, delay);
    co_await timer.async_wait(asio::use_awaitable);
    auto it = bodies.find(domain);
    if (it == bodies.end()) {
      co_return std::unexpected(
          Error{ErrorCategory::fetch_failed, "HTTP 404 from mta-sts." + domain});
    }
    co_return it->second;
  }
  std::map<std::string, std::string> bodies;
  std::map<std::string, int> fetches;
  std::chrono::milliseconds delay{5};
};

}  // namespace mtasts::testing
