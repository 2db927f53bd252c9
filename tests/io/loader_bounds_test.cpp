// The loader is bounded and refuses nonsense: a config that claims far more than the
// checkpoint holds, a FIFO or directory where a file should be, numbers out of range, and
// weights that are NaN/Inf or BF16 data labelled F16 all end within a second in a one-line
// Error that names the field, file or tensor.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/dtype.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/model.h"
#include "runtime/generate.h"

namespace fathom {
namespace {
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

class Loader : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fathom-bounds-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const fs::path src = fs::path(FATHOM_TEST_DATA) / "fixtures" / "tiny-deepseek-v3";
    for (const char* f : {"config.json", "model.safetensors"}) {
      fs::copy_file(src / f, dir_ / f);
      fs::permissions(dir_ / f, fs::perms::owner_write, fs::perm_options::add);
    }
  }
  void TearDown() override { fs::remove_all(dir_); }
  nlohmann::json config() {
    std::ifstream in(dir_ / "config.json");
    return nlohmann::json::parse(in);
  }
  void set(const char* field, const nlohmann::json& v) {
    auto j = config();
    j[field] = v;
    std::ofstream(dir_ / "config.json") << j.dump();
  }
  // The load error (empty when it loads), checked to come within a second on one line.
  std::string load_error(const LoadOpts& opts = {}) {
    const auto t0 = Clock::now();
    std::string e;
    try {
      load_model(dir_.string(), opts);
    } catch (const Error& x) {
      e = x.what();
    }
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_LT(s, 1.0) << e;
    EXPECT_EQ(e.find('\n'), std::string::npos) << e;
    return e;
  }
  // load_error() with `fifo` in the checkpoint: should the loader open it (and block), a
  // writer after 3 s lets the test end instead of hanging.
  std::string load_unblocking(const std::string& fifo) {
    std::atomic<bool> done{false};
    std::thread writer([&] {
      for (int i = 0; i < 60 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (done) return;
      int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
    });
    std::string e = load_error();
    done = true;
    writer.join();
    return e;
  }
  // Rewrites model.safetensors: `fn` may change each tensor's dtype label and bytes.
  using Edit = std::function<void(const std::string& name, DType& dtype, std::string& bytes)>;
  void rewrite(const Edit& fn) {
    std::vector<SafetensorsWriter::Entry> entries;
    std::vector<std::string> data;
    {
      const TensorStore st = TensorStore::open((dir_ / "model.safetensors").string());
      for (const auto& [name, t] : st.all()) {
        std::string bytes(static_cast<const char*>(t.data), t.nbytes);
        DType dt = t.dtype;
        fn(name, dt, bytes);
        entries.push_back({name, dt, t.shape});
        data.push_back(std::move(bytes));
      }
    }
    const fs::path tmp = dir_ / "model.tmp";
    SafetensorsWriter w(tmp.string(), entries);
    for (const auto& d : data) w.write(d.data(), d.size());
    w.finish();
    fs::rename(tmp, dir_ / "model.safetensors");
  }
  fs::path dir_;
};

bool has(const std::string& e, const std::string& what) { return e.find(what) != std::string::npos; }

TEST_F(Loader, LayerCountFarBeyondTheCheckpointIsRefusedAtOnce) {
  set("num_hidden_layers", 10000);
  std::string e = load_error();
  EXPECT_TRUE(has(e, "num_hidden_layers is 10000, but the checkpoint has 3 layers")) << e;
  EXPECT_TRUE(has(e, "model.layers.3.input_layernorm.weight")) << e;
  set("num_hidden_layers", 60000);
  e = load_error();
  EXPECT_TRUE(has(e, "num_hidden_layers is 60000")) << e;
  set("num_hidden_layers", 1000000000);
  e = load_error();
  EXPECT_TRUE(has(e, "num_hidden_layers")) << e;
}

TEST_F(Loader, ExpertCountBeyondTheCheckpointIsRefusedAtOnce) {
  set("n_routed_experts", 4096);
  set("n_group", 1);
  set("topk_group", 1);
  const std::string e = load_error();
  EXPECT_TRUE(has(e, "n_routed_experts is 4096, but layer 1 of the checkpoint has 16")) << e;
  EXPECT_TRUE(has(e, "missing tensor 'model.layers.1.mlp.experts.16.")) << e;
}

TEST_F(Loader, RefusesAFifoNamedModelSafetensors) {
  fs::remove(dir_ / "model.safetensors");
  const std::string fifo = (dir_ / "model.safetensors").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string e = load_unblocking(fifo);
  EXPECT_TRUE(has(e, "model.safetensors: is a FIFO, not a regular file")) << e;
}

TEST_F(Loader, RefusesADirectoryNamedModelSafetensors) {
  fs::remove(dir_ / "model.safetensors");
  fs::create_directory(dir_ / "model.safetensors");
  const std::string e = load_error();
  EXPECT_TRUE(has(e, "model.safetensors: is a directory, not a regular file")) << e;
}

TEST_F(Loader, RefusesADeviceNamedModelSafetensors) {
  fs::remove(dir_ / "model.safetensors");
  fs::create_symlink("/dev/zero", dir_ / "model.safetensors");
  const std::string e = load_error();
  EXPECT_TRUE(has(e, "model.safetensors: is a device, not a regular file")) << e;
}

TEST_F(Loader, RefusesAFifoNamedConfigJson) {
  fs::remove(dir_ / "config.json");
  const std::string fifo = (dir_ / "config.json").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string e = load_unblocking(fifo);
  EXPECT_TRUE(has(e, "config.json: is a FIFO")) << e;
}

TEST_F(Loader, NumbersOutOfRangeNameTheField) {
  // Each of these was converted to int64_t unchecked (UB for the huge ones; 1e30 came out as
  // INT64_MIN in the release build).
  const std::pair<const char*, const char*> cases[] = {
      {"num_hidden_layers", "1e30"},          {"num_hidden_layers", "4.9e57"},
      {"num_hidden_layers", "-1e300"},        {"hidden_size", "18446744073709551615"},
      {"vocab_size", "9223372036854775808"},  {"num_attention_heads", "1e19"},
      {"n_routed_experts", "-5"},             {"num_nextn_predict_layers", "1e19"},
      {"eos_token_id", "1e40"},               {"bos_token_id", "[9e18]"},
      {"moe_intermediate_size", "4611686018427387904"},
  };
  const std::string original = config().dump();
  for (const auto& [field, value] : cases) {
    // Spliced as text: nlohmann would print 1e30 back differently.
    std::string text = original;
    const std::string key = std::string("\"") + field + "\":";
    const size_t at = text.find(key) + key.size();
    text.replace(at, text.find_first_of(",}", at) - at, value);
    std::ofstream(dir_ / "config.json") << text;
    const std::string e = load_error();
    EXPECT_TRUE(has(e, field)) << field << "=" << value << ": " << e;
    EXPECT_FALSE(has(e, "-9223372036854775808")) << e;
  }
}

TEST_F(Loader, RefusesZeroContextAndZeroExpertsOnAMoeConfig) {
  set("max_position_embeddings", 0);
  std::string e = load_error();
  EXPECT_TRUE(has(e, "max_position_embeddings")) << e;
  SetUp();
  set("n_routed_experts", 0);
  e = load_error();
  EXPECT_TRUE(has(e, "n_routed_experts")) << e;
  EXPECT_FALSE(has(e, "missing tensor")) << e;
}

TEST_F(Loader, RefusesWeightsThatAreNotFinite) {
  for (float bad : {NAN, INFINITY}) {
    SetUp();
    rewrite([&](const std::string& name, DType&, std::string& b) {
      if (name != "model.layers.1.mlp.experts.3.up_proj.weight") return;
      for (size_t i = 0; i + 2 <= b.size(); i += 2) {
        const uint16_t h = f32_to_bf16(bad);
        std::memcpy(&b[i], &h, 2);
      }
    });
    const std::string e = load_error();
    EXPECT_TRUE(has(e, "model.layers.1.mlp.experts.3.up_proj.weight")) << e;
    EXPECT_TRUE(has(e, "non-finite")) << e;
  }
}

// One NaN the sample does not reach: --check-weights finds it; without it the NaN reaches
// the logits, and generation stops with an Error instead of emitting tokens.
TEST_F(Loader, ANanOutsideTheSampleIsFoundByTheFullScanOrStopsGeneration) {
  rewrite([&](const std::string& name, DType&, std::string& b) {
    if (name != "lm_head.weight") return;  // [1024, 64] bf16: 65536 values, 1024 sampled
    const uint16_t h = f32_to_bf16(NAN);
    std::memcpy(&b[2 * (64 * 500 + 7)], &h, 2);  // row 500: token 500's logit
  });
  EXPECT_EQ(load_error(), "");
  LoadOpts full;
  full.check_weights = true;
  const std::string e = load_error(full);
  EXPECT_TRUE(has(e, "lm_head.weight")) << e;
  EXPECT_TRUE(has(e, "non-finite")) << e;

  auto model = load_model(dir_.string());
  std::string gen_error;
  std::vector<int32_t> out;
  try {
    GenerateOpts g;
    g.max_new_tokens = 4;
    out = generate(*model, {5, 6, 7}, g);
  } catch (const Error& x) {
    gen_error = x.what();
  }
  EXPECT_TRUE(has(gen_error, "not finite")) << gen_error << " (generated " << out.size() << " tokens)";
}

TEST_F(Loader, RefusesBf16DataLabelledF16) {
  rewrite([&](const std::string&, DType& dt, std::string&) {
    if (dt == DType::BF16) dt = DType::F16;
  });
  const std::string e = load_error();
  EXPECT_TRUE(has(e, "look like BF16 data labelled F16")) << e;
  EXPECT_TRUE(has(e, "tensor '")) << e;
}

TEST_F(Loader, LoadsAProperF16Checkpoint) {
  rewrite([&](const std::string&, DType& dt, std::string& b) {
    if (dt != DType::BF16) return;
    dt = DType::F16;
    for (size_t i = 0; i + 2 <= b.size(); i += 2) {
      uint16_t h;
      std::memcpy(&h, &b[i], 2);
      h = f32_to_f16(bf16_to_f32(h));
      std::memcpy(&b[i], &h, 2);
    }
  });
  EXPECT_EQ(load_error(), "");
}

}  // namespace
}  // namespace fathom
