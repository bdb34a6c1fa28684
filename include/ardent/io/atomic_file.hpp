#pragma once
// The one way ardent writes a file that must never be seen half-written (state dicts, checkpoints,
// metrics, JSON reports): the bytes go to a temporary file in the same directory, are flushed to
// the disk (fsync), and the temporary is renamed over the target (rename(2) is atomic within a
// file system), then the directory entry is flushed. A reader sees the old file or the new one;
// a failure (a full disk, a read-only directory) removes the temporary and throws naming the caller
// and the path; it never aborts.

#include "ardent/io/limits.hpp"

#include <torch/torch.h>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace ardent::io {

/// The temporary a write of `path` goes through: `<path>.tmp<pid>`, so that two processes writing
/// the same path never share one.
inline std::filesystem::path temporary_path(const std::filesystem::path& path) {
  auto tmp = path;
  tmp += ".tmp" + std::to_string(::getpid());
  return tmp;
}

namespace detail {

inline void write_all(int fd, const char* data, std::size_t size, const std::filesystem::path& tmp,
                      std::string_view who) {
  while (size > 0) {
    const ::ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      std::filesystem::remove(tmp);
      TORCH_CHECK(false, who, ": writing '", tmp.string(), "' failed: ", std::strerror(err));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

#ifdef ARDENT_TEST_KILL_HOOKS
/// Test hooks of the kill-and-resume test, compiled only into the test program that defines
/// ARDENT_TEST_KILL_HOOKS (tests/kill_resume_child.cpp; never into a user's build): with
/// ARDENT_TEST_KILL_WRITING=<file name> in the environment, the process dies (SIGKILL) halfway
/// through writing the temporary of that file; with ARDENT_TEST_KILL_WRITTEN=<file name>, right
/// after renaming it into place.
inline bool kill_requested(const char* variable, const std::filesystem::path& path) {
  const char* name = std::getenv(variable);
  return name != nullptr && path.filename() == name;
}
#endif

}  // namespace detail

/// Removes temporaries `<path>.tmp<pid>` that a killed process left behind (its pid no longer runs).
inline void remove_stale_temporaries(const std::filesystem::path& path) {
  const auto directory = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const std::string prefix = path.filename().string() + ".tmp";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string pid = name.substr(prefix.size());
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos || pid.size() > 9) continue;
    const auto id = static_cast<pid_t>(std::stol(pid));
    if (id == ::getpid() || (::kill(id, 0) != 0 && errno == ESRCH)) std::filesystem::remove(entry.path(), ec);
  }
}

/// Replaces `path` by `bytes` atomically (see above), first removing the temporaries of `path`
/// that killed writers left (remove_stale_temporaries). `who` names the calling function in errors.
/// `before_rename`, if given, runs on the flushed temporary before it replaces `path` (to verify
/// it, or to keep the old file); if it throws, the temporary is removed and `path` left as it was.
inline void write_file_atomically(const std::filesystem::path& path, std::string_view bytes, std::string_view who,
                                  const std::function<void(const std::filesystem::path&)>& before_rename = {}) {
  if (path.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(path.parent_path(), ec);
    TORCH_CHECK(!ec, who, ": cannot create directory '", path.parent_path().string(), "': ", ec.message());
  }
  remove_stale_temporaries(path);
  const auto tmp = temporary_path(path);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  TORCH_CHECK(fd >= 0, who, ": cannot write temporary file '", tmp.string(), "': ", std::strerror(errno));
#ifdef ARDENT_TEST_KILL_HOOKS
  if (detail::kill_requested("ARDENT_TEST_KILL_WRITING", path)) {
    detail::write_all(fd, bytes.data(), bytes.size() / 2, tmp, who);
    std::raise(SIGKILL);
  }
#endif
  detail::write_all(fd, bytes.data(), bytes.size(), tmp, who);
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    const int err = errno;
    std::filesystem::remove(tmp);
    TORCH_CHECK(false, who, ": flushing '", tmp.string(), "' to disk failed: ", std::strerror(err));
  }
  if (before_rename) {
    try {
      before_rename(tmp);
    } catch (...) {
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);
      throw;
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    TORCH_CHECK(false, who, ": cannot rename '", tmp.string(), "' to '", path.string(), "': ", ec.message());
  }
#ifdef ARDENT_TEST_KILL_HOOKS
  if (detail::kill_requested("ARDENT_TEST_KILL_WRITTEN", path)) std::raise(SIGKILL);
#endif
  const auto directory = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  if (const int dir = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dir >= 0) {
    ::fsync(dir);  // best effort: some file systems refuse fsync on directories
    ::close(dir);
  }
}

namespace detail {

/// Closes a file descriptor when it goes out of scope.
struct OpenFile {
  explicit OpenFile(int descriptor) : fd(descriptor) {}
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  ~OpenFile() {
    if (fd >= 0) ::close(fd);
  }
  int fd;
};

}  // namespace detail

/// Reads `path` from start to end in chunks of at most `chunk_bytes`, calling consume(data, size) on
/// each (a read interrupted by a signal is retried); throws naming `who` and the path.
template <typename Consume>
void read_chunks(const std::filesystem::path& path, std::string_view who, std::size_t chunk_bytes, Consume&& consume) {
  const detail::OpenFile file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  TORCH_CHECK(file.fd >= 0, who, ": file '", path.string(), "' cannot be opened: ", std::strerror(errno));
  std::vector<char> buffer(chunk_bytes);
  while (true) {
    const ::ssize_t n = ::read(file.fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    TORCH_CHECK(n >= 0, who, ": reading '", path.string(), "' failed: ", std::strerror(errno));
    if (n == 0) return;
    consume(buffer.data(), static_cast<std::size_t>(n));
  }
}

/// The whole content of `path`; throws naming `who` and the path when it cannot be read.
inline std::string read_file(const std::filesystem::path& path, std::string_view who) {
  std::error_code ec;
  TORCH_CHECK(std::filesystem::is_regular_file(path, ec), who, ": file '", path.string(), "' cannot be opened",
              std::filesystem::exists(path, ec) ? " (not a regular file)" : " (no such file)");
  const auto size = std::filesystem::file_size(path, ec);
  TORCH_CHECK(!ec && size <= read_limits().max_file_bytes(), who, ": file '", path.string(), "' has ", size,
              " bytes, more than the largest file accepted, max_file_bytes = ", read_limits().max_file_bytes(),
              kRaiseLimitHint);
  std::string out;
  out.reserve(size);
  read_chunks(path, who, std::size_t{1} << 16, [&](const char* data, std::size_t n) {
    out.append(data, n);
    TORCH_CHECK(out.size() <= read_limits().max_file_bytes(), who, ": file '", path.string(),
                "' grew beyond max_file_bytes while being read");
  });
  return out;
}

}  // namespace ardent::io
