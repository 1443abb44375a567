#include "adapters/report/sendmail_submitter.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sysexits.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>

#include "core/text_quote.hpp"

extern char** environ;

namespace mtasts::report {

namespace {

using boost::system::error_code;
using Descriptor = asio::posix::stream_descriptor;

constexpr std::size_t kStderrKept = 512;
constexpr std::size_t kWriteChunk = 64 * 1024;
// After SIGKILL a process is normally gone at once; one stuck in the kernel is reaped later.
constexpr std::chrono::seconds kKillGrace{2};

// glibc 2.36's <sys/pidfd.h> lacks extern "C" (fixed in 2.37): the system calls directly.
int open_pidfd(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0U));
}

void kill_through_pidfd(int pidfd) {
  ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0U);
}

std::string errno_text(int error) {
  return std::generic_category().message(error);
}

std::unexpected<Error> failure(ErrorCategory category, std::string reason) {
  return std::unexpected(Error{category, "report mail: " + std::move(reason)});
}

// An address that would become an option of sendmail, or that smuggles a line break into its
// command line, is refused.
std::optional<std::string> address_problem(std::string_view role, std::string_view address) {
  if (address.starts_with('-')) {
    return fmt::format("{} {} starts with \"-\"", role, quote_input(address));
  }
  const bool has_control = std::ranges::any_of(address, [](char c) {
    const auto byte = static_cast<unsigned char>(c);
    return byte < 0x20 || byte == 0x7F;
  });
  if (has_control)
    return fmt::format("{} {} holds a control character", role, quote_input(address));
  return std::nullopt;
}

// A descriptor we own until it is handed on.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  [[nodiscard]] int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// Moves `fd` above the standard descriptors (a daemon started with 0-2 closed gets pipes there,
// and the child's dup2 onto the same number would keep close-on-exec set).
std::expected<Fd, int> above_standard(Fd fd) {
  if (fd.get() > STDERR_FILENO) return fd;
  const int moved = ::fcntl(fd.get(), F_DUPFD_CLOEXEC, STDERR_FILENO + 1);
  if (moved < 0) return std::unexpected(errno);
  return Fd(moved);
}

struct Pipe {
  Fd read;
  Fd write;
};

std::expected<Pipe, int> make_pipe() {
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_CLOEXEC) != 0) return std::unexpected(errno);
  Pipe pipe{Fd(fds[0]), Fd(fds[1])};
  auto read = above_standard(std::move(pipe.read));
  if (!read) return std::unexpected(read.error());
  auto write = above_standard(std::move(pipe.write));
  if (!write) return std::unexpected(write.error());
  return Pipe{std::move(*read), std::move(*write)};
}

bool set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Runs `argv` with the pipes as standard input and error and /dev/null as standard output;
// returns its pid or the errno of the failed spawn (exec failures included: glibc reports them).
std::expected<pid_t, int> spawn(const std::vector<std::string>& args, int stdin_read,
                                int stderr_write) {
  std::vector<char*> argv;
  argv.reserve(args.size() + 1);
  for (const std::string& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attributes;
  if (int error = posix_spawn_file_actions_init(&actions); error != 0) {
    return std::unexpected(error);
  }
  if (int error = posix_spawnattr_init(&attributes); error != 0) {
    posix_spawn_file_actions_destroy(&actions);
    return std::unexpected(error);
  }
  sigset_t no_signals;
  sigset_t all_signals;
  sigemptyset(&no_signals);
  sigfillset(&all_signals);
  int error = posix_spawn_file_actions_adddup2(&actions, stdin_read, STDIN_FILENO);
  if (error == 0) {
    error = posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  }
  if (error == 0) error = posix_spawn_file_actions_adddup2(&actions, stderr_write, STDERR_FILENO);
  if (error == 0) error = posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
  // A daemon ignores SIGPIPE, and ignored signals survive exec: the command gets the defaults.
  if (error == 0) {
    error = posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  }
  if (error == 0) error = posix_spawnattr_setsigmask(&attributes, &no_signals);
  if (error == 0) error = posix_spawnattr_setsigdefault(&attributes, &all_signals);
  pid_t pid = -1;
  if (error == 0) error = posix_spawn(&pid, argv[0], &actions, &attributes, argv.data(), environ);
  posix_spawnattr_destroy(&attributes);
  posix_spawn_file_actions_destroy(&actions);
  if (error != 0) return std::unexpected(error);
  return pid;
}

// write(2) that reports EPIPE without letting SIGPIPE end the process where it is not ignored:
// the signal is blocked on this thread for the call and a SIGPIPE the call raised is consumed.
ssize_t write_without_sigpipe(int fd, const char* data, std::size_t size, int& error) {
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  sigset_t previous;
  pthread_sigmask(SIG_BLOCK, &pipe_only, &previous);
  sigset_t pending;
  sigpending(&pending);
  const bool already_pending = sigismember(&pending, SIGPIPE) == 1;
  const ssize_t written = ::write(fd, data, size);
  error = written < 0 ? errno : 0;
  if (error == EPIPE && !already_pending) {
    const timespec no_wait{0, 0};
    while (sigtimedwait(&pipe_only, nullptr, &no_wait) < 0 && errno == EINTR) {
    }
  }
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return written;
}

struct Feed {
  std::size_t taken = 0;  // octets the pipe accepted
  bool complete = false;  // all of them, and the pipe closed (the command sees end of file)
  int error = 0;          // errno that ended it early (EPIPE: the command stopped reading)
};

asio::awaitable<void> feed_stdin(Descriptor& stdin_pipe, const std::string& message, Feed& feed) {
  while (feed.taken < message.size()) {
    int error = 0;
    const std::size_t chunk = std::min(kWriteChunk, message.size() - feed.taken);
    const ssize_t written = write_without_sigpipe(stdin_pipe.native_handle(),
                                                  message.data() + feed.taken, chunk, error);
    if (written > 0) {
      feed.taken += static_cast<std::size_t>(written);
    } else if (error == EAGAIN || error == EWOULDBLOCK || error == EINTR) {
      auto [ec] = co_await stdin_pipe.async_wait(Descriptor::wait_write,
                                                 asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;  // cancelled: the command exited or the deadline passed
    } else {
      feed.error = error;
      stdin_pipe.close();
      co_return;
    }
  }
  stdin_pipe.close();
  feed.complete = true;
}

// Keeps the first kStderrKept octets and discards the rest, so the command never blocks on a
// full stderr pipe.
asio::awaitable<void> drain_stderr(Descriptor& stderr_pipe, std::string& kept) {
  std::array<char, 4096> buffer{};
  while (true) {
    auto [ec, n] = co_await stderr_pipe.async_read_some(asio::buffer(buffer),
                                                        asio::as_tuple(asio::use_awaitable));
    if (n > 0 && kept.size() < kStderrKept) {
      kept.append(buffer.data(), std::min(n, kStderrKept - kept.size()));
    }
    if (ec) co_return;  // end of file, or cancelled
  }
}

// What is left in the stderr pipe once the command is gone, without waiting for a descendant
// that may still hold its write end.
void drain_stderr_now(Descriptor& stderr_pipe, std::string& kept) {
  std::array<char, 4096> buffer{};
  while (kept.size() < kStderrKept) {
    const ssize_t n = ::read(stderr_pipe.native_handle(), buffer.data(), buffer.size());
    if (n <= 0) return;
    kept.append(buffer.data(), std::min(static_cast<std::size_t>(n), kStderrKept - kept.size()));
  }
}

// Waits until the process behind `pidfd` exits, then reaps it.
asio::awaitable<siginfo_t> wait_exit(Descriptor& pidfd) {
  siginfo_t info{};
  while (true) {
    auto [ec] =
        co_await pidfd.async_wait(Descriptor::wait_read, asio::as_tuple(asio::use_awaitable));
    if (ec == asio::error::operation_aborted) co_return info;  // cancelled by the race
    info = siginfo_t{};
    const int done =
        ::waitid(P_PIDFD, static_cast<id_t>(pidfd.native_handle()), &info, WEXITED | WNOHANG);
    // si_pid stays 0 when waitid fails: reaped elsewhere (SIGCHLD ignored) or a bug.
    if (done != 0 || info.si_pid != 0) co_return info;
  }
}

asio::awaitable<void> reap_later(Descriptor pidfd) {
  co_await wait_exit(pidfd);
}

// The never-ending branch of the race: stdin fed, stderr drained, then only the exit counts.
asio::awaitable<void> feed_and_drain(Descriptor& stdin_pipe, const std::string& message, Feed& feed,
                                     Descriptor& stderr_pipe, std::string& kept) {
  using namespace asio::experimental::awaitable_operators;
  co_await (feed_stdin(stdin_pipe, message, feed) && drain_stderr(stderr_pipe, kept));
  asio::steady_timer forever(stdin_pipe.get_executor());
  forever.expires_at(asio::steady_timer::time_point::max());
  co_await forever.async_wait(asio::as_tuple(asio::use_awaitable));
}

std::string sysexits_name(int status) {
  switch (status) {
    case EX_USAGE:
      return " (EX_USAGE)";
    case EX_DATAERR:
      return " (EX_DATAERR)";
    case EX_NOINPUT:
      return " (EX_NOINPUT)";
    case EX_NOUSER:
      return " (EX_NOUSER)";
    case EX_NOHOST:
      return " (EX_NOHOST)";
    case EX_UNAVAILABLE:
      return " (EX_UNAVAILABLE)";
    case EX_SOFTWARE:
      return " (EX_SOFTWARE)";
    case EX_OSERR:
      return " (EX_OSERR)";
    case EX_OSFILE:
      return " (EX_OSFILE)";
    case EX_CANTCREAT:
      return " (EX_CANTCREAT)";
    case EX_IOERR:
      return " (EX_IOERR)";
    case EX_TEMPFAIL:
      return " (EX_TEMPFAIL)";
    case EX_PROTOCOL:
      return " (EX_PROTOCOL)";
    case EX_NOPERM:
      return " (EX_NOPERM)";
    case EX_CONFIG:
      return " (EX_CONFIG)";
    default:
      return "";
  }
}

std::string how_it_ended(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) {
    return fmt::format("exited with status {}{}", info.si_status, sysexits_name(info.si_status));
  }
  const char* name = sigabbrev_np(info.si_status);
  return fmt::format("was killed by signal {}{}{}", info.si_status, name ? " (SIG" : "",
                     name ? fmt::format("{})", name) : "");
}

// "; it wrote \"...\" on stderr": the first non-empty line the command wrote there.
std::string stderr_text(std::string_view kept) {
  while (!kept.empty()) {
    const auto end = kept.find('\n');
    std::string_view line = kept.substr(0, end);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (!line.empty()) return fmt::format("; it wrote {} on stderr", quote_input(line, 200));
    if (end == std::string_view::npos) break;
    kept.remove_prefix(end + 1);
  }
  return "; it wrote nothing on stderr";
}

}  // namespace

SendmailSubmitter::SendmailSubmitter(asio::any_io_executor executor, SendmailOptions options)
    : executor_(std::move(executor)), options_(std::move(options)) {}

asio::awaitable<std::expected<void, Error>> SendmailSubmitter::submit(std::string envelope_sender,
                                                                      std::string recipient,
                                                                      std::string message) {
  using namespace asio::experimental::awaitable_operators;

  if (options_.command.empty() || !options_.command.front().starts_with('/')) {
    co_return failure(
        ErrorCategory::config,
        fmt::format("the sendmail command must start with an absolute path, not {}",
                    options_.command.empty() ? std::string("nothing")
                                             : quote_input(options_.command.front())));
  }
  if (recipient.empty()) {
    co_return failure(ErrorCategory::report_delivery, "the recipient address is empty");
  }
  for (const auto& [role, address] :
       {std::pair<std::string_view, std::string_view>{"recipient", recipient},
        std::pair<std::string_view, std::string_view>{"envelope sender", envelope_sender}}) {
    if (auto problem = address_problem(role, address)) {
      co_return failure(ErrorCategory::report_delivery, fmt::format("refusing {}", *problem));
    }
  }
  const std::string& program = options_.command.front();
  const auto cannot_run = [&](std::string_view step, int error) {
    return failure(ErrorCategory::report_delivery,
                   fmt::format("cannot run {} for {}: {} ({})", program, quote_input(recipient),
                               errno_text(error), step));
  };

  auto stdin_pipe = make_pipe();
  if (!stdin_pipe) co_return cannot_run("pipe", stdin_pipe.error());
  auto stderr_pipe = make_pipe();
  if (!stderr_pipe) co_return cannot_run("pipe", stderr_pipe.error());
  if (!set_nonblocking(stdin_pipe->write.get()) || !set_nonblocking(stderr_pipe->read.get())) {
    co_return cannot_run("fcntl", errno);
  }

  std::vector<std::string> args = options_.command;
  args.insert(args.end(), {"-f", envelope_sender, "--", recipient});
  auto pid = spawn(args, stdin_pipe->read.get(), stderr_pipe->write.get());
  if (!pid) co_return cannot_run("spawn", pid.error());
  // The child holds its own copies now; ours would hide its end of file and its exit.
  stdin_pipe->read.reset();
  stderr_pipe->write.reset();

  const int pidfd_number = open_pidfd(*pid);
  if (pidfd_number < 0) {
    const int error = errno;
    ::kill(*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
    co_return cannot_run("pidfd_open", error);
  }
  Descriptor pidfd(executor_, pidfd_number);
  Descriptor stdin_writer(executor_, stdin_pipe->write.release());
  Descriptor stderr_reader(executor_, stderr_pipe->read.release());

  Feed feed;
  std::string kept;
  asio::steady_timer deadline(executor_);
  deadline.expires_after(options_.timeout);
  auto ended = co_await (wait_exit(pidfd) ||
                         feed_and_drain(stdin_writer, message, feed, stderr_reader, kept) ||
                         deadline.async_wait(asio::as_tuple(asio::use_awaitable)));

  const std::string command_text = fmt::format("{} for {}", program, quote_input(recipient));
  if (ended.index() != 0) {
    // The deadline (the middle branch never ends on its own).
    kill_through_pidfd(pidfd.native_handle());
    asio::steady_timer grace(executor_);
    grace.expires_after(kKillGrace);
    auto reaped =
        co_await (wait_exit(pidfd) || grace.async_wait(asio::as_tuple(asio::use_awaitable)));
    if (reaped.index() != 0) {
      asio::co_spawn(executor_, reap_later(std::move(pidfd)), asio::detached);
    }
    drain_stderr_now(stderr_reader, kept);
    co_return failure(ErrorCategory::report_delivery,
                      fmt::format("{} did not finish within {} ms and was killed{}", command_text,
                                  options_.timeout.count(), stderr_text(kept)));
  }

  const siginfo_t info = std::get<0>(ended);
  drain_stderr_now(stderr_reader, kept);
  if (info.si_pid == 0) {
    co_return failure(
        ErrorCategory::report_delivery,
        fmt::format("cannot collect the exit status of {} (is SIGCHLD ignored?)", command_text));
  }
  const bool clean_exit = info.si_code == CLD_EXITED && info.si_status == 0;
  if (!feed.complete) {
    co_return failure(
        ErrorCategory::report_delivery,
        fmt::format("{} {} before reading the whole message ({} of {} octets written{}){}",
                    command_text, how_it_ended(info), feed.taken, message.size(),
                    feed.error != 0 ? fmt::format(": {}", errno_text(feed.error)) : "",
                    stderr_text(kept)));
  }
  if (!clean_exit) {
    co_return failure(ErrorCategory::report_delivery,
                      fmt::format("{} {}{}", command_text, how_it_ended(info), stderr_text(kept)));
  }
  co_return std::expected<void, Error>{};
}

}  // namespace mtasts::report
