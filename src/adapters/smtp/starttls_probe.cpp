#include "adapters/smtp/starttls_probe.hpp"

#include <unistd.h>

#include <fmt/format.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <cctype>
#include <expected>
#include <string_view>
#include <utility>
#include <vector>

#include "adapters/https/tls_client.hpp"
#include "adapters/https/tls_facts.hpp"

namespace mtasts::smtp {
namespace {

namespace beast = boost::beast;
using https::Deadline;
using https::TlsStream;

constexpr std::size_t kMaxLine = 1024;      // RFC 5321 §4.5.3.1.5 says 512; some servers exceed
constexpr std::size_t kMaxReplyLines = 64;  // an EHLO reply is a few lines

struct Reply {
  int code = 0;
  std::vector<std::string> lines;  // without CRLF
};

// One SMTP reply, multi-line replies included; an error text when it is cut, too long, late or
// malformed.
template <class Stream>
asio::awaitable<std::expected<Reply, std::string>> read_reply(Stream& stream, std::string& buffer,
                                                              beast::tcp_stream& tcp,
                                                              Deadline deadline) {
  Reply reply;
  while (reply.lines.size() < kMaxReplyLines) {
    tcp.expires_at(deadline);
    auto [ec, size] =
        co_await asio::async_read_until(stream, asio::dynamic_buffer(buffer, kMaxLine), "\r\n",
                                        asio::as_tuple(asio::use_awaitable));
    if (ec == beast::error::timeout) co_return std::unexpected("no reply in time");
    if (ec == asio::error::not_found) co_return std::unexpected("reply line too long");
    if (ec) co_return std::unexpected(fmt::format("connection lost ({})", ec.message()));
    std::string line = buffer.substr(0, size - 2);
    buffer.erase(0, size);
    const bool well_formed = line.size() >= 3 &&
                             std::isdigit(static_cast<unsigned char>(line[0])) &&
                             std::isdigit(static_cast<unsigned char>(line[1])) &&
                             std::isdigit(static_cast<unsigned char>(line[2])) &&
                             (line.size() == 3 || line[3] == ' ' || line[3] == '-');
    if (!well_formed)
      co_return std::unexpected(fmt::format("malformed reply {}", https::quote(line)));
    reply.code = std::stoi(line.substr(0, 3));
    const bool last = line.size() == 3 || line[3] == ' ';
    reply.lines.push_back(std::move(line));
    if (last) co_return reply;
  }
  co_return std::unexpected("reply has too many lines");
}

template <class Stream>
asio::awaitable<std::expected<void, std::string>> send_line(Stream& stream, beast::tcp_stream& tcp,
                                                            std::string command,
                                                            Deadline deadline) {
  tcp.expires_at(deadline);
  auto [ec, size] = co_await asio::async_write(stream, asio::buffer(command),
                                               asio::as_tuple(asio::use_awaitable));
  if (ec == beast::error::timeout) co_return std::unexpected("could not send in time");
  if (ec) co_return std::unexpected(fmt::format("connection lost ({})", ec.message()));
  co_return std::expected<void, std::string>{};
}

bool offers_starttls(const Reply& reply) {
  for (std::size_t i = 1; i < reply.lines.size(); ++i) {
    std::string keyword;
    for (char c : std::string_view(reply.lines[i]).substr(4)) {
      if (c == ' ') break;
      keyword += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    if (keyword == "STARTTLS") return true;
  }
  return false;
}

std::string local_name() {
  char buffer[256] = {};
  if (gethostname(buffer, sizeof buffer - 1) != 0 || buffer[0] == '\0') return "localhost";
  return buffer;
}

class AsioStarttlsProber final : public StarttlsProber {
 public:
  AsioStarttlsProber(dns::Resolver& resolver, StarttlsProbeOptions options)
      : resolver_(resolver), options_(std::move(options)), context_(options_.ca_file) {
    if (options_.ehlo_name.empty()) options_.ehlo_name = local_name();
  }

  asio::awaitable<SmtpProbeFacts> probe(std::string host) override {
    SmtpProbeFacts facts;
    facts.host = host;
    const Deadline deadline = std::chrono::steady_clock::now() + options_.timeout;
    const auto late = [&](std::string_view phase) {
      return fmt::format("no answer within {} ms ({})", options_.timeout.count(), phase);
    };
    auto context = context_.get();
    if (!context) {
      facts.failure = context.error();
      co_return facts;
    }
    auto resolved = co_await https::resolve_before(resolver_, host, deadline);
    if (!resolved) {
      facts.failure = late("resolving its address");
      co_return facts;
    }
    if (resolved->status != dns::Status::ok || resolved->records.empty()) {
      facts.failure =
          fmt::format("cannot resolve its address ({})", dns::to_string(resolved->status));
      co_return facts;
    }
    TlsStream stream(co_await asio::this_coro::executor, **context);
    beast::tcp_stream& tcp = beast::get_lowest_layer(stream);
    auto connected = co_await https::connect_first(tcp, resolved->records, options_.port, deadline);
    if (!connected) {
      facts.failure = connected.error().timed_out
                          ? late(fmt::format("connecting to {}", connected.error().detail))
                          : fmt::format("cannot connect ({})", connected.error().detail);
      co_return facts;
    }
    facts.address = *connected;

    std::string buffer;
    auto greeting = co_await read_reply(tcp, buffer, tcp, deadline);
    if (!greeting) {
      facts.failure = "greeting: " + greeting.error();
      co_return facts;
    }
    facts.greeting = greeting->lines.front();
    if (greeting->code != 220) {
      facts.failure = fmt::format("greeting is not 220: {}", https::quote(facts.greeting));
      co_return facts;
    }
    auto conversation = co_await plain_part(tcp, buffer, deadline, facts);
    if (!conversation) {
      facts.failure = conversation.error();
      co_return facts;
    }
    if (!facts.starttls_offered) co_return facts;

    // RFC 3207 §4.2: whatever came before the handshake is not trusted.
    buffer.clear();
    if (auto named = https::expect_peer_name(stream.native_handle(), host); !named) {
      facts.failure = named.error();
      co_return facts;
    }
    auto shaken = co_await https::handshake(stream, deadline);
    facts.tls = https::tls_facts(stream.native_handle(), host, shaken.has_value());
    if (!shaken) {
      using Kind = https::HandshakeFailure::Kind;
      if (shaken.error().kind == Kind::timeout) facts.failure = late("TLS handshake");
      if (shaken.error().kind == Kind::no_certificate) facts.failure = "presented no certificate";
      if (shaken.error().kind == Kind::other) {
        facts.failure = "TLS handshake failed: " + shaken.error().detail;
      }
      co_return facts;
    }
    // A polite end; its outcome changes nothing.
    if (co_await send_line(stream, tcp, "QUIT\r\n", deadline)) {
      (void)co_await read_reply(stream, buffer, tcp, deadline);
    }
    co_return facts;
  }

 private:
  // EHLO and, when offered, STARTTLS up to its 220.
  asio::awaitable<std::expected<void, std::string>> plain_part(beast::tcp_stream& tcp,
                                                               std::string& buffer,
                                                               Deadline deadline,
                                                               SmtpProbeFacts& facts) {
    if (auto sent =
            co_await send_line(tcp, tcp, fmt::format("EHLO {}\r\n", options_.ehlo_name), deadline);
        !sent) {
      co_return std::unexpected("EHLO: " + sent.error());
    }
    auto ehlo = co_await read_reply(tcp, buffer, tcp, deadline);
    if (!ehlo) co_return std::unexpected("EHLO: " + ehlo.error());
    if (ehlo->code != 250) {
      co_return std::unexpected(fmt::format("EHLO refused: {}", https::quote(ehlo->lines.front())));
    }
    facts.starttls_offered = offers_starttls(*ehlo);
    if (!facts.starttls_offered) {
      if (co_await send_line(tcp, tcp, "QUIT\r\n", deadline)) {
        (void)co_await read_reply(tcp, buffer, tcp, deadline);
      }
      co_return std::expected<void, std::string>{};
    }
    if (auto sent = co_await send_line(tcp, tcp, "STARTTLS\r\n", deadline); !sent) {
      co_return std::unexpected("STARTTLS: " + sent.error());
    }
    auto ready = co_await read_reply(tcp, buffer, tcp, deadline);
    if (!ready) co_return std::unexpected("STARTTLS: " + ready.error());
    if (ready->code != 220) {
      co_return std::unexpected(
          fmt::format("STARTTLS refused: {}", https::quote(ready->lines.front())));
    }
    co_return std::expected<void, std::string>{};
  }

  dns::Resolver& resolver_;
  StarttlsProbeOptions options_;
  https::TlsClientContext context_;
};

}  // namespace

std::unique_ptr<StarttlsProber> make_starttls_prober(dns::Resolver& resolver,
                                                     StarttlsProbeOptions options) {
  return std::make_unique<AsioStarttlsProber>(resolver, std::move(options));
}

}  // namespace mtasts::smtp
