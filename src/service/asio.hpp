// Boost.Asio as the service and the front-ends above it name it (the event loop the daemon runs
// the service on): the adapters' choice, passed up so no front-end includes an adapter.
#pragma once

#include "adapters/asio.hpp"
