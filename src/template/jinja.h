#pragma once
// A Jinja2-subset interpreter matching how HF transformers renders chat templates
// (jinja2 ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks, loopcontrols, the
// tojson/raise_exception/strftime_now additions). Parse once, render many times: Template is
// immutable after parse and render() is const and thread-safe.
//
// Anything outside the subset (unknown tags, filters, tests, methods) fails with a fathom::Error
// that names the construct and the template line; rendering never silently produces other text.
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>

#include "template/ast.h"
#include "template/value.h"

namespace fathom::jinja {

struct Options {
  LexOptions lex;
  size_t max_output_bytes = size_t(64) << 20;  // also caps any single string built while rendering
  uint64_t max_steps = 50'000'000;             // loop iterations + evaluated nodes
  int max_call_depth = 64;                     // nested macro calls
};

using Context = std::unordered_map<std::string, Value>;

class Template {
 public:
  // Throws fathom::Error on syntax errors ("... at line N: ...").
  static Template parse(const std::string& source, Options opt = {});
  // `vars` are the render arguments (messages, bos_token, ...); the built-in globals
  // (range, namespace, dict, raise_exception, strftime_now) are always present.
  std::string render(const Context& vars) const;

 private:
  std::shared_ptr<const Program> prog_;
  Options opt_;
};

}  // namespace fathom::jinja
