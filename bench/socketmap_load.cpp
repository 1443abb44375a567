// socketmap_load: a load generator for Postfix socketmap servers (socketmap_table(5)), used by
// bench/daemon_bench.py to compare mtastsd with postfix-mta-sts-resolver.
//
//   socketmap_load --connect ADDR:PORT|unix:PATH [--map postfix] [--connections N]
//                  [--duration S [--warmup S]] [--threads T] [--replies FILE]
//                  (--domains-file FILE | DOMAIN...)
//
// Every connection is closed-loop, as Postfix's smtp(8) uses a socketmap connection: one
// request ("<len>:<map> <domain>,"), wait for the whole reply netstring, then the next request.
// The latency of a request runs from just before its write() to the parse of the last octet of
// its reply (std::chrono::steady_clock).
//
//   warm mode (--duration S): each connection asks for the domains round robin (connection i
//     starts at domain i) for --warmup seconds unmeasured, then for S seconds measured.
//   once mode (no --duration): every domain is asked exactly once, with at most N requests in
//     flight (N connections, each takes the next domain when its reply is in). The wall time
//     from the first write to the last reply is the figure; --replies writes
//     "<domain>\t<reply>" lines in domain order.
//
// The connections are spread over --threads threads (default 1), each with its own epoll set;
// a thread that owns one connection uses plain blocking write()/read() (no epoll round trip).
// Output: one JSON object on stdout: requests, seconds, rate (requests/s), p50/p90/p99/p999/max
// latency in microseconds, errors (TEMP, PERM, TIMEOUT or malformed replies) and mismatches (a
// reply differing from the first one seen for the same domain, warm mode). Exit status 0 when
// the run finished, 1 when a connection failed (the reason on stderr), 2 for usage errors.
//
//   socketmap_load --serve ADDR:PORT|unix:PATH
//
// runs instead the least a socketmap server can do: one thread, epoll, every request answered
// at once with "OK secure match=mx1.<key>:*.mail.<key> servername=hostname" (no lookup, no
// timers, no allocation per request beyond the reply). Its figures are the floor the transport
// and this machine set for any single-threaded daemon; it runs until killed.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string connect;
  std::string map = "postfix";
  int connections = 1;
  int threads = 1;
  double duration = 0;  // 0: once mode
  double warmup = 0;
  std::string replies_file;
  std::string serve;
  std::vector<std::string> domains;
};

[[noreturn]] void usage(const std::string& why) {
  std::cerr << "socketmap_load: " << why << "\n"
            << "usage: socketmap_load --connect ADDR:PORT|unix:PATH [--map NAME] [--connections N]\n"
               "       [--duration S [--warmup S]] [--threads T] [--replies FILE]\n"
               "       (--domains-file FILE | DOMAIN...)\n"
               "       socketmap_load --serve ADDR:PORT|unix:PATH\n";
  std::exit(2);
}

[[noreturn]] void fail(const std::string& why) {
  std::cerr << "socketmap_load: " << why << "\n";
  std::exit(1);
}

Options parse_options(int argc, char** argv) {
  Options o;
  auto value = [&](int& i) -> std::string {
    if (i + 1 >= argc) usage(std::string("missing value for ") + argv[i]);
    return argv[++i];
  };
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    try {
      if (arg == "--connect") {
        o.connect = value(i);
      } else if (arg == "--map") {
        o.map = value(i);
      } else if (arg == "--connections") {
        o.connections = std::stoi(value(i));
      } else if (arg == "--threads") {
        o.threads = std::stoi(value(i));
      } else if (arg == "--duration") {
        o.duration = std::stod(value(i));
      } else if (arg == "--warmup") {
        o.warmup = std::stod(value(i));
      } else if (arg == "--serve") {
        o.serve = value(i);
      } else if (arg == "--replies") {
        o.replies_file = value(i);
      } else if (arg == "--domains-file") {
        std::ifstream in(value(i));
        if (!in) usage("cannot read " + std::string(argv[i]));
        for (std::string line; std::getline(in, line);) {
          if (!line.empty()) o.domains.push_back(line);
        }
      } else if (arg.starts_with("--")) {
        usage("unknown option " + arg);
      } else {
        o.domains.push_back(arg);
      }
    } catch (const std::logic_error&) {
      usage("bad value for " + arg);
    }
  }
  if (!o.serve.empty()) return o;
  if (o.connect.empty()) usage("--connect is required");
  if (o.domains.empty()) usage("no domains");
  if (o.connections < 1 || o.threads < 1) usage("--connections and --threads must be >= 1");
  o.threads = std::min(o.threads, o.connections);
  return o;
}

int open_connection(const std::string& where) {
  int fd = -1;
  if (where.starts_with("unix:")) {
    const std::string path = where.substr(5);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) fail("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      fail("connect " + where + ": " + std::strerror(errno));
    }
    return fd;
  }
  const auto colon = where.rfind(':');
  if (colon == std::string::npos) usage("--connect wants ADDR:PORT or unix:PATH");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(where.substr(colon + 1))));
  if (::inet_pton(AF_INET, where.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    usage("bad IPv4 address in " + where);
  }
  fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    fail("connect " + where + ": " + std::strerror(errno));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

std::string netstring(const std::string& payload) {
  return std::to_string(payload.size()) + ":" + payload + ",";
}

// Removes one whole netstring from the front of `buffer` into `payload`; false if incomplete.
bool take_netstring(std::string& buffer, std::size_t& start, std::string& payload) {
  const std::string_view view(buffer.data() + start, buffer.size() - start);
  const auto colon = view.find(':');
  if (colon == std::string_view::npos) {
    if (view.size() > 10) fail("malformed reply (no length): " + std::string(view.substr(0, 40)));
    return false;
  }
  std::size_t length = 0;
  for (std::size_t i = 0; i < colon; ++i) {
    if (view[i] < '0' || view[i] > '9') fail("malformed reply length: " + std::string(view));
    length = length * 10 + static_cast<std::size_t>(view[i] - '0');
  }
  if (view.size() < colon + 1 + length + 1) return false;
  if (view[colon + 1 + length] != ',') fail("reply netstring without ','");
  payload.assign(view.substr(colon + 1, length));
  start += colon + 1 + length + 1;
  if (start == buffer.size()) {
    buffer.clear();
    start = 0;
  }
  return true;
}

bool is_error(std::string_view reply) {
  return !(reply.starts_with("OK ") || reply.starts_with("NOTFOUND"));
}

struct Connection {
  int fd = -1;
  std::size_t next_domain = 0;  // warm: round robin position
  std::size_t current = 0;      // index of the domain in flight
  bool busy = false;
  Clock::time_point sent_at;
  std::string in;
  std::size_t in_start = 0;
  std::string out;  // unsent part of the current request (rarely non-empty)
};

struct Shared {
  const Options* options = nullptr;
  std::vector<std::string> requests;  // netstring per domain
  std::atomic<std::size_t> next_once{0};  // once mode: next domain to ask
  std::vector<std::string> replies;       // once mode: reply per domain
  std::vector<std::string> first_reply;   // warm mode: per domain (set before timing)
  Clock::time_point measure_from, measure_until;
  std::atomic<bool> stop{false};
};

struct ThreadResult {
  std::vector<uint64_t> latencies_ns;
  uint64_t all_requests = 0;  // with the warm-up (the daemon's CPU time covers those too)
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t mismatches = 0;
  Clock::time_point first_send = Clock::time_point::max();
  Clock::time_point last_reply = Clock::time_point::min();
};

class Worker {
 public:
  Worker(Shared& shared, std::vector<Connection> connections)
      : shared_(shared), conns_(std::move(connections)) {}

  ThreadResult run() {
    if (conns_.size() == 1) {
      run_blocking(conns_[0]);
    } else {
      run_epoll();
    }
    for (auto& c : conns_) ::close(c.fd);
    return std::move(result_);
  }

 private:
  bool warm() const { return shared_.options->duration > 0; }

  // Picks the next domain for `c`; false when there is no more work.
  bool next_request(Connection& c, Clock::time_point now) {
    if (warm()) {
      if (now >= shared_.measure_until) return false;
      c.current = c.next_domain;
      c.next_domain = (c.next_domain + 1) % shared_.requests.size();
      return true;
    }
    const std::size_t i = shared_.next_once.fetch_add(1, std::memory_order_relaxed);
    if (i >= shared_.requests.size()) return false;
    c.current = i;
    return true;
  }

  void on_reply(Connection& c, std::string&& reply, Clock::time_point now) {
    const bool measured = !warm() || (c.sent_at >= shared_.measure_from && now <= shared_.measure_until);
    ++result_.all_requests;
    if (measured) {
      result_.latencies_ns.push_back(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - c.sent_at).count()));
      ++result_.requests;
      if (is_error(reply)) ++result_.errors;
      result_.first_send = std::min(result_.first_send, c.sent_at);
      result_.last_reply = std::max(result_.last_reply, now);
    }
    if (warm()) {
      if (measured && reply != shared_.first_reply[c.current]) ++result_.mismatches;
    } else {
      shared_.replies[c.current] = std::move(reply);
    }
  }

  void run_blocking(Connection& c) {
    char buf[4096];
    std::string reply;
    for (;;) {
      Clock::time_point now = Clock::now();
      if (!next_request(c, now)) return;
      const std::string& req = shared_.requests[c.current];
      c.sent_at = Clock::now();
      std::size_t off = 0;
      while (off < req.size()) {
        const ssize_t n = ::write(c.fd, req.data() + off, req.size() - off);
        if (n < 0) {
          if (errno == EINTR) continue;
          fail(std::string("write: ") + std::strerror(errno));
        }
        off += static_cast<std::size_t>(n);
      }
      for (;;) {
        if (take_netstring(c.in, c.in_start, reply)) break;
        const ssize_t n = ::read(c.fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail(n == 0 ? "server closed the connection" : std::string("read: ") + std::strerror(errno));
        c.in.append(buf, static_cast<std::size_t>(n));
      }
      on_reply(c, std::move(reply), Clock::now());
    }
  }

  void send(Connection& c, int ep) {
    const std::string& req = shared_.requests[c.current];
    c.sent_at = Clock::now();
    const ssize_t n = ::write(c.fd, req.data(), req.size());
    if (n == static_cast<ssize_t>(req.size())) return;
    if (n < 0 && errno != EAGAIN && errno != EINTR) fail(std::string("write: ") + std::strerror(errno));
    c.out = req.substr(n > 0 ? static_cast<std::size_t>(n) : 0);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLOUT;
    ev.data.ptr = &c;
    ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void run_epoll() {
    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) fail("epoll_create1");
    std::size_t busy = 0;
    for (auto& c : conns_) {
      ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = &c;
      if (::epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) != 0) fail("epoll_ctl");
    }
    const Clock::time_point start = Clock::now();
    for (auto& c : conns_) {
      if (next_request(c, start)) {
        c.busy = true;
        ++busy;
        send(c, ep);
      }
    }
    std::vector<epoll_event> events(conns_.size());
    char buf[65536];
    std::string reply;
    while (busy > 0) {
      const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), 1000);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail(std::string("epoll_wait: ") + std::strerror(errno));
      }
      for (std::size_t k = 0; k < static_cast<std::size_t>(n); ++k) {
        Connection& c = *static_cast<Connection*>(events[k].data.ptr);
        if ((events[k].events & EPOLLOUT) && !c.out.empty()) {
          const ssize_t w = ::write(c.fd, c.out.data(), c.out.size());
          if (w > 0) c.out.erase(0, static_cast<std::size_t>(w));
          if (c.out.empty()) {
            epoll_event ev{};
            ev.events = EPOLLIN;
            ev.data.ptr = &c;
            ::epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
          }
        }
        if (!(events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
        const ssize_t r = ::read(c.fd, buf, sizeof buf);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r <= 0) fail(r == 0 ? "server closed the connection" : std::string("read: ") + std::strerror(errno));
        c.in.append(buf, static_cast<std::size_t>(r));
        while (c.busy && take_netstring(c.in, c.in_start, reply)) {
          const Clock::time_point now = Clock::now();
          on_reply(c, std::move(reply), now);
          if (next_request(c, now)) {
            send(c, ep);
          } else {
            c.busy = false;
            --busy;
          }
        }
      }
    }
    ::close(ep);
  }

  Shared& shared_;
  std::vector<Connection> conns_;
  ThreadResult result_;
};

double percentile_us(std::vector<uint64_t>& v, double p) {
  if (v.empty()) return 0;
  const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return static_cast<double>(v[k]) / 1000.0;
}

// Asks every domain once on one connection: the reference replies of warm mode.
void first_replies(Shared& shared) {
  const int fd = open_connection(shared.options->connect);
  Connection c;
  c.fd = fd;
  char buf[4096];
  for (std::size_t i = 0; i < shared.requests.size(); ++i) {
    const std::string& req = shared.requests[i];
    if (::write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) fail("write");
    std::string reply;
    while (!take_netstring(c.in, c.in_start, reply)) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) fail("reading a reference reply");
      c.in.append(buf, static_cast<std::size_t>(n));
    }
    shared.first_reply[i] = std::move(reply);
  }
  ::close(fd);
}

std::string json_escape(std::string_view s) {
  std::string out;
  for (char ch : s) {
    if (ch == '"' || ch == '\\') {
      out += '\\';
      out += ch;
    } else if (static_cast<unsigned char>(ch) < 0x20) {
      char tmp[8];
      std::snprintf(tmp, sizeof tmp, "\\u%04x", ch);
      out += tmp;
    } else {
      out += ch;
    }
  }
  return out;
}


// --serve: the floor. One thread, level-triggered epoll, replies built straight into the
// connection's output buffer.
[[noreturn]] void serve(const std::string& where) {
  int listener = -1;
  if (where.starts_with("unix:")) {
    const std::string path = where.substr(5);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) fail("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    ::unlink(path.c_str());
    listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      fail("bind " + where + ": " + std::strerror(errno));
    }
  } else {
    const auto colon = where.rfind(':');
    if (colon == std::string::npos) usage("--serve wants ADDR:PORT or unix:PATH");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(where.substr(colon + 1))));
    if (::inet_pton(AF_INET, where.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
      usage("bad IPv4 address in " + where);
    }
    listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    const int one = 1;
    ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      fail("bind " + where + ": " + std::strerror(errno));
    }
  }
  if (::listen(listener, 1024) != 0) fail(std::string("listen: ") + std::strerror(errno));
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.ptr = nullptr;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &lev);
  struct Client {
    int fd;
    std::string in, out;
    std::size_t start = 0;
  };
  std::vector<epoll_event> events(256);
  char buf[65536];
  std::string payload;
  std::fprintf(stderr, "socketmap_load: serving on %s\n", where.c_str());
  for (;;) {
    const int n = ::epoll_wait(ep, events.data(), static_cast<int>(events.size()), -1);
    for (std::size_t k = 0; k < static_cast<std::size_t>(n > 0 ? n : 0); ++k) {
      if (events[k].data.ptr == nullptr) {
        for (;;) {
          const int fd = ::accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (fd < 0) break;
          const int one = 1;
          ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.ptr = new Client{fd, {}, {}, 0};
          ::epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
        continue;
      }
      auto* c = static_cast<Client*>(events[k].data.ptr);
      const ssize_t r = ::read(c->fd, buf, sizeof buf);
      if (r < 0 && errno == EAGAIN) continue;
      if (r <= 0) {
        ::close(c->fd);
        delete c;
        continue;
      }
      c->in.append(buf, static_cast<std::size_t>(r));
      while (take_netstring(c->in, c->start, payload)) {
        const auto space = payload.find(' ');
        const std::string_view key =
            space == std::string::npos ? std::string_view{} : std::string_view(payload).substr(space + 1);
        std::string reply = "OK secure match=mx1.";
        reply.append(key).append(":*.mail.").append(key).append(" servername=hostname");
        c->out.append(std::to_string(reply.size())).append(":").append(reply).append(",");
      }
      std::size_t off = 0;
      while (off < c->out.size()) {  // replies are small: a blocking-style loop is enough here
        const ssize_t w = ::write(c->fd, c->out.data() + off, c->out.size() - off);
        if (w < 0 && errno == EAGAIN) continue;
        if (w <= 0) break;
        off += static_cast<std::size_t>(w);
      }
      c->out.clear();
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse_options(argc, argv);
  if (!options.serve.empty()) serve(options.serve);
  Shared shared;
  shared.options = &options;
  for (const auto& d : options.domains) shared.requests.push_back(netstring(options.map + " " + d));
  const bool warm = options.duration > 0;
  if (warm) {
    shared.first_reply.resize(options.domains.size());
    first_replies(shared);
  } else {
    shared.replies.resize(options.domains.size());
  }

  // Connect everything before the clock starts.
  std::vector<std::vector<Connection>> per_thread(static_cast<std::size_t>(options.threads));
  for (int i = 0; i < options.connections; ++i) {
    Connection c;
    c.fd = open_connection(options.connect);
    c.next_domain = static_cast<std::size_t>(i) % options.domains.size();
    per_thread[static_cast<std::size_t>(i % options.threads)].push_back(std::move(c));
  }
  const Clock::time_point start = Clock::now();
  shared.measure_from = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(options.warmup));
  shared.measure_until = shared.measure_from + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(options.duration));

  std::vector<ThreadResult> results(per_thread.size());
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < per_thread.size(); ++t) {
    threads.emplace_back([&, t] {
      Worker worker(shared, std::move(per_thread[t]));
      results[t] = worker.run();
    });
  }
  for (auto& th : threads) th.join();

  ThreadResult all;
  for (auto& r : results) {
    all.latencies_ns.insert(all.latencies_ns.end(), r.latencies_ns.begin(), r.latencies_ns.end());
    all.requests += r.requests;
    all.all_requests += r.all_requests;
    all.errors += r.errors;
    all.mismatches += r.mismatches;
    all.first_send = std::min(all.first_send, r.first_send);
    all.last_reply = std::max(all.last_reply, r.last_reply);
  }
  double seconds = 0;
  if (warm) {
    seconds = options.duration;
  } else if (all.requests > 0) {
    seconds = std::chrono::duration<double>(all.last_reply - all.first_send).count();
  }
  if (!options.replies_file.empty() && !warm) {
    std::ofstream out(options.replies_file);
    for (std::size_t i = 0; i < options.domains.size(); ++i) {
      out << options.domains[i] << '\t' << shared.replies[i] << '\n';
    }
    if (!out) fail("cannot write " + options.replies_file);
  }
  const double p50 = percentile_us(all.latencies_ns, 0.50);
  const double p90 = percentile_us(all.latencies_ns, 0.90);
  const double p99 = percentile_us(all.latencies_ns, 0.99);
  const double p999 = percentile_us(all.latencies_ns, 0.999);
  const double max = all.latencies_ns.empty()
                         ? 0
                         : static_cast<double>(*std::max_element(all.latencies_ns.begin(), all.latencies_ns.end())) / 1000.0;
  std::printf(
      "{\"mode\": \"%s\", \"connect\": \"%s\", \"connections\": %d, \"threads\": %d, "
      "\"requests\": %llu, \"all_requests\": %llu, \"seconds\": %.6f, \"rate\": %.1f, \"p50_us\": %.2f, \"p90_us\": %.2f, "
      "\"p99_us\": %.2f, \"p999_us\": %.2f, \"max_us\": %.2f, \"errors\": %llu, "
      "\"mismatches\": %llu}\n",
      warm ? "warm" : "once", json_escape(options.connect).c_str(), options.connections,
      options.threads, static_cast<unsigned long long>(all.requests),
      static_cast<unsigned long long>(all.all_requests + (warm ? options.domains.size() : 0)), seconds,
      seconds > 0 ? static_cast<double>(all.requests) / seconds : 0.0, p50, p90, p99, p999, max,
      static_cast<unsigned long long>(all.errors), static_cast<unsigned long long>(all.mismatches));
  return 0;
}
