// The one place that names the Boost.Asio flavour used by adapters and the service.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

namespace mtasts {
namespace asio = boost::asio;
}  // namespace mtasts
