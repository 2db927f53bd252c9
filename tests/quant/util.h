#pragma once
// Helpers of the quantized-format tests: temp directories, full-sequence logits, commands.
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "../model/fixtures.h"
#include "io/config.h"
#include "model/model.h"
#include "model/transformer.h"

namespace fathom::test {

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    static int counter = 0;  // unique per process; the pid separates processes
    path_ = std::filesystem::temp_directory_path() /
            ("fathom-quant-" + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string str() const { return path_.string(); }
  std::filesystem::path operator/(const std::string& s) const { return path_ / s; }

 private:
  std::filesystem::path path_;
};

// Logits [T, V] for every position of one sequence.
inline std::vector<float> all_logits(Model& m, const std::vector<int32_t>& ids) {
  const int64_t T = int64_t(ids.size()), V = m.config().vocab_size;
  KvCache cache = m.make_cache(1, T);
  std::vector<float> out(size_t(T * V));
  m.forward({SeqChunk{0, 0, ids.data(), T, true}}, cache, out.data());
  return out;
}

inline std::unique_ptr<Model> load(const std::string& dir, const std::string& quant = "", bool repack = true) {
  LoadOpts lo;
  lo.threads = 2;
  lo.quant = quant;
  lo.repack = repack;
  return load_model(dir, lo);
}

struct CmdResult {
  int status = -1;
  std::string out;  // stdout only
};

inline CmdResult run_cmd(const std::string& cmd) {
  CmdResult r;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  r.status = ::pclose(p);
  return r;
}

inline std::string fixture_test_name(const std::string& dir) {
  std::string n = std::filesystem::path(dir).filename().string();
  for (char& c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

// The first Linear weight whose in-dim is not a multiple of 32 (so the block formats cannot
// hold it), or "" when the whole checkpoint can be quantized.
inline std::string fixture(const std::string& name) {
  for (const auto& d : fixture_dirs())
    if (std::filesystem::path(d).filename() == name) return d;
  return "";
}

}  // namespace fathom::test
