#include "adapters/store/tlsrpt_store.hpp"

namespace mtasts::store {

std::string_view to_string(ReportDelivery::Status status) {
  switch (status) {
    case ReportDelivery::Status::pending:
      return "pending";
    case ReportDelivery::Status::in_flight:
      return "in-flight";
    case ReportDelivery::Status::sent:
      return "sent";
    case ReportDelivery::Status::given_up:
      return "given-up";
  }
  return "unknown";
}

}  // namespace mtasts::store
