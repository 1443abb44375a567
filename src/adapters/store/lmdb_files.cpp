#include "adapters/store/lmdb_files.hpp"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

namespace mtasts::store::lmdb {

namespace {

// liblmdb 0.9's lock file with POSIX mutexes (MDB_USE_POSIX_MUTEX, its default on Linux):
// MDB_txninfo is two parts padded to a cache line each (the reader table's header with the reader
// mutex; the writer mutex) and the first reader slot; each further MDB_reader is one padded line.
constexpr std::size_t kCacheLine = 64;
constexpr unsigned kLmdbDefaultMaxReaders = 126;

constexpr std::size_t cache_lines(std::size_t size) {
  return (size + kCacheLine - 1) & ~(kCacheLine - 1);
}

struct LockHeader {  // MDB_txbody
  std::uint32_t magic;
  std::uint32_t format;
  pthread_mutex_t reader_mutex;
  std::size_t txn_id;  // txnid_t
  unsigned readers;
};

struct LockReader {  // MDB_rxbody
  std::size_t txn_id;
  pid_t pid;
  pthread_t thread;
};

bool fully_allocated(const struct stat& st) {
  return st.st_size > 0 && static_cast<long long>(st.st_blocks) * 512 >= st.st_size;
}

// The first page of a lock file holds LMDB's header and its first reader slots.
bool first_page_allocated(int fd, const struct stat& st) {
  const off_t hole = ::lseek(fd, 0, SEEK_HOLE);
  if (hole < 0) return st.st_blocks > 0;  // no SEEK_HOLE here: blocks at all, then
  return hole >= std::min<off_t>(st.st_size, ::sysconf(_SC_PAGESIZE));
}

}  // namespace

std::string parent_directory(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string lock_path(const std::string& path) {
  return path + "-lock";
}

std::size_t lock_file_size(unsigned max_readers) {
  const std::size_t readers = max_readers > 0 ? max_readers : kLmdbDefaultMaxReaders;
  return cache_lines(sizeof(LockHeader)) + cache_lines(sizeof(pthread_mutex_t)) +
         readers * cache_lines(sizeof(LockReader));
}

// LMDB's first opener extends a new lock file with ftruncate, which leaves a hole, and writes its
// reader table through a shared mapping: where the file system has no block left for the hole,
// that store raises SIGBUS, and the hole stays behind for the next process. So the file gets real
// blocks here, before mdb_env_open maps it, and a full file system becomes ENOSPC (or EDQUOT).
// Returns 0 or that errno. Anything else (no right to create or write the file, a read-only file
// system, no fallocate) is left to mdb_env_open, which meets the same condition and says so.
//
// The usual case (the file exists with all its blocks) costs one stat(): no descriptor is opened,
// since closing one would drop fcntl locks this process might hold on the file.
int prepare_lock_file(const std::string& path, unsigned max_readers, unsigned file_mode) {
  const std::string lock = lock_path(path);
  struct stat st {};
  if (::stat(lock.c_str(), &st) == 0) {
    if (fully_allocated(st)) return 0;
  } else if (errno != ENOENT) {
    return 0;
  }
  const int fd = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, static_cast<mode_t>(file_mode));
  if (fd < 0) return 0;
  int rc = 0;
  if (::fstat(fd, &st) == 0 && !fully_allocated(st)) {
    // A lock file in use keeps its size: its users mapped that many reader slots. A new (or
    // empty) one gets the size LMDB would give it.
    const off_t size =
        st.st_size > 0 ? st.st_size : static_cast<off_t>(lock_file_size(max_readers));
    int allocated = 0;
    do {
      allocated = ::fallocate(fd, 0, 0, size);
    } while (allocated != 0 && errno == EINTR);
    if (allocated != 0 && (errno == ENOSPC || errno == EDQUOT)) {
      rc = errno;
      // A lock file another LMDB user created (ftruncate, then the header written) has its first
      // page; only its later reader slots are a hole. It is used as before, as every LMDB user
      // would: a fault needs more than a page of readers at once on a full file system.
      if (st.st_size > 0 && first_page_allocated(fd, st)) rc = 0;
    }
  }
  ::close(fd);
  return rc;
}

// A new data file gets blocks for its two meta pages before LMDB writes them: where they do not
// fit, mdb_env_open would leave a file with one meta page, which the next open takes for a corrupt
// file and moves aside. Returns 0, or ENOSPC / EDQUOT with the file left empty (an empty file is
// a new one to LMDB and to Environment::open). Anything else is left to mdb_env_open.
int prepare_data_file(const std::string& path, unsigned file_mode) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (st.st_size > 0) return 0;  // the usual case: an existing cache
  } else if (errno != ENOENT) {
    return 0;
  }
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, static_cast<mode_t>(file_mode));
  if (fd < 0) return 0;
  int rc = 0;
  if (::fstat(fd, &st) == 0 && st.st_size == 0) {
    // FALLOC_FL_KEEP_SIZE: the size stays 0, which is how LMDB recognizes a new file.
    const auto metas = static_cast<off_t>(2 * ::sysconf(_SC_PAGESIZE));
    int allocated = 0;
    do {
      allocated = ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, metas);
    } while (allocated != 0 && errno == EINTR);
    if (allocated != 0 && (errno == ENOSPC || errno == EDQUOT)) rc = errno;
  }
  ::close(fd);
  return rc;
}

// LMDB reports a short write (the file system filled up in the middle of it) as EIO: when the
// file system has no block left, say so instead.
int disk_full_or(int rc, const std::string& path) {
  struct statvfs fs {};
  if (rc == EIO && ::statvfs(parent_directory(path).c_str(), &fs) == 0 && fs.f_bavail == 0) {
    return ENOSPC;
  }
  return rc;
}

// True when this user can neither read and write "<path>-lock" nor create it.
bool lock_file_unwritable(const std::string& path) {
  if (::faccessat(AT_FDCWD, lock_path(path).c_str(), R_OK | W_OK, AT_EACCESS) == 0) return false;
  if (errno == ENOENT) {
    return ::faccessat(AT_FDCWD, parent_directory(path).c_str(), W_OK | X_OK, AT_EACCESS) != 0;
  }
  return errno == EACCES || errno == EPERM || errno == EROFS;
}

}  // namespace mtasts::store::lmdb
