#include "adapters/redis/redis_transport.hpp"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <climits>
#include <exception>
#include <type_traits>

#include "core/text_quote.hpp"

namespace mtasts::redis::detail {

namespace {

using boost::system::error_code;
using tcp = asio::ip::tcp;

// What one element costs against kMaxReplyBytes beside its text: hiredis's redisReply, its
// slot in the parent and our Reply, roughly.
constexpr std::size_t kElementCost = 64;
// hiredis frees its buffer when it is empty and bigger than this: after a large reply the
// memory goes back once the connection is idle, and ordinary replies reuse one allocation.
constexpr std::size_t kReaderMaxBuf = 64 * 1024;

// hiredis's own object functions, wrapped so that our bounds refuse an element before it is
// allocated. Returning null makes the reader fail ("Out of memory"); Budget says the real why.
const redisReplyObjectFunctions* default_functions = nullptr;

Decoder::Budget* budget_of(const redisReadTask* task) {
  return static_cast<Decoder::Budget*>(task->privdata);
}

bool charge(const redisReadTask* task, std::size_t bytes, std::string_view what) {
  Decoder::Budget* budget = budget_of(task);
  if (budget == nullptr) return false;
  if (bytes > kMaxReplyBytes - budget->used) {
    budget->refusal = fmt::format("a reply of more than {} bytes ({})", kMaxReplyBytes, what);
    return false;
  }
  budget->used += bytes;
  return true;
}

void* create_string(const redisReadTask* task, char* text, std::size_t length) {
  if (length > kMaxElementBytes) {
    if (Decoder::Budget* budget = budget_of(task)) {
      budget->refusal = fmt::format("an element of {} bytes (limit {})", length, kMaxElementBytes);
    }
    return nullptr;
  }
  if (!charge(task, kElementCost + length, "strings")) return nullptr;
  return default_functions->createString(task, text, length);
}

void* create_array(const redisReadTask* task, int elements) {
  const std::size_t count = elements > 0 ? static_cast<std::size_t>(elements) : 0;
  if (count > kMaxReplyBytes / kElementCost) {
    if (Decoder::Budget* budget = budget_of(task)) {
      budget->refusal = fmt::format("an array of {} elements", count);
    }
    return nullptr;
  }
  if (!charge(task, kElementCost * (count + 1), "array elements")) return nullptr;
  return default_functions->createArray(task, elements);
}

void* create_integer(const redisReadTask* task, long long value) {
  if (!charge(task, kElementCost, "integers")) return nullptr;
  return default_functions->createInteger(task, value);
}

void* create_nil(const redisReadTask* task) {
  if (!charge(task, kElementCost, "nils")) return nullptr;
  return default_functions->createNil(task);
}

void free_object(void* reply) {
  default_functions->freeObject(reply);
}

redisReplyObjectFunctions bounded_functions{create_string, create_array, create_integer, create_nil,
                                            free_object};

Reply convert(const redisReply& in) {
  Reply out;
  switch (in.type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::string;
      out.text.assign(in.str, in.len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::status;
      out.text.assign(in.str, in.len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = Reply::Type::error;
      out.text.assign(in.str, in.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::integer;
      out.integer = in.integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::array;
      out.elements.reserve(in.elements);
      // Depth is bounded by hiredis (7 levels).
      for (std::size_t i = 0; i < in.elements; ++i) out.elements.push_back(convert(*in.element[i]));
      break;
    default:
      out.type = Reply::Type::nil;
      break;
  }
  return out;
}

struct ReplyDeleter {
  void operator()(void* reply) const { freeReplyObject(reply); }
};

}  // namespace

// ----------------------------------------------------------------------------------------------
// Codec

std::expected<std::string, std::string> encode(
    const std::vector<std::vector<std::string>>& commands) {
  std::string out;
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  for (const auto& command : commands) {
    if (command.empty()) return std::unexpected("an empty command");
    if (command.size() > static_cast<std::size_t>(INT_MAX)) {
      return std::unexpected("a command with too many arguments");
    }
    argv.clear();
    lengths.clear();
    for (const std::string& argument : command) {
      argv.push_back(argument.data());
      lengths.push_back(argument.size());
    }
    char* encoded = nullptr;
    const int length = redisFormatCommandArgv(&encoded, static_cast<int>(command.size()),
                                              argv.data(), lengths.data());
    if (length < 0 || encoded == nullptr) return std::unexpected("cannot encode a command");
    out.append(encoded, static_cast<std::size_t>(length));
    redisFreeCommand(encoded);
  }
  return out;
}

Decoder::Decoder() {
  reader_ = redisReaderCreate();
  if (reader_ == nullptr) return;
  // Every reader gets the same static table, so taking it from the first is enough.
  static const bool initialised = [this] {
    default_functions = reader_->fn;
    return true;
  }();
  (void)initialised;
  reader_->fn = &bounded_functions;
  reader_->privdata = &budget_;
  reader_->maxbuf = kReaderMaxBuf;
}

Decoder::~Decoder() {
  if (reader_ != nullptr) redisReaderFree(reader_);
}

std::expected<void, std::string> Decoder::feed(std::string_view bytes) {
  if (reader_ == nullptr) return std::unexpected("cannot create a reply reader (out of memory)");
  if (redisReaderFeed(reader_, bytes.data(), bytes.size()) != REDIS_OK) {
    return std::unexpected(fmt::format("reply reader: {}", reader_->errstr));
  }
  return {};
}

std::expected<std::optional<Reply>, std::string> Decoder::next() {
  if (reader_ == nullptr) return std::unexpected("cannot create a reply reader (out of memory)");
  void* raw = nullptr;
  if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
    if (!budget_.refusal.empty()) return std::unexpected("reply too large: " + budget_.refusal);
    return std::unexpected(fmt::format("malformed reply: {}", reader_->errstr));
  }
  if (raw == nullptr) {
    // hiredis waits for a whole string (or line) before it looks at its length: bound what it
    // holds for the one incomplete element.
    if (reader_->len - reader_->pos > kMaxElementBytes + 64) {
      return std::unexpected(
          fmt::format("reply too large: an element of more than {} bytes", kMaxElementBytes));
    }
    return std::optional<Reply>{};
  }
  const std::unique_ptr<void, ReplyDeleter> owned(raw);
  budget_.used = 0;
  return std::optional<Reply>{convert(*static_cast<const redisReply*>(raw))};
}

// ----------------------------------------------------------------------------------------------
// Connection

Connection::Connection(asio::any_io_executor executor) : executor_(executor), deadline_(executor) {}

Connection::~Connection() = default;

void Connection::arm(Clock::time_point deadline) {
  deadline_.expires_at(deadline);
  deadline_.async_wait([weak = weak_from_this()](const error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) {
      self->timed_out_ = true;
      self->close();
    }
  });
}

void Connection::disarm() {
  deadline_.cancel();
}

asio::awaitable<std::expected<std::vector<std::string>, std::string>> Connection::resolve(
    std::string host) {
  error_code ec;
  asio::ip::make_address(host, ec);
  if (!ec) co_return std::vector<std::string>{host};
  if (closed_) co_return std::unexpected(timed_out_ ? "timed out" : "closed");

  struct Lookup {
    bool finished = false;
    std::expected<std::vector<std::string>, std::string> result;
  };
  auto lookup = std::make_shared<Lookup>();
  auto wait = std::make_shared<asio::steady_timer>(executor_);
  wait->expires_at(asio::steady_timer::time_point::max());
  lookup_ = wait;
  // Detached so that a slow getaddrinfo cannot hold the attempt past its deadline: the
  // lookup's own state lives until it ends.
  asio::co_spawn(
      executor_,
      [lookup, wait, host, executor = executor_]() -> asio::awaitable<void> {
        try {
          tcp::resolver resolver(executor);
          auto [error, results] =
              co_await resolver.async_resolve(host, "", asio::as_tuple(asio::use_awaitable));
          if (error) {
            lookup->result =
                std::unexpected(fmt::format("cannot resolve {}: {}", host, error.message()));
          } else {
            std::vector<std::string> addresses;
            for (const auto& entry : results) {
              std::string text = entry.endpoint().address().to_string();
              if (std::ranges::find(addresses, text) == addresses.end()) {
                addresses.push_back(std::move(text));
              }
            }
            lookup->result = std::move(addresses);
          }
        } catch (const std::exception& e) {
          lookup->result = std::unexpected(fmt::format("cannot resolve {}: {}", host, e.what()));
        }
        lookup->finished = true;
        wait->cancel();
      },
      asio::detached);
  co_await wait->async_wait(asio::as_tuple(asio::use_awaitable));
  lookup_.reset();
  if (!lookup->finished) {
    co_return std::unexpected(
        fmt::format("cannot resolve {}: {}", host, timed_out_ ? "timed out" : "closed"));
  }
  if (lookup->result && lookup->result->empty()) {
    co_return std::unexpected(fmt::format("{} has no addresses", host));
  }
  co_return std::move(lookup->result);
}

asio::awaitable<std::expected<std::string, std::string>> Connection::connect_tcp(
    const std::vector<std::string>& addresses, std::uint16_t port, asio::ssl::context* tls,
    const std::string& host, Clock::time_point deadline) {
  if (closed_) co_return std::unexpected(timed_out_ ? "timed out" : "closed");
  Tcp* tcp_layer = nullptr;
  if (tls != nullptr) {
    auto& stream = stream_.emplace<Tls>(std::make_unique<https::TlsStream>(executor_, *tls));
    tcp_layer = &boost::beast::get_lowest_layer(*stream);
  } else {
    tcp_layer = &stream_.emplace<Tcp>(executor_);
  }
  auto peer = co_await https::connect_first(*tcp_layer, addresses, port, deadline);
  if (!peer) {
    co_return std::unexpected(peer.error().timed_out || timed_out_
                                  ? "timed out connecting to " + peer.error().detail
                                  : peer.error().detail);
  }
  if (closed_) co_return std::unexpected(timed_out_ ? "timed out" : "closed");
  if (tls != nullptr) {
    auto& stream = *std::get<Tls>(stream_);
    auto named = https::expect_peer_name(stream.native_handle(), host);
    if (!named) co_return std::unexpected(named.error());
    auto shaken = co_await https::handshake(stream, deadline);
    if (!shaken) {
      using Kind = https::HandshakeFailure::Kind;
      switch (shaken.error().kind) {
        case Kind::certificate:
          co_return std::unexpected(
              fmt::format("TLS with {}: certificate refused: {}", *peer, shaken.error().detail));
        case Kind::no_certificate:
          co_return std::unexpected(fmt::format("TLS with {}: no certificate", *peer));
        case Kind::timeout:
          co_return std::unexpected(fmt::format("TLS with {}: timed out", *peer));
        case Kind::other:
          break;
      }
      co_return std::unexpected(
          fmt::format("TLS with {}: {}", *peer, timed_out_ ? "timed out" : shaken.error().detail));
    }
  }
  // From here on our own deadlines apply, not Beast's.
  tcp_layer->expires_never();
  co_return *peer;
}

asio::awaitable<std::expected<std::string, std::string>> Connection::connect_unix(
    const std::string& path) {
  if (closed_) co_return std::unexpected(timed_out_ ? "timed out" : "closed");
  auto& socket = stream_.emplace<Unix>(executor_);
  auto [ec] = co_await socket.async_connect(asio::local::stream_protocol::endpoint(path),
                                            asio::as_tuple(asio::use_awaitable));
  if (timed_out_) co_return std::unexpected(fmt::format("{}: timed out", path));
  if (ec) co_return std::unexpected(fmt::format("{}: {}", path, ec.message()));
  co_return path;
}

asio::awaitable<std::pair<error_code, std::size_t>> Connection::read_some(
    asio::mutable_buffer buffer) {
  auto reader = [&](auto& stream) -> asio::awaitable<std::pair<error_code, std::size_t>> {
    using S = std::remove_cvref_t<decltype(stream)>;
    if constexpr (std::is_same_v<S, std::monostate>) {
      co_return std::pair{error_code(asio::error::not_connected), std::size_t{0}};
    } else if constexpr (std::is_same_v<S, Tls>) {
      auto [ec, n] = co_await stream->async_read_some(buffer, asio::as_tuple(asio::use_awaitable));
      co_return std::pair{ec, n};
    } else {
      auto [ec, n] = co_await stream.async_read_some(buffer, asio::as_tuple(asio::use_awaitable));
      co_return std::pair{ec, n};
    }
  };
  if (closed_) co_return std::pair{error_code(asio::error::operation_aborted), std::size_t{0}};
  co_return co_await std::visit(reader, stream_);
}

asio::awaitable<error_code> Connection::write(std::string_view bytes) {
  auto writer = [&](auto& stream) -> asio::awaitable<error_code> {
    using S = std::remove_cvref_t<decltype(stream)>;
    const asio::const_buffer buffer(bytes.data(), bytes.size());
    if constexpr (std::is_same_v<S, std::monostate>) {
      co_return error_code(asio::error::not_connected);
    } else if constexpr (std::is_same_v<S, Tls>) {
      auto [ec, n] =
          co_await asio::async_write(*stream, buffer, asio::as_tuple(asio::use_awaitable));
      co_return ec;
    } else {
      auto [ec, n] =
          co_await asio::async_write(stream, buffer, asio::as_tuple(asio::use_awaitable));
      co_return ec;
    }
  };
  if (closed_) co_return error_code(asio::error::operation_aborted);
  co_return co_await std::visit(writer, stream_);
}

void Connection::close() {
  closed_ = true;
  deadline_.cancel();
  if (lookup_) lookup_->cancel();
  error_code ignored;
  std::visit(
      [&](auto& stream) {
        using S = std::remove_cvref_t<decltype(stream)>;
        if constexpr (std::is_same_v<S, Tcp>) {
          stream.socket().close(ignored);
        } else if constexpr (std::is_same_v<S, Unix>) {
          stream.close(ignored);
        } else if constexpr (std::is_same_v<S, Tls>) {
          // No close_notify: the connection is being abandoned, and Redis does not need one.
          boost::beast::get_lowest_layer(*stream).socket().close(ignored);
        }
      },
      stream_);
}

asio::awaitable<std::expected<std::vector<Reply>, std::string>> exchange(
    Connection& connection, Decoder& decoder, std::vector<std::vector<std::string>> commands) {
  auto encoded = encode(commands);
  if (!encoded) co_return std::unexpected(encoded.error());
  const error_code written = co_await connection.write(*encoded);
  if (written) {
    co_return std::unexpected(connection.timed_out() ? "timed out" : "write: " + written.message());
  }
  std::vector<Reply> replies;
  std::array<char, 4096> buffer{};
  while (replies.size() < commands.size()) {
    auto reply = decoder.next();
    if (!reply) co_return std::unexpected(reply.error());
    if (*reply) {
      replies.push_back(std::move(**reply));
      continue;
    }
    auto [ec, n] = co_await connection.read_some(asio::buffer(buffer));
    if (connection.timed_out()) co_return std::unexpected("timed out waiting for a reply");
    if (ec == asio::error::eof) co_return std::unexpected("the server closed the connection");
    if (ec) co_return std::unexpected("read: " + ec.message());
    auto fed = decoder.feed(std::string_view(buffer.data(), n));
    if (!fed) co_return std::unexpected(fed.error());
  }
  co_return replies;
}

// A sentinel's answer to SENTINEL get-master-addr-by-name: [host, port], or nil.
std::expected<Address, std::string> master_address(const Reply& reply) {
  if (reply.type == Reply::Type::nil) return std::unexpected("does not know the master");
  if (reply.type == Reply::Type::error) return std::unexpected(quote_input(reply.text));
  if (reply.type != Reply::Type::array || reply.elements.size() != 2) {
    return std::unexpected("answered something other than an address");
  }
  const std::string& host = reply.elements[0].text;
  const std::string& port_text = reply.elements[1].text;
  const bool host_ok = !host.empty() && host.size() <= 253 &&
                       std::ranges::all_of(host, [](char c) { return c > 0x20 && c < 0x7F; });
  const bool port_ok = !port_text.empty() && port_text.size() <= 5 &&
                       std::ranges::all_of(port_text, [](char c) { return c >= '0' && c <= '9'; });
  const long port = port_ok ? std::stol(port_text) : 0;
  if (!host_ok || port < 1 || port > 65535) {
    return std::unexpected(fmt::format("answered a bad address: {} port {}", quote_input(host),
                                       quote_input(port_text)));
  }
  return Address{host, static_cast<std::uint16_t>(port)};
}

}  // namespace mtasts::redis::detail
