#pragma once
// fathom's one exception type. Every user-facing failure (bad file, bad config, bad request)
// is an Error with a one-line message that names what was wrong.
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace fathom {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

template <typename... Args>
[[noreturn]] inline void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

#define FATHOM_CHECK(cond, ...)          \
  do {                                   \
    if (!(cond)) ::fathom::fail(__VA_ARGS__); \
  } while (0)

}  // namespace fathom
