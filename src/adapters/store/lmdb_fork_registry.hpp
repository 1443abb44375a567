// The environments open in this process, one per file (by device and inode), and the fork
// generation that tells an environment inherited from an ancestor process (LMDB forbids using it
// after fork()) from one this process opened.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace mtasts::store::lmdb {

class Environment;

// Increases in every child after fork(); an environment opened under another generation belongs
// to an ancestor process and must not be used.
[[nodiscard]] unsigned long fork_generation();

struct Registry {
  std::mutex mutex;
  std::map<std::pair<dev_t, ino_t>, std::weak_ptr<Environment>> envs;
};

// The process's registry (Environment::open looks files up and adds them under its mutex). Never
// destroyed: usable from exit handlers. Kept consistent across fork() once fork_generation() was
// called: no other thread can hold its lock at the moment of the fork.
[[nodiscard]] Registry& registry();

}  // namespace mtasts::store::lmdb
