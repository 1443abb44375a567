// mtasts_exim.so: the Exim ${dlfunc} front-end (design §2.1). It parses arguments, asks the
// shared Engine and formats the answer with core/exim_answers.hpp; nothing here decides policy.
//
//   ${dlfunc{/usr/lib/mtasts/mtasts_exim.so}{getmta}{$domain}}          enforce|testing|none|fail
//   ${dlfunc{/usr/lib/mtasts/mtasts_exim.so}{getmta}{$domain}{$host}}   "0" | ""
//   ${dlfunc{/usr/lib/mtasts/mtasts_exim.so}{getmx}{$domain}}           colon list | ""
//   ${dlfunc{/usr/lib/mtasts/mtasts_exim.so}{ignorelist}{$domain}}      host list | ""
//
// ABI. Exim calls `int f(uschar **yield, int argc, uschar *argv[])` with argv holding only the
// arguments after the function name. Return codes (Exim's local_scan.h): OK=0, DEFER=1, FAIL=2,
// ERROR=3, FAIL_FORCED=4. On OK Exim appends *yield to the expansion; on anything else *yield is
// the error message. DEFER and ERROR also write Exim's panic log.
//
// Failures. Every failure answers FAIL with a one-line message starting "mtasts: ", and is
// logged (syslog, mail facility, ident mtasts-exim): a domain that is not a hostname, a wrong
// argument count, a configuration or cache that cannot be opened, an exception. A host is never
// a failure: getmta(D, H) matches any H (RFC 8461 §4.1), so a malformed one gets "0" under an
// enforce policy unless a pattern allows it, and "" otherwise. FAIL makes the
// expansion fail without writing Exim's panic log (DEFER and ERROR would). What a failed
// expansion then does depends on the option it is in, and Exim 4.96 does not always defer:
// `address_data` and a redirect router's `data` defer the address (what packaging/exim uses),
// but a router `condition` is skipped (after a panic-log line), `ignore_target_hosts` ignores
// nothing and `set` discards the message. Never call the module from those three.
// An address literal ("[192.0.2.1]") is not a failure: no policy can exist for it (STS-30), so
// it is answered like a domain without MTA-STS, with no lookup.
//
// Yield ownership. Exim's expand.c (EITEM_DLFUNC) sets `result = NULL`, calls the function and,
// on OK, appends the string with `string_cat(yield, ..., result, Ustrlen(result))`: a copy into
// the expansion's own store, so our buffer may change after we return. On a failure it keeps the
// pointer itself (`expand_string_message = result`), which the caller formats into its own log
// line or defer message before the next expansion. Exim never frees the pointer, so memory
// from malloc() would leak on every call, and memory from Exim's store_get() is not ours to use
// without its headers. Each function therefore answers from its own static std::string, valid
// until the next call of the same function. Exim runs expansions on one thread. (Read in
// Exim/exim src/src/expand.c; the 4.96 binary carries the same "dlfunc{%s}{%s} failed (%d): %s"
// message, and tests/integration/test_exim_dlfunc.py checks several calls in one expansion.)
//
// Processes. Exim forks a process per delivery (and per queue run, per incoming connection);
// the module is loaded once per exec image and may be called in the parent and in any child.
// State is created lazily by the first call in a process: one config read, one logger, one
// Engine (which opens the LMDB cache; the resolver, fetcher and event loop are only built if a
// lookup has to go to the network). The process id is remembered; a call in a forked child
// builds a new Engine from the config already read, and the parent's Engine is leaked, never
// closed or used: an LMDB environment, a resolver or a thread must not cross a fork. The Engine
// built by a process is closed when that process exits normally (releasing its LMDB reader
// slot); children that only inherited it skip that.
#include <unistd.h>

#include <chrono>
#include <exception>
#include <expected>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include <fmt/core.h>
#include <spdlog/logger.h>

#include "core/decide.hpp"
#include "core/domain.hpp"
#include "core/error.hpp"
#include "core/exim_answers.hpp"
#include "core/text_quote.hpp"
#include "service/cached_answers.hpp"
#include "service/config.hpp"
#include "service/engine.hpp"
#include "service/logging.hpp"

namespace {

// Exim's return codes (local_scan.h); no Exim headers are needed.
constexpr int kOk = 0;
constexpr int kFail = 2;

constexpr std::string_view kLogName = "mtasts-exim";
// After a failed start (unreadable config, cache that cannot be opened) the next calls in the
// same process answer from the remembered error for this long instead of retrying at once.
constexpr auto kRetryInitAfter = std::chrono::seconds(5);

// Everything one process knows. Never destroyed as a whole: see the header comment.
struct ProcessState {
  pid_t pid = 0;                           // the process that built `engine`
  std::optional<mtasts::Config> config;    // read once per exec image, reused after fork
  std::shared_ptr<spdlog::logger> logger;  // syslog, single-threaded use only
  mtasts::Engine* engine = nullptr;        // owned by `pid`; leaked in forked children
  std::string init_error;                  // why the last start failed (pid == owner)
  std::chrono::steady_clock::time_point init_failed_at{};
  bool in_call = false;  // an exported function is running
};

ProcessState& state() {
  static ProcessState* const instance = new ProcessState();  // never destroyed
  return *instance;
}

// Closes the Engine at a normal exit of the process that built it, so its LMDB reader slot is
// released instead of left for a stale-reader check; inherited engines are left alone.
struct ExitCloser {
  ExitCloser() = default;
  ExitCloser(const ExitCloser&) = delete;
  ExitCloser& operator=(const ExitCloser&) = delete;
  ~ExitCloser() {
    try {
      ProcessState& s = state();
      // Not while a call is on the stack (exit() from a signal handler mid-lookup).
      if (s.engine != nullptr && s.pid == ::getpid() && !s.in_call) {
        delete s.engine;
        s.engine = nullptr;
      }
    } catch (...) {  // nothing may escape at exit
    }
  }
};
ExitCloser exit_closer;

// One line, bounded: no log or $router message forgery from a hostile domain or a reason text.
std::string one_line(std::string_view text) {
  constexpr std::size_t kMax = 400;
  std::string out;
  out.reserve(text.size() < kMax ? text.size() : kMax);
  for (char c : text) {
    if (out.size() >= kMax) {
      out += "...";
      break;
    }
    const auto byte = static_cast<unsigned char>(c);
    out += (byte < 0x20 || byte == 0x7f) ? ' ' : c;
  }
  return out;
}

spdlog::logger* logger() {
  ProcessState& s = state();
  if (!s.logger) {
    try {
      const std::string_view level = s.config ? std::string_view(s.config->log_level) : "info";
      s.logger = mtasts::make_logger(kLogName, "syslog", level);
    } catch (...) {
      return nullptr;
    }
  }
  return s.logger.get();
}

void log_warning(std::string_view text) noexcept {
  try {
    if (spdlog::logger* l = logger()) l->warn("{}", text);
  } catch (...) {
  }
}

void log_error(std::string_view text) noexcept {
  try {
    if (spdlog::logger* l = logger()) l->error("{}", text);
  } catch (...) {
  }
}

// The Engine of this process, built on first use (or first use after a fork). nullptr with
// `error` set when it cannot be had.
mtasts::Engine* engine(std::string& error) {
  ProcessState& s = state();
  const pid_t pid = ::getpid();
  if (s.pid != pid) {
    // First call in this process image, or in a child forked after the parent built its own.
    // Leak the parent's Engine: closing it would release LMDB state the parent still owns.
    s.engine = nullptr;
    s.pid = pid;
    s.init_error.clear();
  }
  if (s.engine != nullptr) return s.engine;

  const auto now = std::chrono::steady_clock::now();
  if (!s.init_error.empty() && now - s.init_failed_at < kRetryInitAfter) {
    error = s.init_error;
    return nullptr;
  }
  auto give_up = [&](std::string message) -> mtasts::Engine* {
    s.init_error = one_line(message);
    s.init_failed_at = now;
    log_error(s.init_error);
    error = s.init_error;
    return nullptr;
  };

  if (!s.config) {
    const std::string path = mtasts::default_config_path();
    auto loaded = mtasts::load_config(path, mtasts::config_path_is_explicit());
    if (!loaded) {
      return give_up(fmt::format("config {}: {}", path, loaded.error().reason));
    }
    s.config = std::move(*loaded);
  }
  if (logger() == nullptr) return give_up("cannot create the syslog logger");  // config's level
  auto opened = mtasts::Engine::open(*s.config, s.logger);
  if (!opened) {
    return give_up(fmt::format("cache {}: {}", s.config->cache_path, opened.error().reason));
  }
  s.engine = opened->release();  // closed by ExitCloser in this process only
  s.init_error.clear();
  return s.engine;
}

// The yield buffers, one per exported function (see "Yield ownership").
std::string& yield_buffer(int which) {
  static std::string buffers[3];
  return buffers[which];
}
enum Buffer { kGetmta = 0, kGetmx = 1, kIgnorelist = 2 };

int answer(unsigned char** yield, Buffer which, int code, std::string text) {
  std::string& buffer = yield_buffer(which);
  buffer = std::move(text);
  *yield = reinterpret_cast<unsigned char*>(buffer.data());
  return code;
}

int fail(unsigned char** yield, Buffer which, std::string_view function, std::string_view reason) {
  std::string message = fmt::format("mtasts: {}", one_line(reason));
  log_warning(fmt::format("{}: {}", function, message));
  return answer(yield, which, kFail, std::move(message));
}

// Reads argument `i` (never null from Exim, but a module trusts nothing).
std::string_view argument(unsigned char* argv[], int i) {
  if (argv == nullptr || argv[i] == nullptr) return {};
  return std::string_view(reinterpret_cast<const char*>(argv[i]));
}

// The answer for a domain as Exim typed it: normalized, looked up, or "no policy" for an address
// literal. An error string (already one line, without the "mtasts: " prefix) otherwise.
std::expected<mtasts::Answer, std::string> lookup(std::string_view raw_domain) {
  std::string error;
  mtasts::Engine* e = engine(error);
  if (e == nullptr) return std::unexpected(std::move(error));
  auto answered = e->answer(raw_domain);
  if (!answered) return std::unexpected(std::move(answered.error().reason));
  return std::move(answered->result.answer);
}

// Runs `body` with every exception caught: nothing crosses the C ABI (style §3.1).
template <typename Body>
int guarded(unsigned char** yield, Buffer which, std::string_view function, Body&& body) noexcept {
  try {
    struct InCall {  // marks the call for ExitCloser; restored however the body ends
      bool& flag;
      explicit InCall(bool& f) : flag(f) { flag = true; }
      ~InCall() { flag = false; }
      InCall(const InCall&) = delete;
      InCall& operator=(const InCall&) = delete;
    } in_call(state().in_call);
    if (yield == nullptr) return kFail;
    return body();
  } catch (const std::exception& e) {
    try {
      log_error(fmt::format("{}: internal error: {}", function, e.what()));
      return answer(yield, which, kFail, "mtasts: internal error: " + one_line(e.what()));
    } catch (...) {
    }
  } catch (...) {
    try {
      log_error(fmt::format("{}: internal error: unknown exception", function));
      return answer(yield, which, kFail, "mtasts: internal error: unknown exception");
    } catch (...) {
    }
  }
  // Out of memory while reporting: a static message needs no allocation.
  static char oom[] = "mtasts: internal error: out of memory";
  if (yield != nullptr) *yield = reinterpret_cast<unsigned char*>(oom);
  return kFail;
}

}  // namespace

extern "C" {

// getmta(D): enforce | testing | none | fail.  getmta(D, H): "0" when D enforces a policy that
// H does not match, "" otherwise (design §2.1).
__attribute__((visibility("default"))) int getmta(unsigned char** yield, int argc,
                                                  unsigned char* argv[]) {
  return guarded(yield, kGetmta, "getmta", [&] {
    if (argc != 1 && argc != 2) {
      return fail(yield, kGetmta, "getmta",
                  fmt::format("getmta takes 1 or 2 arguments (domain [, host]), got {}", argc));
    }
    auto result = lookup(argument(argv, 0));
    if (!result) return fail(yield, kGetmta, "getmta", result.error());
    if (argc == 1) return answer(yield, kGetmta, kOk, mtasts::getmta_answer(*result));
    // RFC 8461 §4.1: the host comes from an MX record someone else published; it is matched
    // whatever its form (getmta_host_answer normalizes it when it can), never refused.
    return answer(yield, kGetmta, kOk, mtasts::getmta_host_answer(*result, argument(argv, 1)));
  });
}

// getmx(D): the policy's mx patterns as a colon list, "" without a policy.
__attribute__((visibility("default"))) int getmx(unsigned char** yield, int argc,
                                                 unsigned char* argv[]) {
  return guarded(yield, kGetmx, "getmx", [&] {
    if (argc != 1) {
      return fail(yield, kGetmx, "getmx",
                  fmt::format("getmx takes 1 argument (domain), got {}", argc));
    }
    auto result = lookup(argument(argv, 0));
    if (!result) return fail(yield, kGetmx, "getmx", result.error());
    return answer(yield, kGetmx, kOk, mtasts::getmx_answer(*result));
  });
}

// ignorelist(D): for ignore_target_hosts, every MX host an enforce policy does not allow.
__attribute__((visibility("default"))) int ignorelist(unsigned char** yield, int argc,
                                                      unsigned char* argv[]) {
  return guarded(yield, kIgnorelist, "ignorelist", [&] {
    if (argc != 1) {
      return fail(yield, kIgnorelist, "ignorelist",
                  fmt::format("ignorelist takes 1 argument (domain), got {}", argc));
    }
    auto result = lookup(argument(argv, 0));
    if (!result) return fail(yield, kIgnorelist, "ignorelist", result.error());
    return answer(yield, kIgnorelist, kOk, mtasts::ignorelist_answer(*result));
  });
}

}  // extern "C"
