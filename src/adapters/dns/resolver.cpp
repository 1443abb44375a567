#include "adapters/dns/resolver.hpp"

namespace mtasts::dns {

const char* to_string(Security security) {
  switch (security) {
    case Security::secure:
      return "secure";
    case Security::insecure:
      return "insecure";
    case Security::bogus:
      return "bogus";
    case Security::indeterminate:
      return "indeterminate";
  }
  return "indeterminate";
}

const char* to_string(Status status) {
  switch (status) {
    case Status::ok:
      return "ok";
    case Status::nxdomain:
      return "nxdomain";
    case Status::nodata:
      return "nodata";
    case Status::servfail:
      return "servfail";
    case Status::timeout:
      return "timeout";
    case Status::error:
      return "error";
  }
  return "error";
}

}  // namespace mtasts::dns
