#include "adapters/store/lmdb_fork_registry.hpp"

#include <pthread.h>

#include <atomic>

namespace mtasts::store::lmdb {

namespace {

std::atomic<unsigned long> g_fork_generation{0};

// Keep the registry consistent across fork(): no other thread can hold its lock at the moment
// of the fork, and the child counts one more generation.
void before_fork() {
  registry().mutex.lock();
}
void after_fork_parent() {
  registry().mutex.unlock();
}
void after_fork_child() {
  registry().mutex.unlock();
  g_fork_generation.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

Registry& registry() {
  static auto* instance = new Registry;  // never destroyed: usable from exit handlers
  return *instance;
}

unsigned long fork_generation() {
  static std::once_flag once;
  std::call_once(once,
                 [] { ::pthread_atfork(&before_fork, &after_fork_parent, &after_fork_child); });
  return g_fork_generation.load(std::memory_order_relaxed);
}

}  // namespace mtasts::store::lmdb
