#include "core/error.hpp"

namespace mtasts {

std::string_view to_string(ErrorCategory category) {
  switch (category) {
    case ErrorCategory::invalid_domain:
      return "invalid_domain";
    case ErrorCategory::address_literal:
      return "address_literal";
    case ErrorCategory::no_record:
      return "no_record";
    case ErrorCategory::multiple_records:
      return "multiple_records";
    case ErrorCategory::record_syntax:
      return "record_syntax";
    case ErrorCategory::dns_temporary:
      return "dns_temporary";
    case ErrorCategory::dns_bogus:
      return "dns_bogus";
    case ErrorCategory::fetch_failed:
      return "fetch_failed";
    case ErrorCategory::webpki_invalid:
      return "webpki_invalid";
    case ErrorCategory::policy_syntax:
      return "policy_syntax";
    case ErrorCategory::store:
      return "store";
    case ErrorCategory::config:
      return "config";
    case ErrorCategory::session_report:
      return "session_report";
    case ErrorCategory::report_delivery:
      return "report_delivery";
    case ErrorCategory::shared_cache:
      return "shared_cache";
    case ErrorCategory::internal:
      return "internal";
  }
  return "internal";
}

std::string exception_text(std::exception_ptr error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace mtasts
