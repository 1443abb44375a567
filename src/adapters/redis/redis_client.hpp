// A small Redis client for the fleet's shared cache, on the daemon's Asio event loop: one
// connection (TCP, TLS, a Unix socket, or the master named by Redis Sentinel), pipelined,
// reconnected in the background. hiredis only encodes commands and parses replies
// (redis_transport.hpp); the I/O is ours, so nothing ever blocks the loop.
//
// - run() never waits for a connection: when the client is not up it fails at once, and the
//   caller goes on without the shared cache (a reconnect is already under way).
// - Every wait is bounded: a connect attempt by connect_timeout, a call by its deadline, the
//   connection by stuck_after (a reply outstanding that long drops it), the queue by
//   max_pending.
// - A call whose deadline passes fails for its caller but keeps its place in the FIFO, so its
//   late replies are swallowed and never handed to a later call.
// - "-READONLY" / "-MASTERDOWN" mean we talk to a replica after a failover: the connection is
//   dropped after that call, and the next attempt asks the sentinels again.
// - Sentinels are asked over plain TCP without AUTH; the password is for the master only.
// - Failure lines (lost, cannot connect) are rate-limited; "connected" lines always appear.
//
// Single-threaded: everything runs on `executor`, which must be one thread (or a strand). The
// Client may be destroyed while its coroutines are suspended; they hold the shared state.
#pragma once

#include <spdlog/logger.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <memory>
#include <string>
#include <vector>

#include "adapters/asio.hpp"
#include "adapters/redis/redis_target.hpp"
#include "core/error.hpp"

namespace mtasts::redis {

struct Reply {
  enum class Type { string, status, error, integer, nil, array };
  Type type = Type::nil;
  std::string text;             // string, status, error
  long long integer = 0;        // integer
  std::vector<Reply> elements;  // array
};

struct ClientOptions {
  Target target;
  std::string username;  // empty: "AUTH password" (single-argument form)
  std::string password;  // empty: no AUTH
  std::string ca_file;   // rediss: extra CA file, beside the system's default store
  // One attempt: connect, TLS, AUTH, SELECT, ROLE; with sentinel, each sentinel's answer has a
  // bound of its own and so has the connection to the master.
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds reconnect_min{100};   // backoff between failed attempts doubles
  std::chrono::milliseconds reconnect_max{5000};  //   from min up to max
  std::size_t max_pending = 4096;                 // commands awaiting replies; beyond: fail at once
  // A reply outstanding this long: drop the connection (all pending calls fail) and reconnect.
  std::chrono::milliseconds stuck_after{3000};
};

enum class State { down, connecting, up };

class Client {
 public:
  Client(asio::any_io_executor executor, ClientOptions options,
         std::shared_ptr<spdlog::logger> logger);
  ~Client();  // stop()s
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Starts connecting in the background; reconnects by itself after any loss. Once only.
  void start();
  // Closes; pending calls fail; no more reconnects.
  void stop();

  // Sends the commands as one pipeline and returns their replies in order. Fails with
  // ErrorCategory::shared_cache at once when not up or when max_pending is reached, and after
  // `deadline` or on connection loss. A server error reply is not a failure of the call: it
  // comes back as Reply::Type::error. No commands: no replies, even when not up.
  asio::awaitable<std::expected<std::vector<Reply>, Error>> run(
      std::vector<std::vector<std::string>> commands, std::chrono::milliseconds deadline);

  [[nodiscard]] State state() const;

  struct Stats {
    std::uint64_t connects = 0;          // attempts that succeeded
    std::uint64_t connect_failures = 0;  // attempts that failed
    std::uint64_t timeouts = 0;          // calls that passed their deadline
    std::uint64_t disconnects = 0;       // established connections lost or dropped
  };
  [[nodiscard]] Stats stats() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mtasts::redis
