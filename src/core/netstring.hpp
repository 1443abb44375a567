// Netstrings ("<length>:<payload>,", D. J. Bernstein's netstrings.txt) as the Postfix socketmap
// protocol carries them (design §2.3). A pure, incremental reader: the daemon hands it whatever
// octets have arrived so far and it answers done, need more or invalid (style §2.12). The length
// is checked against the limit as its digits arrive, before any payload is awaited (style §2.10,
// Postfix netstring.c), so a hostile length never makes the daemon buffer more than the limit.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mtasts {

enum class NetstringStatus {
  done,       // one whole netstring is at the start of the input
  need_more,  // a valid prefix of one: wait for more octets
  invalid,    // not a netstring, or longer than the limit: the stream cannot be resynchronized
};

struct NetstringStep {
  NetstringStatus status = NetstringStatus::need_more;
  std::size_t consumed = 0;  // done: octets of the whole netstring (length, ':', payload, ',')
  std::string_view payload;  // done: a view into the input
  std::string reason;        // invalid: one line saying what was expected and what was found
};

// Reads the netstring at the start of `input` (the octets received so far; more netstrings may
// follow it). Rules: the length is 1 or more ASCII digits without a leading zero (except "0"
// itself), at most `max_payload`; then ':', exactly that many payload octets, then ','.
[[nodiscard]] NetstringStep read_netstring(std::string_view input, std::size_t max_payload);

// "<length>:<payload>,".
[[nodiscard]] std::string format_netstring(std::string_view payload);

}  // namespace mtasts
