// MailSubmitter through the local MTA's sendmail command (RFC 8460 §5.3 reports by mail).
//
// - The command runs without a shell (posix_spawn): options.command, then "-f" sender "--"
//   recipient. A recipient or sender that starts with "-" or holds a control character is
//   refused before anything runs (an rua must not become a sendmail option); an empty sender is
//   passed as is (sendmail reads it as the null reverse-path).
// - The child gets the message on a pipe as standard input, /dev/null as standard output and a
//   pipe as standard error (the first 512 octets kept for the error), no other descriptor of
//   ours, default signal dispositions and an empty signal mask.
// - Nothing blocks the event loop: the message is written as the pipe takes it, the exit is
//   awaited through a pidfd. A command still running at the timeout is killed (SIGKILL) and
//   reaped.
// - A command that exits before reading the whole message is an error (EPIPE is handled, and
//   SIGPIPE cannot kill the caller even where it is not ignored).
// Errors: report_delivery (the command failed, timed out or could not start; a refused
// address), config (an empty command or one that is not an absolute path).
#pragma once

#include "adapters/report/report_sender.hpp"

namespace mtasts::report {

class SendmailSubmitter final : public MailSubmitter {
 public:
  SendmailSubmitter(asio::any_io_executor executor, SendmailOptions options);

  asio::awaitable<std::expected<void, Error>> submit(std::string envelope_sender,
                                                     std::string recipient,
                                                     std::string message) override;

 private:
  asio::any_io_executor executor_;
  SendmailOptions options_;
};

}  // namespace mtasts::report
