// Errors that say what was wrong, where, and what to do.
//
// Every failure a user can cause (a bad file, a bad flag, a shape that does not fit) throws
// infini::Error. The command-line program catches it, prints its message and exits non-zero:
// never a crash, never a silent wrong answer. Programming errors inside the engine use the same
// type through INFINI_CHECK so that they too end with a message instead of undefined behaviour.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace infini {

class Error : public std::runtime_error {
 public:
  // where: the file, tensor, flag or function concerned; what: what is wrong;
  // hint: what the user can do about it (may be empty).
  Error(std::string where, std::string what, std::string hint = {})
      : std::runtime_error(compose(where, what, hint)),
        where_(std::move(where)),
        what_(std::move(what)),
        hint_(std::move(hint)) {}

  const std::string& where() const { return where_; }
  const std::string& problem() const { return what_; }
  const std::string& hint() const { return hint_; }

 private:
  static std::string compose(const std::string& where, const std::string& what,
                             const std::string& hint) {
    std::string message = where.empty() ? what : where + ": " + what;
    if (!hint.empty()) message += " (" + hint + ")";
    return message;
  }
  std::string where_, what_, hint_;
};

// Builds a message from any streamable pieces: str("expected ", n, " rows").
template <typename... Parts>
std::string str(const Parts&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

}  // namespace infini

// Internal invariant: throws infini::Error naming the source location.
#define INFINI_CHECK(condition, ...)                                                         \
  do {                                                                                       \
    if (!(condition))                                                                        \
      throw ::infini::Error(::infini::str(__FILE__, ":", __LINE__),                          \
                            ::infini::str("check failed: " #condition ": ", __VA_ARGS__)); \
  } while (0)
