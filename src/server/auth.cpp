#include "server/auth.h"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "core/error.h"

namespace fathom::server {

namespace {

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  const size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

// Visits every byte of `expected` whatever `given` holds, so the time reveals neither the
// position of the first wrong byte nor (beyond its length) the key.
bool same_key(std::string_view given, std::string_view expected) {
  volatile unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff = diff | (g ^ static_cast<unsigned char>(expected[i]));
  }
  return diff == 0;
}

}  // namespace

bool bearer_matches(std::string_view auth, std::string_view key) {
  auth = trim(auth);
  constexpr std::string_view scheme = "bearer";
  if (auth.size() <= scheme.size()) return false;
  for (size_t i = 0; i < scheme.size(); ++i) {
    char c = auth[i];
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    if (c != scheme[i]) return false;
  }
  const std::string_view rest = auth.substr(scheme.size());
  if (rest[0] != ' ' && rest[0] != '\t') return false;  // "BearerX" is another scheme
  return same_key(trim(rest), key);
}

std::string resolve_api_key(const std::string& flag, const std::string& file, const char* env) {
  if (!flag.empty() && !file.empty()) fail("serve: give --api-key or --api-key-file, not both");
  if (!flag.empty()) return flag;
  if (!file.empty()) {
    std::ifstream in(file);
    if (!in) fail("serve: cannot read the API key file {}: {}", file, std::strerror(errno));
    std::string line;
    std::getline(in, line);
    const std::string key(trim(line));
    if (key.empty()) fail("serve: the API key file {} holds no key on its first line", file);
    return key;
  }
  return env ? std::string(trim(env)) : std::string();
}

}  // namespace fathom::server
