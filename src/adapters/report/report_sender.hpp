// Delivering a TLSRPT report (RFC 8460 §5): by mail through the local MTA's sendmail command, or
// by HTTPS POST. Both return the outcome as a value; neither ever retries (the reporter does).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <string>
#include <vector>

#include "adapters/asio.hpp"
#include "core/error.hpp"

namespace mtasts::report {

// Hands a complete RFC 5322 message to the local MTA: runs `command` (argv[0] an absolute path,
// then its own arguments) followed by "-f" `envelope_sender` "--" `recipient`, with the message
// on standard input. Never through a shell. Succeeds when the command exits 0 within `timeout`;
// otherwise the error says how it ended and quotes the first line it wrote on stderr.
struct SendmailOptions {
  std::vector<std::string> command{"/usr/sbin/sendmail", "-oi"};
  std::chrono::milliseconds timeout{60000};
};

class MailSubmitter {
 public:
  virtual ~MailSubmitter() = default;
  virtual asio::awaitable<std::expected<void, Error>> submit(std::string envelope_sender,
                                                             std::string recipient,
                                                             std::string message) = 0;
};

// POSTs `body` to an https: rua with Content-Type `content_type`, under the same PKIX rules as
// policy fetches (system store plus ca_file, SAN DNS-ID, TLS 1.2+, SNI). Any 2xx is success;
// other statuses, redirects (never followed), TLS and connection errors are errors naming the
// URI. One deadline for the whole exchange.
struct HttpsPostOptions {
  std::optional<std::string> ca_file;  // extra trusted CAs (PEM) beside the system store
  std::chrono::milliseconds timeout{30000};
  std::optional<std::uint16_t> port_override;  // test worlds only: replaces the URI's port
  std::size_t max_header = 8 * 1024;           // largest accepted response header block
  std::size_t max_body = 64 * 1024;            // largest response body read (quoted in errors)
};

class HttpsPoster {
 public:
  virtual ~HttpsPoster() = default;
  virtual asio::awaitable<std::expected<void, Error>> post(std::string uri,
                                                           std::string content_type,
                                                           std::string body) = 0;
};

}  // namespace mtasts::report
