// SendmailSubmitter against fake sendmail commands: shell scripts in a temp dir that record
// their argv and standard input and end the way each test asks.
#include "adapters/report/sendmail_submitter.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "unit/adapters/temp_dir.hpp"

namespace {

using namespace mtasts;
using namespace std::chrono_literals;

constexpr const char* kSender = "tlsrpt-noreply@mta.example";
constexpr const char* kRecipient = "tlsrpt@reports.example";
constexpr const char* kMessage =
    "From: tlsrpt-noreply@mta.example\r\nTo: tlsrpt@reports.example\r\nSubject: Report Domain: "
    "reports.example\r\n\r\nbody line\r\n.\r\nlast line\r\n";

struct Outcome {
  std::expected<void, Error> result;
  std::chrono::milliseconds elapsed;
};

class SendmailTest : public ::testing::Test {
 protected:
  // A fake sendmail: records its arguments (one per line) and standard input, then runs `tail`.
  std::string script(const std::string& tail, bool record_stdin = true) {
    const std::string path = dir_.file("sendmail");
    std::ofstream out(path);
    out << "#!/bin/sh\n"
        << "echo $$ > '" << dir_.file("pid") << "'\n"
        << "printf '%s\\n' \"$@\" > '" << dir_.file("argv") << "'\n";
    if (record_stdin) out << "cat > '" << dir_.file("stdin") << "'\n";
    out << tail << "\n";
    out.close();
    ::chmod(path.c_str(), 0755);
    return path;
  }

  Outcome submit(std::vector<std::string> command, std::string message = kMessage,
                 std::chrono::milliseconds timeout = 5000ms, std::string sender = kSender,
                 std::string recipient = kRecipient) {
    asio::io_context io;
    report::SendmailOptions options;
    options.command = std::move(command);
    options.timeout = timeout;
    report::SendmailSubmitter submitter(io.get_executor(), std::move(options));
    std::optional<std::expected<void, Error>> out;
    const auto start = std::chrono::steady_clock::now();
    asio::co_spawn(io,
                   submitter.submit(std::move(sender), std::move(recipient), std::move(message)),
                   [&](std::exception_ptr error, std::expected<void, Error> result) {
                     if (error) std::rethrow_exception(error);
                     out = std::move(result);
                   });
    io.run();
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    return {std::move(*out), elapsed};
  }

  [[nodiscard]] std::optional<std::string> recorded(const std::string& name) const {
    std::ifstream in(dir_.file(name), std::ios::binary);
    if (!in) return std::nullopt;
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
  }

  [[nodiscard]] pid_t recorded_pid() const {
    const auto text = recorded("pid");
    return text ? static_cast<pid_t>(std::stoi(*text)) : -1;
  }

  test_support::TempDir dir_{"mtasts-sendmail"};
};

void expect_error(const Outcome& outcome, ErrorCategory category,
                  std::initializer_list<std::string_view> parts) {
  ASSERT_FALSE(outcome.result.has_value());
  EXPECT_EQ(outcome.result.error().category, category)
      << to_string(outcome.result.error().category) << ": " << outcome.result.error().reason;
  for (std::string_view part : parts) {
    EXPECT_NE(outcome.result.error().reason.find(part), std::string::npos)
        << "missing \"" << part << "\" in: " << outcome.result.error().reason;
  }
}

TEST_F(SendmailTest, SuccessPassesArgumentsAndMessage) {
  const std::string command = script("exit 0");
  const auto outcome = submit({command, "-oi", "-odq"});
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
  EXPECT_EQ(recorded("argv"),
            "-oi\n-odq\n-f\ntlsrpt-noreply@mta.example\n--\n"
            "tlsrpt@reports.example\n");
  EXPECT_EQ(recorded("stdin"), kMessage);
}

TEST_F(SendmailTest, NullSenderIsPassedAsAnEmptyArgument) {
  const auto outcome = submit({script("exit 0")}, kMessage, 5000ms, "");
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
  EXPECT_EQ(recorded("argv"), "-f\n\n--\ntlsrpt@reports.example\n");
}

TEST_F(SendmailTest, LargeMessageArrivesWhole) {
  std::string message;
  for (int i = 0; message.size() < 3 * 1024 * 1024; ++i) {
    message += "line " + std::to_string(i) + " of a large report\r\n";
  }
  const auto outcome = submit({script("exit 0")}, message);
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
  EXPECT_EQ(recorded("stdin"), message);
}

TEST_F(SendmailTest, TemporaryFailureQuotesStatusAndStderr) {
  const std::string command =
      script("echo '' >&2; echo 'sendmail: queue directory full' >&2; echo second >&2; exit 75");
  expect_error(submit({command}), ErrorCategory::report_delivery,
               {command, "tlsrpt@reports.example", "exited with status 75 (EX_TEMPFAIL)",
                "wrote \"sendmail: queue directory full\" on stderr"});
}

TEST_F(SendmailTest, FailureWithoutStderrSaysSo) {
  expect_error(submit({script("exit 1")}), ErrorCategory::report_delivery,
               {"exited with status 1", "wrote nothing on stderr"});
}

TEST_F(SendmailTest, KilledBySignalIsReported) {
  expect_error(submit({script("kill -TERM $$")}), ErrorCategory::report_delivery,
               {"was killed by signal 15 (SIGTERM)"});
}

TEST_F(SendmailTest, CommandPastTheTimeoutIsKilledAndReaped) {
  const std::string command = script("echo 'still working' >&2; exec sleep 30");
  const auto outcome = submit({command}, kMessage, 700ms);
  expect_error(outcome, ErrorCategory::report_delivery,
               {"did not finish within 700 ms and was killed", "\"still working\""});
  EXPECT_GE(outcome.elapsed, 650ms);
  EXPECT_LT(outcome.elapsed, 3000ms);
  const pid_t pid = recorded_pid();
  ASSERT_GT(pid, 0);
  // Reaped, not a zombie: the pid no longer exists.
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(SendmailTest, BackgroundChildHoldingStderrDoesNotDelayTheResult) {
  // An MTA that forks a delivery process keeps our stderr pipe open past its own exit.
  const auto outcome = submit({script("sleep 5 & exit 0")});
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
  EXPECT_LT(outcome.elapsed, 3000ms);
}

TEST_F(SendmailTest, MissingCommandIsAClearError) {
  expect_error(submit({"/nonexistent/sbin/sendmail", "-oi"}), ErrorCategory::report_delivery,
               {"cannot run /nonexistent/sbin/sendmail", "No such file or directory"});
}

TEST_F(SendmailTest, CommandMustBeAnAbsolutePath) {
  expect_error(submit({"sendmail"}), ErrorCategory::config, {"absolute path", "\"sendmail\""});
  expect_error(submit({}), ErrorCategory::config, {"absolute path"});
}

TEST_F(SendmailTest, EarlyExitWithoutReadingALargeMessageIsAnError) {
  // Far more than a pipe holds: the command exits with most of it unwritten. SIGPIPE is not
  // ignored in this test process, so a crash would end the test binary.
  const std::string message(8 * 1024 * 1024, 'x');
  expect_error(submit({script("exit 0", false)}, message), ErrorCategory::report_delivery,
               {"exited with status 0 before reading the whole message", "of 8388608 octets"});
}

TEST_F(SendmailTest, ClosedStdinGivesBrokenPipeNotACrash) {
  // The command closes its standard input and lives on: our next write gets EPIPE.
  const std::string message(8 * 1024 * 1024, 'x');
  expect_error(submit({script("exec 0<&-; sleep 1; exit 0", false)}, message),
               ErrorCategory::report_delivery,
               {"before reading the whole message", "Broken pipe", "exited with status 0"});
}

TEST_F(SendmailTest, OptionLikeOrControlCharacterAddressesAreRefusedBeforeSpawning) {
  const std::string command = script("exit 0");
  expect_error(submit({command}, kMessage, 5000ms, kSender, "-oQ/tmp"),
               ErrorCategory::report_delivery, {"refusing recipient \"-oQ/tmp\"", "\"-\""});
  expect_error(submit({command}, kMessage, 5000ms, "-bs", kRecipient),
               ErrorCategory::report_delivery, {"refusing envelope sender \"-bs\""});
  expect_error(submit({command}, kMessage, 5000ms, kSender, "a@b.example\nRCPT TO:<x@y>"),
               ErrorCategory::report_delivery, {"control character"});
  expect_error(submit({command}, kMessage, 5000ms, "x@y.example\r", kRecipient),
               ErrorCategory::report_delivery, {"control character"});
  expect_error(submit({command}, kMessage, 5000ms, kSender, ""), ErrorCategory::report_delivery,
               {"recipient address is empty"});
  EXPECT_FALSE(recorded("argv").has_value()) << "the command ran";
}

TEST_F(SendmailTest, ChildGetsOnlyTheStandardDescriptors) {
  // A descriptor of ours without close-on-exec must not reach the command.
  const int leaked = ::open("/dev/null", O_RDONLY);
  ASSERT_GE(leaked, 3);
  const std::string command = script("if [ -e /proc/$$/fd/" + std::to_string(leaked) +
                                     " ]; then echo leaked >&2; exit 1; fi\n"
                                     "[ -e /proc/$$/fd/1 ] || exit 2\n"
                                     "[ \"$(readlink /proc/$$/fd/1)\" = /dev/null ] || exit 3\n"
                                     "exit 0");
  const auto outcome = submit({command});
  ::close(leaked);
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
}

TEST_F(SendmailTest, IgnoredSigpipeIsResetForTheCommand) {
  // The daemon ignores SIGPIPE; ignored dispositions would survive exec without the reset.
  struct sigaction ignore {};
  struct sigaction previous {};
  ignore.sa_handler = SIG_IGN;
  sigemptyset(&ignore.sa_mask);
  ASSERT_EQ(::sigaction(SIGPIPE, &ignore, &previous), 0);
  // SigIgn in /proc/<pid>/status is a hex mask; SIGPIPE (13) is bit 12 = 0x1000.
  const auto outcome =
      submit({script("mask=$(sed -n 's/^SigIgn:[[:space:]]*//p' /proc/$$/status)\n"
                     "[ $(( 0x$mask & 0x1000 )) -eq 0 ] || exit 9\nexit 0")});
  ::sigaction(SIGPIPE, &previous, nullptr);
  ASSERT_TRUE(outcome.result.has_value()) << outcome.result.error().reason;
}

}  // namespace
