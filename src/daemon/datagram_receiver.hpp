// The TLSRPT datagram socket Postfix (>= 3.10, through libtlsrpt) sends to: a Unix datagram
// socket bound before privileges are dropped, drained by a thread of its own. Postfix sends with
// MSG_DONTWAIT into a socket queue of about ten datagrams, so the thread does nothing but receive
// (many at a time with recvmmsg) and hand each datagram to `deliver`, which must only queue it.
#pragma once

#include <atomic>
#include <cstdint>
#include <expected>
#include <functional>
#include <string>
#include <thread>

#include "service/config.hpp"

namespace mtasts::daemon {

class DatagramReceiver {
 public:
  // Binds `config.tlsrpt.socket` (a stale socket file is replaced; any other file is an error),
  // owned by daemon.socket_owner/socket_group, mode tlsrpt.socket_mode.
  static std::expected<std::unique_ptr<DatagramReceiver>, std::string> bind(const Config& config);
  ~DatagramReceiver();  // stop(), and the socket file is removed
  DatagramReceiver(const DatagramReceiver&) = delete;
  DatagramReceiver& operator=(const DatagramReceiver&) = delete;

  // Starts the thread. `deliver` gets every datagram; `oversized` is called for one longer than
  // the largest accepted (it is dropped).
  void start(std::function<void(std::string)> deliver, std::function<void()> oversized);
  void stop();

  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  DatagramReceiver(int socket, int wake, std::string path);
  void run();

  int socket_ = -1;
  int wake_ = -1;  // eventfd: stop() wakes the thread out of poll()
  std::string path_;
  std::function<void(std::string)> deliver_;
  std::function<void()> oversized_;
  std::thread thread_;
};

// The largest datagram accepted; libtlsrpt's own buffer limit is below it.
inline constexpr std::size_t kMaxDatagram = 65536;

}  // namespace mtasts::daemon
