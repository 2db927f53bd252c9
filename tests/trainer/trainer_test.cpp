// `fathom train` and `fathom grad` end to end: AdamW trajectories against HF and DeepSeek's
// reference, the saved checkpoint, resume continuing bit for bit, and 2 MPI ranks against
// one process.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"

namespace {

namespace fs = std::filesystem;
const std::string kBin = FATHOM_BINARY;
const std::string kData = FATHOM_TEST_DATA;

struct Cmd {
  int status = -1;
  std::string out;  // stdout (stderr goes to the test log)
};

Cmd sh(const std::string& cmd) {
  Cmd r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::vector<nlohmann::json> json_lines(const std::string& s) {
  std::vector<nlohmann::json> v;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] == '{') v.push_back(nlohmann::json::parse(line));
  return v;
}

std::vector<float> f32(const fathom::TensorView& t) {
  std::vector<float> v(size_t(t.numel()));
  std::memcpy(v.data(), t.data, v.size() * 4);
  return v;
}

fs::path tmpdir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("fathom-trainer-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string golden(const std::string& fixture) { return kData + "/training/" + fixture + ".train.safetensors"; }
const std::string kAdam = " --lr 1e-3 --beta1 0.9 --beta2 0.95 --eps 1e-8 --clip 0 --warmup 0 --threads 2 --json";

class HfTrajectory : public ::testing::TestWithParam<const char*> {};

// 6 AdamW steps (no decay) on the golden batch: each step's loss within 1e-3 relative of HF's.
TEST_P(HfTrajectory, SixAdamWSteps) {
  const std::string f = GetParam();
  Cmd c = sh(kBin + " train --model " + kData + "/fixtures/" + f + " --ids-file " + golden(f) + " --steps 6" + kAdam);
  ASSERT_EQ(c.status, 0) << c.out;
  const auto rows = json_lines(c.out);
  ASSERT_EQ(rows.size(), 6u) << c.out;
  const fathom::TensorStore g = fathom::TensorStore::open(golden(f));
  const std::vector<float> ref = f32(g.get("adamw_losses"));
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(rows[i]["step"], int(i + 1));
    EXPECT_NEAR(rows[i]["loss"].get<double>(), ref[i], 1e-3 * ref[i]) << "step " << i + 1;
    for (const char* k : {"lr", "grad_norm", "tokens_per_s"}) EXPECT_TRUE(rows[i].contains(k)) << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, HfTrajectory,
                         ::testing::Values("tiny-deepseek-v3", "tiny-deepseek-v2-lite", "tiny-qwen2"),
                         [](const auto& info) {
                           std::string s = info.param;
                           for (char& ch : s) if (ch == '-') ch = '_';
                           return s;
                         });

// DeepSeek's reference: the full V3 objective, 4 AdamW steps with weight decay 0.1 and the
// router-bias rule, then the loss of the checkpoint saved in f32.
TEST(V3Trajectory, FourStepsThenTheSavedCheckpoint) {
  const std::string f = "tiny-deepseek-v3-mtp";
  const fs::path dir = tmpdir("v3");
  const std::string obj = " --mtp-weight 0.3 --balance-alpha 0.01";
  Cmd c = sh(kBin + " train --model " + kData + "/fixtures/" + f + " --ids-file " + golden(f) + " --steps 4" + kAdam +
             obj + " --bias-update 0.001 --weight-decay 0.1 --save-dtype f32 --out " + (dir / "out").string());
  ASSERT_EQ(c.status, 0) << c.out;
  const auto rows = json_lines(c.out);
  ASSERT_EQ(rows.size(), 4u) << c.out;
  const std::vector<float> ref = f32(fathom::TensorStore::open(golden(f)).get("adamw_losses"));
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(rows[i]["loss"].get<double>(), ref[i], 1e-3 * ref[i]) << "step " << i + 1;
  for (const char* k : {"loss_mtp", "loss_balance"}) EXPECT_TRUE(rows[0].contains(k)) << k;
  Cmd g = sh(kBin + " grad --model " + (dir / "out").string() + " --ids-file " + golden(f) + obj + " --out " +
             (dir / "g.safetensors").string());
  ASSERT_EQ(g.status, 0) << g.out;
  const float after = f32(fathom::TensorStore::open((dir / "g.safetensors").string()).get("loss"))[0];
  EXPECT_NEAR(after, ref[4], 1e-3 * ref[4]);
  // The checkpoint is a whole HF model: config, generation config, MTP copies of the shared tensors.
  for (const char* file : {"config.json", "generation_config.json", "model.safetensors"})
    EXPECT_TRUE(fs::exists(dir / "out" / file)) << file;
  const fathom::TensorStore saved = fathom::TensorStore::open((dir / "out").string());
  EXPECT_EQ(f32(saved.get("model.layers.3.embed_tokens.weight")), f32(saved.get("model.embed_tokens.weight")));
  EXPECT_EQ(f32(saved.get("model.layers.3.shared_head.head.weight")), f32(saved.get("lm_head.weight")));
  fs::remove_all(dir);
}

// A text corpus the tiny tokenizer covers.
fs::path write_corpus(const fs::path& dir) {
  const fs::path p = dir / "corpus.txt";
  std::ofstream f(p);
  const char* words[] = {"the", "model", "learns", "to", "count", "tokens", "quickly", "and", "well", "today"};
  for (int d = 0; d < 60; ++d) {
    for (int w = 0; w < 12; ++w) f << words[(d * 7 + w * 3) % 10] << (w == 11 ? "" : " ");
    f << "\n";
  }
  return p;
}

// A run stopped after step 3 and resumed from its checkpoint ends bit for bit where an
// uninterrupted run does: same losses after the resume, same saved weights.
TEST(Resume, ContinuesBitIdentically) {
  const fs::path dir = tmpdir("resume");
  const fs::path corpus = write_corpus(dir);
  const std::string common = kBin + " train --model " + kData + "/fixtures/tiny-deepseek-v3-mtp --tokenizer " + kData +
                             "/tokenizers/tiny --data " + corpus.string() +
                             " --seq-len 16 --batch 4 --steps 6 --schedule cosine --warmup 2 --clip 1 --lr 3e-3"
                             " --weight-decay 0.1 --mtp-weight 0.3 --balance-alpha 0.01 --bias-update 0.001"
                             " --save-dtype f32 --json --threads 2 --seed 7";
  Cmd a = sh(common + " --save-every 3 --out " + (dir / "a").string());
  ASSERT_EQ(a.status, 0) << a.out;
  const fs::path ck = dir / "a-checkpoints" / "step-000003";
  ASSERT_TRUE(fs::exists(ck)) << a.out;
  Cmd b = sh(common + " --resume " + ck.string() + " --out " + (dir / "b").string());
  ASSERT_EQ(b.status, 0) << b.out;
  const auto ra = json_lines(a.out), rb = json_lines(b.out);
  ASSERT_EQ(ra.size(), 6u);
  ASSERT_EQ(rb.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(rb[i]["step"], ra[i + 3]["step"]);
    EXPECT_EQ(rb[i]["loss"].get<double>(), ra[i + 3]["loss"].get<double>()) << "step " << i + 4;
    EXPECT_EQ(rb[i]["grad_norm"].get<double>(), ra[i + 3]["grad_norm"].get<double>());
  }
  const fathom::TensorStore sa = fathom::TensorStore::open((dir / "a").string());
  const fathom::TensorStore sb = fathom::TensorStore::open((dir / "b").string());
  ASSERT_EQ(sa.all().size(), sb.all().size());
  for (const auto& [name, t] : sa.all()) {
    const fathom::TensorView& u = sb.get(name);
    ASSERT_EQ(t.nbytes, u.nbytes) << name;
    EXPECT_EQ(std::memcmp(t.data, u.data, t.nbytes), 0) << name;
  }
  // The loss went down over the run.
  EXPECT_LT(ra.back()["loss"].get<double>(), ra.front()["loss"].get<double>());
  fs::remove_all(dir);
}

// Two MPI ranks, each with half the global batch, equal one process on the whole batch.
TEST(Mpi, TwoRanksEqualOneProcess) {
  if (sh("command -v mpirun >/dev/null").status != 0) GTEST_SKIP() << "mpirun is not installed";
  const fs::path dir = tmpdir("mpi");
  const std::string f = "tiny-deepseek-v3-mtp";
  const std::string args = " train --model " + kData + "/fixtures/" + f + " --ids-file " + golden(f) +
                           " --steps 3 --lr 1e-3 --clip 1 --mtp-weight 0.3 --balance-alpha 0.01 --bias-update 0.001"
                           " --weight-decay 0.1 --save-dtype f32 --json --threads 1";
  Cmd one = sh(kBin + args + " --out " + (dir / "one").string());
  ASSERT_EQ(one.status, 0) << one.out;
  // Open MPI's runtime keeps allocations to exit, which a sanitizer build would report as
  // leaks of the ranks.
  Cmd two = sh("ASAN_OPTIONS=detect_leaks=0 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 "
               "--oversubscribe " + kBin + args +
               " --out " + (dir / "two").string());
  ASSERT_EQ(two.status, 0) << two.out;
  const auto r1 = json_lines(one.out), r2 = json_lines(two.out);
  ASSERT_EQ(r1.size(), 3u);
  ASSERT_EQ(r2.size(), 3u) << "only rank 0 prints";
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_NEAR(r2[i]["loss"].get<double>(), r1[i]["loss"].get<double>(), 1e-5 * r1[i]["loss"].get<double>());
    EXPECT_NEAR(r2[i]["grad_norm"].get<double>(), r1[i]["grad_norm"].get<double>(), 1e-4 * r1[i]["grad_norm"].get<double>());
  }
  const fathom::TensorStore s1 = fathom::TensorStore::open((dir / "one").string());
  const fathom::TensorStore s2 = fathom::TensorStore::open((dir / "two").string());
  for (const auto& [name, t] : s1.all()) {
    const std::vector<float> a = f32(t), b = f32(s2.get(name));
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
      den += double(a[i]) * a[i];
    }
    EXPECT_LT(std::sqrt(num / std::max(den, 1e-30)), 1e-5) << name;
  }
  fs::remove_all(dir);
}

// A fresh model from a config, trained on text and saved in bf16, is a model inference runs.
TEST(FromConfig, TrainsAndTheSavedModelRuns) {
  const fs::path dir = tmpdir("config");
  const fs::path corpus = write_corpus(dir);
  Cmd c = sh(kBin + " train --config " + kData + "/fixtures/tiny-deepseek-v3-mtp/config.json --tokenizer " + kData +
             "/tokenizers/tiny --data " + corpus.string() +
             " --seq-len 16 --batch 4 --steps 12 --lr 3e-3 --mtp-weight 0.3 --bias-update 0.001 --json --threads 2"
             " --log " + (dir / "log.jsonl").string() + " --out " + (dir / "m").string());
  ASSERT_EQ(c.status, 0) << c.out;
  const auto rows = json_lines(c.out);
  ASSERT_EQ(rows.size(), 12u);
  EXPECT_LT(rows.back()["loss"].get<double>(), rows.front()["loss"].get<double>() - 0.5);
  EXPECT_TRUE(rows.back().contains("val_loss"));
  EXPECT_TRUE(fs::exists(dir / "log.svg"));
  EXPECT_TRUE(fs::exists(dir / "m" / "tokenizer.json"));
  Cmd g = sh(kBin + " run --model " + (dir / "m").string() + " -p \"the model\" -n 4 --threads 1");
  EXPECT_EQ(g.status, 0) << g.out;
  fs::remove_all(dir);
}

// SFT on chat examples: the template renders them, the loss counts the assistant's tokens
// only, and it falls.
TEST(Sft, ChatExamplesTrain) {
  const fs::path dir = tmpdir("sft");
  const fs::path data = dir / "chat.jsonl";
  {
    std::ofstream f(data);
    for (int i = 0; i < 24; ++i)
      f << R"({"messages": [{"role": "user", "content": "what is )" << i << " plus " << i
        << R"(?"}, {"role": "assistant", "content": "it is )" << 2 * i << R"("}]})" << "\n";
  }
  Cmd c = sh(kBin + " train --model " + kData + "/fixtures/tiny-deepseek-v3 --tokenizer " + kData +
             "/tokenizers/tiny --data " + data.string() +
             " --sft --seq-len 40 --batch 4 --steps 10 --lr 3e-3 --val-frac 0.2 --json --threads 2 --out " +
             (dir / "m").string());
  ASSERT_EQ(c.status, 0) << c.out;
  const auto rows = json_lines(c.out);
  ASSERT_EQ(rows.size(), 10u);
  EXPECT_LT(rows.back()["loss"].get<double>(), rows.front()["loss"].get<double>() - 1.0);
  EXPECT_TRUE(rows.back().contains("val_loss"));
  // Plain-text lines are refused in SFT mode.
  std::ofstream(dir / "text.txt") << "just text\n";
  Cmd bad = sh(kBin + " train --model " + kData + "/fixtures/tiny-deepseek-v3 --tokenizer " + kData +
               "/tokenizers/tiny --data " + (dir / "text.txt").string() + " --sft --steps 1 2>&1");
  EXPECT_NE(bad.status, 0);
  fs::remove_all(dir);
}

// A model trained from an FP8 checkpoint is saved in bf16 without the FP8 quantization config,
// and inference loads it.
TEST(FromFp8, SavesWithoutTheQuantizationConfig) {
  const fs::path dir = tmpdir("fp8");
  Cmd ids = sh(kBin + " train --model " + kData + "/fixtures/tiny-deepseek-v3-fp8 --ids-file " +
               golden("tiny-deepseek-v3") + " --steps 1 --json --threads 1 2>&1");
  EXPECT_NE(ids.status, 0) << "the golden batch's ids exceed the fp8 fixture's vocabulary: a clear error";
  EXPECT_NE(ids.out.find("outside the vocabulary"), std::string::npos) << ids.out;
  // An ids file of 2 × 16 ids below the fixture's vocabulary of 512, in safetensors' layout.
  const fs::path idf = dir / "ids.safetensors";
  {
    std::string head = R"({"input_ids":{"dtype":"I64","shape":[2,16],"data_offsets":[0,256]}})";
    head.append((8 - head.size() % 8) % 8, ' ');
    std::ofstream f(idf, std::ios::binary);
    const uint64_t n = head.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << head;
    for (int64_t i = 0; i < 32; ++i) {
      const int64_t id = (i * 37 + 11) % 512;
      f.write(reinterpret_cast<const char*>(&id), 8);
    }
  }
  Cmd c = sh(kBin + " train --model " + kData + "/fixtures/tiny-deepseek-v3-fp8 --ids-file " + idf.string() +
             " --steps 2 --json --threads 1 --out " + (dir / "m").string());
  ASSERT_EQ(c.status, 0) << c.out;
  std::ifstream f(dir / "m" / "config.json");
  const auto cfg = nlohmann::json::parse(f);
  EXPECT_FALSE(cfg.contains("quantization_config"));
  EXPECT_EQ(cfg.at("torch_dtype"), "bfloat16");
  Cmd g = sh(kBin + " generate --model " + (dir / "m").string() + " --ids 1,2,3 -n 2 --threads 1");
  EXPECT_EQ(g.status, 0) << g.out;
  fs::remove_all(dir);
}

}  // namespace
