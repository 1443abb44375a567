// The TLSRPT collector (design §7): takes session reports from any thread without ever waiting
// for storage, and a writer thread of its own adds them to the day's counts in batches. Postfix
// sends its datagrams with MSG_DONTWAIT into a socket queue of about ten, so whoever drains that
// socket must hand each datagram on at once: offer_datagram() only queues it; parsing, counting
// and the LMDB commit happen on the writer. The queue is bounded; what does not fit is dropped
// and counted, never blocked on.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <variant>

#include <spdlog/logger.h>

#include "adapters/store/tlsrpt_store.hpp"
#include "core/decide.hpp"
#include "core/tlsrpt_session.hpp"

namespace mtasts {

// Counters for logs and metrics; monotonic.
struct TlsrptCollectorStats {
  std::uint64_t datagrams = 0;     // datagrams offered
  std::uint64_t requests = 0;      // sessions offered already parsed (Exim, mtasts itself)
  std::uint64_t malformed = 0;     // datagrams that did not parse (dropped)
  std::uint64_t queue_full = 0;    // offers dropped because the queue was full
  std::uint64_t stored = 0;        // sessions committed to the counts
  std::uint64_t store_failed = 0;  // sessions lost because a commit failed (file full, I/O)
};

class TlsrptCollector {
 public:
  using Clock = std::function<UnixTime()>;
  // `store` must outlive the collector. `now` gives the Unix time whose UTC day a session counts
  // on (the day it was received, as tlsrpt-collectd does).
  TlsrptCollector(store::TlsrptStore& store, std::shared_ptr<spdlog::logger> logger,
                  std::size_t queue_limit, Clock now);
  ~TlsrptCollector();  // stop()
  TlsrptCollector(const TlsrptCollector&) = delete;
  TlsrptCollector& operator=(const TlsrptCollector&) = delete;

  // Starts the writer thread.
  void start();
  // Commits what is queued, then ends the writer thread. Idempotent.
  void stop();

  // Any thread, never blocks on storage. false: the queue is full and the input was dropped.
  bool offer_datagram(std::string datagram);
  bool offer_session(tlsrpt::Session session);

  // Blocks until everything offered before the call is committed or failed (tests, the CLI).
  void flush();

  [[nodiscard]] TlsrptCollectorStats stats() const;

 private:
  struct Item {
    std::variant<std::string, tlsrpt::Session> input;
    UnixTime received = 0;
  };
  bool offer(Item item);
  void run();
  void write(std::deque<Item>& batch);

  store::TlsrptStore& store_;
  std::shared_ptr<spdlog::logger> logger_;
  std::size_t queue_limit_;
  Clock now_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable written_;
  std::deque<Item> queue_;
  std::uint64_t offered_ = 0;  // sequence numbers, for flush()
  std::uint64_t done_ = 0;
  bool stopping_ = false;
  std::thread writer_;

  std::atomic<std::uint64_t> datagrams_{0};
  std::atomic<std::uint64_t> requests_{0};
  std::atomic<std::uint64_t> malformed_{0};
  std::atomic<std::uint64_t> queue_full_{0};
  std::atomic<std::uint64_t> stored_{0};
  std::atomic<std::uint64_t> store_failed_{0};
};

}  // namespace mtasts
