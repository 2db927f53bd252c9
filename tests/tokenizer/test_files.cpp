// The tokenizer and chat template files are opened only when they are regular files: a FIFO
// named tokenizer.json would otherwise block the loader forever.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "core/error.h"
#include "template/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace fathom {
namespace {

namespace fs = std::filesystem;

struct Dir {
  fs::path p = fs::temp_directory_path() / ("fathom-tokfiles-" + std::to_string(::getpid()));
  Dir() { fs::create_directories(p); }
  ~Dir() {
    std::error_code ec;
    fs::remove_all(p, ec);
  }
};

template <class F>
std::string error_within_a_second(F f) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string what;
  try {
    f();
  } catch (const Error& e) {
    what = e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
  return what;
}

TEST(TokenizerFiles, AFifoIsRefusedNotOpened) {
  Dir d;
  ASSERT_EQ(0, ::mkfifo((d.p / "tokenizer.json").c_str(), 0600));
  EXPECT_NE(error_within_a_second([&] { Tokenizer::load(d.p.string()); }).find("is a FIFO, not a regular file"),
            std::string::npos);
  ASSERT_EQ(0, ::mkfifo((d.p / "tokenizer_config.json").c_str(), 0600));
  EXPECT_NE(error_within_a_second([&] { ChatTemplate::load(d.p.string()); }).find("is a FIFO, not a regular file"),
            std::string::npos);
}

TEST(TokenizerFiles, ADirectoryIsNamedAsSuch) {
  Dir d;
  fs::create_directories(d.p / "tokenizer.json");
  EXPECT_NE(error_within_a_second([&] { Tokenizer::load(d.p.string()); }).find("is a directory"), std::string::npos);
}

}  // namespace
}  // namespace fathom
