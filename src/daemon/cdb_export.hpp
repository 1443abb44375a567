// The cdb file for Exim light (design §2.5; issue item 5): the answers of core/exim_cdb.hpp for
// every fresh cache entry, written with tinycdb (Debian's libcdb) and replaced atomically
// (daemon/atomic_file.hpp) when they change, at most every cdb_export_interval. Exim opens the
// file per lookup, so a reader keeps the old inode and never sees a partial file.
//
// Rebuilt when a lookup or refresh of this daemon wrote the cache, when the earliest exported
// entry goes stale (it must leave the file: a front-end would look again), and every
// refresh_scan_interval (to pick up entries the CLI or the Exim module wrote). Building walks
// the whole cache on the worker thread; identical answers are not rewritten.
#pragma once

#include <chrono>
#include <expected>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include "core/decide.hpp"
#include "daemon/activity.hpp"
#include "daemon/state.hpp"
#include "daemon/worker.hpp"

namespace mtasts::daemon {

// Writes `records` (plus the _mtasts:exported key = `now`) as a cdb file replacing `path`.
[[nodiscard]] std::expected<void, std::string> write_cdb(
    const std::string& path, const std::vector<std::pair<std::string, std::string>>& records,
    UnixTime now);

class CdbExporter {
 public:
  CdbExporter(asio::any_io_executor executor, State& state, Worker& worker, Activity& activity);
  CdbExporter(const CdbExporter&) = delete;
  CdbExporter& operator=(const CdbExporter&) = delete;

  void start();
  void stop();
  // The cache changed: export again soon (within cdb_export_interval).
  void changed() { dirty_ = true; }

 private:
  struct Written {
    std::string path;
    std::vector<std::pair<std::string, std::string>> records;
  };
  asio::awaitable<void> loop();
  asio::awaitable<void> export_now(const std::string& path, bool strict);

  asio::any_io_executor executor_;
  State& state_;
  Worker& worker_;
  Activity& activity_;
  asio::steady_timer timer_;
  bool started_ = false;
  bool stopping_ = false;
  bool dirty_ = true;
  UnixTime valid_until_ = 0;
  std::string last_path_;
  std::chrono::steady_clock::time_point last_run_{};
  // What the file holds; used by the worker thread only (one job at a time).
  std::shared_ptr<Written> written_ = std::make_shared<Written>();
};

}  // namespace mtasts::daemon
