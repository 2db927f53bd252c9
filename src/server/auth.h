#pragma once
// API-key authentication of requests: `Authorization: Bearer KEY`.
#include <string>
#include <string_view>

namespace fathom::server {

// True when `authorization` (the header's value) carries `key` in the Bearer scheme. The
// scheme name is case-insensitive (RFC 9110 11.1) and the key is compared in time that does
// not depend on where a guess first differs.
bool bearer_matches(std::string_view authorization, std::string_view key);

// The key a server requires, from the first of: `flag` (--api-key), the file `file`
// (--api-key-file; its first line, surrounding whitespace dropped) and `env` (the value of
// FATHOM_API_KEY, or null). Empty: no key. Throws fathom::Error when the file cannot be read
// or holds no key, or when both the flag and the file are given.
std::string resolve_api_key(const std::string& flag, const std::string& file, const char* env);

}  // namespace fathom::server
