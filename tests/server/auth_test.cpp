// API-key checks: the Bearer scheme (case-insensitive, RFC 9110 11.1) and where the key
// comes from (flag, file, environment).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <string>

#include "core/error.h"
#include "server/auth.h"

using fathom::server::bearer_matches;
using fathom::server::resolve_api_key;

TEST(Auth, BearerSchemeIsCaseInsensitive) {
  EXPECT_TRUE(bearer_matches("Bearer sekrit", "sekrit"));
  EXPECT_TRUE(bearer_matches("bearer sekrit", "sekrit"));
  EXPECT_TRUE(bearer_matches("BEARER sekrit", "sekrit"));
  EXPECT_TRUE(bearer_matches("bEaReR   sekrit ", "sekrit"));
  EXPECT_TRUE(bearer_matches("Bearer\tsekrit", "sekrit"));
}

TEST(Auth, WrongOrMalformedCredentialsFail) {
  EXPECT_FALSE(bearer_matches("", "sekrit"));
  EXPECT_FALSE(bearer_matches("Bearer", "sekrit"));
  EXPECT_FALSE(bearer_matches("Bearer ", "sekrit"));
  EXPECT_FALSE(bearer_matches("Bearersekrit", "sekrit"));
  EXPECT_FALSE(bearer_matches("Basic sekrit", "sekrit"));
  EXPECT_FALSE(bearer_matches("Bearer Sekrit", "sekrit"));  // the key itself is case-sensitive
  EXPECT_FALSE(bearer_matches("Bearer sekri", "sekrit"));
  EXPECT_FALSE(bearer_matches("Bearer sekrit2", "sekrit"));
  EXPECT_FALSE(bearer_matches("Bearer sekrit", "sekrit2"));
  EXPECT_FALSE(bearer_matches(std::string("Bearer sek\0it", 13), "sekrit"));
}

TEST(Auth, KeySources) {
  EXPECT_EQ(resolve_api_key("", "", nullptr), "");
  EXPECT_EQ(resolve_api_key("", "", "  fromenv\n"), "fromenv");
  EXPECT_EQ(resolve_api_key("flag", "", "fromenv"), "flag");

  const auto dir = std::filesystem::temp_directory_path() / ("fathom_auth_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string file = (dir / "key").string(), empty = (dir / "empty").string();
  std::ofstream(file) << "  filekey \nsecond line\n";
  std::ofstream(empty) << "\n";
  EXPECT_EQ(resolve_api_key("", file, "fromenv"), "filekey");
  EXPECT_THROW(resolve_api_key("flag", file, nullptr), fathom::Error);
  EXPECT_THROW(resolve_api_key("", empty, nullptr), fathom::Error);
  EXPECT_THROW(resolve_api_key("", (dir / "missing").string(), nullptr), fathom::Error);
  std::filesystem::remove_all(dir);
}
