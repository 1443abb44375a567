#include "adapters/redis/redis_client.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <deque>
#include <exception>
#include <optional>
#include <utility>

#include "adapters/https/tls_client.hpp"
#include "adapters/redis/redis_transport.hpp"
#include "core/log_limiter.hpp"
#include "core/text_quote.hpp"

namespace mtasts::redis {

namespace {

using namespace std::chrono_literals;
using detail::Clock;
using detail::Connection;
using detail::Decoder;
using Commands = std::vector<std::vector<std::string>>;

// A Redis that stays down would otherwise write two lines per attempt, forever.
constexpr std::uint32_t kFailureBurst = 5;
constexpr auto kFailureWindow = 60s;
constexpr std::size_t kReadChunk = 16 * 1024;
// While connected through Sentinel, the sentinels are asked this often whether the master is
// still the one we talk to: a failover whose old master stays up (it is demoted later, or never
// if it is cut off) must not keep us writing there.
constexpr auto kSentinelWatch = 1s;

Error failure(std::string reason) {
  return Error{ErrorCategory::shared_cache, std::move(reason)};
}

long long ms(std::chrono::milliseconds duration) {
  return duration.count();
}

// One run(): its replies are the next `remaining` ones on its connection.
struct Call {
  explicit Call(asio::any_io_executor executor) : signal(std::move(executor)) {}
  std::size_t remaining = 0;
  std::vector<Reply> replies;
  Clock::time_point queued;
  bool abandoned = false;  // its caller gave up at the deadline: replies are swallowed
  bool done = false;
  std::string failure;  // why it failed, when it did
  // The caller waits on it until its deadline; cancelled when the call is done.
  asio::steady_timer signal;
};

void finish(Call& call, std::string reason = {}) {
  if (call.done || call.abandoned) return;
  call.done = true;
  call.failure = std::move(reason);
  call.signal.cancel();
}

// One established connection and the calls on it, in the order they were written.
struct Link {
  Link(asio::any_io_executor executor, std::shared_ptr<Connection> c, std::unique_ptr<Decoder> d,
       std::string p)
      : connection(std::move(c)),
        decoder(std::move(d)),
        peer(std::move(p)),
        writer_wake(executor),
        stuck_timer(executor) {}
  std::shared_ptr<Connection> connection;
  std::unique_ptr<Decoder> decoder;
  std::string peer;
  std::deque<std::shared_ptr<Call>> pending;
  std::size_t outstanding = 0;  // replies the pending calls still await
  std::string outbox;           // encoded commands not yet handed to the writer
  asio::steady_timer writer_wake;
  asio::steady_timer stuck_timer;
  std::string failover;  // a READONLY or MASTERDOWN reply seen on it
  bool dropped = false;
};

bool is_failover(const Reply& reply) {
  return reply.type == Reply::Type::error &&
         (reply.text.starts_with("READONLY") || reply.text.starts_with("MASTERDOWN"));
}

void log_exception(const std::shared_ptr<spdlog::logger>& logger, std::exception_ptr error) {
  if (error) logger->error("shared cache: internal error: {}", exception_text(error));
}

}  // namespace

struct Client::Impl {
  Impl(asio::any_io_executor ex, ClientOptions opts, std::shared_ptr<spdlog::logger> log)
      : executor(std::move(ex)),
        options(std::move(opts)),
        logger(log ? std::move(log) : std::make_shared<spdlog::logger>("redis")),
        name(describe(options.target)),
        wake(executor),
        tls(options.ca_file.empty() ? std::nullopt : std::optional<std::string>(options.ca_file)) {
    // A zero minimum would make the backoff spin.
    options.reconnect_min = std::max(options.reconnect_min, std::chrono::milliseconds(1));
    options.reconnect_max = std::max(options.reconnect_max, options.reconnect_min);
  }

  asio::any_io_executor executor;
  ClientOptions options;
  std::shared_ptr<spdlog::logger> logger;
  std::string name;  // describe(target), for log lines and errors
  LogLimiter failure_lines{kFailureBurst, kFailureWindow};
  State state = State::down;
  Stats stats;
  bool started = false;
  bool stopped = false;
  std::shared_ptr<Link> link;           // while up
  std::shared_ptr<Connection> attempt;  // while an attempt sets one up
  std::optional<Address> master;        // with sentinel: the master we connected to
  asio::steady_timer wake;              // the supervisor sleeps or watches the link on it
  https::TlsClientContext tls;

  void log_failure(const std::string& line) {
    const auto admission = failure_lines.admit(Clock::now());
    if (admission.suppressed > 0) {
      logger->warn("shared cache: {} more failure lines left out (at most {} every {} s)",
                   admission.suppressed, kFailureBurst, kFailureWindow.count());
    }
    if (admission.log) logger->warn("{}", line);
  }

  void drop(const std::shared_ptr<Link>& lost, const std::string& reason) {
    if (lost->dropped) return;
    lost->dropped = true;
    lost->connection->close();
    lost->writer_wake.cancel();
    lost->stuck_timer.cancel();
    const auto calls = std::exchange(lost->pending, {});
    lost->outstanding = 0;
    for (const auto& call : calls) finish(*call, "connection lost: " + reason);
    if (link != lost) return;
    link.reset();
    if (!stopped) {
      state = State::down;
      ++stats.disconnects;
      log_failure(
          fmt::format("shared cache: lost {} ({}): {}; reconnecting", name, lost->peer, reason));
    }
    wake.cancel();
  }

  // The next reply on `from`: it belongs to the oldest pending call.
  void deliver(const std::shared_ptr<Link>& from, Reply reply) {
    if (from->pending.empty()) {
      drop(from, "a reply that no command asked for");
      return;
    }
    Call& call = *from->pending.front();
    if (is_failover(reply) && from->failover.empty()) from->failover = reply.text;
    if (!call.abandoned) call.replies.push_back(std::move(reply));
    --call.remaining;
    --from->outstanding;
    if (call.remaining > 0) return;
    const auto completed = std::move(from->pending.front());
    from->pending.pop_front();
    finish(*completed);
    if (!from->failover.empty()) {
      drop(from, fmt::format("the server answered {}: not the master (after a failover?)",
                             quote_input(from->failover)));
    }
  }

  void stop() {
    if (stopped) return;
    stopped = true;
    state = State::down;
    if (attempt) attempt->close();
    if (link) drop(link, "the client was stopped");
    wake.cancel();
  }
};

namespace {

using Impl = Client::Impl;

asio::awaitable<void> sleep_for(std::shared_ptr<Impl> self, std::chrono::milliseconds delay) {
  self->wake.expires_after(delay);
  co_await self->wake.async_wait(asio::as_tuple(asio::use_awaitable));
}

// One connection to a Redis server, set up and ready for commands, or why not. `role`: the
// server must say it is the master (it was named by a sentinel).
asio::awaitable<std::expected<std::shared_ptr<Link>, std::string>> open(std::shared_ptr<Impl> self,
                                                                        Target::Kind kind,
                                                                        std::string host,
                                                                        std::uint16_t port,
                                                                        bool role) {
  const ClientOptions& options = self->options;
  const auto deadline = Clock::now() + options.connect_timeout;
  auto connection = std::make_shared<Connection>(self->executor);
  self->attempt = connection;
  connection->arm(deadline);
  // Whatever way this ends, the attempt is over.
  struct Done {
    std::shared_ptr<Impl> self;
    std::shared_ptr<Connection> connection;
    ~Done() {
      connection->disarm();
      if (self->attempt == connection) self->attempt.reset();
    }
  } done{self, connection};

  std::expected<std::string, std::string> peer;
  if (kind == Target::Kind::unix_socket) {
    peer = co_await connection->connect_unix(options.target.path);
  } else {
    asio::ssl::context* context = nullptr;
    if (kind == Target::Kind::tls) {
      auto built = self->tls.get();
      if (!built) co_return std::unexpected(built.error());
      context = *built;
    }
    auto addresses = co_await connection->resolve(host);
    if (!addresses) co_return std::unexpected(addresses.error());
    peer = co_await connection->connect_tcp(*addresses, port, context, host, deadline);
  }
  if (!peer) co_return std::unexpected(peer.error());

  Commands commands;
  std::vector<std::string> names;
  if (!options.password.empty()) {
    commands.push_back(options.username.empty()
                           ? std::vector<std::string>{"AUTH", options.password}
                           : std::vector<std::string>{"AUTH", options.username, options.password});
    names.emplace_back("AUTH");
  }
  if (options.target.database != 0) {
    commands.push_back({"SELECT", std::to_string(options.target.database)});
    names.emplace_back("SELECT");
  }
  if (role) {
    commands.push_back({"ROLE"});
    names.emplace_back("ROLE");
  }
  // Something to prove that a Redis server answers (and does not want a password).
  if (commands.empty()) {
    commands.push_back({"PING"});
    names.emplace_back("PING");
  }
  auto decoder = std::make_unique<Decoder>();
  auto replies = co_await detail::exchange(*connection, *decoder, std::move(commands));
  if (!replies) co_return std::unexpected(fmt::format("{}: {}", *peer, replies.error()));
  for (std::size_t i = 0; i < replies->size(); ++i) {
    const Reply& reply = (*replies)[i];
    if (reply.type == Reply::Type::error) {
      co_return std::unexpected(
          fmt::format("{}: {} refused: {}", *peer, names[i], quote_input(reply.text)));
    }
    if (names[i] == "ROLE") {
      const bool master = reply.type == Reply::Type::array && !reply.elements.empty() &&
                          reply.elements[0].text == "master";
      if (!master) {
        const std::string said = reply.type == Reply::Type::array && !reply.elements.empty()
                                     ? quote_input(reply.elements[0].text)
                                     : "something else";
        co_return std::unexpected(fmt::format("{} is not the master: ROLE says {}", *peer, said));
      }
    }
  }
  if (self->stopped) co_return std::unexpected("stopped");
  co_return std::make_shared<Link>(self->executor, connection, std::move(decoder),
                                   std::move(*peer));
}

// The master's address from the first sentinel that knows it.
asio::awaitable<std::expected<Address, std::string>> ask_sentinels(std::shared_ptr<Impl> self) {
  const Target& target = self->options.target;
  std::string tried;
  for (const Address& sentinel : target.sentinels) {
    if (self->stopped) co_return std::unexpected("stopped");
    const auto deadline = Clock::now() + self->options.connect_timeout;
    auto connection = std::make_shared<Connection>(self->executor);
    self->attempt = connection;
    connection->arm(deadline);
    std::expected<Address, std::string> answer = std::unexpected("");
    auto addresses = co_await connection->resolve(sentinel.host);
    std::expected<std::string, std::string> peer = std::unexpected("");
    if (addresses) {
      peer = co_await connection->connect_tcp(*addresses, sentinel.port, nullptr, sentinel.host,
                                              deadline);
    } else {
      peer = std::unexpected(addresses.error());
    }
    if (!peer) {
      answer = std::unexpected(peer.error());
    } else {
      Decoder decoder;
      // Named, not a braced list inside co_await: g++ 12 cannot put that list in the frame.
      Commands query{{"SENTINEL", "get-master-addr-by-name", target.master_name}};
      auto replies = co_await detail::exchange(*connection, decoder, std::move(query));
      answer = replies ? detail::master_address(replies->front())
                       : std::expected<Address, std::string>(std::unexpected(replies.error()));
    }
    connection->close();
    if (self->attempt == connection) self->attempt.reset();
    if (answer) co_return answer;
    tried += fmt::format("{}{}: {}", tried.empty() ? "" : "; ", describe(sentinel), answer.error());
  }
  co_return std::unexpected(
      fmt::format("no sentinel named the master {}: {}", target.master_name, tried));
}

asio::awaitable<std::expected<std::shared_ptr<Link>, std::string>> connect(
    std::shared_ptr<Impl> self) {
  const Target& target = self->options.target;
  if (target.kind != Target::Kind::sentinel) {
    co_return co_await open(self, target.kind, target.host, target.port, false);
  }
  auto master = co_await ask_sentinels(self);
  if (!master) co_return std::unexpected(master.error());
  self->master = *master;
  co_return co_await open(self, Target::Kind::tcp, master->host, master->port, true);
}

asio::awaitable<void> read_loop(std::shared_ptr<Impl> self, std::shared_ptr<Link> link) {
  std::vector<char> buffer(kReadChunk);
  try {
    while (!link->dropped) {
      auto [ec, n] = co_await link->connection->read_some(asio::buffer(buffer));
      if (link->dropped) break;
      if (ec) {
        self->drop(link, ec == asio::error::eof ? "the server closed the connection"
                                                : "read: " + ec.message());
        break;
      }
      if (auto fed = link->decoder->feed(std::string_view(buffer.data(), n)); !fed) {
        self->drop(link, fed.error());
        break;
      }
      while (!link->dropped) {
        auto reply = link->decoder->next();
        if (!reply) {
          self->drop(link, reply.error());
        } else if (!*reply) {
          break;
        } else {
          self->deliver(link, std::move(**reply));
        }
      }
    }
  } catch (const std::exception& e) {
    self->drop(link, fmt::format("internal error: {}", e.what()));
  }
}

asio::awaitable<void> write_loop(std::shared_ptr<Impl> self, std::shared_ptr<Link> link) {
  try {
    while (!link->dropped) {
      if (link->outbox.empty()) {
        link->writer_wake.expires_at(asio::steady_timer::time_point::max());
        co_await link->writer_wake.async_wait(asio::as_tuple(asio::use_awaitable));
        continue;
      }
      const std::string chunk = std::exchange(link->outbox, {});
      const auto ec = co_await link->connection->write(chunk);
      if (link->dropped) break;
      if (ec) {
        self->drop(link, "write: " + ec.message());
        break;
      }
    }
  } catch (const std::exception& e) {
    self->drop(link, fmt::format("internal error: {}", e.what()));
  }
}

// Drops the connection when its oldest outstanding reply is stuck_after late.
asio::awaitable<void> stuck_loop(std::shared_ptr<Impl> self, std::shared_ptr<Link> link) {
  const auto limit = self->options.stuck_after;
  while (!link->dropped) {
    const auto now = Clock::now();
    auto next = now + limit;
    if (!link->pending.empty()) {
      next = link->pending.front()->queued + limit;
      if (now >= next) {
        self->drop(link, fmt::format("no reply for {} ms", ms(limit)));
        break;
      }
    }
    link->stuck_timer.expires_at(next);
    co_await link->stuck_timer.async_wait(asio::as_tuple(asio::use_awaitable));
  }
}

asio::awaitable<void> supervise(std::shared_ptr<Impl> self) {
  const auto minimum = self->options.reconnect_min;
  auto delay = minimum;
  while (!self->stopped) {
    self->state = State::connecting;
    std::expected<std::shared_ptr<Link>, std::string> link = std::unexpected("");
    try {
      link = co_await connect(self);
    } catch (const std::exception& e) {
      link = std::unexpected(fmt::format("internal error: {}", e.what()));
    }
    if (self->stopped) break;
    if (!link) {
      self->state = State::down;
      ++self->stats.connect_failures;
      self->log_failure(fmt::format("shared cache: cannot connect to {}: {}; next attempt in {} ms",
                                    self->name, link.error(), ms(delay)));
      co_await sleep_for(self, delay);
      delay = std::min(delay * 2, self->options.reconnect_max);
      continue;
    }
    delay = minimum;
    self->link = *link;
    self->state = State::up;
    ++self->stats.connects;
    if (const auto left_out = self->failure_lines.take_suppressed(Clock::now())) {
      self->logger->warn("shared cache: {} more failure lines left out", left_out);
    }
    self->logger->info("shared cache: connected to {} ({})", self->name, (*link)->peer);
    const auto on_exception = [logger = self->logger](std::exception_ptr e) {
      log_exception(logger, e);
    };
    asio::co_spawn(self->executor, read_loop(self, *link), on_exception);
    asio::co_spawn(self->executor, write_loop(self, *link), on_exception);
    asio::co_spawn(self->executor, stuck_loop(self, *link), on_exception);
    const bool watch = self->options.target.kind == Target::Kind::sentinel;
    while (!self->stopped && self->link == *link) {
      if (watch) {
        self->wake.expires_after(kSentinelWatch);
      } else {
        self->wake.expires_at(asio::steady_timer::time_point::max());
      }
      auto [ec] = co_await self->wake.async_wait(asio::as_tuple(asio::use_awaitable));
      if (ec || !watch || self->stopped || self->link != *link) continue;
      // A failover: the sentinels name another master. Answers never wait for this.
      auto named = co_await ask_sentinels(self);
      if (named && self->master && !(*named == *self->master) && self->link == *link) {
        self->drop(*link, fmt::format("the sentinels name {} as the master now", describe(*named)));
      }
    }
    if (self->stopped) break;
    co_await sleep_for(self, delay);
  }
  self->state = State::down;
}

asio::awaitable<std::expected<std::vector<Reply>, Error>> run_call(
    std::shared_ptr<Impl> self, Commands commands, std::chrono::milliseconds deadline) {
  if (commands.empty()) co_return std::vector<Reply>{};
  std::shared_ptr<Call> call;
  try {
    if (self->stopped) co_return std::unexpected(failure("the shared cache client is stopped"));
    const auto link = self->link;
    if (!link || self->state != State::up) {
      co_return std::unexpected(failure(fmt::format("not connected to {}", self->name)));
    }
    if (link->outstanding + commands.size() > self->options.max_pending) {
      co_return std::unexpected(
          failure(fmt::format("{} commands await replies from {} (max_pending {})",
                              link->outstanding, self->name, self->options.max_pending)));
    }
    auto encoded = detail::encode(commands);
    if (!encoded) co_return std::unexpected(failure(encoded.error()));
    call = std::make_shared<Call>(self->executor);
    call->remaining = commands.size();
    call->queued = Clock::now();
    call->signal.expires_at(call->queued + deadline);
    link->pending.push_back(call);
    link->outstanding += commands.size();
    link->outbox += *encoded;
    link->writer_wake.cancel();
    while (!call->done) {
      auto [ec] = co_await call->signal.async_wait(asio::as_tuple(asio::use_awaitable));
      if (call->done) break;
      if (!ec) {
        // Its place in the FIFO stays, to swallow the replies when they come.
        call->abandoned = true;
        ++self->stats.timeouts;
        co_return std::unexpected(
            failure(fmt::format("no reply from {} within {} ms", self->name, ms(deadline))));
      }
    }
    if (!call->failure.empty()) {
      co_return std::unexpected(failure(fmt::format("{}: {}", self->name, call->failure)));
    }
    co_return std::move(call->replies);
  } catch (const std::exception& e) {
    if (call) call->abandoned = true;
    co_return std::unexpected(failure(fmt::format("internal error: {}", e.what())));
  }
}

}  // namespace

Client::Client(asio::any_io_executor executor, ClientOptions options,
               std::shared_ptr<spdlog::logger> logger)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options), std::move(logger))) {}

Client::~Client() {
  impl_->stop();
}

void Client::start() {
  if (impl_->started || impl_->stopped) return;
  impl_->started = true;
  impl_->state = State::connecting;
  asio::co_spawn(impl_->executor, supervise(impl_),
                 [logger = impl_->logger](std::exception_ptr e) { log_exception(logger, e); });
}

void Client::stop() {
  impl_->stop();
}

asio::awaitable<std::expected<std::vector<Reply>, Error>> Client::run(
    std::vector<std::vector<std::string>> commands, std::chrono::milliseconds deadline) {
  // Not a coroutine itself: the shared state is taken now, so the call does not need the Client.
  return run_call(impl_, std::move(commands), deadline);
}

State Client::state() const {
  return impl_->state;
}

Client::Stats Client::stats() const {
  return impl_->stats;
}

}  // namespace mtasts::redis
