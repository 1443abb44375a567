// A blocking client of mtastsd's Exim `${readsocket}` protocol on its Unix socket
// (docs/protocol-readsocket.md), for CLI commands that go through a running daemon so its
// single flight and backoff apply (`mtasts warm`).
#pragma once

#include <chrono>
#include <expected>
#include <string>
#include <string_view>

#include "core/error.hpp"

namespace mtasts {

// Why a request to the daemon got no answer.
enum class DaemonFailure {
  unreachable,  // no daemon listens at the path (no socket file, connection refused)
  failed,       // connected, but the exchange failed (timeout, reset, an oversized answer)
};

struct DaemonError {
  DaemonFailure failure;
  std::string reason;
};

// Sends one request line (`getmta example.com`) on a new connection, half-closes it and reads
// the answer to EOF, as Exim does. At most `timeout` for everything; answers over 4096 octets
// are an error. The answer may be an `error: ...` line from the daemon: that is the caller's.
[[nodiscard]] std::expected<std::string, DaemonError> ask_daemon(const std::string& socket_path,
                                                                 std::string_view request,
                                                                 std::chrono::milliseconds timeout);

}  // namespace mtasts
