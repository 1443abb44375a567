// DNS lookups the engine needs, each answer carrying its DNSSEC status. Implemented with
// libunbound (unbound_resolver.hpp); tests may substitute a map-driven fake.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "adapters/asio.hpp"

namespace mtasts::dns {

enum class Security {
  secure,         // validated chain of trust
  insecure,       // provably unsigned (or no trust anchor configured)
  bogus,          // validation failed
  indeterminate,  // could not be determined (treat like bogus, DANE-02)
};

enum class Status {
  ok,        // records present
  nxdomain,  // name does not exist
  nodata,    // name exists, no records of this type
  servfail,  // server failure or refused: cannot tell now
  timeout,   // no answer within the deadline: cannot tell now
  error,     // malformed answer or local failure: cannot tell now
};

[[nodiscard]] const char* to_string(Security security);
[[nodiscard]] const char* to_string(Status status);

struct MxRecord {
  std::uint16_t preference = 0;
  std::string host;  // lower-case, no trailing dot
};

struct TlsaRecord {
  std::uint8_t usage = 0;
  std::uint8_t selector = 0;
  std::uint8_t matching_type = 0;
  std::vector<std::uint8_t> data;
};

template <class Record>
struct Answer {
  Status status = Status::error;
  Security security = Security::indeterminate;
  std::vector<Record> records;
  std::uint32_t ttl = 0;       // smallest TTL of the answer (0 when none)
  std::string canonical_name;  // after CNAMEs were followed, no trailing dot
  std::string detail;          // for errors: what went wrong, for the admin
};

class Resolver {
 public:
  virtual ~Resolver() = default;
  // TXT: each RR's character-strings concatenated with nothing between them (STS-08). CNAMEs are
  // followed (STS-09).
  virtual asio::awaitable<Answer<std::string>> txt(std::string name) = 0;
  virtual asio::awaitable<Answer<MxRecord>> mx(std::string name) = 0;
  // A and AAAA together, as address text ("192.0.2.1", "2001:db8::1"); ok when either has data.
  virtual asio::awaitable<Answer<std::string>> addresses(std::string name) = 0;
  virtual asio::awaitable<Answer<TlsaRecord>> tlsa(std::string name) = 0;
};

}  // namespace mtasts::dns
