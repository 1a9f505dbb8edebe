// netsplit/io/folder_lock.hpp — exclusive use of an output folder by one run.
// folder_lock creates the folder and takes an exclusive flock(2) on <folder>/.netsplit.lock,
// writing its pid there. The kernel releases the lock when the process ends in any way
// (a SIGKILLed run leaves no stale lock); a second run on the same folder is refused at
// once with an io_error naming the folder and the holder's pid. POSIX only.
#pragma once

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>

#include "netsplit/core/errors.hpp"

namespace netsplit::io {

class folder_lock {
 public:
  explicit folder_lock(const std::filesystem::path& folder) : path_(folder / ".netsplit.lock") {
    std::error_code ec;
    std::filesystem::create_directories(folder, ec);
    if (ec)
      netsplit::detail::raise<io_error>("netsplit: cannot create output folder ", folder.string(), ": ", ec.message());
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      netsplit::detail::raise<io_error>("netsplit: cannot open lock file ", path_.string(), ": ", std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      // The holder writes its pid just after taking the lock: give it a moment when the
      // two runs started together.
      std::string holder = read_holder();
      for (int i = 0; i < 50 && holder.empty() && err == EWOULDBLOCK; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        holder = read_holder();
      }
      ::close(fd_);
      fd_ = -1;
      if (err == EWOULDBLOCK)
        netsplit::detail::raise<io_error>("netsplit: output folder ", folder.string(), " is in use by another run (pid ",
                                holder.empty() ? "unknown" : holder, ", lock file ", path_.string(),
                                "); wait for it to end or choose another --out-dir");
      netsplit::detail::raise<io_error>("netsplit: cannot lock ", path_.string(), ": ", std::strerror(err));
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    // The pid is for messages only: a failed write leaves the lock held and valid.
    if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, pid.data(), pid.size(), 0);
  }
  ~folder_lock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock; the file stays (removing it would race)
  }
  folder_lock(const folder_lock&) = delete;
  folder_lock& operator=(const folder_lock&) = delete;

  const std::filesystem::path& path() const { return path_; }

 private:
  std::string read_holder() const {
    char buf[32] = {};
    const auto n = ::pread(fd_, buf, sizeof buf - 1, 0);
    std::string s(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
    while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
    return s;
  }

  std::filesystem::path path_;
  int fd_ = -1;
};

}  // namespace netsplit::io
