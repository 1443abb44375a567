// Where TLSRPT session counts and report deliveries are kept (design §7): an LMDB file of its own
// beside the cache (lmdb_tlsrpt_store.hpp), so Exim's lookup keys and the cache's writer are
// untouched. Counts are durable once add() returns; the file has a size bound, and old days go
// with prune().
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.hpp"
#include "core/tlsrpt_session.hpp"

namespace mtasts::store {

// Where one report stands for one rua (RFC 8460 §3, §5): a report goes at most once per (day,
// domain, rua), so `in_flight` is written (and committed) before an attempt starts; one found
// after a restart is never retried.
struct ReportDelivery {
  enum class Status { pending, in_flight, sent, given_up };
  Status status = Status::pending;
  std::uint32_t attempts = 0;
  std::int64_t first_attempt = 0;  // Unix seconds; 0 = none yet
  std::int64_t next_attempt = 0;   // Unix seconds; no attempt before this
  std::string last_error;          // of the latest failed attempt
  friend bool operator==(const ReportDelivery&, const ReportDelivery&) = default;
};

[[nodiscard]] std::string_view to_string(ReportDelivery::Status status);

class TlsrptStore {
 public:
  virtual ~TlsrptStore() = default;
  // Adds the sessions to `day`'s counts in one transaction: all or none, durable on return. Each
  // policy outcome counts once (successful or failed), each of its failure entries once; counts
  // saturate instead of overflowing. Errors: category store (the reason says "full" when the
  // size bound is reached; nothing of the call is stored then).
  [[nodiscard]] virtual std::expected<void, Error> add(
      tlsrpt::Day day, std::span<const tlsrpt::Session> sessions) = 0;
  // Days with counts, oldest first.
  [[nodiscard]] virtual std::expected<std::vector<tlsrpt::Day>, Error> days() = 0;
  // Report domains with counts on `day`, in std::string (octet) order.
  [[nodiscard]] virtual std::expected<std::vector<std::string>, Error> domains(tlsrpt::Day day) = 0;
  // The counts of one report domain on one day, one tally per policy, ordered by PolicyKey.
  [[nodiscard]] virtual std::expected<std::vector<tlsrpt::PolicyTally>, Error> tallies(
      tlsrpt::Day day, std::string_view report_domain) = 0;
  // Delivery state of (day, domain, rua); nullopt when no attempt was planned yet.
  [[nodiscard]] virtual std::expected<std::optional<ReportDelivery>, Error> delivery(
      tlsrpt::Day day, std::string_view report_domain, std::string_view rua) = 0;
  // Durable on return.
  [[nodiscard]] virtual std::expected<void, Error> set_delivery(tlsrpt::Day day,
                                                                std::string_view report_domain,
                                                                std::string_view rua,
                                                                const ReportDelivery& state) = 0;
  // Removes counts and delivery states of days before `oldest_kept`; returns how many distinct
  // days lost rows (counts or delivery states).
  [[nodiscard]] virtual std::expected<std::size_t, Error> prune(tlsrpt::Day oldest_kept) = 0;
  // The file, for log lines.
  [[nodiscard]] virtual const std::string& path() const = 0;
};

}  // namespace mtasts::store
