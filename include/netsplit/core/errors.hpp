// netsplit/core/errors.hpp — the library's one exception hierarchy.
// Every error the library raises derives from netsplit::error; messages name the value
// that was wrong and what was expected. The library throws, it never prints.
#pragma once

#include <cstddef>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace netsplit {

/// Root of all netsplit exceptions.
class error : public std::runtime_error {
 public:
  explicit error(const std::string& what) : std::runtime_error(what) {}
};

/// A precondition of a library call did not hold (wrong shape, channel mismatch,
/// impossible request). The message names the failed expression and the values.
class contract_violation : public error {
 public:
  explicit contract_violation(const std::string& what) : error(what) {}
};

/// A file or stream could not be read or written, or its content is not in the
/// expected format (truncated, corrupt, wrong record size, label out of range).
class io_error : public error {
 public:
  explicit io_error(const std::string& what) : error(what) {}
};

/// A backend (thread pool, CUDA runtime or library) reported a failure.
class backend_error : public error {
 public:
  explicit backend_error(const std::string& what) : error(what) {}
};

/// Memory could not be allocated; bytes() is the size of the request that failed.
class out_of_memory : public error {
 public:
  out_of_memory(const std::string& what, std::size_t bytes) : error(what), bytes_(bytes) {}
  std::size_t bytes() const { return bytes_; }

 private:
  std::size_t bytes_;
};

/// Training stopped because the loss or a parameter became NaN or infinite.
class divergence_error : public error {
 public:
  explicit divergence_error(const std::string& what) : error(what) {}
};

/// A data-parallel run failed across its processes: a collective operation failed or
/// timed out, or the replicas disagree (their parameters' hashes, their rank counts).
class distributed_error : public error {
 public:
  explicit distributed_error(const std::string& what) : error(what) {}
};

namespace detail {

template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <class E, class... Args>
[[noreturn]] void raise(Args&&... args) {
  throw E(concat(std::forward<Args>(args)...));
}

}  // namespace detail
}  // namespace netsplit

/// Contract check that stays on in every build: throws contract_violation naming the
/// failed expression, the call site and a message built from the remaining arguments.
#define NETSPLIT_EXPECT(cond, ...)                                                     \
  do {                                                                                 \
    if (!(cond)) [[unlikely]]                                                          \
      ::netsplit::detail::raise<::netsplit::contract_violation>(                       \
          "netsplit: contract violated: ", __VA_ARGS__, " [check `" #cond "` at ",     \
          __FILE__, ":", __LINE__, "]");                                               \
  } while (0)
