#include "daemon/cdb_export.hpp"

#include <cdb.h>
#include <sys/stat.h>

#include <exception>
#include <limits>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "core/exim_cdb.hpp"
#include "daemon/atomic_file.hpp"
#include "service/engine.hpp"

namespace mtasts::daemon {
namespace {

// The file holds public answers only, and Exim's user must read it.
constexpr mode_t kCdbMode = 0644;

bool add(cdb_make& maker, std::string_view key, std::string_view value) {
  return cdb_make_add(&maker, key.data(), static_cast<unsigned>(key.size()), value.data(),
                      static_cast<unsigned>(value.size())) == 0;
}

}  // namespace

std::expected<void, std::string> write_cdb(
    const std::string& path, const std::vector<std::pair<std::string, std::string>>& records,
    UnixTime now) {
  return replace_file(path, kCdbMode, [&](int fd) {
    cdb_make maker;
    if (cdb_make_start(&maker, fd) != 0) return false;
    for (const auto& [key, value] : records) {
      if (!add(maker, key, value)) return false;
    }
    if (!add(maker, kCdbExportedKey, fmt::format("{}", now))) return false;
    return cdb_make_finish(&maker) == 0;
  });
}

CdbExporter::CdbExporter(asio::any_io_executor executor, State& state, Worker& worker,
                         Activity& activity)
    : executor_(executor), state_(state), worker_(worker), activity_(activity), timer_(executor) {}

void CdbExporter::start() {
  if (started_) return;
  started_ = true;
  asio::co_spawn(executor_, loop(), [logger = state_.logger](std::exception_ptr error) {
    if (error) logger->error("cdb export: internal error: {}", exception_text(error));
  });
}

void CdbExporter::stop() {
  stopping_ = true;
  timer_.cancel();
}

asio::awaitable<void> CdbExporter::loop() {
  while (!stopping_) {
    const std::shared_ptr<const Config> config = state_.config;
    const DaemonConfig& settings = config->daemon;
    std::chrono::seconds pause(1);
    if (!settings.cdb_export.empty()) {
      const auto now = std::chrono::steady_clock::now();
      const bool periodic = now - last_run_ >= std::chrono::seconds(settings.refresh_scan_interval);
      if (dirty_ || periodic || system_now() >= valid_until_ || settings.cdb_export != last_path_) {
        dirty_ = false;
        last_run_ = now;
        last_path_ = settings.cdb_export;
        co_await export_now(settings.cdb_export, config->strict);
        // The rate limit: nothing more for cdb_export_interval.
        pause = std::chrono::seconds(settings.cdb_export_interval);
      }
    }
    timer_.expires_after(pause);
    co_await timer_.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

asio::awaitable<void> CdbExporter::export_now(const std::string& path, bool strict) {
  struct Outcome {
    std::string error;
    bool written = false;
    std::size_t domains = 0;
    UnixTime valid_until = std::numeric_limits<UnixTime>::max();
  };
  std::shared_ptr<store::SharedStore> store = state_.backend->store();
  const UnixTime now = system_now();
  // A named job: g++ 12 destroys a lambda temporary inside a co_await expression twice.
  auto build = [store, path, strict, now, written = written_] {
    Outcome out;
    auto listed = store->list();
    if (!listed) {
      out.error = fmt::format("cannot walk the cache {}: {}", store->path(), listed.error().reason);
      return out;
    }
    CdbRecords records = exim_cdb_records(*listed, now, strict);
    out.valid_until = records.valid_until;
    out.domains = records.records.size() / 3;
    struct stat st;
    if (written->path == path && written->records == records.records &&
        ::stat(path.c_str(), &st) == 0) {
      return out;  // the same answers are there already
    }
    if (auto done = write_cdb(path, records.records, now); !done) {
      out.error = done.error();
      return out;
    }
    written->path = path;
    written->records = std::move(records.records);
    out.written = true;
    return out;
  };
  Outcome outcome = co_await worker_.run(std::move(build));
  if (!outcome.error.empty()) {
    // Try again at the next pass; the old file (if any) keeps answering meanwhile.
    dirty_ = true;
    activity_.metrics.cdb_failed();
    state_.logger->error("cdb export to {}: {}", path, outcome.error);
    co_return;
  }
  valid_until_ = outcome.valid_until;
  if (outcome.written) {
    activity_.metrics.cdb_written(outcome.domains);
    state_.logger->debug("cdb export: wrote {} domain(s) to {}", outcome.domains, path);
  }
}

}  // namespace mtasts::daemon
