// redis::Client against a real redis-server (a child process per test), a real Sentinel, and
// fake servers on an asio acceptor that answer garbage, oversized replies or READONLY.
#include "adapters/redis/redis_client.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "unit/adapters/temp_dir.hpp"

extern char** environ;

namespace {

using namespace mtasts;
using namespace std::chrono_literals;
using redis::Client;
using redis::ClientOptions;
using redis::Reply;
using redis::State;
using redis::Target;
using Commands = std::vector<std::vector<std::string>>;
using Result = std::expected<std::vector<Reply>, Error>;
using Clock = std::chrono::steady_clock;

std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// A reply (any) to PING on the Unix socket: the server is ready.
bool answers_ping(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  timeval timeout{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof address.sun_path - 1);
  bool ok = false;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
      ::send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6) {
    char c = 0;
    ok = ::recv(fd, &c, 1, 0) == 1 && (c == '+' || c == '-');
  }
  ::close(fd);
  return ok;
}

// redis-server (or a Sentinel) as a child process, with a Unix socket to check that it is up.
class RedisProcess {
 public:
  RedisProcess(std::string socket, std::vector<std::string> args)
      : socket_(std::move(socket)), args_(std::move(args)) {}
  RedisProcess(const RedisProcess&) = delete;
  RedisProcess& operator=(const RedisProcess&) = delete;
  ~RedisProcess() { kill_now(SIGTERM); }

  [[nodiscard]] bool start() {
    std::vector<std::string> args = {"/usr/bin/redis-server"};
    args.insert(args.end(), args_.begin(), args_.end());
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    if (::posix_spawn(&pid_, argv[0], nullptr, nullptr, argv.data(), environ) != 0) return false;
    for (const auto until = Clock::now() + 10s; Clock::now() < until;) {
      if (answers_ping(socket_)) return true;
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  void kill_now(int signal = SIGKILL) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  std::string socket_;
  std::vector<std::string> args_;
  pid_t pid_ = -1;
};

// A throwaway CA and a server certificate for "localhost" (DNS name only), as PEM files.
struct Pki {
  std::string ca, cert, key;
};

void add_extension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension = X509V3_EXT_conf_nid(nullptr, &context, nid, value);
  ASSERT_NE(extension, nullptr) << value;
  X509_add_ext(cert, extension, -1);
  X509_EXTENSION_free(extension);
}

X509* make_cert(EVP_PKEY* key, X509* issuer, EVP_PKEY* issuer_key, const char* cn, long serial) {
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 86400);
  X509_set_pubkey(cert, key);
  X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  X509* signer = issuer != nullptr ? issuer : cert;
  X509_set_issuer_name(cert, X509_get_subject_name(signer));
  if (issuer == nullptr) {
    add_extension(cert, signer, NID_basic_constraints, "critical,CA:TRUE");
    add_extension(cert, signer, NID_key_usage, "critical,keyCertSign,cRLSign");
    add_extension(cert, signer, NID_subject_key_identifier, "hash");
  } else {
    add_extension(cert, signer, NID_basic_constraints, "critical,CA:FALSE");
    add_extension(cert, signer, NID_key_usage, "critical,digitalSignature");
    add_extension(cert, signer, NID_ext_key_usage, "serverAuth");
    add_extension(cert, signer, NID_subject_alt_name, "DNS:localhost");
    add_extension(cert, signer, NID_authority_key_identifier, "keyid");
  }
  X509_sign(cert, issuer_key, EVP_sha256());
  return cert;
}

Pki make_pki(const test_support::TempDir& dir) {
  Pki pki{dir.file("ca.pem"), dir.file("cert.pem"), dir.file("key.pem")};
  EVP_PKEY* ca_key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", const_cast<char*>("P-256"));
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", const_cast<char*>("P-256"));
  X509* ca = make_cert(ca_key, nullptr, ca_key, "mtasts test CA", 1);
  X509* cert = make_cert(key, ca, ca_key, "localhost", 2);
  const auto write = [](const std::string& path, auto&& pem) {
    FILE* out = std::fopen(path.c_str(), "w");
    pem(out);
    std::fclose(out);
  };
  write(pki.ca, [&](FILE* out) { PEM_write_X509(out, ca); });
  write(pki.cert, [&](FILE* out) { PEM_write_X509(out, cert); });
  write(pki.key,
        [&](FILE* out) { PEM_write_PrivateKey(out, key, nullptr, nullptr, 0, nullptr, nullptr); });
  X509_free(cert);
  X509_free(ca);
  EVP_PKEY_free(key);
  EVP_PKEY_free(ca_key);
  return pki;
}

// A fake server on 127.0.0.1: writes `greeting` to each client, then answers each command
// (RESP arrays of bulk strings, as the client sends them) with what `answer` returns.
class FakeServer {
 public:
  using Answer = std::function<std::string(const std::vector<std::string>&)>;
  FakeServer(asio::io_context& io, std::string greeting, Answer answer)
      : state_(std::make_shared<Shared>(io, std::move(greeting), std::move(answer))) {
    asio::co_spawn(io, accept(state_), asio::detached);
  }
  ~FakeServer() {
    boost::system::error_code ignored;
    state_->acceptor.close(ignored);
    for (auto& socket : state_->sockets) socket->close(ignored);
  }
  [[nodiscard]] std::uint16_t port() const { return state_->acceptor.local_endpoint().port(); }

 private:
  using tcp = asio::ip::tcp;
  struct Shared {
    Shared(asio::io_context& io, std::string g, Answer a)
        : acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
          greeting(std::move(g)),
          answer(std::move(a)) {}
    tcp::acceptor acceptor;
    std::string greeting;
    Answer answer;
    std::vector<std::shared_ptr<tcp::socket>> sockets;
  };

  // Complete commands at the front of `buffer`, removed from it.
  static std::vector<std::vector<std::string>> take_commands(std::string& buffer) {
    std::vector<std::vector<std::string>> commands;
    while (true) {
      std::size_t at = 0;
      auto line = [&]() -> std::optional<std::string> {
        const auto end = buffer.find("\r\n", at);
        if (end == std::string::npos) return std::nullopt;
        std::string text = buffer.substr(at, end - at);
        at = end + 2;
        return text;
      };
      const auto header = line();
      if (!header || header->empty() || header->front() != '*') return commands;
      std::vector<std::string> command;
      for (int i = std::stoi(header->substr(1)); i > 0; --i) {
        const auto length = line();
        if (!length) return commands;
        const auto size = static_cast<std::size_t>(std::stoul(length->substr(1)));
        if (buffer.size() < at + size + 2) return commands;
        command.push_back(buffer.substr(at, size));
        at += size + 2;
      }
      buffer.erase(0, at);
      commands.push_back(std::move(command));
    }
  }

  static asio::awaitable<void> serve(std::shared_ptr<Shared> state,
                                     std::shared_ptr<tcp::socket> socket) {
    try {
      if (!state->greeting.empty()) {
        co_await asio::async_write(*socket, asio::buffer(state->greeting), asio::use_awaitable);
      }
      std::string buffer;
      char chunk[4096];
      while (true) {
        const std::size_t n =
            co_await socket->async_read_some(asio::buffer(chunk), asio::use_awaitable);
        buffer.append(chunk, n);
        std::string out;
        for (const auto& command : take_commands(buffer)) out += state->answer(command);
        if (!out.empty())
          co_await asio::async_write(*socket, asio::buffer(out), asio::use_awaitable);
      }
    } catch (const std::exception&) {
      // The client went away.
    }
  }

  static asio::awaitable<void> accept(std::shared_ptr<Shared> state) {
    try {
      while (true) {
        auto socket = std::make_shared<tcp::socket>(
            co_await state->acceptor.async_accept(asio::use_awaitable));
        state->sockets.push_back(socket);
        asio::co_spawn(state->acceptor.get_executor(), serve(state, socket), asio::detached);
      }
    } catch (const std::exception&) {
      // Closed.
    }
  }

  std::shared_ptr<Shared> state_;
};

std::string bulk(const std::string& text) {
  return "$" + std::to_string(text.size()) + "\r\n" + text + "\r\n";
}

class RedisClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::access("/usr/bin/redis-server", X_OK), 0) << "redis-server is not installed";
    log_ = std::make_shared<spdlog::logger>(
        "redis-test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log_text_));
    log_->set_level(spdlog::level::debug);
  }
  void TearDown() override {
    clients_.clear();
    io_.run_for(50ms);  // let stopped clients' coroutines end (ASan checks for leaks)
  }

  // A redis-server on a free TCP port and dir/r.sock, plus `extra` arguments.
  RedisProcess& server(std::vector<std::string> extra = {}, bool tcp = true) {
    if (port_ == 0) port_ = free_port();
    std::vector<std::string> args = {"--port",
                                     tcp ? std::to_string(port_) : "0",
                                     "--bind",
                                     "127.0.0.1",
                                     "--unixsocket",
                                     socket_path(),
                                     "--save",
                                     "",
                                     "--appendonly",
                                     "no",
                                     "--daemonize",
                                     "no",
                                     "--dir",
                                     dir_.path().string(),
                                     "--logfile",
                                     dir_.file("redis.log"),
                                     "--enable-debug-command",
                                     "yes"};
    args.insert(args.end(), extra.begin(), extra.end());
    servers_.push_back(std::make_unique<RedisProcess>(socket_path(), std::move(args)));
    EXPECT_TRUE(servers_.back()->start()) << "redis-server did not start";
    return *servers_.back();
  }
  std::string socket_path() const { return dir_.file("r.sock"); }

  ClientOptions options_for(std::string url) {
    ClientOptions options;
    auto target = redis::parse_target(url);
    EXPECT_TRUE(target.has_value()) << url;
    if (target) options.target = *target;
    options.reconnect_min = 20ms;
    options.reconnect_max = 200ms;
    return options;
  }
  ClientOptions tcp_options() { return options_for("redis://127.0.0.1:" + std::to_string(port_)); }

  Client& client(ClientOptions options, bool start = true) {
    clients_.push_back(std::make_unique<Client>(io_.get_executor(), std::move(options), log_));
    if (start) clients_.back()->start();
    return *clients_.back();
  }

  // Drives the loop until `done` or `bound` passed; returns whether done.
  bool drive_until(const std::function<bool()>& done, std::chrono::milliseconds bound = 10s) {
    for (const auto until = Clock::now() + bound; Clock::now() < until;) {
      if (done()) return true;
      io_.run_one_for(5ms);
      if (io_.stopped()) io_.restart();
    }
    return done();
  }
  bool wait_up(Client& c, std::chrono::milliseconds bound = 10s) {
    return drive_until([&] { return c.state() == State::up; }, bound);
  }
  // True when `c` never came up during `span`.
  bool stays_down(Client& c, std::chrono::milliseconds span) {
    return !drive_until([&] { return c.state() == State::up; }, span);
  }

  // Starts a call and returns where its result will be.
  std::shared_ptr<std::optional<Result>> spawn(Client& c, Commands commands,
                                               std::chrono::milliseconds deadline) {
    auto out = std::make_shared<std::optional<Result>>();
    asio::co_spawn(io_, c.run(std::move(commands), deadline),
                   [out](std::exception_ptr e, Result result) {
                     if (e) std::rethrow_exception(e);
                     *out = std::move(result);
                   });
    return out;
  }
  Result call(Client& c, Commands commands, std::chrono::milliseconds deadline = 2s) {
    auto out = spawn(c, std::move(commands), deadline);
    EXPECT_TRUE(drive_until([&] { return out->has_value(); }, 20s)) << "run() never returned";
    if (!*out) return std::unexpected(Error{ErrorCategory::internal, "no result"});
    return std::move(**out);
  }

  std::string log() const { return log_text_.str(); }

  test_support::TempDir dir_{"mtasts-redis"};
  asio::io_context io_;
  std::ostringstream log_text_;
  std::shared_ptr<spdlog::logger> log_;
  std::uint16_t port_ = 0;
  std::vector<std::unique_ptr<RedisProcess>> servers_;
  std::vector<std::unique_ptr<Client>> clients_;
};

void expect_text(const Reply& reply, Reply::Type type, const std::string& text) {
  EXPECT_EQ(reply.type, type);
  EXPECT_EQ(reply.text, text);
}

TEST_F(RedisClientTest, SetGetOverTcp) {
  server();
  Client& c = client(tcp_options());
  ASSERT_TRUE(wait_up(c));
  const std::string binary("value\r\n\0x", 9);
  auto result = call(c, {{"SET", "key", binary}});
  ASSERT_TRUE(result.has_value()) << result.error().reason;
  ASSERT_EQ(result->size(), 1U);
  expect_text((*result)[0], Reply::Type::status, "OK");
  result = call(c, {{"GET", "key"}});
  ASSERT_TRUE(result.has_value()) << result.error().reason;
  expect_text((*result)[0], Reply::Type::string, binary);
  EXPECT_NE(log().find("connected to redis 127.0.0.1:"), std::string::npos) << log();
  EXPECT_EQ(c.stats().connects, 1U);
}

TEST_F(RedisClientTest, SetGetOverUnixSocketWithDatabase) {
  server({}, false);
  Client& c = client(options_for("unix://" + socket_path() + "?db=3"));
  ASSERT_TRUE(wait_up(c));
  auto result = call(c, {{"SET", "k", "in db 3"}, {"GET", "k"}, {"CLIENT", "INFO"}});
  ASSERT_TRUE(result.has_value()) << result.error().reason;
  expect_text((*result)[1], Reply::Type::string, "in db 3");
  EXPECT_NE((*result)[2].text.find(" db=3 "), std::string::npos) << (*result)[2].text;
}

TEST_F(RedisClientTest, PipelineNilErrorAndConcurrentCalls) {
  server();
  Client& c = client(tcp_options());
  ASSERT_TRUE(wait_up(c));
  auto result = call(c, {{"SET", "n", "1"},
                         {"INCR", "n"},
                         {"GET", "n"},
                         {"GET", "missing"},
                         {"INCR", "missing-text"},
                         {"NOSUCHCOMMAND"},
                         {"MGET", "n", "missing"}});
  ASSERT_TRUE(result.has_value()) << result.error().reason;
  ASSERT_EQ(result->size(), 7U);
  expect_text((*result)[0], Reply::Type::status, "OK");
  EXPECT_EQ((*result)[1].type, Reply::Type::integer);
  EXPECT_EQ((*result)[1].integer, 2);
  expect_text((*result)[2], Reply::Type::string, "2");
  EXPECT_EQ((*result)[3].type, Reply::Type::nil);
  EXPECT_EQ((*result)[4].type, Reply::Type::integer);  // INCR of a missing key: 1
  EXPECT_EQ((*result)[5].type, Reply::Type::error);
  EXPECT_TRUE((*result)[5].text.starts_with("ERR unknown command")) << (*result)[5].text;
  ASSERT_EQ((*result)[6].type, Reply::Type::array);
  ASSERT_EQ((*result)[6].elements.size(), 2U);
  expect_text((*result)[6].elements[0], Reply::Type::string, "2");
  EXPECT_EQ((*result)[6].elements[1].type, Reply::Type::nil);

  // Many callers at once: each gets its own replies.
  std::vector<std::shared_ptr<std::optional<Result>>> outs;
  for (int i = 0; i < 50; ++i) {
    const std::string key = "key" + std::to_string(i);
    outs.push_back(spawn(c, {{"SET", key, std::to_string(i)}, {"GET", key}}, 5s));
  }
  ASSERT_TRUE(drive_until(
      [&] { return std::ranges::all_of(outs, [](const auto& out) { return out->has_value(); }); }));
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(outs[i]->value().has_value());
    expect_text(outs[i]->value()->at(1), Reply::Type::string, std::to_string(i));
  }
  EXPECT_EQ(c.state(), State::up);
}

TEST_F(RedisClientTest, AuthSucceedsWithPasswordAndWithUser) {
  server({"--requirepass", "secret"});
  auto options = tcp_options();
  options.password = "secret";
  Client& plain = client(options);
  options.username = "default";
  Client& with_user = client(options);
  ASSERT_TRUE(wait_up(plain));
  ASSERT_TRUE(wait_up(with_user));
  auto result = call(with_user, {{"SET", "a", "b"}, {"GET", "a"}});
  ASSERT_TRUE(result.has_value()) << result.error().reason;
  expect_text((*result)[1], Reply::Type::string, "b");
}

TEST_F(RedisClientTest, WrongOrMissingPasswordNeverComesUp) {
  server({"--requirepass", "secret"});
  auto options = tcp_options();
  options.password = "wrong";
  Client& wrong = client(options);
  Client& none = client(tcp_options());
  EXPECT_TRUE(stays_down(wrong, 500ms));
  EXPECT_EQ(none.state() == State::up, false);
  const auto start = Clock::now();
  auto result = call(wrong, {{"GET", "a"}});
  EXPECT_LT(Clock::now() - start, 500ms);  // at once: no waiting for a connection
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().category, ErrorCategory::shared_cache);
  EXPECT_GT(wrong.stats().connect_failures, 0U);
  EXPECT_NE(log().find("AUTH refused: \"WRONGPASS"), std::string::npos) << log();
  EXPECT_NE(log().find("PING refused: \"NOAUTH"), std::string::npos) << log();
  EXPECT_EQ(log().find("wrong"), std::string::npos) << "the password is in the log";
}

TEST_F(RedisClientTest, LateRepliesAreSwallowedNotShifted) {
  server();
  Client& c = client(tcp_options());
  ASSERT_TRUE(wait_up(c));
  ASSERT_TRUE(call(c, {{"SET", "first", "1"}, {"SET", "second", "2"}}).has_value());
  auto sleeper = spawn(c, {{"DEBUG", "SLEEP", "1"}}, 5s);
  drive_until([] { return false; }, 50ms);  // the sleep is under way
  const auto start = Clock::now();
  auto late = call(c, {{"GET", "first"}}, 20ms);
  EXPECT_LT(Clock::now() - start, 500ms);
  ASSERT_FALSE(late.has_value());
  EXPECT_EQ(late.error().category, ErrorCategory::shared_cache);
  EXPECT_NE(late.error().reason.find("within 20 ms"), std::string::npos) << late.error().reason;
  ASSERT_TRUE(drive_until([&] { return sleeper->has_value(); }));
  ASSERT_TRUE(sleeper->value().has_value());
  expect_text(sleeper->value()->at(0), Reply::Type::status, "OK");
  auto result = call(c, {{"GET", "second"}});
  ASSERT_TRUE(result.has_value()) << result.error().reason;
  expect_text((*result)[0], Reply::Type::string, "2");
  EXPECT_EQ(c.stats().timeouts, 1U);
  EXPECT_EQ(c.stats().disconnects, 0U);
}

TEST_F(RedisClientTest, StuckConnectionIsDroppedAndReopened) {
  server();
  auto options = tcp_options();
  options.stuck_after = 200ms;
  Client& c = client(options);
  ASSERT_TRUE(wait_up(c));
  const auto start = Clock::now();
  auto result = call(c, {{"DEBUG", "SLEEP", "1"}}, 5s);
  EXPECT_LT(Clock::now() - start, 900ms);
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().reason.find("no reply for 200 ms"), std::string::npos)
      << result.error().reason;
  EXPECT_EQ(c.stats().disconnects, 1U);
  ASSERT_TRUE(wait_up(c));
  EXPECT_TRUE(call(c, {{"PING"}}).has_value());
}

TEST_F(RedisClientTest, MaxPendingFailsAtOnce) {
  server();
  auto options = tcp_options();
  options.max_pending = 2;
  Client& c = client(options);
  ASSERT_TRUE(wait_up(c));
  auto sleeper = spawn(c, {{"DEBUG", "SLEEP", "0.3"}}, 5s);
  drive_until([] { return false; }, 20ms);
  auto refused = call(c, {{"GET", "a"}, {"GET", "b"}}, 5s);
  ASSERT_FALSE(refused.has_value());
  EXPECT_NE(refused.error().reason.find("max_pending 2"), std::string::npos);
  EXPECT_TRUE(call(c, {{"GET", "a"}}, 5s).has_value());
  ASSERT_TRUE(drive_until([&] { return sleeper->has_value(); }));
}

TEST_F(RedisClientTest, ReconnectsAfterTheServerComesBack) {
  auto& first = server();
  Client& c = client(tcp_options());
  ASSERT_TRUE(wait_up(c));
  first.kill_now();
  auto result = call(c, {{"GET", "a"}});
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().category, ErrorCategory::shared_cache);
  ASSERT_TRUE(drive_until([&] { return c.state() != State::up; }));
  EXPECT_TRUE(stays_down(c, 300ms));
  server();
  ASSERT_TRUE(wait_up(c));
  EXPECT_TRUE(call(c, {{"PING"}}).has_value());
  EXPECT_EQ(c.stats().connects, 2U);
  EXPECT_EQ(c.stats().disconnects, 1U);
  EXPECT_GT(c.stats().connect_failures, 0U);
  EXPECT_NE(log().find("shared cache: lost redis"), std::string::npos) << log();
}

TEST_F(RedisClientTest, FailureLinesAreRateLimited) {
  auto options = options_for("redis://127.0.0.1:" + std::to_string(free_port()));
  options.reconnect_min = 1ms;
  options.reconnect_max = 2ms;
  Client& c = client(options);
  drive_until([&] { return c.stats().connect_failures >= 30; });
  ASSERT_GE(c.stats().connect_failures, 30U);
  std::size_t lines = 0;
  for (auto at = log().find("cannot connect"); at != std::string::npos;
       at = log().find("cannot connect", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 5U) << log();
}

TEST_F(RedisClientTest, GarbageFromTheServer) {
  FakeServer greeter(io_, "!!!garbage\r\n", [](const auto&) { return std::string(); });
  Client& first = client(options_for("redis://127.0.0.1:" + std::to_string(greeter.port())));
  EXPECT_TRUE(stays_down(first, 300ms));
  EXPECT_FALSE(call(first, {{"GET", "a"}}).has_value());
  EXPECT_NE(log().find("Protocol error"), std::string::npos) << log();

  // Garbage once the connection is up.
  FakeServer later(io_, "", [](const std::vector<std::string>& command) {
    return command[0] == "PING" ? std::string("+PONG\r\n") : std::string("!!!garbage\r\n");
  });
  Client& second = client(options_for("redis://127.0.0.1:" + std::to_string(later.port())));
  ASSERT_TRUE(wait_up(second));
  auto result = call(second, {{"GET", "a"}});
  ASSERT_FALSE(result.has_value());
  EXPECT_NE(result.error().reason.find("malformed reply"), std::string::npos)
      << result.error().reason;
}

TEST_F(RedisClientTest, OversizedRepliesAreRefused) {
  FakeServer server(io_, "", [](const std::vector<std::string>& command) {
    if (command[0] == "PING") return std::string("+PONG\r\n");
    if (command[1] == "array") return std::string("*2000000000\r\n");
    if (command[1] == "nested") return "*2\r\n" + bulk("abc") + "*2000000000\r\n";
    if (command[1] == "line") return "+" + std::string(1100000, 'x');
    return "$2000000\r\n" + std::string(2000000, 'x') + "\r\n";
  });
  Client& c = client(options_for("redis://127.0.0.1:" + std::to_string(server.port())));
  for (const char* what : {"string", "array", "nested", "line"}) {
    SCOPED_TRACE(what);
    ASSERT_TRUE(wait_up(c));
    auto result = call(c, {{"GET", what}});
    ASSERT_FALSE(result.has_value());
    EXPECT_NE(result.error().reason.find("reply too large"), std::string::npos)
        << result.error().reason;
  }
}

TEST_F(RedisClientTest, ReadOnlyReplyDropsTheConnection) {
  FakeServer replica(io_, "", [](const std::vector<std::string>& command) {
    if (command[0] == "PING") return std::string("+PONG\r\n");
    if (command[0] == "GET") return bulk("v");
    return std::string("-READONLY You can't write against a read only replica.\r\n");
  });
  Client& c = client(options_for("redis://127.0.0.1:" + std::to_string(replica.port())));
  ASSERT_TRUE(wait_up(c));
  auto result = call(c, {{"SET", "a", "b"}, {"GET", "a"}});
  ASSERT_TRUE(result.has_value()) << result.error().reason;
  EXPECT_EQ((*result)[0].type, Reply::Type::error);
  expect_text((*result)[1], Reply::Type::string, "v");
  ASSERT_TRUE(drive_until([&] { return c.stats().disconnects == 1; }));
  ASSERT_TRUE(wait_up(c));
  EXPECT_EQ(c.stats().connects, 2U);
}

TEST_F(RedisClientTest, SentinelNamesTheMaster) {
  server();
  const std::uint16_t sentinel_port = free_port();
  const std::string conf = dir_.file("sentinel.conf");
  std::ofstream(conf) << "port " << sentinel_port << "\nbind 127.0.0.1\nunixsocket "
                      << dir_.file("s.sock") << "\ndir " << dir_.path().string() << "\nlogfile "
                      << dir_.file("sentinel.log") << "\nsentinel monitor cache 127.0.0.1 " << port_
                      << " 1\n";
  RedisProcess sentinel(dir_.file("s.sock"), {conf, "--sentinel"});
  ASSERT_TRUE(sentinel.start());
  // The first sentinel is not there, the second does not know the master, the third answers.
  FakeServer unaware(io_, "", [](const auto&) { return std::string("*-1\r\n"); });
  Client& c = client(options_for("sentinel://127.0.0.1:" + std::to_string(free_port()) +
                                 ",127.0.0.1:" + std::to_string(unaware.port()) +
                                 ",127.0.0.1:" + std::to_string(sentinel_port) + "/cache/2"));
  ASSERT_TRUE(wait_up(c)) << log();
  auto result = call(c, {{"SET", "k", "v"}, {"GET", "k"}});
  ASSERT_TRUE(result.has_value()) << result.error().reason;
  expect_text((*result)[1], Reply::Type::string, "v");

  // A sentinel that names a replica: ROLE refuses it.
  FakeServer replica(io_, "", [](const std::vector<std::string>& command) {
    if (command[0] == "ROLE") return "*2\r\n" + bulk("slave") + bulk("x");
    return std::string("+OK\r\n");
  });
  FakeServer fake_sentinel(io_, "", [&](const std::vector<std::string>&) {
    return "*2\r\n" + bulk("127.0.0.1") + bulk(std::to_string(replica.port()));
  });
  Client& wrong = client(
      options_for("sentinel://127.0.0.1:" + std::to_string(fake_sentinel.port()) + "/cache"));
  EXPECT_TRUE(stays_down(wrong, 300ms));
  EXPECT_NE(log().find("is not the master: ROLE says \"slave\""), std::string::npos) << log();
}

TEST_F(RedisClientTest, Tls) {
  const Pki pki = make_pki(dir_);
  port_ = free_port();
  server({"--tls-port", std::to_string(port_), "--tls-cert-file", pki.cert, "--tls-key-file",
          pki.key, "--tls-ca-cert-file", pki.ca, "--tls-auth-clients", "no"},
         false);
  auto options = options_for("rediss://localhost:" + std::to_string(port_) + "/1");
  options.ca_file = pki.ca;
  Client& c = client(options);
  ASSERT_TRUE(wait_up(c)) << log();
  auto result = call(c, {{"SET", "k", "over tls"}, {"GET", "k"}});
  ASSERT_TRUE(result.has_value()) << result.error().reason;
  expect_text((*result)[1], Reply::Type::string, "over tls");

  // Without the CA; with a name the certificate does not carry.
  Client& untrusted = client(options_for("rediss://localhost:" + std::to_string(port_)));
  auto by_address = options_for("rediss://127.0.0.1:" + std::to_string(port_));
  by_address.ca_file = pki.ca;
  Client& misnamed = client(by_address);
  EXPECT_TRUE(stays_down(untrusted, 500ms));
  EXPECT_NE(misnamed.state(), State::up);
  // The server sends the CA along (OpenSSL builds its chain): "self-signed certificate in
  // certificate chain" here, "unable to get local issuer certificate" without it.
  const std::string refused = "cannot connect to rediss localhost:" + std::to_string(port_) +
                              " db 0: TLS with 127.0.0.1:" + std::to_string(port_) +
                              ": certificate refused: ";
  EXPECT_NE(log().find(refused), std::string::npos) << log();
  EXPECT_NE(log().find("certificate refused: IP address mismatch"), std::string::npos) << log();
}

TEST_F(RedisClientTest, StopAndDestroyWhileCallsArePending) {
  server();
  auto pending = std::make_shared<std::optional<Result>>();
  {
    Client c(io_.get_executor(), tcp_options(), log_);
    c.start();
    ASSERT_TRUE(wait_up(c));
    pending = spawn(c, {{"DEBUG", "SLEEP", "0.2"}}, 5s);
    drive_until([] { return false; }, 20ms);
    c.stop();
    EXPECT_EQ(c.state(), State::down);
    auto after = call(c, {{"PING"}});
    EXPECT_FALSE(after.has_value());
  }
  ASSERT_TRUE(drive_until([&] { return pending->has_value(); }));
  EXPECT_FALSE(pending->value().has_value());
  // Destroyed while connecting.
  {
    Client c(io_.get_executor(), tcp_options(), log_);
    c.start();
  }
  io_.run_for(100ms);
}

}  // namespace
