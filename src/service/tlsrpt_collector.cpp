#include "service/tlsrpt_collector.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <utility>
#include <vector>

#include "core/log_limiter.hpp"
#include "core/tlsrpt_datagram.hpp"

namespace mtasts {
namespace {

// Malformed datagrams are the sender's doing and can come by the thousand: at most a burst of
// lines per window, the rest counted in one line (core/log_limiter.hpp).
constexpr std::uint32_t kMalformedBurst = 10;
constexpr std::chrono::seconds kMalformedWindow{60};
constexpr int kWriterNice = 10;
// Sessions committed per LMDB transaction at most: one sync per batch, batches stay short.
constexpr std::size_t kMaxBatch = 4096;

}  // namespace

TlsrptCollector::TlsrptCollector(store::TlsrptStore& store, std::shared_ptr<spdlog::logger> logger,
                                 std::size_t queue_limit, Clock now)
    : store_(store), logger_(std::move(logger)), queue_limit_(queue_limit), now_(std::move(now)) {}

TlsrptCollector::~TlsrptCollector() {
  stop();
}

void TlsrptCollector::start() {
  std::lock_guard lock(mutex_);
  if (writer_.joinable() || stopping_) return;
  writer_ = std::thread([this] { run(); });
}

void TlsrptCollector::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
}

bool TlsrptCollector::offer_datagram(std::string datagram) {
  datagrams_.fetch_add(1, std::memory_order_relaxed);
  return offer(Item{std::move(datagram), now_()});
}

bool TlsrptCollector::offer_session(tlsrpt::Session session) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  return offer(Item{std::move(session), now_()});
}

bool TlsrptCollector::offer(Item item) {
  bool was_empty = false;
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= queue_limit_ || stopping_) {
      queue_full_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    was_empty = queue_.empty();
    queue_.push_back(std::move(item));
    ++offered_;
  }
  // The writer only sleeps on an empty queue; waking it for every datagram would cost the
  // receiving thread a futex call each time, under the very bursts it must keep up with.
  if (was_empty) wake_.notify_one();
  return true;
}

void TlsrptCollector::flush() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = offered_;
  if (!writer_.joinable()) return;
  written_.wait(lock, [&] { return done_ >= target || !writer_.joinable(); });
}

TlsrptCollectorStats TlsrptCollector::stats() const {
  return TlsrptCollectorStats{
      .datagrams = datagrams_.load(std::memory_order_relaxed),
      .requests = requests_.load(std::memory_order_relaxed),
      .malformed = malformed_.load(std::memory_order_relaxed),
      .queue_full = queue_full_.load(std::memory_order_relaxed),
      .stored = stored_.load(std::memory_order_relaxed),
      .store_failed = store_failed_.load(std::memory_order_relaxed),
  };
}

void TlsrptCollector::run() {
  // Below the thread draining Postfix's socket: its queue holds ~10 datagrams
  // (net.unix.max_dgram_qlen), so when both want the CPU the receiver must win. The counts only
  // wait a little longer. Lowering one's own priority needs no privilege.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), kWriterNice);
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty() && stopping_) break;
    std::deque<Item> batch;
    while (!queue_.empty() && batch.size() < kMaxBatch) {
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    lock.unlock();
    write(batch);
    lock.lock();
    done_ += batch.size();
    written_.notify_all();
  }
}

void TlsrptCollector::write(std::deque<Item>& batch) {
  static LogLimiter limiter(kMalformedBurst, kMalformedWindow);
  std::map<tlsrpt::Day, std::vector<tlsrpt::Session>> by_day;
  for (Item& item : batch) {
    const tlsrpt::Day day = tlsrpt::day_of(item.received);
    if (auto* session = std::get_if<tlsrpt::Session>(&item.input)) {
      by_day[day].push_back(std::move(*session));
      continue;
    }
    auto parsed = parse_tlsrpt_datagram(std::get<std::string>(item.input));
    if (!parsed) {
      malformed_.fetch_add(1, std::memory_order_relaxed);
      const auto admission = limiter.admit(std::chrono::steady_clock::now());
      if (admission.suppressed > 0) {
        logger_->warn("tlsrpt: {} more malformed datagrams not logged", admission.suppressed);
      }
      if (admission.log) logger_->warn("tlsrpt: datagram dropped: {}", parsed.error().reason);
      continue;
    }
    by_day[day].push_back(std::move(*parsed));
  }
  for (const auto& [day, sessions] : by_day) {
    if (auto added = store_.add(day, sessions); !added) {
      store_failed_.fetch_add(sessions.size(), std::memory_order_relaxed);
      logger_->error("tlsrpt: {} session reports lost: {}", sessions.size(), added.error().reason);
      continue;
    }
    stored_.fetch_add(sessions.size(), std::memory_order_relaxed);
  }
}

}  // namespace mtasts
