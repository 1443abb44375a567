// The test world (tests/world/world.py, contract in tests/world/README.md) as a child process of
// a GTest binary: writes the test's own manifest, starts the world, waits for world.json, reads
// the addresses, talks to the control API and stops the world (SIGTERM, then SIGKILL) at the end.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

extern char** environ;

namespace mtasts::test {

class WorldProcess {
 public:
  // Starts the world on `manifest` in a fresh directory under $TMPDIR. Check ok() and error().
  explicit WorldProcess(const nlohmann::json& manifest,
                        std::chrono::milliseconds wait = std::chrono::seconds(30)) {
    namespace fs = std::filesystem;
    std::string pattern = (fs::temp_directory_path() / "mtasts-world-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = pattern;
    const fs::path manifest_file = dir_ / "manifest.json";
    std::ofstream(manifest_file) << manifest.dump(2);

    const std::string script = std::string(MTASTS_SOURCE_DIR) + "/tests/world/world.py";
    if (!fs::exists(script)) {
      error_ = script + " does not exist (yet)";
      return;
    }
    std::vector<std::string> args = {"/usr/bin/python3", script,       "--state-dir",
                                     dir_.string(),      "--manifest", manifest_file.string(),
                                     "--lifetime",       "600"};
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) {
      pid_ = -1;
      error_ = "cannot start " + script;
      return;
    }

    const fs::path ready = dir_ / "world.json";
    const auto until = std::chrono::steady_clock::now() + wait;
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = "world.py exited before it was ready (status " + std::to_string(status) + ")";
        return;
      }
      if (fs::exists(ready)) {
        try {
          std::ifstream in(ready);
          info_ = nlohmann::json::parse(in);
          return;
        } catch (const std::exception&) {
          // Written atomically, so this should not happen; retry until the deadline.
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    error_ = "world.json did not appear in time";
  }

  ~WorldProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      for (int i = 0; i < 100; ++i) {
        if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (pid_ > 0) {
        kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
      }
    }
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  WorldProcess(const WorldProcess&) = delete;
  WorldProcess& operator=(const WorldProcess&) = delete;

  [[nodiscard]] bool ok() const { return error_.empty() && !info_.is_null(); }
  [[nodiscard]] const std::string& error() const { return error_; }
  [[nodiscard]] const nlohmann::json& info() const { return info_; }

  // "127.0.0.1:40123"
  [[nodiscard]] std::string dns() const { return info_.value("dns", ""); }
  [[nodiscard]] std::uint16_t https_port() const {
    return info_.value("https_port", std::uint16_t{0});
  }
  [[nodiscard]] std::string ca_file() const { return info_.value("ca_file", ""); }
  [[nodiscard]] std::string control() const { return info_.value("control", ""); }

  struct Reply {
    int status = 0;
    std::string body;
  };

  // One HTTP/1.0 request to the control API; nullopt when the world cannot be reached.
  [[nodiscard]] std::optional<Reply> control_request(std::string_view method, std::string_view path,
                                                     std::string_view body = {}) const {
    const std::string endpoint = control();
    const auto colon = endpoint.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(std::stoi(endpoint.substr(colon + 1))));
    if (inet_pton(AF_INET, endpoint.substr(0, colon).c_str(), &address.sin_addr) != 1) {
      return std::nullopt;
    }
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return std::nullopt;
    timeval timeout{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
    if (connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
      close(fd);
      return std::nullopt;
    }
    std::ostringstream request;
    request << method << ' ' << path << " HTTP/1.0\r\nHost: " << endpoint
            << "\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: "
            << body.size() << "\r\n\r\n"
            << body;
    const std::string text = request.str();
    std::size_t sent = 0;
    while (sent < text.size()) {
      const ssize_t n = send(fd, text.data() + sent, text.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        close(fd);
        return std::nullopt;
      }
      sent += static_cast<std::size_t>(n);
    }
    std::string response;
    char buffer[4096];
    while (true) {
      const ssize_t n = recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      response.append(buffer, static_cast<std::size_t>(n));
    }
    close(fd);
    const auto end_of_header = response.find("\r\n\r\n");
    if (response.rfind("HTTP/", 0) != 0 || end_of_header == std::string::npos) {
      return std::nullopt;
    }
    Reply reply;
    reply.status = std::atoi(response.c_str() + response.find(' ') + 1);
    reply.body = response.substr(end_of_header + 4);
    return reply;
  }

  // GET /log, parsed; a null json when the world cannot be reached.
  [[nodiscard]] nlohmann::json log() const {
    auto reply = control_request("GET", "/log");
    if (!reply || reply->status != 200) return {};
    return nlohmann::json::parse(reply->body, nullptr, false);
  }

  bool clear_log() const {
    auto reply = control_request("POST", "/log/clear");
    return reply && reply->status / 100 == 2;
  }

 private:
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  nlohmann::json info_;
  std::string error_;
};

}  // namespace mtasts::test
