// What a cache hit costs inside one process, phase by phase: reading the config, creating the
// logger, opening the LMDB cache, the first lookup, and later lookups. The Exim module pays the
// first four once per delivery process (on top of loading itself) and the last per call.
//
//   build/bench/cache_hit_bench CONFIG DOMAIN [CALLS]
//
// DOMAIN must already be cached and fresh (run `mtasts getmta DOMAIN` first).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <fmt/core.h>

#include "core/exim_answers.hpp"
#include "service/config.hpp"
#include "service/engine.hpp"
#include "service/logging.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double micros(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::micro>(to - from).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    fmt::print(stderr, "usage: cache_hit_bench CONFIG DOMAIN [CALLS]\n");
    return 64;
  }
  const std::string domain = argv[2];
  const long calls = argc > 3 ? std::strtol(argv[3], nullptr, 10) : 200000;
  if (calls < 1) {
    fmt::print(stderr, "cache_hit_bench: CALLS must be a positive number\n");
    return 64;
  }

  const auto t0 = Clock::now();
  auto config = mtasts::load_config(argv[1], true);
  if (!config) {
    fmt::print(stderr, "cache_hit_bench: {}\n", config.error().reason);
    return 78;
  }
  const auto t1 = Clock::now();
  auto logger = mtasts::make_logger("cache_hit_bench", "stderr", config->log_level);
  const auto t2 = Clock::now();
  auto engine = mtasts::Engine::open(*config, logger);
  if (!engine) {
    fmt::print(stderr, "cache_hit_bench: {}\n", engine.error().reason);
    return 74;
  }
  const auto t3 = Clock::now();
  auto first = (*engine)->cached(domain);
  const auto t4 = Clock::now();
  if (!first) {
    fmt::print(stderr, "cache_hit_bench: {} is not cached and fresh; look it up first\n", domain);
    return 65;
  }
  std::size_t answered = 0;
  const auto t5 = Clock::now();
  for (long i = 0; i < calls; ++i) {
    answered += mtasts::getmta_answer((*engine)->lookup(domain).answer).size();
  }
  const auto t6 = Clock::now();

  fmt::print("cache hit for {} ({}), one process\n", domain,
             mtasts::getmta_answer(first->answer));
  fmt::print("  read config        {:9.1f} us\n", micros(t0, t1));
  fmt::print("  create logger      {:9.1f} us\n", micros(t1, t2));
  fmt::print("  open LMDB cache    {:9.1f} us\n", micros(t2, t3));
  fmt::print("  first lookup       {:9.1f} us\n", micros(t3, t4));
  fmt::print("  later lookups      {:9.3f} us each over {} calls (getmta answer included)\n",
             micros(t5, t6) / static_cast<double>(calls), calls);
  return answered > 0 ? 0 : 70;
}
