// The checks shared by the loader and `fathom quantize`: a stored matrix's dtype and FP8
// scales, the requantize rule, the --quant names and the config.json reader.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "io/stored_matrix.h"

namespace fathom {
namespace {
namespace fs = std::filesystem;

class StoredMatrixTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("fathom_stored_matrix_" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // A checkpoint of zero-filled tensors, each entry as given.
  const TensorStore& store(const std::vector<SafetensorsWriter::Entry>& entries) {
    store_ = TensorStore{};  // unmaps the file about to be rewritten
    SafetensorsWriter w((dir_ / "model.safetensors").string(), entries);
    for (const auto& e : entries) w.write(std::string(SafetensorsWriter::entry_bytes(e), '\0').data(),
                                          SafetensorsWriter::entry_bytes(e));
    w.finish();
    store_ = TensorStore::open(dir_.string());
    return store_;
  }
  std::string error(const std::vector<SafetensorsWriter::Entry>& entries, const ModelConfig& cfg = {}) {
    const TensorStore& s = store(entries);
    try {
      stored_matrix(s, cfg, s.get("w"));
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  }

  fs::path dir_;
  TensorStore store_;
};

TEST_F(StoredMatrixTest, PlainFormatsHaveNoScales) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    // (the pad: safetensors.cpp wants at least as many data bytes as a tensor has elements)
    const TensorStore& s = store({{"w", t, {4, 64}}, {"pad", DType::F32, {64}}});
    const StoredMatrix m = stored_matrix(s, ModelConfig{}, s.get("w"));
    EXPECT_EQ(m.dtype, t);
    EXPECT_EQ(m.rows, 4);
    EXPECT_EQ(m.cols, 64);
    EXPECT_EQ(m.data, s.get("w").data);
    EXPECT_EQ(m.tensor, &s.get("w"));
    EXPECT_EQ(m.block_scale, nullptr);
    EXPECT_EQ(m.scale, nullptr);
  }
}

TEST_F(StoredMatrixTest, Fp8CarriesItsScales) {
  const TensorStore& s = store({{"w", DType::F8_E4M3, {130, 256}}, {"w_scale_inv", DType::F32, {2, 2}}});
  const StoredMatrix m = stored_matrix(s, ModelConfig{}, s.get("w"));
  EXPECT_EQ(m.scale, &s.get("w_scale_inv"));
  EXPECT_EQ(m.block_scale, s.get("w_scale_inv").data);
  EXPECT_EQ(m.block, 128);
}

TEST_F(StoredMatrixTest, ErrorsNameTheTensor) {
  EXPECT_NE(error({{"w", DType::I32, {4, 4}}}).find("tensor 'w': dtype I32 cannot be used for a weight matrix"),
            std::string::npos);
  EXPECT_NE(error({{"w", DType::F8_E4M3, {4, 4}}}).find("tensor 'w' is F8_E4M3 but 'w_scale_inv' is missing"),
            std::string::npos);
  EXPECT_NE(error({{"w", DType::F8_E4M3, {4, 4}}, {"w_scale_inv", DType::F32, {1, 2}}})
                .find("tensor 'w_scale_inv': shape [1, 2] disagrees with its weight, which implies [1, 1]"),
            std::string::npos);
  EXPECT_NE(error({{"w", DType::F8_E4M3, {4, 4}}, {"w_scale_inv", DType::BF16, {1, 1}}})
                .find("tensor 'w_scale_inv': dtype BF16 (expected F32)"),
            std::string::npos);
  ModelConfig rect;
  rect.fp8_block_cols = 64;
  EXPECT_NE(error({{"w", DType::F8_E4M3, {4, 4}}, {"w_scale_inv", DType::F32, {1, 1}}}, rect)
                .find("tensor 'w': non-square FP8 blocks 128x64"),
            std::string::npos);
  EXPECT_NE(error({{"w", DType::BF16, {4}}}).find("tensor 'w': shape [4] is not a matrix"), std::string::npos);
}

TEST(RequantizesTo, OtherFormatsWithWholeBlocks) {
  EXPECT_TRUE(requantizes_to(DType::BF16, 64, DType::Q8_0));
  EXPECT_TRUE(requantizes_to(DType::F8_E4M3, 32, DType::Q4_0));
  EXPECT_TRUE(requantizes_to(DType::Q8_0, 64, DType::Q4_0));
  EXPECT_FALSE(requantizes_to(DType::Q8_0, 64, DType::Q8_0));  // already in the format
  EXPECT_FALSE(requantizes_to(DType::BF16, 48, DType::Q8_0));  // rows do not split into blocks
}

TEST(ParseBlockQuant, Names) {
  EXPECT_EQ(parse_block_quant(""), std::nullopt);
  EXPECT_EQ(parse_block_quant("none"), std::nullopt);
  EXPECT_EQ(parse_block_quant("q8_0"), DType::Q8_0);
  EXPECT_EQ(parse_block_quant("q4_0"), DType::Q4_0);
  try {
    parse_block_quant("q5_k");
    ADD_FAILURE() << "q5_k was accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "unknown quant 'q5_k' (supported: q8_0, q4_0)");
  }
}

TEST_F(StoredMatrixTest, ReadConfigJsonNamesTheFile) {
  const std::string p = (dir_ / "config.json").string();
  auto error = [&] {
    try {
      read_config_json(p);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(), p + ": cannot open");
  std::ofstream(p) << "{\"model_type\": ";
  EXPECT_EQ(error().rfind(p + ": malformed JSON: ", 0), 0u) << error();
  std::ofstream(p) << "{\"model_type\": \"llama\"}";
  EXPECT_EQ(read_config_json(p).at("model_type"), "llama");
}

}  // namespace
}  // namespace fathom
