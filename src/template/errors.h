#pragma once
// Runtime errors raised by value operations and filters do not know where in the template they
// happened; the evaluator catches them at the innermost node and rethrows a fathom::Error that
// names the template line.
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace fathom::jinja {

class UnlocatedError : public std::runtime_error {
 public:
  explicit UnlocatedError(const std::string& m) : std::runtime_error(m) {}
};

template <typename... Args>
[[noreturn]] inline void rt_fail(fmt::format_string<Args...> f, Args&&... args) {
  throw UnlocatedError(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace fathom::jinja
