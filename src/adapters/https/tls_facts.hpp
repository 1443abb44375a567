// What a TLS handshake showed, for `mtasts check`: version, the peer's chain as sent, the PKIX
// verdict and whether the leaf names the host. Read after the handshake, also a failed one (the
// chain a client refused is what the postmaster needs to see).
#pragma once

#include <openssl/ssl.h>

#include <string>

#include "core/check_steps.hpp"

namespace mtasts::https {

// `host` is the name the certificate must carry (SAN DNS-ID, one-label wildcard, no CN).
// `finished`: the handshake completed (only then is the version meaningful).
[[nodiscard]] TlsFacts tls_facts(SSL* ssl, const std::string& host, bool finished);

}  // namespace mtasts::https
