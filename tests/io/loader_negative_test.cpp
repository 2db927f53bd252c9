// Bad checkpoints must give a clear error naming the problem, never a crash (these also run
// under ASan/UBSan).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "model/model.h"

namespace fathom {
namespace {
namespace fs = std::filesystem;

std::string st_bytes(const std::string& header, size_t data_bytes, uint64_t claimed_len = UINT64_MAX) {
  std::string out(8, '\0');
  const uint64_t n = claimed_len == UINT64_MAX ? header.size() : claimed_len;
  for (int i = 0; i < 8; ++i) out[size_t(i)] = char((n >> (8 * i)) & 0xff);
  return out + header + std::string(data_bytes, '\0');
}

std::string parse_error(const std::string& bytes) {
  try {
    parse_safetensors(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t.safetensors");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Safetensors, AcceptsValidHeader) {
  auto b = st_bytes(R"({"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"__metadata__":{"format":"pt"}})", 16);
  auto h = parse_safetensors(reinterpret_cast<const uint8_t*>(b.data()), b.size(), "t");
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors.at("a").shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(h.metadata.at("format"), "pt");
}

TEST(Safetensors, TruncatedFile) {
  EXPECT_NE(parse_error("abc").find("truncated"), std::string::npos);
  auto b = st_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 16);
  b.resize(b.size() - 4);  // data cut short
  EXPECT_NE(parse_error(b).find("out of range"), std::string::npos);
}

TEST(Safetensors, HeaderLengthPastEnd) {
  auto b = st_bytes(R"({})", 0, 1000);
  EXPECT_NE(parse_error(b).find("past the end"), std::string::npos);
  auto huge = st_bytes(R"({})", 0, UINT64_MAX - 1);
  EXPECT_NE(parse_error(huge).find("past the end"), std::string::npos);
}

TEST(Safetensors, OffsetsOutOfRangeOrOverlapping) {
  EXPECT_NE(parse_error(st_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})", 16)).find("out of range"),
            std::string::npos);
  EXPECT_NE(parse_error(st_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[12,4]}})", 16)).find("out of range"),
            std::string::npos);
  EXPECT_NE(parse_error(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
                                     "b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 16))
                .find("overlap"),
            std::string::npos);
}

TEST(Safetensors, SizeDisagreesWithShape) {
  EXPECT_NE(parse_error(st_bytes(R"({"a":{"dtype":"BF16","shape":[4],"data_offsets":[0,16]}})", 16)).find("needs 8 bytes"),
            std::string::npos);
  EXPECT_NE(parse_error(st_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})", 16))
                .find("overflow"),
            std::string::npos);
}

TEST(Safetensors, MalformedHeaders) {
  EXPECT_NE(parse_error(st_bytes(R"({"a":)", 0)).find("malformed"), std::string::npos);
  EXPECT_NE(parse_error(st_bytes(R"([1,2])", 0)).find("not a JSON object"), std::string::npos);
  EXPECT_NE(parse_error(st_bytes(R"({"a":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}})", 4)).find("unsupported dtype"),
            std::string::npos);
  EXPECT_NE(parse_error(st_bytes(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4)).find("non-negative"),
            std::string::npos);
  EXPECT_NE(parse_error(st_bytes(R"({"a":{"dtype":"F32","shape":[1]}})", 4)).find("data_offsets"), std::string::npos);
  EXPECT_NE(parse_error(st_bytes(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,-4]}})", 4)).find("data_offsets"),
            std::string::npos);
}

// A scratch copy of a fixture that a test may damage.
class BadCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fathom-neg-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const fs::path src = fs::path(FATHOM_TEST_DATA) / "fixtures" / "tiny-deepseek-v3";
    fs::copy_file(src / "config.json", dir_ / "config.json");
    fs::copy_file(src / "model.safetensors", dir_ / "model.safetensors");
    fs::permissions(dir_ / "config.json", fs::perms::owner_write, fs::perm_options::add);
    fs::permissions(dir_ / "model.safetensors", fs::perms::owner_write, fs::perm_options::add);
  }
  void TearDown() override { fs::remove_all(dir_); }
  nlohmann::json config() {
    std::ifstream in(dir_ / "config.json");
    return nlohmann::json::parse(in);
  }
  void write_config(const nlohmann::json& j) { std::ofstream(dir_ / "config.json") << j.dump(); }
  void write_config_text(const std::string& s) { std::ofstream(dir_ / "config.json") << s; }
  std::string load_error() {
    try {
      load_model(dir_.string());
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }
  fs::path dir_;
};

TEST_F(BadCheckpoint, LoadsWhenIntact) { EXPECT_EQ(load_error(), ""); }

TEST_F(BadCheckpoint, TruncatedWeights) {
  fs::resize_file(dir_ / "model.safetensors", fs::file_size(dir_ / "model.safetensors") - 100);
  EXPECT_NE(load_error().find("out of range"), std::string::npos);
}

TEST_F(BadCheckpoint, ShapeDisagreesWithConfig) {
  auto j = config();
  j["intermediate_size"] = 96;
  write_config(j);
  const std::string e = load_error();
  EXPECT_NE(e.find("model.layers.0.mlp.gate_proj.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("disagrees with config.json"), std::string::npos) << e;
}

TEST_F(BadCheckpoint, MissingTensor) {
  auto j = config();
  j["num_hidden_layers"] = 4;
  write_config(j);
  EXPECT_NE(load_error().find("missing tensor 'model.layers.3."), std::string::npos);
}

TEST_F(BadCheckpoint, UnknownArchitecture) {
  auto j = config();
  j["model_type"] = "gpt_neox";
  write_config(j);
  const std::string e = load_error();
  EXPECT_NE(e.find("model_type"), std::string::npos);
  EXPECT_NE(e.find("gpt_neox"), std::string::npos);
}

TEST_F(BadCheckpoint, MalformedConfigJson) {
  write_config_text("{\"model_type\": \"deepseek_v3\", ");
  EXPECT_NE(load_error().find("malformed JSON"), std::string::npos);
}

TEST_F(BadCheckpoint, UnsupportedValuesNameTheField) {
  const std::pair<const char*, nlohmann::json> cases[] = {
      {"scoring_func", "relu"},         {"topk_method", "random"}, {"hidden_size", "64"},
      {"num_experts_per_tok", 99},      {"n_group", 3},            {"kv_lora_rank", nullptr},
  };
  const auto original = config();
  for (auto& [field, value] : cases) {
    auto j = original;
    j[field] = value;
    write_config(j);
    EXPECT_NE(load_error().find(field), std::string::npos) << field;
  }
  auto j = original;
  j["rope_scaling"]["type"] = "ntk-by-parts";
  write_config(j);
  EXPECT_NE(load_error().find("rope_scaling"), std::string::npos);
}

TEST_F(BadCheckpoint, DtypeDisagreesWithFormat) {
  // An F8_E4M3 weight without its scale_inv tensor.
  auto b = st_bytes(R"({"w":{"dtype":"F8_E4M3","shape":[4,4],"data_offsets":[0,16]}})", 16);
  std::ofstream(dir_ / "model.safetensors", std::ios::binary) << b;
  EXPECT_NE(load_error().find("missing tensor"), std::string::npos);
}

}  // namespace
}  // namespace fathom
