// Resolver on libunbound: asynchronous, DNSSEC-aware, driven by the caller's asio executor.
//
// Lifetime and threads: the libunbound context is created lazily by the first query (so a forked
// Exim delivery process pays nothing until it has a cache miss) and uses one background thread
// of libunbound's own. Results are read from ub_fd() through an asio::posix::stream_descriptor
// and dispatched by ub_process() on `executor`, which must be single-threaded (an io_context run
// by one thread, or a strand). Queries may outlive the UnboundResolver object: each one holds the
// shared state it needs.
//
// Limits: every query races a deadline (UnboundOptions::timeout); on expiry it is cancelled with
// ub_cancel and answers Status::timeout. RDATA is untrusted: it is read by the bounds-checked
// parsers of dns_wire.hpp, and a malformed record makes the whole answer Status::error with a
// detail, never a crash.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "adapters/dns/resolver.hpp"

namespace mtasts::dns {

struct UnboundOptions {
  // Forwarders to ask, in order: "ADDR", "ADDR:PORT", "[V6ADDR]", "[V6ADDR]:PORT" or a bare IPv6
  // address (port 53 when none is given). Empty: the nameservers listed in `resolv_conf`.
  std::vector<std::string> servers;
  // Read when `servers` is empty (ub_ctx_resolvconf).
  std::string resolv_conf = "/etc/resolv.conf";
  // DNSSEC trust anchor file, e.g. /usr/share/dns/root.key. Without one nothing is validated and
  // every answer is Security::insecure (never secure).
  std::optional<std::string> trust_anchor_file;
  // true: the file is an RFC 5011 managed anchor that libunbound updates (ub_ctx_add_ta_autr; it
  // must be writable); false: a static anchor file (ub_ctx_add_ta_file).
  bool trust_anchor_auto_update = false;
  // Deadline of one query (for addresses(): of the A and AAAA queries, which run concurrently).
  std::chrono::milliseconds timeout{5000};
  // Queries libunbound may have out at once (its outgoing-range; one UDP socket each). Its
  // default of 16 suits one lookup at a time (CLI, Exim module); a daemon needs far more, or a
  // few dozen domains whose DNS never answers hold every slot for `timeout` and starve every
  // other lookup.
  unsigned max_outstanding_queries = 16;
  // libunbound's infra-cache-min-rtt, the shortest wait before a query is sent again. Its 50 ms
  // suits authoritative servers; mtasts only ever asks forwarders, which may need longer for a
  // name they must resolve, and a resend from a new socket drops the first copy's late answer
  // (a slow resolver then saw three or four copies of every query). unbound's documentation
  // advises raising it for forwarders.
  std::chrono::milliseconds min_retransmit{1000};
};

class UnboundResolver final : public Resolver {
 public:
  explicit UnboundResolver(asio::any_io_executor executor, UnboundOptions options = {});
  ~UnboundResolver() override;
  UnboundResolver(const UnboundResolver&) = delete;
  UnboundResolver& operator=(const UnboundResolver&) = delete;

  asio::awaitable<Answer<std::string>> txt(std::string name) override;
  asio::awaitable<Answer<MxRecord>> mx(std::string name) override;
  asio::awaitable<Answer<std::string>> addresses(std::string name) override;
  asio::awaitable<Answer<TlsaRecord>> tlsa(std::string name) override;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace mtasts::dns
