#include "io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace infini {

namespace {
// Writes all of [data, data+n); false with errno set on failure (a 0-byte write counts as ENOSPC).
bool write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, std::min(n, size_t(1) << 30));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      if (w == 0) errno = ENOSPC;
      return false;
    }
    p += w;
    n -= size_t(w);
  }
  return true;
}
}  // namespace

void write_file_atomic(const std::string& path, const std::vector<ByteRange>& pieces) {
  const std::string tmp = str(path, ".tmp.", ::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    const int err = errno;
    throw Error(path, str("cannot create temporary file ", tmp, ": ", std::strerror(err)),
                "check that the directory exists, is writable and has free space");
  }
  // Every failure below: close, remove the temporary file, report; `path` is never touched.
  auto fail = [&](int err, const std::string& step) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(path, str(step, ": ", std::strerror(err), "; nothing was written"),
                err == ENOSPC || err == EFBIG || err == EDQUOT ? "free disk space and try again"
                                                               : "check the disk and directory");
  };
  int err = 0;
  for (const ByteRange& piece : pieces) {
    if (piece.size && !write_all(fd, piece.data, piece.size)) {
      err = errno;
      fail(err, "cannot write");
    }
  }
  if (::fsync(fd) != 0) {
    err = errno;
    fail(err, "cannot flush to disk (fsync)");
  }
  const int closed = ::close(fd);
  err = errno;
  fd = -1;
  if (closed != 0) fail(err, "cannot close the temporary file");
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    fail(err, str("cannot rename ", tmp, " to the target"));
  }

  // Make the rename itself durable.
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = std::filesystem::path(".");
  const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd >= 0) {
    const int synced = ::fsync(dir_fd);
    err = errno;
    ::close(dir_fd);
    if (synced != 0 && err != EINVAL)  // EINVAL: the file system cannot sync directories
      throw Error(
          path,
          str("written, but syncing directory ", dir.string(), " failed: ", std::strerror(err)),
          "the file is complete but may not survive a power loss; check the disk");
  }
}

}  // namespace infini
