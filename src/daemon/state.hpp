// What every session of the daemon shares: the running configuration and backend (replaced as
// a whole on reload), the logger, and the registry of open connections that a stop drains.
#pragma once

#include <functional>
#include <list>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "daemon/backend.hpp"
#include "service/config.hpp"

namespace mtasts::daemon {

// Open connections: each can be closed from outside (stop), and says whether it is busy with a
// request (idle connections are closed at once on stop; busy ones finish their answer first).
class Connections {
 public:
  struct Slot {
    std::function<void()> close;
    bool busy = false;
  };
  using Handle = std::list<Slot>::iterator;

  explicit Connections(asio::any_io_executor executor) : counter_(std::move(executor)) {}
  Handle add(std::function<void()> close) {
    counter_.add();
    return slots_.insert(slots_.end(), Slot{std::move(close), false});
  }
  void remove(Handle handle) {
    slots_.erase(handle);
    counter_.remove();
  }
  void close_idle() {
    for (Slot& slot : slots_) {
      if (!slot.busy) slot.close();
    }
  }
  void close_all() {
    for (Slot& slot : slots_) slot.close();
  }
  [[nodiscard]] std::size_t size() const { return slots_.size(); }
  Counter& counter() { return counter_; }

 private:
  std::list<Slot> slots_;
  Counter counter_;
};

class TlsrptRunner;

struct State {
  explicit State(asio::any_io_executor executor) : connections(std::move(executor)) {}
  std::shared_ptr<const Config> config;
  std::shared_ptr<Backend> backend;
  std::shared_ptr<spdlog::logger> logger;
  Connections connections;
  TlsrptRunner* tlsrpt = nullptr;  // set while [tlsrpt] is enabled
  bool stopping = false;
};

}  // namespace mtasts::daemon
