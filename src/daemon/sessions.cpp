#include "daemon/sessions.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "core/exim_request.hpp"
#include "core/log_limiter.hpp"
#include "core/netstring.hpp"
#include "core/socketmap.hpp"
#include "core/text_quote.hpp"
#include "daemon/tlsrpt_runner.hpp"
#include "service/cached_answers.hpp"

namespace mtasts::daemon {
namespace {

using namespace boost::asio::experimental::awaitable_operators;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

// Client errors (malformed requests, deadlines missed, answers not taken) are the client's doing
// and can come by the ten thousand: at most kClientErrorBurst lines every kClientErrorWindow,
// the rest counted and reported in one line (core/log_limiter.hpp). One limit for both
// protocols; the sessions all run on the event loop's thread.
constexpr std::uint32_t kClientErrorBurst = 10;
constexpr std::chrono::seconds kClientErrorWindow{10};

LogLimiter& client_error_limiter() {
  static LogLimiter limiter(kClientErrorBurst, kClientErrorWindow);
  return limiter;
}

void report_suppressed(spdlog::logger& logger, std::uint64_t count) {
  logger.info("{} more client error message{} suppressed (at most {} are logged every {} s)", count,
              count == 1 ? "" : "s", kClientErrorBurst, kClientErrorWindow.count());
}

// Logs one client error at info, within the limit. Formatted only when it is written.
template <class... Args>
void client_error(State& state, fmt::format_string<Args...> format, Args&&... args) {
  const LogLimiter::Admission admission = client_error_limiter().admit(Clock::now());
  if (admission.suppressed > 0) report_suppressed(*state.logger, admission.suppressed);
  if (admission.log) state.logger->info("{}", fmt::format(format, std::forward<Args>(args)...));
}

// Each new connection reports what a finished window left out, so the count is not held back
// until the next client error.
void report_suppressed_client_errors(State& state) {
  const std::uint64_t count = client_error_limiter().take_suppressed(Clock::now());
  if (count > 0) report_suppressed(*state.logger, count);
}

// Registers a connection for the life of its coroutine.
template <class Socket>
class Registration {
 public:
  Registration(Connections& connections, Socket& socket)
      : connections_(connections), handle_(connections.add([&socket] {
          error_code ignored;
          socket.close(ignored);
        })) {}
  ~Registration() { connections_.remove(handle_); }
  Registration(const Registration&) = delete;
  Registration& operator=(const Registration&) = delete;
  void busy(bool value) { handle_->busy = value; }

 private:
  Connections& connections_;
  Connections::Handle handle_;
};

// One read_some that gives up at `deadline` (asio::error::timed_out).
template <class Socket>
asio::awaitable<std::tuple<error_code, std::size_t>> read_some(Socket& socket,
                                                               asio::mutable_buffer buffer,
                                                               Clock::time_point deadline) {
  asio::steady_timer timer(socket.get_executor(), deadline);
  auto result = co_await (socket.async_read_some(buffer, asio::as_tuple(asio::use_awaitable)) ||
                          timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (result.index() == 1) {
    co_return std::tuple<error_code, std::size_t>{asio::error::timed_out, 0};
  }
  co_return std::get<0>(result);
}

// Writes all of `data` within `timeout`; false on any failure.
template <class Socket>
asio::awaitable<bool> write_all(Socket& socket, std::string_view data,
                                std::chrono::milliseconds timeout) {
  // An answer is ~100 octets and the socket buffer nearly always has room: write it at once,
  // without a timer and an asynchronous operation (the common case costs one send()).
  error_code ec;
  socket.non_blocking(true, ec);
  if (!ec) {
    const std::size_t written = socket.write_some(asio::buffer(data), ec);
    if (!ec) {
      if (written == data.size()) co_return true;
      data.remove_prefix(written);
    } else if (ec != asio::error::would_block && ec != asio::error::try_again) {
      co_return false;
    }
  }
  asio::steady_timer timer(socket.get_executor(), timeout);
  auto result = co_await (
      asio::async_write(socket, asio::buffer(data), asio::as_tuple(asio::use_awaitable)) ||
      timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (result.index() == 1) co_return false;
  co_return !std::get<0>(std::get<0>(result));
}

// Shuts down our side, then reads and drops what the client still sends (at most 64 KiB, for at
// most a second) before closing: closing with unread input would send a TCP reset, and a reset
// can destroy the answer before the client has read it.
template <class Socket>
asio::awaitable<void> close_after_answer(Socket& socket) {
  error_code ignored;
  socket.shutdown(asio::socket_base::shutdown_send, ignored);
  std::array<char, 4096> sink;
  std::size_t drained = 0;
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(1);
  while (drained < 65536) {
    auto [ec, n] = co_await read_some(socket, asio::buffer(sink), deadline);
    if (ec) break;
    drained += n;
  }
  socket.close(ignored);
}

template <class Socket>
std::string peer_name(const Socket& socket) {
  error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  if (ec) return "?";
  if constexpr (std::is_same_v<Socket, asio::ip::tcp::socket>) {
    return fmt::format("{}:{}", peer.address().to_string(), peer.port());
  } else {
    return "unix";
  }
}

// The first blank-separated word of a request line.
std::string_view first_word(std::string_view line) {
  const std::size_t at = line.find_first_not_of(" \t");
  if (at == std::string_view::npos) return {};
  line.remove_prefix(at);
  return line.substr(0, std::min(line.find_first_of(" \t"), line.size()));
}

// A `tlsrpt …` line (Exim's event_action reporting a TLS session, docs/tlsrpt.md); the
// domain's cache entry completes it with the policy that applied.
std::string tlsrpt_reply(std::string_view line, State& state) {
  if (state.tlsrpt == nullptr) {
    return exim_error_answer("tlsrpt is not enabled in this mtastsd ([tlsrpt] enabled = true)");
  }
  return state.tlsrpt->mta_report(line, [&](const std::string& domain) {
    std::optional<CacheEntry> entry;
    if (auto loaded = state.backend->store()->load(domain)) entry = std::move(*loaded);
    return entry;
  });
}

bool is_tlsrpt_request(std::string_view line) {
  const std::string_view word = first_word(line);
  if (word.size() != 6) return false;
  std::string command(word);
  for (char& c : command) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return command == "tlsrpt";
}

asio::awaitable<std::string> exim_reply(std::string line, State& state) {
  if (is_tlsrpt_request(line)) co_return tlsrpt_reply(line, state);
  auto request = parse_exim_request(line);
  if (!request) co_return exim_error_answer(request.error());
  std::shared_ptr<Backend> backend = state.backend;
  auto answered = co_await backend->service().answer(request->domain);
  if (!answered) co_return exim_error_answer(answered.error().reason);
  const LookupResult& result = answered->result;
  const std::string reply = exim_answer(*request, result.answer);
  if (state.logger->should_log(spdlog::level::debug)) {  // quoting costs, even unlogged
    state.logger->debug("exim: {} -> {} ({})", quote_input(line), quote_input(reply, 200),
                        to_string(result.source));
  }
  co_return reply;
}

template <class Socket>
asio::awaitable<void> exim_session(Socket socket, State& state) {
  Registration<Socket> registration(state.connections, socket);
  report_suppressed_client_errors(state);
  const std::shared_ptr<const Config> config = state.config;
  const DaemonConfig& settings = config->daemon;
  const Clock::time_point deadline = Clock::now() + settings.read_timeout;
  std::string buffer;
  std::array<char, 4096> chunk;
  bool eof = false;
  LineStep step;
  for (;;) {
    step = read_exim_line(buffer, eof, settings.max_request_line);
    if (step.status != LineStatus::need_more) break;
    auto [ec, n] = co_await read_some(socket, asio::buffer(chunk), deadline);
    if (ec == asio::error::eof) {
      eof = true;
      continue;
    }
    if (ec == asio::error::timed_out) {
      step.status = LineStatus::invalid;
      step.reason =
          fmt::format("no complete request line within {} ms", settings.read_timeout.count());
      break;
    }
    if (ec) co_return;  // reset by the client, or closed by a stop
    buffer.append(chunk.data(), n);
    registration.busy(true);
  }
  registration.busy(true);
  std::string reply;
  if (step.status == LineStatus::invalid) {
    if (eof && buffer.empty()) co_return;  // connected and left: nothing to answer
    client_error(state, "exim: {}: {}", peer_name(socket), step.reason);
    reply = exim_error_answer(step.reason);
  } else {
    reply = co_await exim_reply(std::string(step.line), state);
    if (reply.starts_with(kEximErrorPrefix)) {
      client_error(state, "exim: {}: {}", peer_name(socket), reply);
    }
  }
  if (!co_await write_all(socket, reply, settings.write_timeout)) {
    client_error(state, "exim: {}: the answer could not be delivered (client gone or too slow)",
                 peer_name(socket));
    co_return;
  }
  co_await close_after_answer(socket);
}

// The reply to one socketmap request payload.
asio::awaitable<std::string> socketmap_reply_for(std::string payload, State& state,
                                                 const Config& config) {
  auto request = parse_socketmap_request(payload);
  if (!request) co_return socketmap_perm(request.error());
  const auto& maps = config.daemon.socketmaps;
  const auto map = maps.find(request->map);
  if (map == maps.end()) {
    std::string names;
    for (const auto& [name, options] : maps) names += (names.empty() ? "" : ", ") + name;
    co_return socketmap_perm(
        fmt::format("unknown socketmap name {}; mtastsd serves: {} (configure [socketmap.NAME])",
                    quote_input(request->map, 60), names.empty() ? "none" : names));
  }
  if (classify_socketmap_key(request->key) != SocketmapKey::domain) co_return "NOTFOUND ";
  std::shared_ptr<Backend> backend = state.backend;
  auto answered = co_await backend->service().answer(request->key);
  if (!answered) {
    client_error(state, "socketmap: {}; NOTFOUND", answered.error().reason);
    co_return "NOTFOUND ";
  }
  // An address literal has no policy (STS-30): socketmap_reply() says NOTFOUND.
  const LookupResult& result = answered->result;
  const std::string& domain = result.domain;
  std::string_view policy_text;
  std::string_view last_error = result.answer.reason;
  if (result.entry) {
    if (result.entry->policy) policy_text = result.entry->policy->text;
    if (!result.entry->last_error.empty()) last_error = result.entry->last_error;
  }
  // Postfix's match= has no one-label wildcard: "*." patterns become the MX hosts they match.
  std::vector<std::string> mx_hosts;
  if (result.answer.kind == AnswerKind::policy && has_wildcard_pattern(result.answer.mx) &&
      (result.answer.mode == Mode::enforce ||
       (result.answer.mode == Mode::testing && map->second.enforce_testing))) {
    mx_hosts = co_await backend->mx_hosts(domain);
  }
  std::string reply =
      socketmap_reply(domain, result.answer, policy_text, last_error, map->second, mx_hosts);
  if (state.logger->should_log(spdlog::level::debug)) {  // quoting costs, even unlogged
    state.logger->debug("socketmap: {} -> {} ({})", quote_input(payload), quote_input(reply, 200),
                        to_string(result.source));
  }
  co_return reply;
}

template <class Socket>
asio::awaitable<void> socketmap_session(Socket socket, State& state) {
  Registration<Socket> registration(state.connections, socket);
  report_suppressed_client_errors(state);
  std::string buffer;
  std::array<char, 4096> chunk;
  Clock::time_point request_started{};
  for (;;) {
    // A reload applies from the next request on.
    const std::shared_ptr<const Config> config = state.config;
    const DaemonConfig& settings = config->daemon;
    // Every complete request in the buffer, in order (pipelining).
    for (;;) {
      const NetstringStep step = read_netstring(buffer, settings.max_netstring);
      if (step.status == NetstringStatus::need_more) break;
      registration.busy(true);
      if (step.status == NetstringStatus::invalid) {
        client_error(state, "socketmap: {}: {}; closing the connection", peer_name(socket),
                     step.reason);
        const std::string reply =
            format_netstring(socketmap_perm(fmt::format("protocol error: {}", step.reason)));
        if (co_await write_all(socket, reply, settings.write_timeout)) {
          co_await close_after_answer(socket);
        }
        co_return;
      }
      std::string payload(step.payload);
      buffer.erase(0, step.consumed);
      request_started = Clock::now();
      const std::string reply = co_await socketmap_reply_for(std::move(payload), state, *config);
      if (!co_await write_all(socket, format_netstring(reply), settings.write_timeout)) {
        client_error(state, "socketmap: {}: a reply could not be delivered", peer_name(socket));
        co_return;
      }
    }
    registration.busy(!buffer.empty());
    if (state.stopping && buffer.empty()) co_return;
    const Clock::time_point deadline = buffer.empty() ? Clock::now() + settings.idle_timeout
                                                      : request_started + settings.read_timeout;
    auto [ec, n] = co_await read_some(socket, asio::buffer(chunk), deadline);
    if (ec == asio::error::timed_out && !buffer.empty()) {
      client_error(state, "socketmap: {}: no complete request within {} ms; closing",
                   peer_name(socket), settings.read_timeout.count());
    }
    if (ec) co_return;  // EOF, idle, reset, or closed by a stop
    if (buffer.empty()) request_started = Clock::now();
    buffer.append(chunk.data(), n);
    registration.busy(true);
  }
}

}  // namespace

asio::awaitable<void> serve_exim(asio::local::stream_protocol::socket socket, State& state) {
  return exim_session(std::move(socket), state);
}
asio::awaitable<void> serve_exim(asio::ip::tcp::socket socket, State& state) {
  return exim_session(std::move(socket), state);
}
asio::awaitable<void> serve_socketmap(asio::local::stream_protocol::socket socket, State& state) {
  return socketmap_session(std::move(socket), state);
}
asio::awaitable<void> serve_socketmap(asio::ip::tcp::socket socket, State& state) {
  return socketmap_session(std::move(socket), state);
}

}  // namespace mtasts::daemon
