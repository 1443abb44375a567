// An SMTP STARTTLS probe of one MX host for `mtasts check --smtp`: connect to port 25, read the
// greeting, EHLO, STARTTLS, a TLS handshake with SNI = the MX name and the same PKIX rules as
// policy fetches (https/tls_client.hpp), then QUIT. It never sends MAIL FROM: no mail, ever.
// One deadline bounds the whole conversation; every reply is read under a size bound.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "adapters/asio.hpp"
#include "adapters/dns/resolver.hpp"
#include "core/check_steps.hpp"

namespace mtasts::smtp {

struct StarttlsProbeOptions {
  std::uint16_t port = 25;             // test worlds use another
  std::optional<std::string> ca_file;  // extra trusted CAs (PEM), besides the system store
  std::chrono::milliseconds timeout{15000};
  std::string ehlo_name;  // "" = this machine's host name
};

class StarttlsProber {
 public:
  virtual ~StarttlsProber() = default;
  // Never fails: what went wrong is in the facts (`failure`, the TLS facts).
  virtual asio::awaitable<SmtpProbeFacts> probe(std::string host) = 0;
};

// `resolver` (for the MX host's addresses) must outlive the prober.
[[nodiscard]] std::unique_ptr<StarttlsProber> make_starttls_prober(dns::Resolver& resolver,
                                                                   StarttlsProbeOptions options);

}  // namespace mtasts::smtp
