// The bridge from libunbound to asio: context set-up, one coroutine per query, and turning a
// ub_result into an Answer. The RDATA itself is read by the pure parsers of dns_wire.hpp.
#include "adapters/dns/unbound_resolver.hpp"

#include <fmt/format.h>
#include <unbound.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <expected>
#include <iterator>
#include <span>
#include <string_view>
#include <utility>

#include "adapters/dns/dns_wire.hpp"

namespace mtasts::dns {

namespace {

constexpr int kClassIn = 1;
constexpr int kTypeA = 1;
constexpr int kTypeMx = 15;
constexpr int kTypeTxt = 16;
constexpr int kTypeAaaa = 28;
constexpr int kTypeTlsa = 52;

constexpr int kRcodeNoError = 0;
constexpr int kRcodeServfail = 2;
constexpr int kRcodeNxdomain = 3;
constexpr int kRcodeRefused = 5;

const char* type_name(int type) {
  switch (type) {
    case kTypeA:
      return "A";
    case kTypeMx:
      return "MX";
    case kTypeTxt:
      return "TXT";
    case kTypeAaaa:
      return "AAAA";
    case kTypeTlsa:
      return "TLSA";
    default:
      return "?";
  }
}

std::string rcode_name(int rcode) {
  switch (rcode) {
    case kRcodeServfail:
      return "SERVFAIL";
    case kRcodeRefused:
      return "REFUSED";
    default:
      return fmt::format("rcode {}", rcode);
  }
}

// Lower-cased, root dot stripped: how names are reported back.
std::string display_name(std::string_view text) {
  std::string out(text);
  if (!out.empty() && out.back() == '.') out.pop_back();
  std::ranges::transform(out, out.begin(), [](char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
  });
  return out;
}

struct ResultDeleter {
  void operator()(ub_result* result) const { ub_resolve_free(result); }
};
using ResultPtr = std::unique_ptr<ub_result, ResultDeleter>;

// What one libunbound query produced, before the RDATA is interpreted.
struct Raw {
  enum class Kind { done, timeout, local_error } kind = Kind::local_error;
  int err = 0;  // libunbound error code when kind == done
  ResultPtr result;
  std::string detail;  // for local_error
};

}  // namespace

// ----------------------------------------------------------------------------------------------
// Shared state: the libunbound context, its result pipe and the count of queries in flight.

struct UnboundResolver::Impl : std::enable_shared_from_this<UnboundResolver::Impl> {
  Impl(asio::any_io_executor ex, UnboundOptions opts)
      : executor(std::move(ex)), options(std::move(opts)), pipe(executor) {}

  ~Impl() {
    if (pipe.is_open()) {
      boost::system::error_code ignored;
      pipe.cancel(ignored);
      (void)pipe.release();  // the descriptor belongs to libunbound
    }
    if (ctx != nullptr) ub_ctx_delete(ctx);
  }

  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Creates and configures the context on first use. Returns false (with init_error set) when
  // that failed; the failure is remembered, every later query reports it.
  bool ensure_context() {
    if (ctx != nullptr) return true;
    if (!init_error.empty()) return false;
    init_error = create_context();
    if (!init_error.empty()) {
      if (ctx != nullptr) ub_ctx_delete(ctx);
      ctx = nullptr;
      return false;
    }
    return true;
  }

  std::string create_context() {
    ctx = ub_ctx_create();
    if (ctx == nullptr) return "libunbound: cannot create a resolver context (out of memory?)";
    int rc = ub_ctx_set_option(ctx, "do-not-query-localhost:", "no");
    if (rc != 0) return fmt::format("libunbound: do-not-query-localhost: {}", ub_strerror(rc));
    const std::string range = std::to_string(options.max_outstanding_queries);
    rc = ub_ctx_set_option(ctx, "outgoing-range:", range.c_str());
    if (rc != 0) return fmt::format("libunbound: outgoing-range {}: {}", range, ub_strerror(rc));
    const std::string min_rtt = std::to_string(options.min_retransmit.count());
    rc = ub_ctx_set_option(ctx, "infra-cache-min-rtt:", min_rtt.c_str());
    if (rc != 0) {
      return fmt::format("libunbound: infra-cache-min-rtt {}: {}", min_rtt, ub_strerror(rc));
    }
    // One background thread rather than a forked process: we may run inside Exim's delivery
    // processes, where an extra child and its SIGCHLD would surprise the host.
    rc = ub_ctx_async(ctx, 1);
    if (rc != 0) return fmt::format("libunbound: cannot enable threads: {}", ub_strerror(rc));
    if (options.servers.empty()) {
      rc = ub_ctx_resolvconf(ctx, options.resolv_conf.c_str());
      if (rc != 0) {
        return fmt::format("libunbound: cannot use the nameservers of {}: {}{}",
                           options.resolv_conf, ub_strerror(rc),
                           rc == UB_READFILE ? fmt::format(" ({})", std::strerror(errno)) : "");
      }
    } else {
      for (const std::string& server : options.servers) {
        auto spec = wire::forwarder_spec(server);
        if (!spec) return fmt::format("DNS server {:?}: {}", server, spec.error());
        rc = ub_ctx_set_fwd(ctx, spec->c_str());
        if (rc != 0) {
          return fmt::format("libunbound: cannot forward to {}: {}", server, ub_strerror(rc));
        }
      }
    }
    if (options.trust_anchor_file) {
      const char* file = options.trust_anchor_file->c_str();
      // libunbound only reads the file on the first query and then says no more than
      // "initialization failure": check it here to give the admin the reason.
      if (access(file, R_OK) != 0) {
        return fmt::format("cannot read DNSSEC trust anchor {}: {}", *options.trust_anchor_file,
                           std::strerror(errno));
      }
      rc = options.trust_anchor_auto_update ? ub_ctx_add_ta_autr(ctx, file)
                                            : ub_ctx_add_ta_file(ctx, file);
      if (rc != 0) {
        return fmt::format("libunbound: cannot use DNSSEC trust anchor {}: {}",
                           *options.trust_anchor_file, ub_strerror(rc));
      }
    }
    int fd = ub_fd(ctx);
    if (fd < 0) return "libunbound: no result descriptor (ub_fd failed)";
    boost::system::error_code ec;
    pipe.assign(fd, ec);
    if (ec) return fmt::format("libunbound: cannot watch the result descriptor: {}", ec.message());
    return {};
  }

  // Keeps one wait on the result pipe outstanding while queries are in flight.
  void ensure_reading() {
    if (reading || in_flight == 0 || !pipe.is_open()) return;
    reading = true;
    pipe.async_wait(asio::posix::stream_descriptor::wait_read,
                    [self = shared_from_this()](const boost::system::error_code& ec) {
                      self->reading = false;
                      if (ec && ec != asio::error::operation_aborted) {
                        // The pipe itself failed: stop here rather than spin; the queries in
                        // flight end at their deadlines.
                        self->pipe_error = ec.message();
                        return;
                      }
                      // Runs the callbacks of every finished query (on_result below).
                      if (!ec) (void)ub_process(self->ctx);
                      self->ensure_reading();
                    });
  }

  // The last query in flight gave up (deadline or cancellation): stop watching the pipe, so an
  // idle resolver leaves the io_context with no work. A stale answer left in the pipe is read
  // and dropped by ub_process the next time.
  void query_abandoned() {
    if (in_flight == 0 && reading) {
      boost::system::error_code ignored;
      pipe.cancel(ignored);
    }
  }

  asio::awaitable<Raw> query(std::string name, int type);

  asio::any_io_executor executor;
  UnboundOptions options;
  asio::posix::stream_descriptor pipe;
  ub_ctx* ctx = nullptr;
  std::string init_error;
  std::size_t in_flight = 0;
  bool reading = false;
  std::string pipe_error;
};

namespace {

// One outstanding libunbound query, owned by the coroutine frame that waits for it. The result
// callback wakes the waiter by cancelling `wake`, which otherwise fires at the deadline. If the
// frame goes away first the query is cancelled, so libunbound never calls back into freed memory.
struct Pending {
  Pending(std::shared_ptr<UnboundResolver::Impl> owner, asio::any_io_executor ex)
      : impl(std::move(owner)), wake(std::move(ex)) {}
  ~Pending() { abandon(); }
  Pending(const Pending&) = delete;
  Pending& operator=(const Pending&) = delete;

  void abandon() {
    if (!outstanding) return;
    outstanding = false;
    --impl->in_flight;
    (void)ub_cancel(impl->ctx, id);
    impl->query_abandoned();
  }

  std::shared_ptr<UnboundResolver::Impl> impl;
  asio::steady_timer wake;
  int id = 0;
  bool outstanding = false;
  int err = 0;
  ResultPtr result;
};

void on_result(void* data, int err, ub_result* result) {
  auto* pending = static_cast<Pending*>(data);
  pending->result.reset(result);
  pending->err = err;
  if (pending->outstanding) {
    pending->outstanding = false;
    --pending->impl->in_flight;
  }
  pending->wake.cancel();
}

}  // namespace

asio::awaitable<Raw> UnboundResolver::Impl::query(std::string name, int type) {
  Raw raw;
  if (!ensure_context()) {
    raw.detail = init_error;
    co_return raw;
  }
  Pending pending(shared_from_this(), executor);
  pending.wake.expires_after(options.timeout);
  pending.outstanding = true;
  ++in_flight;
  int rc = ub_resolve_async(ctx, name.c_str(), type, kClassIn, &pending, on_result, &pending.id);
  if (rc != 0) {
    pending.outstanding = false;
    --in_flight;
    raw.detail =
        fmt::format("libunbound: cannot start the query: {}{}", ub_strerror(rc),
                    rc == UB_INITFAIL && options.trust_anchor_file
                        ? fmt::format(" (check the trust anchor {})", *options.trust_anchor_file)
                        : std::string());
    co_return raw;
  }
  ensure_reading();
  boost::system::error_code ec;
  if (pending.outstanding) {
    std::tie(ec) = co_await pending.wake.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  if (pending.outstanding) {
    pending.abandon();
    if (!ec) {
      raw.kind = Raw::Kind::timeout;
      if (!pipe_error.empty()) raw.detail = "result pipe failed: " + pipe_error;
    } else {
      raw.detail = "query cancelled";
    }
    co_return raw;
  }
  raw.kind = Raw::Kind::done;
  raw.err = pending.err;
  raw.result = std::move(pending.result);
  co_return raw;
}

// ----------------------------------------------------------------------------------------------
// Turning a libunbound result into an Answer.

namespace {

template <class Record, class Parse>
Answer<Record> interpret(const UnboundOptions& options, const std::string& name, int type, Raw raw,
                         Parse parse) {
  Answer<Record> answer;
  const bool validating = options.trust_anchor_file.has_value();
  // Without a trust anchor nothing was validated: insecure, never secure (nor indeterminate,
  // which DANE treats like bogus).
  answer.security = validating ? Security::indeterminate : Security::insecure;
  answer.canonical_name = display_name(name);
  const std::string what = fmt::format("{}/{}", answer.canonical_name, type_name(type));

  switch (raw.kind) {
    case Raw::Kind::timeout:
      answer.status = Status::timeout;
      answer.detail =
          fmt::format("DNS query {} got no answer within {} ms{}{}", what, options.timeout.count(),
                      raw.detail.empty() ? "" : "; ", raw.detail);
      return answer;
    case Raw::Kind::local_error:
      answer.status = Status::error;
      answer.detail = fmt::format("DNS query {}: {}", what, raw.detail);
      return answer;
    case Raw::Kind::done:
      break;
  }
  if (raw.err != 0 || raw.result == nullptr) {
    answer.status = Status::error;
    answer.detail = fmt::format("DNS query {}: libunbound: {}", what,
                                raw.err != 0 ? ub_strerror(raw.err) : "no result");
    return answer;
  }
  const ub_result& r = *raw.result;
  if (r.canonname != nullptr) answer.canonical_name = display_name(r.canonname);

  if (r.bogus) {
    answer.security = Security::bogus;
    answer.detail = fmt::format("DNSSEC validation failed for {}: {}", what,
                                r.why_bogus != nullptr ? r.why_bogus : "no reason given");
  } else if (r.secure) {
    answer.security = validating ? Security::secure : Security::insecure;
  } else {
    answer.security = Security::insecure;
  }

  const std::uint32_t ttl = r.ttl > 0 ? static_cast<std::uint32_t>(r.ttl) : 0;
  if (r.rcode == kRcodeNxdomain || r.nxdomain) {
    answer.status = Status::nxdomain;
    answer.ttl = ttl;
    return answer;
  }
  if (r.rcode != kRcodeNoError) {
    answer.status = Status::servfail;
    if (answer.detail.empty()) {
      answer.detail = fmt::format("DNS query {} failed: {}", what, rcode_name(r.rcode));
    }
    return answer;
  }
  if (!r.havedata || r.data == nullptr || r.len == nullptr || r.data[0] == nullptr) {
    answer.status = Status::nodata;
    answer.ttl = ttl;
    return answer;
  }
  for (std::size_t i = 0; r.data[i] != nullptr; ++i) {
    if (r.len[i] < 0) {
      answer.status = Status::error;
      answer.records.clear();
      answer.detail = fmt::format("DNS answer {} record {}: negative length", what, i + 1);
      return answer;
    }
    std::span<const std::uint8_t> rdata(reinterpret_cast<const std::uint8_t*>(r.data[i]),
                                        static_cast<std::size_t>(r.len[i]));
    auto record = parse(rdata);
    if (!record) {
      answer.status = Status::error;
      answer.records.clear();
      answer.detail = fmt::format("malformed {} record {} for {}: {}", type_name(type), i + 1,
                                  answer.canonical_name, record.error());
      return answer;
    }
    answer.records.push_back(std::move(*record));
  }
  answer.status = Status::ok;
  answer.ttl = ttl;
  return answer;
}

// The wire parsers' MX and TLSA values as the Resolver's record types.
std::expected<MxRecord, std::string> mx_record(std::span<const std::uint8_t> rdata) {
  auto parsed = wire::mx(rdata);
  if (!parsed) return std::unexpected(std::move(parsed.error()));
  return MxRecord{parsed->preference, std::move(parsed->host)};
}

std::expected<TlsaRecord, std::string> tlsa_record(std::span<const std::uint8_t> rdata) {
  auto parsed = wire::tlsa(rdata);
  if (!parsed) return std::unexpected(std::move(parsed.error()));
  return TlsaRecord{parsed->usage, parsed->selector, parsed->matching_type,
                    std::move(parsed->data)};
}

Security weaker(Security a, Security b) {
  auto rank = [](Security s) {
    switch (s) {
      case Security::secure:
        return 0;
      case Security::insecure:
        return 1;
      case Security::indeterminate:
        return 2;
      case Security::bogus:
        return 3;
    }
    return 3;
  };
  return rank(a) >= rank(b) ? a : b;
}

bool cannot_tell(Status s) {
  return s == Status::servfail || s == Status::timeout || s == Status::error;
}

}  // namespace

// ----------------------------------------------------------------------------------------------

UnboundResolver::UnboundResolver(asio::any_io_executor executor, UnboundOptions options)
    : impl_(std::make_shared<Impl>(std::move(executor), std::move(options))) {}

UnboundResolver::~UnboundResolver() = default;

// The public calls are plain functions handing a shared_ptr to free coroutines: a coroutine
// that is a member would read `this` only once it first runs, possibly after the resolver was
// destroyed.
namespace {

template <class Record, class Parse>
asio::awaitable<Answer<Record>> one_type(std::shared_ptr<UnboundResolver::Impl> impl,
                                         std::string name, int type, Parse parse) {
  Raw raw = co_await impl->query(name, type);
  co_return interpret<Record>(impl->options, name, type, std::move(raw), parse);
}

asio::awaitable<Answer<std::string>> both_addresses(std::shared_ptr<UnboundResolver::Impl> impl,
                                                    std::string name);

}  // namespace

asio::awaitable<Answer<std::string>> UnboundResolver::txt(std::string name) {
  return one_type<std::string>(impl_, std::move(name), kTypeTxt, wire::txt);
}

asio::awaitable<Answer<MxRecord>> UnboundResolver::mx(std::string name) {
  return one_type<MxRecord>(impl_, std::move(name), kTypeMx, mx_record);
}

asio::awaitable<Answer<TlsaRecord>> UnboundResolver::tlsa(std::string name) {
  return one_type<TlsaRecord>(impl_, std::move(name), kTypeTlsa, tlsa_record);
}

asio::awaitable<Answer<std::string>> UnboundResolver::addresses(std::string name) {
  return both_addresses(impl_, std::move(name));
}

namespace {

asio::awaitable<Answer<std::string>> both_addresses(std::shared_ptr<UnboundResolver::Impl> impl,
                                                    std::string name) {
  using namespace asio::experimental::awaitable_operators;
  auto [raw4, raw6] = co_await (impl->query(name, kTypeA) && impl->query(name, kTypeAaaa));
  Answer<std::string> v4 =
      interpret<std::string>(impl->options, name, kTypeA, std::move(raw4), wire::a);
  Answer<std::string> v6 =
      interpret<std::string>(impl->options, name, kTypeAaaa, std::move(raw6), wire::aaaa);

  Answer<std::string> out;
  out.security = weaker(v4.security, v6.security);
  out.canonical_name =
      v4.status == Status::ok || v6.status != Status::ok ? v4.canonical_name : v6.canonical_name;
  for (const auto* part : {&v4, &v6}) {
    if (!part->detail.empty()) {
      if (!out.detail.empty()) out.detail += "; ";
      out.detail += part->detail;
    }
  }
  if (v4.status == Status::ok || v6.status == Status::ok) {
    out.status = Status::ok;
    bool first = true;
    for (auto* part : {&v4, &v6}) {
      if (part->status != Status::ok) continue;
      out.ttl = first ? part->ttl : std::min(out.ttl, part->ttl);
      first = false;
      std::ranges::move(part->records, std::back_inserter(out.records));
    }
  } else if (cannot_tell(v4.status)) {
    out.status = v4.status;
  } else if (cannot_tell(v6.status)) {
    out.status = v6.status;
  } else {
    out.status = v4.status == Status::nxdomain || v6.status == Status::nxdomain ? Status::nxdomain
                                                                                : Status::nodata;
    out.ttl = std::min(v4.ttl, v6.ttl);
  }
  co_return out;
}

}  // namespace

}  // namespace mtasts::dns
