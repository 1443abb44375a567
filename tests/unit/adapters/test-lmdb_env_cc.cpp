// lmdb::Environment / lmdb::Database in bad environments: the lock file's blocks allocated before
// LMDB maps it (a full file system is an error, never SIGBUS), reading without write access to
// the lock file (private copies, never the shared file without a reader slot), and a second
// write transaction on one thread (refused, never a deadlock).
//
// Permissions bind only an unprivileged user and a small file system needs mount(2), so those
// tests run as root (a forked child drops to nobody) and are skipped otherwise. Each scenario
// that could crash runs in a forked child: a SIGBUS fails the test instead of ending the run.
#include "adapters/store/lmdb_env.hpp"

#include <fcntl.h>
#include <grp.h>
#include <lmdb.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <expected>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include "adapters/store/lmdb_database.hpp"
#include "adapters/store/lmdb_files.hpp"

namespace mtasts::store::lmdb {
namespace {

namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;

class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/mtasts-lmdb-env-test-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
    ::chmod(path_.c_str(), 0755);  // nobody may enter
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  [[nodiscard]] std::string file(std::string_view name) const {
    return (path_ / std::string(name)).string();
  }
  // A tmpfs of `bytes` on this directory (root only).
  [[nodiscard]] bool mount_tmpfs(std::size_t bytes) {
    const std::string options = fmt::format("size={},mode=0755", bytes);
    mounted_ = ::mount("tmpfs", path_.c_str(), "tmpfs", 0, options.c_str()) == 0;
    return mounted_;
  }

 private:
  fs::path path_;
  bool mounted_ = false;
};

// Runs fn in a forked child (optionally as nobody); "" when it returned "" and exited normally,
// else what it returned or how it died.
std::string in_child(const std::function<std::string()>& fn, bool as_nobody = false) {
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    ::close(pipe_fds[0]);
    std::string result;
    if (as_nobody &&
        (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0)) {
      result = fmt::format("cannot become nobody: {}", std::strerror(errno));
    } else {
      result = fn();
    }
    if (!result.empty()) (void)!::write(pipe_fds[1], result.data(), result.size());
    ::_exit(result.empty() ? 0 : 1);
  }
  ::close(pipe_fds[1]);
  std::string out;
  char buffer[4096];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) != 0;) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    return fmt::format("child killed by signal {} ({}) {}", WTERMSIG(status),
                       ::strsignal(WTERMSIG(status)), out);
  }
  if (WEXITSTATUS(status) != 0 && out.empty()) return "child failed";
  return out;
}

bool is_root() {
  return ::geteuid() == 0;
}

int put(Database& db, const std::string& key, const std::string& value) {
  auto written = db.write([&](WriteTxn& txn) -> int {
    auto stored = txn.put(key, value);
    return stored ? MDB_SUCCESS : stored.error();
  });
  return written ? 0 : 1;
}

std::optional<std::string> get(Database& db, const std::string& key, std::string* error = nullptr) {
  std::optional<std::string> out;
  auto read = db.read([&](const ReadTxn& txn) -> int {
    out.reset();
    auto value = txn.get(key);
    if (!value) return value.error();
    if (*value) out = std::string(**value);
    return MDB_SUCCESS;
  });
  if (!read && error != nullptr) *error = read.error().reason;
  return out;
}

struct stat stat_of(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(::stat(path.c_str(), &st), 0) << path;
  return st;
}

// ---------------------------------------------------------------------------------------------
// The lock file's size and blocks

TEST(LmdbLockFile, SizeIsTheOneLmdbGivesIt) {
  for (const unsigned readers : {1U, 2U, 126U, 500U}) {
    TempDir dir;
    const std::string path = dir.file("raw.mdb");
    MDB_env* env = nullptr;
    ASSERT_EQ(mdb_env_create(&env), 0);
    ASSERT_EQ(mdb_env_set_maxreaders(env, readers), 0);
    ASSERT_EQ(mdb_env_open(env, path.c_str(), MDB_NOSUBDIR, 0640), 0);
    EXPECT_EQ(static_cast<std::size_t>(stat_of(path + "-lock").st_size), lock_file_size(readers))
        << readers << " readers";
    mdb_env_close(env);
  }
  EXPECT_EQ(lock_file_size(0), lock_file_size(126));  // LMDB's default
}

TEST(LmdbLockFile, NewCacheHasAllItsLockFileBlocksAndTheConfiguredReaders) {
  TempDir dir;
  const std::string path = dir.file("cache.mdb");
  LmdbOptions options;
  options.max_readers = 200;
  {
    Database db(path, options);
    ASSERT_EQ(put(db, "k", "v"), 0);
  }
  const struct stat st = stat_of(path + "-lock");
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), lock_file_size(200));
  EXPECT_GE(static_cast<long long>(st.st_blocks) * 512, st.st_size) << "the lock file has holes";
  // Any LMDB user derives the reader table from the file's size: ours must be LMDB's.
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_open(env, path.c_str(), MDB_NOSUBDIR | MDB_RDONLY, 0640), 0);
  MDB_envinfo info{};
  ASSERT_EQ(mdb_env_info(env, &info), 0);
  EXPECT_EQ(info.me_maxreaders, 200U);
  mdb_env_close(env);
}

TEST(LmdbLockFile, LeftoverSparseOrEmptyLockFileIsAllocatedAndUsed) {
  for (const off_t leftover : {off_t{0}, static_cast<off_t>(lock_file_size(126))}) {
    TempDir dir;
    const std::string path = dir.file("cache.mdb");
    {
      Database db(path, LmdbOptions{});
      ASSERT_EQ(put(db, "k", "v"), 0);
    }
    // What a process killed inside mdb_env_open leaves: a lock file all hole (or empty).
    const std::string lock = path + "-lock";
    ASSERT_EQ(::unlink(lock.c_str()), 0);
    const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT, 0640);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, leftover), 0);
    ::close(fd);
    ASSERT_EQ(stat_of(lock).st_blocks, 0);

    Database db(path, LmdbOptions{});
    EXPECT_EQ(get(db, "k"), "v");
    const struct stat st = stat_of(lock);
    EXPECT_EQ(static_cast<std::size_t>(st.st_size), lock_file_size(126));
    EXPECT_GE(static_cast<long long>(st.st_blocks) * 512, st.st_size);
  }
}

// ---------------------------------------------------------------------------------------------
// A full file system

class LmdbFullFileSystem : public ::testing::Test {
 protected:
  static constexpr std::size_t kPage = 4096;

  void SetUp() override {
    if (!is_root()) GTEST_SKIP() << "needs root (mount a small tmpfs)";
    if (!dir_.mount_tmpfs(256 << 10)) GTEST_SKIP() << "cannot mount a tmpfs";
    filler_ = dir_.file("filler");
    path_ = dir_.file("cache.mdb");
  }

  // Takes every block but `free_pages` pages.
  void fill(std::size_t free_pages) {
    const int fd = ::open(filler_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    ASSERT_GE(fd, 0);
    const std::vector<char> zeros(kPage, 0);
    while (::write(fd, zeros.data(), zeros.size()) > 0) {
    }
    ASSERT_EQ(errno, ENOSPC);
    struct stat st {};
    ASSERT_EQ(::fstat(fd, &st), 0);
    const auto keep = static_cast<off_t>(free_pages * kPage);
    ASSERT_EQ(::ftruncate(fd, st.st_size > keep ? st.st_size - keep : 0), 0);
    ::close(fd);
  }

  // A new Database on the full file system, in a child: "" when it reported a clear error.
  std::string open_fails_cleanly(LmdbOptions options = {}) {
    return in_child([&]() -> std::string {
      Database db(path_, options);
      auto opened = db.open();
      if (opened) return "opened on a full file system";
      const std::string& text = opened.error().reason;
      if (text.find(path_) == std::string::npos ||
          text.find("No space left on device") == std::string::npos) {
        return "unclear error: " + text;
      }
      return "";
    });
  }

  TempDir dir_;
  std::string filler_;
  std::string path_;
};

TEST_F(LmdbFullFileSystem, NewCacheIsAClearErrorAndWorksOnceThereIsRoom) {
  fill(0);
  EXPECT_EQ(open_fails_cleanly(), "");
  EXPECT_EQ(open_fails_cleanly(), "");  // and again, with what the first attempt left
  ASSERT_EQ(::unlink(filler_.c_str()), 0);
  EXPECT_EQ(in_child([&]() -> std::string {
              Database db(path_, LmdbOptions{});
              if (put(db, "k", "v") != 0) return "cannot write with room again";
              return get(db, "k") == "v" ? "" : "cannot read back";
            }),
            "");
}

TEST_F(LmdbFullFileSystem, LeftoverLockFileAllHoleIsAClearError) {
  const int fd = ::open((path_ + "-lock").c_str(), O_RDWR | O_CREAT, 0640);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(lock_file_size(126))), 0);  // as after a SIGBUS
  ::close(fd);
  fill(0);
  EXPECT_EQ(open_fails_cleanly(), "");
}

TEST_F(LmdbFullFileSystem, RoomForTheLockFileOnlyOrTheFirstPagesIsAClearErrorAndNoCorruptFile) {
  // The data file is written with pwrite (no MDB_WRITEMAP): there a full file system is an error
  // from LMDB itself, not a signal. With room for the lock file only, for part of the meta pages,
  // or for the meta pages but not the first commit, every attempt must end in a clear error (or
  // succeed), and leave nothing the next attempt would take for a corrupt file.
  const std::size_t lock_pages = (lock_file_size(126) + kPage - 1) / kPage;
  for (std::size_t free_pages = lock_pages; free_pages <= lock_pages + 4; ++free_pages) {
    SCOPED_TRACE(fmt::format("{} pages free", free_pages));
    fill(free_pages);
    for (int attempt = 0; attempt < 2; ++attempt) {
      EXPECT_EQ(in_child([&]() -> std::string {
                  Database db(path_, LmdbOptions{}, [](WriteTxn& txn) {
                    auto stored = txn.put("schema", std::string(3 * kPage, 's'));
                    return stored ? MDB_SUCCESS : stored.error();
                  });
                  auto opened = db.open();
                  if (!db.notices().empty()) return "notices: " + db.notices().front();
                  if (opened) return "";  // fitted after all: fine
                  const std::string& text = opened.error().reason;
                  return text.find("No space left on device") != std::string::npos
                             ? ""
                             : "unclear error: " + text;
                }),
                "");
    }
    for (const auto& entry : fs::directory_iterator(dir_.file(""))) {
      EXPECT_EQ(entry.path().string().find(".corrupt-"), std::string::npos) << entry.path();
    }
    // With room again, the cache is created and works.
    ASSERT_EQ(::unlink(filler_.c_str()), 0);
    EXPECT_EQ(in_child([&]() -> std::string {
                Database db(path_, LmdbOptions{});
                if (put(db, "k", "v") != 0) return "cannot write with room again";
                if (!db.notices().empty()) return "notices: " + db.notices().front();
                return get(db, "k") == "v" ? "" : "cannot read back";
              }),
              "");
    for (const auto& entry : fs::directory_iterator(dir_.file(""))) fs::remove(entry.path());
  }
}

TEST_F(LmdbFullFileSystem, ExistingCacheKeepsBeingRead) {
  ASSERT_EQ(in_child([&]() -> std::string {
              Database db(path_, LmdbOptions{});
              return put(db, "k", "v") == 0 ? "" : "cannot write";
            }),
            "");
  fill(0);
  EXPECT_EQ(in_child([&]() -> std::string {
              Database db(path_, LmdbOptions{});
              std::string error;
              if (get(db, "k", &error) != "v") return "not read: " + error;
              if (put(db, "k2", "v2") == 0) return "wrote on a full file system";
              return "";
            }),
            "");
}

// ---------------------------------------------------------------------------------------------
// A lock file this user cannot write

class LmdbUnwritableLockFile : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!is_root()) GTEST_SKIP() << "needs root (a reader that cannot write the lock file)";
    path_ = dir_.file("cache.mdb");
    options_.file_mode = 0644;  // nobody may read both files, and write neither
    options_.read_only_until_write = true;
    Database db(path_, options_);
    ASSERT_EQ(put(db, "k", "v1"), 0);
  }

  TempDir dir_;
  std::string path_;
  LmdbOptions options_;
};

TEST_F(LmdbUnwritableLockFile, HitsAreReadWritesNameTheLockFile) {
  const std::string lock = path_ + "-lock";
  EXPECT_EQ(in_child(
                [&]() -> std::string {
                  Database db(path_, options_);
                  if (auto opened = db.open(); !opened) return opened.error().reason;
                  const auto notices = db.take_notices();
                  if (notices.size() != 1 || notices[0].find(lock) == std::string::npos) {
                    return fmt::format("expected one notice naming {}: {}", lock,
                                       fmt::join(notices, " | "));
                  }
                  std::string error;
                  if (get(db, "k", &error) != "v1") return "not read: " + error;
                  if (get(db, "missing", &error).has_value()) return "a missing key found";
                  auto written = db.write([](WriteTxn& txn) {
                    auto stored = txn.put("k", "v2");
                    return stored ? MDB_SUCCESS : stored.error();
                  });
                  if (written) return "wrote without the lock file";
                  const std::string& text = written.error().reason;
                  if (text.find(lock) == std::string::npos ||
                      text.find("Permission denied") == std::string::npos) {
                    return "unclear write error: " + text;
                  }
                  // Still reading after the failed attempt to write.
                  return get(db, "k", &error) == "v1" ? "" : "not read after a write: " + error;
                },
                true),
            "");
}

TEST_F(LmdbUnwritableLockFile, ReaderSeesLaterCommitsAndKeepsItsSnapshotUntilThen) {
  int to_writer[2];
  int to_reader[2];
  ASSERT_EQ(::pipe(to_writer), 0);
  ASSERT_EQ(::pipe(to_reader), 0);
  std::thread writer([&] {
    char c = 0;
    if (::read(to_writer[0], &c, 1) != 1) return;  // the reader read v1
    Database db(path_, options_);
    EXPECT_EQ(put(db, "k", "v2"), 0);
    (void)!::write(to_reader[1], "w", 1);
  });
  const std::string result = in_child(
      [&]() -> std::string {
        Database db(path_, options_);
        std::string error;
        if (get(db, "k", &error) != "v1") return "not read: " + error;
        const auto before = db.latest();
        if (!before) return "no snapshot";
        if (db.latest() != before) return "the snapshot moved with no commit";
        if (::write(to_writer[1], "r", 1) != 1) return "pipe";
        char c = 0;
        if (::read(to_reader[0], &c, 1) != 1) return "pipe";
        const auto after = db.latest();
        if (!after || after == before) return "latest() missed the commit";
        if (get(db, "k", &error) != "v2") return "the new commit not read: " + error;
        return "";
      },
      true);
  (void)!::write(to_writer[1], "x", 1);  // releases the writer if the child failed early
  writer.join();
  for (const int fd : {to_writer[0], to_writer[1], to_reader[0], to_reader[1]}) ::close(fd);
  EXPECT_EQ(result, "");
}

// A writer process rewrites `keys` keys in each commit, all with the same counter and values of
// varying size (pages split, merge and get reused), while a reader without write access to the
// lock file reads all of them over and over: each read must see one commit whole and never go
// back in time. Failed reads are allowed only as "busy" (commits kept landing during every
// attempt to copy). Returns "" or what went wrong; `stats` gets the counts.
std::string reads_stay_consistent(const std::string& path, const LmdbOptions& options, int keys,
                                  std::size_t value_size, std::string& stats) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  const pid_t writer = ::fork();
  if (writer < 0) return "fork failed";
  if (writer == 0) {
    Database db(path, options);
    for (long n = 1; std::chrono::steady_clock::now() < deadline; ++n) {
      auto written = db.write([&](WriteTxn& txn) -> int {
        for (int i = 0; i < keys; ++i) {
          const auto size = static_cast<std::size_t>(n * 37 + i) % value_size;
          auto stored =
              txn.put(fmt::format("key{:04}", i), fmt::format("{}:{}", n, std::string(size, 'x')));
          if (!stored) return stored.error();
        }
        return MDB_SUCCESS;
      });
      if (!written) ::_exit(1);
    }
    ::_exit(0);
  }
  std::string result = in_child(
      [&]() -> std::string {
        Database db(path, options);
        long last = 0;
        long reads = 0;
        long distinct = 0;
        long busy = 0;
        while (std::chrono::steady_clock::now() < deadline) {
          std::vector<long> seen;
          auto read = db.read([&](const ReadTxn& txn) -> int {
            seen.clear();
            for (int i = 0; i < keys; ++i) {
              auto value = txn.get(fmt::format("key{:04}", i));
              if (!value) return value.error();
              seen.push_back(*value ? std::atol(std::string(**value).c_str()) : 0);
            }
            return MDB_SUCCESS;
          });
          if (!read) {
            if (read.error().reason.find("busy") == std::string::npos) return read.error().reason;
            ++busy;
            continue;
          }
          ++reads;
          for (const long n : seen) {
            if (n != seen.front()) return fmt::format("a torn read: {}", fmt::join(seen, ","));
          }
          if (seen.front() < last) return fmt::format("went back from {} to {}", last, seen[0]);
          if (seen.front() != last) ++distinct;
          last = seen.front();
        }
        const std::string counts =
            fmt::format("{} reads, {} commits seen, {} busy", reads, distinct, busy);
        if (reads == 0 || distinct < 2) return "too little seen: " + counts;
        return "OK " + counts;
      },
      true);
  int status = 0;
  if (::waitpid(writer, &status, 0) != writer || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return "the writer failed";
  }
  if (result.starts_with("OK ")) {
    stats = result.substr(3);
    return "";
  }
  return result;
}

TEST_F(LmdbUnwritableLockFile, ReadsStayConsistentWhileAnotherProcessCommits) {
  std::string stats;
  EXPECT_EQ(reads_stay_consistent(path_, options_, 64, 900, stats), "");
  std::cout << "      " << stats << "\n";
}

TEST(LmdbUnwritableLockFileFastCommits, CopiesOverlappingCommitsAreRejectedNeverRead) {
  // On a tmpfs a commit costs microseconds (no disk to sync), and a 2 MB file takes longer to
  // copy than that: most copies overlap commits, and must be recognized.
  if (!is_root()) GTEST_SKIP() << "needs root (a reader that cannot write the lock file)";
  TempDir dir;
  if (!dir.mount_tmpfs(std::size_t{64} << 20)) GTEST_SKIP() << "cannot mount a tmpfs";
  LmdbOptions options;
  options.file_mode = 0644;
  options.read_only_until_write = true;
  const std::string path = dir.file("cache.mdb");
  {
    Database db(path, options);  // the reader must find the file
    ASSERT_EQ(put(db, "key0000", "0"), 0);
  }
  std::string stats;
  EXPECT_EQ(reads_stay_consistent(path, options, 1000, 2000, stats), "");
  std::cout << "      " << stats << "\n";
}

TEST_F(LmdbUnwritableLockFile, UnreadableDataFileIsNamedNotTheLockFile) {
  ASSERT_EQ(::chmod(path_.c_str(), 0600), 0);
  EXPECT_EQ(in_child(
                [&]() -> std::string {
                  Database db(path_, options_);
                  auto opened = db.open();
                  if (opened) return "opened an unreadable file";
                  const std::string& text = opened.error().reason;
                  if (text.find("-lock") != std::string::npos ||
                      text.find("Permission denied") == std::string::npos) {
                    return "unclear error: " + text;
                  }
                  return "";
                },
                true),
            "");
}

// ---------------------------------------------------------------------------------------------
// One write transaction per thread and environment: liblmdb's writer mutex is not recursive, so
// a second mdb_txn_begin on the thread holding it would wait for itself forever. Each scenario
// runs in a forked child under alarm(): a deadlock fails the test (SIGALRM) instead of hanging.

constexpr unsigned kDeadlockSeconds = 10;

std::string within_deadline(const std::function<std::string()>& fn) {
  return in_child([&]() -> std::string {
    ::alarm(kDeadlockSeconds);
    return fn();
  });
}

std::expected<std::shared_ptr<Environment>, int> open_environment(const std::string& path) {
  return Environment::open(path, LmdbOptions{}, nullptr);
}

// The value of `key` as a new read transaction sees it, or what went wrong.
std::string read_back(Environment& env, std::string_view key) {
  auto txn = env.begin_read();
  if (!txn) return "begin_read: " + describe(txn.error());
  auto value = txn->get(key);
  if (!value) return "get: " + describe(value.error());
  return *value ? std::string(**value) : "(absent)";
}

TEST(LmdbWriteTxnPerThread, SecondWriteOnTheSameThreadIsRefusedWithItsReason) {
  TempDir dir;
  const std::string path = dir.file("cache.mdb");
  EXPECT_EQ(within_deadline([&]() -> std::string {
              auto env = open_environment(path);
              if (!env) return "open: " + describe(env.error());
              auto first = (*env)->begin_write();
              if (!first) return "first begin_write: " + describe(first.error());
              for (int attempt = 0; attempt < 2; ++attempt) {  // a refusal changes nothing
                auto second = (*env)->begin_write();
                if (second) return "a second write transaction on the same thread";
                if (second.error() != EDEADLK) {
                  return "refused with " + describe(second.error()) + ", expected EDEADLK";
                }
              }
              // The first one is untouched: it still writes and commits.
              if (auto stored = first->put("k", "v1"); !stored) return describe(stored.error());
              if (auto committed = first->commit(); !committed) {
                return "commit: " + describe(committed.error());
              }
              return read_back(**env, "k") == "v1" ? "" : "the first write was lost";
            }),
            "");
}

TEST(LmdbWriteTxnPerThread, NewWriteWorksOnceTheFirstEnds) {
  struct Row {
    const char* name;
    // Ends the transaction in `txn` (and resets it); returns "" or what went wrong.
    std::function<std::string(std::optional<WriteTxn>&)> end;
    const char* expected;  // the value of "k" afterwards
  };
  const std::vector<Row> rows = {
      {"committed",
       [](std::optional<WriteTxn>& txn) -> std::string {
         auto committed = txn->commit();
         txn.reset();  // a committed WriteTxn's destructor does nothing more
         return committed ? "" : "commit: " + describe(committed.error());
       },
       "v1"},
      {"aborted by its destructor",
       [](std::optional<WriteTxn>& txn) -> std::string {
         txn.reset();
         return "";
       },
       "(absent)"},
      {"moved to a new owner, which commits",
       [](std::optional<WriteTxn>& txn) -> std::string {
         WriteTxn owner(std::move(*txn));
         txn.reset();  // the moved-from one must not release the new owner's claim
         auto committed = owner.commit();
         return committed ? "" : "commit: " + describe(committed.error());
       },
       "v1"},
      {"moved to a new owner, which aborts",
       [](std::optional<WriteTxn>& txn) -> std::string {
         { WriteTxn owner(std::move(*txn)); }
         txn.reset();
         return "";
       },
       "(absent)"},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    TempDir dir;
    const std::string path = dir.file("cache.mdb");
    EXPECT_EQ(within_deadline([&]() -> std::string {
                auto env = open_environment(path);
                if (!env) return "open: " + describe(env.error());
                std::optional<WriteTxn> txn;
                {
                  auto first = (*env)->begin_write();
                  if (!first) return "first begin_write: " + describe(first.error());
                  txn.emplace(std::move(*first));
                }
                if (auto stored = txn->put("k", "v1"); !stored) return describe(stored.error());
                if (std::string ended = row.end(txn); !ended.empty()) return ended;
                if (const std::string value = read_back(**env, "k"); value != row.expected) {
                  return fmt::format("k is {}, expected {}", value, row.expected);
                }
                auto next = (*env)->begin_write();
                if (!next) return "begin_write after the first ended: " + describe(next.error());
                if (auto stored = next->put("k", "v2"); !stored) return describe(stored.error());
                if (auto committed = next->commit(); !committed) {
                  return "commit: " + describe(committed.error());
                }
                return read_back(**env, "k") == "v2" ? "" : "the second write was lost";
              }),
              "");
  }
}

TEST(LmdbWriteTxnPerThread, AnotherThreadWaitsForTheWriteAndGetsItOnceItEnds) {
  TempDir dir;
  const std::string path = dir.file("cache.mdb");
  EXPECT_EQ(within_deadline([&]() -> std::string {
              auto env = open_environment(path);
              if (!env) return "open: " + describe(env.error());
              auto first = (*env)->begin_write();
              if (!first) return "first begin_write: " + describe(first.error());
              if (auto stored = first->put("k", "v1"); !stored) return describe(stored.error());
              std::atomic<bool> began{false};
              std::string other;  // what the other thread saw, written before `began`
              std::thread thread([&] {
                auto txn = (*env)->begin_write();  // waits for the first one
                if (!txn) {
                  other = "refused: " + describe(txn.error());
                } else {
                  auto value = txn->get("k");
                  other = value && *value ? std::string(**value) : "(absent)";
                  if (auto stored = txn->put("k", "v2"); !stored) other = "put failed";
                  if (auto committed = txn->commit(); !committed) other = "commit failed";
                }
                began = true;
              });
              std::this_thread::sleep_for(std::chrono::milliseconds(200));
              const bool began_too_early = began.load();
              auto committed = first->commit();
              thread.join();
              if (began_too_early)
                return "the other thread began while the first was open: " + other;
              if (!committed) return "commit: " + describe(committed.error());
              if (other != "v1") return "the other thread saw " + other + ", expected v1";
              if (read_back(**env, "k") != "v2") return "the other thread's write was lost";
              // And this thread may write again.
              auto again = (*env)->begin_write();
              return again ? "" : "begin_write afterwards: " + describe(again.error());
            }),
            "");
}

TEST(LmdbWriteTxnPerThread, ReadOnTheThreadHoldingTheWriteSeesTheLastCommit) {
  // MDB_NOTLS: a thread may hold read transactions beside its write transaction, and they read
  // the last committed state, not the write's changes (liblmdb's rule, kept as is).
  TempDir dir;
  const std::string path = dir.file("cache.mdb");
  EXPECT_EQ(within_deadline([&]() -> std::string {
              auto env = open_environment(path);
              if (!env) return "open: " + describe(env.error());
              {
                auto txn = (*env)->begin_write();
                if (!txn) return describe(txn.error());
                if (auto stored = txn->put("k", "v1"); !stored) return describe(stored.error());
                if (auto committed = txn->commit(); !committed) return "commit";
              }
              auto write = (*env)->begin_write();
              if (!write) return describe(write.error());
              if (auto stored = write->put("k", "v2"); !stored) return describe(stored.error());
              if (const std::string seen = read_back(**env, "k"); seen != "v1") {
                return "a read beside the write saw " + seen + ", expected v1";
              }
              if (auto committed = write->commit(); !committed) return "commit";
              return read_back(**env, "k") == "v2" ? "" : "the write was lost";
            }),
            "");
}

TEST(LmdbWriteTxnPerThread, WritesOnTwoFilesAtOnceAreAllowed) {
  // The guard is per environment: two files have two writer locks.
  TempDir dir;
  EXPECT_EQ(within_deadline([&]() -> std::string {
              auto a = open_environment(dir.file("a.mdb"));
              auto b = open_environment(dir.file("b.mdb"));
              if (!a || !b) return "open failed";
              auto write_a = (*a)->begin_write();
              auto write_b = (*b)->begin_write();
              if (!write_a || !write_b) return "a write on the second file was refused";
              return write_b->commit() && write_a->commit() ? "" : "commit failed";
            }),
            "");
}

TEST(LmdbWriteTxnPerThread, DatabaseWriteInsideAWriteCallbackIsAStoreError) {
  TempDir dir;
  const std::string path = dir.file("cache.mdb");
  EXPECT_EQ(
      within_deadline([&]() -> std::string {
        Database db(path, LmdbOptions{});
        std::optional<Error> nested;
        auto written = db.write([&](WriteTxn& txn) -> int {
          auto inner = db.write([](WriteTxn& inner_txn) -> int {
            auto stored = inner_txn.put("inner", "x");
            return stored ? MDB_SUCCESS : stored.error();
          });
          if (!inner) nested = inner.error();
          auto stored = txn.put("outer", "y");
          return stored ? MDB_SUCCESS : stored.error();
        });
        if (!written) return "the outer write failed: " + written.error().reason;
        if (!nested) return "the nested write was not refused";
        if (nested->category != ErrorCategory::store ||
            nested->reason.find(path) == std::string::npos ||
            nested->reason.find("second write transaction on this thread") == std::string::npos) {
          return "unclear error: " + nested->reason;
        }
        if (get(db, "outer") != "y") return "the outer write was lost";
        if (get(db, "inner").has_value()) return "the nested write happened";
        return put(db, "after", "z") == 0 ? "" : "cannot write afterwards";
      }),
      "");
}

}  // namespace
}  // namespace mtasts::store::lmdb
