// save_model against the HF fixtures (a saved checkpoint holds the same tensor bytes, in the
// same layout), bf16 rounding against a nearest-value search in double, sharding, atomic
// replacement, and the training state's bit-exact round trip.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "model/roles.h"
#include "train/checkpoint.h"

namespace fathom::train {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kData = FATHOM_TEST_DATA;

// This process's scratch directory, removed when the tests end.
struct ScratchRoot {
  fs::path dir = fs::temp_directory_path() / ("fathom-ckpt-" + std::to_string(getpid()));
  ~ScratchRoot() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};
const ScratchRoot kScratch;

fs::path scratch(const std::string& name) {
  const fs::path d = kScratch.dir / name;
  fs::remove_all(d);
  fs::create_directories(d.parent_path());
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> out(size_t(t.numel()));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t.dtype == DType::F32) {
      std::memcpy(&out[i], static_cast<const char*>(t.data) + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, static_cast<const char*>(t.data) + 2 * i, 2);
      const uint32_t u = uint32_t(h) << 16;
      std::memcpy(&out[i], &u, 4);
    }
  }
  return out;
}

// A fixture's tensors as fp32 Params, in the table's order.
struct Model {
  json config;
  std::vector<Param> params;
  std::vector<Param*> ptrs() {
    std::vector<Param*> v;
    for (Param& p : params) v.push_back(&p);
    return v;
  }
};

Param& find(std::vector<Param>& ps, const std::string& name) {
  for (Param& p : ps)
    if (p.name == name) return p;
  throw Error("test: no parameter " + name);
}

Model load_fixture(const std::string& name) {
  Model m;
  m.config = read_config_json((kData / "fixtures" / name / "config.json").string());
  const TensorStore st = TensorStore::open((kData / "fixtures" / name / "model.safetensors").string());
  for (const WeightSpec& s : weight_table(ModelConfig::from_json(m.config))) {
    const TensorView* t = st.find(s.name);
    if (!t) continue;
    Param p;
    p.name = s.name;
    p.shape = t->shape;
    p.w = to_f32(*t);
    m.params.push_back(std::move(p));
  }
  return m;
}

SaveOpts opts(const fs::path& dir, const json& config, std::vector<Param*> params) {
  SaveOpts o;
  o.dir = dir.string();
  o.config = config;
  o.params = std::move(params);
  return o;
}

// The bytes of every tensor in `a` equal those in `b`, with the same dtype and shape.
void expect_same_tensors(const std::string& a, const std::string& b) {
  const TensorStore x = TensorStore::open(a), y = TensorStore::open(b);
  ASSERT_EQ(x.all().size(), y.all().size());
  for (const auto& [name, t] : x.all()) {
    const TensorView* u = y.find(name);
    ASSERT_NE(u, nullptr) << name;
    EXPECT_EQ(t.dtype, u->dtype) << name;
    EXPECT_EQ(t.shape, u->shape) << name;
    ASSERT_EQ(t.nbytes, u->nbytes) << name;
    EXPECT_EQ(std::memcmp(t.data, u->data, t.nbytes), 0) << name;
  }
}

// bf16 by search: of the two bf16 values around f (its truncation and the next one up in
// magnitude), the nearer in double; on a tie, the one with an even last mantissa bit.
uint16_t bf16_by_search(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint16_t lo = uint16_t(u >> 16), hi = uint16_t(lo + 1);
  auto val = [](uint16_t h) {
    const uint32_t v = uint32_t(h) << 16;
    float r;
    std::memcpy(&r, &v, 4);
    return double(r);
  };
  const double dlo = std::abs(double(f) - val(lo)), dhi = std::abs(double(f) - val(hi));
  if (dlo < dhi) return lo;
  if (dhi < dlo) return hi;
  return (lo & 1) ? hi : lo;
}

TEST(SaveModel, Bf16IsTheFixtureByteForByte) {
  for (const char* name : {"tiny-llama3", "tiny-deepseek-v3", "tiny-qwen2"}) {
    Model m = load_fixture(name);
    const fs::path out = scratch(std::string("same-") + name);
    save_model(opts(out, m.config, m.ptrs()));
    expect_same_tensors((kData / "fixtures" / name / "model.safetensors").string(), out.string());
    EXPECT_FALSE(fs::exists(out / "model.safetensors.index.json"));
    EXPECT_EQ(read_config_json((out / "config.json").string())["torch_dtype"], "bfloat16");
    const json gen = read_config_json((out / "generation_config.json").string());
    EXPECT_EQ(gen["bos_token_id"], m.config["bos_token_id"]) << name;
    EXPECT_EQ(gen["eos_token_id"], m.config["eos_token_id"]) << name;
    EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
  }
}

TEST(SaveModel, Bf16RoundsToNearestEven) {
  Model m = load_fixture("tiny-llama3");
  Param& norm = find(m.params, "model.norm.weight");
  ASSERT_EQ(norm.shape, std::vector<int64_t>{64});
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even 1.0. 1 + 3·2^-8 is halfway
  // between 1 + 2^-7 (odd) and 1 + 2^-6 (even). Just above a tie rounds up; negatives mirror.
  const std::vector<std::pair<float, uint16_t>> known = {
      {1.00390625f, 0x3f80}, {1.01171875f, 0x3f82}, {std::nextafter(1.00390625f, 2.f), 0x3f81},
      {-1.00390625f, 0xbf80}, {1.0f, 0x3f80},       {3.0e-41f, bf16_by_search(3.0e-41f)}};
  for (size_t i = 0; i < norm.w.size(); ++i) norm.w[i] = float(std::sin(double(i) * 12.9898) * 43.7585);
  for (size_t i = 0; i < known.size(); ++i) norm.w[i] = known[i].first;
  const fs::path out = scratch("rne");
  save_model(opts(out, m.config, m.ptrs()));
  const TensorStore st = TensorStore::open(out.string());
  const TensorView& t = st.get(norm.name);
  ASSERT_EQ(t.dtype, DType::BF16);
  const auto* h = static_cast<const uint16_t*>(t.data);
  for (size_t i = 0; i < known.size(); ++i) EXPECT_EQ(h[i], known[i].second) << known[i].first;
  for (size_t i = 0; i < norm.w.size(); ++i) EXPECT_EQ(h[i], bf16_by_search(norm.w[i])) << i;
}

TEST(SaveModel, F32IsExactAndShardsWithAnIndex) {
  Model m = load_fixture("tiny-deepseek-v3");
  for (Param& p : m.params)
    for (size_t i = 0; i < p.w.size(); ++i) p.w[i] += float(i % 7) * 1e-5f;  // not bf16-representable
  const fs::path out = scratch("f32-sharded");
  SaveOpts o = opts(out, m.config, m.ptrs());
  o.dtype = DType::F32;
  o.shard_bytes = 256 << 10;
  save_model(o);
  EXPECT_EQ(read_config_json((out / "config.json").string())["torch_dtype"], "float32");
  const json index = read_config_json((out / "model.safetensors.index.json").string());
  const TensorStore st = TensorStore::open(out.string());
  ASSERT_EQ(st.all().size(), m.params.size());
  ASSERT_EQ(index["weight_map"].size(), m.params.size());
  std::string prev_file;
  const char* prev_data = nullptr;
  int files = 0;
  for (const Param& p : m.params) {
    const TensorView& t = st.get(p.name);
    EXPECT_EQ(t.dtype, DType::F32);
    EXPECT_EQ(std::memcmp(t.data, p.w.data(), p.w.size() * 4), 0) << p.name;
    // Table order: each shard holds a run of the table, in order.
    const std::string file = index["weight_map"][p.name];
    if (file != prev_file) {
      EXPECT_LT(prev_file, file);
      ++files, prev_file = file, prev_data = nullptr;
    }
    EXPECT_LT(prev_data, static_cast<const char*>(t.data)) << p.name;
    prev_data = static_cast<const char*>(t.data);
  }
  EXPECT_GT(files, 2);
  EXPECT_EQ(files, int(std::distance(fs::directory_iterator(out), {})) - 3);  // + config, generation, index
}

TEST(SaveModel, MtpCopiesComeFromTheLookup) {
  Model m = load_fixture("tiny-deepseek-v3");
  m.config["num_nextn_predict_layers"] = 1;
  const ModelConfig cfg = ModelConfig::from_json(m.config);
  // The MTP layer's own tensors as Params; its embed_tokens and shared_head.head come from the lookup.
  std::vector<Param> mtp;
  for (const WeightSpec& s : weight_table(cfg)) {
    if (!s.mtp || s.role == Role::MtpEmbed || s.role == Role::MtpHead) continue;
    Param p;
    p.name = s.name, p.shape = s.shape;
    p.w.assign(size_t(p.numel()), 0.25f);
    mtp.push_back(std::move(p));
  }
  std::vector<Param*> ps = m.ptrs();
  for (Param& p : mtp) ps.push_back(&p);
  const Param& embed = m.params.front();
  ASSERT_EQ(embed.name, "model.embed_tokens.weight");
  const Param* head = &find(m.params, "lm_head.weight");
  std::vector<Role> asked;
  const fs::path out = scratch("mtp");
  SaveOpts o = opts(out, m.config, ps);
  o.lookup = [&](const WeightSpec& s) -> const float* {
    asked.push_back(s.role);
    if (s.role == Role::MtpEmbed) return embed.w.data();
    if (s.role == Role::MtpHead) return head->w.data();
    return nullptr;
  };
  save_model(o);
  EXPECT_EQ(asked, (std::vector<Role>{Role::MtpEmbed, Role::MtpHead}));
  const TensorStore st = TensorStore::open(out.string());
  const std::string L = std::to_string(cfg.num_hidden_layers);
  const TensorView& e = st.get("model.layers." + L + ".embed_tokens.weight");
  const TensorView& h = st.get("model.layers." + L + ".shared_head.head.weight");
  EXPECT_EQ(std::memcmp(e.data, st.get("model.embed_tokens.weight").data, e.nbytes), 0);
  EXPECT_EQ(std::memcmp(h.data, st.get("lm_head.weight").data, h.nbytes), 0);
  EXPECT_EQ(st.all().size(), m.params.size() + mtp.size() + 2);
  // Without the lookup those two are optional and left out; dropping a required MTP tensor is an error.
  save_model(opts(out, m.config, ps));
  EXPECT_EQ(TensorStore::open(out.string()).all().size(), m.params.size() + mtp.size());
  const Param* enorm = &find(mtp, "model.layers." + L + ".enorm.weight");
  ps.erase(std::find(ps.begin(), ps.end(), enorm));
  try {
    save_model(opts(out, m.config, ps));
    ADD_FAILURE() << "an MTP layer without its enorm saved";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no data for model.layers." + L + ".enorm.weight"), std::string::npos) << e.what();
  }
}

TEST(SaveModel, CopiesTokenizerFiles) {
  Model m = load_fixture("tiny-llama3");
  const fs::path tok = scratch("tok-src"), out = scratch("tok-out");
  fs::create_directories(tok);
  std::ofstream(tok / "tokenizer.json") << "{\"model\": {}}";
  std::ofstream(tok / "tokenizer_config.json") << "{\"bos_token\": \"<s>\"}";
  std::ofstream(tok / "unrelated.txt") << "x";
  SaveOpts o = opts(out, m.config, m.ptrs());
  o.tokenizer_dir = tok.string();
  save_model(o);
  EXPECT_EQ(slurp(out / "tokenizer.json"), "{\"model\": {}}");
  EXPECT_EQ(slurp(out / "tokenizer_config.json"), "{\"bos_token\": \"<s>\"}");
  EXPECT_FALSE(fs::exists(out / "chat_template.jinja"));
  EXPECT_FALSE(fs::exists(out / "unrelated.txt"));
}

TEST(SaveModel, ErrorsNameTheTensorAndKeepTheOldCheckpoint) {
  Model m = load_fixture("tiny-llama3");
  const fs::path out = scratch("keep");
  save_model(opts(out, m.config, m.ptrs()));
  const std::string before = slurp(out / "model.safetensors");
  auto expect_error = [&](const SaveOpts& o, const std::string& want) {
    try {
      save_model(o);
      ADD_FAILURE() << "no error; wanted " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
    EXPECT_EQ(slurp(out / "model.safetensors"), before);
  };
  Model bad = m;
  find(bad.params, "model.layers.0.input_layernorm.weight").shape = {65};
  find(bad.params, "model.layers.0.input_layernorm.weight").w.resize(65);
  expect_error(opts(out, m.config, bad.ptrs()), "model.layers.0.input_layernorm.weight has shape [65]");
  bad = m;
  find(bad.params, "model.layers.0.input_layernorm.weight").name = "model.layers.0.extra.weight";
  expect_error(opts(out, m.config, bad.ptrs()), "model.layers.0.extra.weight is not a tensor");
  bad = m;
  bad.params.erase(bad.params.begin() + (&find(bad.params, "lm_head.weight") - bad.params.data()));
  expect_error(opts(out, m.config, bad.ptrs()), "no data for lm_head.weight");
  // Failing while the new directory is being written (no tokenizer files there) also leaves it.
  SaveOpts no_tok = opts(out, m.config, m.ptrs());
  no_tok.tokenizer_dir = kData.string();
  expect_error(no_tok, "no tokenizer files");
  // A second good save replaces the first, leaving no .tmp or .old beside it.
  find(m.params, "model.norm.weight").w[0] = 7.f;
  save_model(opts(out.string() + "/", m.config, m.ptrs()));
  EXPECT_EQ(to_f32(TensorStore::open(out.string()).get("model.norm.weight"))[0], 7.f);
  EXPECT_FALSE(fs::exists(out.string() + ".tmp"));
  EXPECT_FALSE(fs::exists(out.string() + ".old"));
}

// --- training state ---

struct TrainRun {
  std::vector<Param> params;
  std::unique_ptr<AdamW> opt;
  explicit TrainRun(float seed) {
    const std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
        {"model.embed_tokens.weight", {5, 3}}, {"model.norm.weight", {3}}, {"model.layers.0.mlp.gate.e_score_correction_bias", {4}}};
    for (auto& [n, s] : shapes) {
      Param p;
      p.name = n, p.shape = s;
      p.decay = s.size() > 1;
      p.trainable = n.find("correction_bias") == std::string::npos;
      p.w.resize(size_t(p.numel()));
      p.g.assign(p.w.size(), 0.f);
      for (size_t i = 0; i < p.w.size(); ++i) p.w[i] = seed * float(std::cos(double(i) + double(n.size())));
      params.push_back(std::move(p));
    }
    params[0].w[0] = -0.0f;
    params[0].w[1] = 1e-42f;  // subnormal
    std::vector<Param*> ps;
    for (Param& p : params) ps.push_back(&p);
    opt = std::make_unique<AdamW>(ps, AdamWConfig{.lr = 1e-2, .weight_decay = 0.1});
  }
  void step(int s) {
    for (Param& p : params)
      for (size_t i = 0; i < p.g.size(); ++i) p.g[i] = float(std::sin(double(i) * 0.37 + s));
    params[2].w[1] += 0.001f;  // the balancing rule moves the bias outside the optimizer
    opt->step(1e-2);
  }
};

template <typename T>
bool bits_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

TEST(TrainState, RoundTripIsBitIdenticalAndResumesExactly) {
  TrainRun a(1.f);
  for (int s = 0; s < 3; ++s) a.step(s);
  const TrainState st{.data_pos = 0xFFFFFFFFFFFFFFF1ull, .rng_seed = 42, .rng_state = 0x8000000000000001ull,
                      .extra = {{"epoch", 2}, {"schedule", "cosine"}}};
  const fs::path dir = scratch("state");
  save_train_state(dir.string(), *a.opt, st);

  TrainRun b(-3.f);  // other weights, fresh optimizer
  const TrainState got = load_train_state(dir.string(), *b.opt);
  EXPECT_EQ(got.data_pos, st.data_pos);
  EXPECT_EQ(got.rng_seed, st.rng_seed);
  EXPECT_EQ(got.rng_state, st.rng_state);
  EXPECT_EQ(got.extra, st.extra);
  EXPECT_EQ(b.opt->steps(), 3);
  for (size_t i = 0; i < a.params.size(); ++i) {
    EXPECT_TRUE(bits_equal(a.params[i].w, b.params[i].w)) << a.params[i].name;
    EXPECT_TRUE(bits_equal(a.opt->m(i), b.opt->m(i))) << a.params[i].name;
    EXPECT_TRUE(bits_equal(a.opt->v(i), b.opt->v(i))) << a.params[i].name;
  }
  EXPECT_TRUE(b.opt->m(2).empty());
  // Resuming continues exactly as the run that never stopped.
  for (int s = 3; s < 5; ++s) a.step(s), b.step(s);
  for (size_t i = 0; i < a.params.size(); ++i) EXPECT_TRUE(bits_equal(a.params[i].w, b.params[i].w));
}

TEST(TrainState, MismatchesAreErrorsAndChangeNothing) {
  TrainRun a(1.f);
  a.step(0);
  const fs::path dir = scratch("state-bad");
  save_train_state(dir.string(), *a.opt, {});
  auto expect_error = [&](TrainRun& r, const std::string& want) {
    const std::vector<float> w0 = r.params[0].w;
    try {
      load_train_state(dir.string(), *r.opt);
      ADD_FAILURE() << "no error; wanted " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
    EXPECT_TRUE(bits_equal(w0, r.params[0].w));
    EXPECT_EQ(r.opt->steps(), 0);
  };
  {
    TrainRun r(2.f);
    r.params[1].name = "model.final_norm.weight";
    expect_error(r, "model.norm.weight is not one of the model's");
  }
  {
    TrainRun r(2.f);
    r.params[1].shape = {1, 3};
    expect_error(r, "model.norm.weight has shape [3], the model's is [1, 3]");
  }
  {
    TrainRun r(2.f);
    r.params[1].trainable = false;  // its moments in the file are unexpected
    expect_error(r, "exp_avg/model.norm.weight is not one of the model's");
  }
  fs::remove(dir / "optimizer.safetensors");
  TrainRun r(2.f);
  expect_error(r, "optimizer.safetensors");
}

}  // namespace
}  // namespace fathom::train
