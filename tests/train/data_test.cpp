// The training data pipeline: packing and EOS placement against hand-built streams, chat loss
// masks against the DeepSeek-V3 reference renderings, the shuffled order, rank slices, the
// held-out split and the input errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <unistd.h>

#include "../tokenizer/test_util.h"
#include "core/error.h"
#include "template/chat_template.h"
#include "train/data.h"

namespace fathom::train {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;

constexpr int32_t kEos = 256;

// A scratch directory per test, removed afterwards.
class Scratch {
 public:
  Scratch() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() / (std::string("fathom_data_") + info->name() + "_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  ~Scratch() { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) const {
    const std::string p = (dir_ / name).string();
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
  std::string dir() const { return dir_.string(); }

 private:
  fs::path dir_;
};

// Byte-level with no merges: the ids of a text are its bytes, and "<eos>" (id 256) is EOS.
Tokenizer byte_tokenizer(const Scratch& s) {
  const json d = test::doc(nullptr, test::byte_level_step(), test::byte_level_model({"<eos>"}, json::array(), false),
                           json::array({test::added_token(kEos, "<eos>", true)}));
  s.write("tokenizer.json", d.dump());
  s.write("tokenizer_config.json", R"({"eos_token": "<eos>"})");
  return Tokenizer::load(s.dir());
}

const Tokenizer& deepseek() { return test::deepseek(); }
const ChatTemplate& deepseek_template() {
  static const ChatTemplate t = ChatTemplate::load(std::string(FATHOM_TEST_DATA) + "/tokenizers/deepseek-v3");
  return t;
}

Ids bytes(const std::string& s) { return Ids(s.begin(), s.end()); }

// The decoded text of each maximal run of target tokens in a row.
std::vector<std::string> target_runs(const Tokenizer& tok, const Batch& b, int64_t r) {
  std::vector<std::string> runs;
  Ids cur;
  for (int64_t t = 0; t <= b.T; ++t) {
    if (t < b.T && b.target[r * b.T + t]) {
      cur.push_back(b.ids[r * b.T + t]);
    } else if (!cur.empty()) {
      runs.push_back(tok.decode(cur));
      cur.clear();
    }
  }
  return runs;
}

DataOpts opts(const std::string& path, int64_t T, int64_t B, double val_frac = 0, uint64_t seed = 0) {
  DataOpts o;
  o.path = path;
  o.seq_len = T;
  o.batch = B;
  o.seed = seed;
  o.val_frac = val_frac;
  return o;
}

TEST(TrainData, PacksDocumentsWithEosAndDropsThePartialTail) {
  Scratch s;
  const Tokenizer tok = byte_tokenizer(s);
  // Stream: a b E c d e E f E  (9 tokens) -> two sequences of 4; the lone E is dropped.
  const std::string path = s.write("d.txt", "ab\n\ncde\r\nf\n");
  const Dataset d = Dataset::load(opts(path, 4, 1), tok, nullptr);
  ASSERT_EQ(d.train_sequences(), 2);
  EXPECT_EQ(d.val_sequences(), 0);
  std::set<Ids> got;
  for (int64_t i = 0; i < 2; ++i) {
    const Batch b = d.train_batch(i);
    ASSERT_EQ(b.B, 1);
    ASSERT_EQ(b.T, 4);
    EXPECT_EQ(b.target, (std::vector<uint8_t>{0, 1, 1, 1}));
    got.insert(b.ids);
  }
  const std::set<Ids> want = {{'a', 'b', kEos, 'c'}, {'d', 'e', kEos, 'f'}};
  EXPECT_EQ(got, want);
}

TEST(TrainData, JsonlTextDocumentsAndAutoDetection) {
  Scratch s;
  const Tokenizer tok = byte_tokenizer(s);
  const std::string jsonl = s.write("d.jsonl", "{\"text\": \"x{y\"}\n{\"text\": \"z\"}\n");
  const Dataset d = Dataset::load(opts(jsonl, 5, 1), tok, nullptr);
  ASSERT_EQ(d.train_sequences(), 1);
  EXPECT_EQ(d.train_batch(0).ids, (Ids{'x', '{', 'y', kEos, 'z'}));
  // A first line that is not a JSON object makes the whole file plain text.
  const std::string text = s.write("d.txt", "{not json\n{\"text\": \"q\"}\n");
  const Dataset t = Dataset::load(opts(text, 19, 1), tok, nullptr);
  Ids want = bytes("{not json");
  want.push_back(kEos);
  for (int c : bytes("{\"text\": ")) want.push_back(c);
  EXPECT_EQ(t.train_batch(0).ids, want);
  // Text mode takes JSON lines as text.
  DataOpts o = opts(jsonl, 16, 1);
  o.mode = DataOpts::Text;
  Ids line = bytes("{\"text\": \"x{y\"}");
  line.push_back(kEos);
  EXPECT_EQ(Dataset::load(o, tok, nullptr).train_batch(0).ids, line);
}

TEST(TrainData, BatchFromIds) {
  const Batch b = batch_from_ids({1, 2, 3, 4, 5, 6}, 2, 3);
  EXPECT_EQ(b.B, 2);
  EXPECT_EQ(b.T, 3);
  EXPECT_EQ(b.ids, (Ids{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(b.target, (std::vector<uint8_t>{0, 1, 1, 0, 1, 1}));
  EXPECT_THROW(batch_from_ids({1, 2, 3}, 2, 3), Error);
}

// The DeepSeek-V3 reference renderings: the chat sequence's ids are HF's, and the targets
// are exactly what the assistant turns add.
TEST(TrainData, ChatMasksAssistantTokensDeepSeek) {
  Scratch s;
  std::ifstream f(std::string(FATHOM_TEST_DATA) + "/chat-deepseek-v3.jsonl");
  std::map<std::string, json> ref;
  for (std::string line; std::getline(f, line);) {
    json j = json::parse(line);
    ref[j["name"].get<std::string>()] = j;
  }
  ASSERT_TRUE(ref.count("no_gen_prompt") && ref.count("tool_then_answer") && ref.count("multi_turn"));

  {  // user, assistant: the whole reference, the last three tokens ("Hey." and EOS) targets.
    const json& r = ref["no_gen_prompt"];
    const std::string path = s.write("a.jsonl", json{{"messages", r["messages"]}}.dump() + "\n");
    const Dataset d = Dataset::load(opts(path, 10, 1), deepseek(), &deepseek_template());
    const Batch b = d.train_batch(0);
    const Ids ref_ids = r["ids"].get<Ids>();
    ASSERT_EQ(ref_ids.size(), 7u);
    Ids want = ref_ids;
    want.resize(10, *deepseek().eos_id());  // padded with EOS that is not a target
    EXPECT_EQ(b.ids, want);
    EXPECT_EQ(b.target, (std::vector<uint8_t>{0, 0, 0, 0, 1, 1, 1, 0, 0, 0}));
    EXPECT_EQ(target_runs(deepseek(), b, 0), (std::vector<std::string>{"Hey.<｜end▁of▁sentence｜>"}));
  }
  {  // A tool call, its output, an answer and a last user turn (rendered without a prompt).
    const json& r = ref["tool_then_answer"];
    const std::string path = s.write("b.jsonl", json{{"messages", r["messages"]}}.dump() + "\n");
    const Dataset d = Dataset::load(opts(path, 64, 1), deepseek(), &deepseek_template());
    const Batch b = d.train_batch(0);
    Ids ref_ids = r["ids"].get<Ids>();
    ref_ids.pop_back();  // the generation prompt <｜Assistant｜>
    EXPECT_EQ(Ids(b.ids.begin(), b.ids.begin() + ref_ids.size()), ref_ids);
    const std::vector<std::string> want = {
        "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n{\"city\": "
        "\"Paris\"}\n```<｜tool▁call▁end｜>",
        "It is 18 degrees.<｜end▁of▁sentence｜>"};
    EXPECT_EQ(target_runs(deepseek(), b, 0), want);
  }
  {  // Two assistant turns; truncation keeps the first T tokens.
    json msgs = ref["multi_turn"]["messages"];
    msgs.push_back({{"role", "assistant"}, {"content", "Why not?"}});
    const std::string path = s.write("c.jsonl", json{{"messages", msgs}}.dump() + "\n");
    const Dataset d = Dataset::load(opts(path, 64, 1), deepseek(), &deepseek_template());
    EXPECT_EQ(target_runs(deepseek(), d.train_batch(0), 0),
              (std::vector<std::string>{"Hello! How can I help?<｜end▁of▁sentence｜>", "Why not?<｜end▁of▁sentence｜>"}));
    const Dataset cut = Dataset::load(opts(path, 8, 1), deepseek(), &deepseek_template());
    const Batch b = cut.train_batch(0);
    const Ids ref_ids = ref["multi_turn"]["ids"].get<Ids>();
    EXPECT_EQ(b.ids, Ids(ref_ids.begin(), ref_ids.begin() + 8));
    EXPECT_EQ(target_runs(deepseek(), b, 0), (std::vector<std::string>{"Hello! How can"}));
  }
}

// A template that renders reasoning_content: it is part of the assistant's target.
TEST(TrainData, ChatReasoningIsTargetAndInconsistentTemplatesAreRefused) {
  Scratch s;
  const Tokenizer tok = byte_tokenizer(s);
  const std::string body =
      "{% if m.role == 'user' %}U:{{ m.content }}|{% else %}A:{% if m.reasoning_content %}<think>{{ m.reasoning_content }}"
      "</think>{% endif %}{{ m.content }}{{ eos_token }}{% endif %}";
  const ChatTemplate tmpl = ChatTemplate::from_string(
      "{{ bos_token }}{% for m in messages %}" + body + "{% endfor %}{% if add_generation_prompt %}A:{% endif %}", "",
      "<eos>");
  const json msgs = json::array({{{"role", "user"}, {"content", "q1"}},
                                 {{"role", "assistant"}, {"content", "a1"}, {"reasoning_content", "r1"}},
                                 {{"role", "user"}, {"content", "q2"}},
                                 {{"role", "assistant"}, {"content", "a2"}}});
  const std::string path = s.write("c.jsonl", json{{"messages", msgs}}.dump() + "\n");
  const Dataset d = Dataset::load(opts(path, 40, 1), tok, &tmpl);
  const Batch b = d.train_batch(0);
  // U:q1|A:<think>r1</think>a1<eos>U:q2|A:a2<eos>, then padding.
  Ids want = bytes("U:q1|A:<think>r1</think>a1");
  want.push_back(kEos);
  for (int c : bytes("U:q2|A:a2")) want.push_back(c);
  want.push_back(kEos);
  std::vector<uint8_t> tgt(want.size(), 0);
  for (size_t i = 7; i <= 26; ++i) tgt[i] = 1;   // <think>r1</think>a1<eos>
  for (size_t i = 34; i <= 36; ++i) tgt[i] = 1;  // a2<eos>
  want.resize(40, kEos);
  tgt.resize(40, 0);
  EXPECT_EQ(b.ids, want);
  EXPECT_EQ(b.target, tgt);
  EXPECT_EQ(target_runs(tok, b, 0), (std::vector<std::string>{"<think>r1</think>a1<eos>", "a2<eos>"}));

  // Reasoning shown only on the last message: earlier turns render differently in the whole
  // conversation than in its prefix, so the spans cannot be found.
  const ChatTemplate last_only = ChatTemplate::from_string(
      "{% for m in messages %}{% if m.role == 'user' %}U:{{ m.content }}|{% else %}A:{% if loop.last %}"
      "{{ m.reasoning_content }}{% endif %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}"
      "{% if add_generation_prompt %}A:{% endif %}",
      "", "<eos>");
  EXPECT_THROW(Dataset::load(opts(path, 40, 1), tok, &last_only), Error);
}

// Each document is exactly one sequence (3 bytes + EOS with T = 4), so sequence k is named by
// its first three ids.
std::string numbered_docs(int n, int offset = 0) {
  std::string text;
  for (int k = offset; k < offset + n; ++k) text += fmt::format("{:03d}\n", k);
  return text;
}
int doc_number(const Batch& b, int64_t r) {
  return (b.ids[r * b.T] - '0') * 100 + (b.ids[r * b.T + 1] - '0') * 10 + (b.ids[r * b.T + 2] - '0');
}

TEST(TrainData, ShuffleIsASeededPermutationPerEpoch) {
  Scratch s;
  const Tokenizer tok = byte_tokenizer(s);
  const int n = 37;
  const std::string path = s.write("d.txt", numbered_docs(n));
  auto order = [&](uint64_t seed, int64_t B) {
    const Dataset d = Dataset::load(opts(path, 4, B, 0, seed), tok, nullptr);
    EXPECT_EQ(d.train_sequences(), n);
    std::vector<int> out;  // three epochs
    for (int64_t i = 0; static_cast<int64_t>(out.size()) < 3 * n; ++i) {
      const Batch b = d.train_batch(i);
      for (int64_t r = 0; r < b.B; ++r) out.push_back(doc_number(b, r));
    }
    out.resize(3 * n);
    return out;
  };
  const std::vector<int> a = order(7, 1);
  std::vector<int> ident(n);
  for (int k = 0; k < n; ++k) ident[k] = k;
  std::vector<std::vector<int>> epochs;
  for (int e = 0; e < 3; ++e) {
    std::vector<int> ep(a.begin() + e * n, a.begin() + (e + 1) * n);
    epochs.push_back(ep);
    std::sort(ep.begin(), ep.end());
    EXPECT_EQ(ep, ident) << "epoch " << e << " is not a permutation";
  }
  EXPECT_NE(epochs[0], ident);
  EXPECT_NE(epochs[0], epochs[1]);
  EXPECT_NE(epochs[1], epochs[2]);
  // Reproducible, the same sequence stream whatever the batch size (batches run across the
  // epoch end), and different for another seed.
  EXPECT_EQ(order(7, 1), a);
  EXPECT_EQ(order(7, 5), a);
  EXPECT_NE(order(8, 1), a);
}

TEST(TrainData, RankSlicesConcatenateToTheGlobalBatch) {
  Scratch s;
  const Tokenizer tok = byte_tokenizer(s);
  const std::string path = s.write("d.txt", numbered_docs(13));
  const Dataset d = Dataset::load(opts(path, 4, 4, 0, 3), tok, nullptr);
  for (int64_t i : {0, 3, 7}) {  // 7 crosses into the third epoch
    const Batch g = d.train_batch(i);
    for (int nranks : {2, 4}) {
      Batch cat;
      for (int r = 0; r < nranks; ++r) {
        const Batch b = d.train_batch(i, r, nranks);
        EXPECT_EQ(b.B, 4 / nranks);
        cat.ids.insert(cat.ids.end(), b.ids.begin(), b.ids.end());
        cat.target.insert(cat.target.end(), b.target.begin(), b.target.end());
      }
      EXPECT_EQ(cat.ids, g.ids);
      EXPECT_EQ(cat.target, g.target);
    }
  }
  EXPECT_THROW(d.train_batch(0, 0, 3), Error);
  EXPECT_THROW(d.train_batch(0, 2, 2), Error);
}

TEST(TrainData, ValidationSplitIsStableAndDisjoint) {
  Scratch s;
  const Tokenizer tok = byte_tokenizer(s);
  const int n = 40;
  const std::string path = s.write("d.txt", numbered_docs(n));
  const Dataset d = Dataset::load(opts(path, 4, 3, 0.1, 11), tok, nullptr);
  ASSERT_EQ(d.val_docs().size(), 4u);
  EXPECT_EQ(d.val_sequences(), 4);
  EXPECT_EQ(d.train_sequences(), n - 4);
  // Held-out sequences in file order, 3 to a batch.
  std::vector<int> val;
  const std::vector<Batch> vb = d.val_batches();
  ASSERT_EQ(vb.size(), 2u);
  EXPECT_EQ(vb[0].B, 3);
  EXPECT_EQ(vb[1].B, 1);
  for (const Batch& b : vb)
    for (int64_t r = 0; r < b.B; ++r) val.push_back(doc_number(b, r));
  EXPECT_EQ(val, std::vector<int>(d.val_docs().begin(), d.val_docs().end()));
  // One epoch of training sees every other document once.
  std::set<int> train;
  for (int64_t i = 0; i < 12; ++i) {
    const Batch b = d.train_batch(i);
    for (int64_t r = 0; r < b.B; ++r) EXPECT_TRUE(train.insert(doc_number(b, r)).second);
  }
  for (int v : val) EXPECT_FALSE(train.count(v)) << v;
  EXPECT_EQ(train.size() + val.size(), static_cast<size_t>(n));
  // Stable across loads and batch sizes; another seed picks others; two documents give one.
  EXPECT_EQ(Dataset::load(opts(path, 4, 1, 0.1, 11), tok, nullptr).val_docs(), d.val_docs());
  EXPECT_NE(held_out_docs(n, 0.1, 12), d.val_docs());
  EXPECT_EQ(held_out_docs(2, 0.05, 0).size(), 1u);
  EXPECT_EQ(held_out_docs(1, 0.05, 0).size(), 0u);
  EXPECT_EQ(held_out_docs(100, 0, 0).size(), 0u);
  EXPECT_THROW(held_out_docs(10, 1.0, 0), Error);
}

TEST(TrainData, HeldOutDocumentsKeepTheirPaddedTail) {
  Scratch s;
  const Tokenizer tok = byte_tokenizer(s);
  // Eleven documents of 2 tokens (1 byte + EOS); the single held-out one pads to T = 4.
  std::string text;
  for (char c = 'a'; c <= 'k'; ++c) text += std::string(1, c) + "\n";
  const std::string path = s.write("d.txt", text);
  const Dataset d = Dataset::load(opts(path, 4, 2, 0.05, 5), tok, nullptr);
  ASSERT_EQ(d.val_docs().size(), 1u);
  const std::vector<Batch> vb = d.val_batches();
  ASSERT_EQ(vb.size(), 1u);
  EXPECT_EQ(vb[0].ids, (Ids{'a' + static_cast<int32_t>(d.val_docs()[0]), kEos, kEos, kEos}));
  EXPECT_EQ(vb[0].target, (std::vector<uint8_t>{0, 1, 0, 0}));
  EXPECT_EQ(d.train_sequences(), 5);  // 20 tokens
}

void expect_error(const std::function<void()>& f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error; expected one mentioning " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(TrainData, InputErrors) {
  Scratch s;
  const Tokenizer tok = byte_tokenizer(s);
  auto load = [&](const std::string& name, const std::string& text, int64_t T = 4) {
    const std::string path = s.write(name, text);
    return [&tok, path, T] { Dataset::load(opts(path, T, 1), tok, nullptr); };
  };
  expect_error(load("bad.jsonl", "{\"text\": \"abcdef\"}\n\n{\"text\": oops}\n"), "bad.jsonl:3: malformed JSON");
  expect_error(load("array.jsonl", "{\"text\": \"abcdef\"}\n[1]\n"), "array.jsonl:2");
  expect_error(load("neither.jsonl", "{\"text\": \"abcdef\"}\n{\"prompt\": \"x\"}\n"), "neither.jsonl:2");
  expect_error(load("msgs.jsonl", "{\"messages\": [{\"content\": \"x\"}]}\n"), "msgs.jsonl:1");
  expect_error(load("chat.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n"),
               "chat.jsonl:1: a chat example, but the model has no chat template");
  expect_error(load("empty.txt", ""), "no data");
  expect_error(load("blank.txt", "\n\r\n\n"), "no data");
  expect_error(load("short.txt", "ab\n", 4), "no full training sequence");
  EXPECT_THROW(Dataset::load(opts(s.dir() + "/nope.txt", 4, 1), tok, nullptr), Error);
  // A tokenizer with no EOS cannot end documents.
  const Tokenizer no_eos = Tokenizer::from_json(
      test::doc(nullptr, test::byte_level_step(), test::byte_level_model({}, json::array(), false)).dump());
  const std::string ok = s.write("ok.txt", "abcdefgh\n");
  EXPECT_THROW(Dataset::load(opts(ok, 4, 1), no_eos, nullptr), Error);
}

}  // namespace
}  // namespace fathom::train
