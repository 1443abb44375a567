// The strings Exim gets back (design §2.1). Pure formatting of an Answer; every front-end (CLI,
// dlfunc module, daemon) calls these so the answers cannot drift apart.
#pragma once

#include <string>
#include <string_view>

#include "core/decide.hpp"

namespace mtasts {

// getmta(D): "fail" when a DANE lookup failed or was bogus, or DANE is mandatory for D and not
// every MX host has usable TLSA records; "dane" when every MX host has usable DNSSEC-signed TLSA
// records; otherwise the policy's mode,
// "none", or "fail" (strict mode, policy unavailable). Partly DANE-covered domains get the
// policy's answer: Exim's own hosts_try_dane (default *) applies DANE to the hosts with TLSA.
[[nodiscard]] std::string getmta_answer(const Answer& answer);

// getmta(D, H): "0" when D has an enforce policy and H matches none of its patterns; ""
// otherwise. H is taken as the MTA passed it and never refused: it is matched as mx_host_name
// makes it (core/mx_match.hpp: normalized when it is a hostname, else lower-cased with one root
// dot stripped), so under an enforce policy a malformed H ("mx_1.example.com", "-mx.example.com",
// "a..b", "") gets "0" unless it equals a pattern or is one label more than a "*." pattern.
[[nodiscard]] std::string getmta_host_answer(const Answer& answer, std::string_view host);

// getmx(D): the policy's mx patterns as an Exim colon list ("" without a policy). Patterns never
// contain ":" (LDH only), so no doubling is needed.
[[nodiscard]] std::string getmx_answer(const Answer& answer);

// ignorelist(D): for an enforce policy, an Exim host list for ignore_target_hosts that ignores
// every host not allowed: "<; ! ^mx1\.example\.com$ ; ! ^[^.]+\.example\.net$ ; *".
// Empty for every other answer.
[[nodiscard]] std::string ignorelist_answer(const Answer& answer);

}  // namespace mtasts
