// Byte-level BPE training: merges against a naive trainer, the written files against
// DeepSeek-V3's, and the result loaded back by Tokenizer and ChatTemplate.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <set>

#include "core/error.h"
#include "template/chat_template.h"
#include "test_util.h"
#include "tokenizer/bpe_train.h"
#include "tokenizer/unicode.h"

namespace fathom {
namespace {

namespace fs = std::filesystem;
using test::json;
using test::mapped;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("fathom-bpe-train-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d;
}

fs::path save(const TrainedBpe& bpe, const std::string& name) {
  const fs::path d = temp_dir(name);
  bpe.save(d.string());
  return d;
}

BpeTrainOpts opts_for(std::vector<std::string> texts, int32_t vocab, int64_t min_freq) {
  BpeTrainOpts o;
  o.texts = std::move(texts);
  o.vocab_size = vocab;
  o.min_frequency = min_freq;
  return o;
}

constexpr int32_t kBase = 259;   // 3 special tokens + 256 bytes
constexpr int32_t kAdded = 4;    // <think>, </think>, <｜User｜>, <｜Assistant｜>

using Pair = std::pair<std::string, std::string>;

// A naive trainer over documents of lowercase words separated by single spaces, whose
// pre-tokens are the first word and " word" for every later one. Each step rescans every
// word: the pair with the highest count wins, the smallest (left, right) on a tie.
std::vector<Pair> naive_merges(const std::vector<std::string>& docs, int64_t min_freq) {
  std::map<std::string, int64_t> words;
  for (const std::string& d : docs) {
    size_t b = 0;
    for (size_t i = 1; i <= d.size(); ++i)
      if (i == d.size() || d[i] == ' ') {
        ++words[d.substr(b, i - b)];
        b = i;
      }
  }
  std::vector<std::pair<std::vector<std::string>, int64_t>> ws;
  for (const auto& [w, n] : words) {
    std::vector<std::string> s;
    for (char c : w) s.push_back(std::string(1, c));
    ws.push_back({s, n});
  }
  std::vector<Pair> out;
  for (;;) {
    std::map<Pair, int64_t> counts;
    for (const auto& [s, n] : ws)
      for (size_t i = 0; i + 1 < s.size(); ++i) counts[{s[i], s[i + 1]}] += n;
    const Pair* best = nullptr;
    int64_t best_n = 0;
    for (const auto& [p, n] : counts)
      if (n > best_n) best = &p, best_n = n;
    if (!best || best_n < min_freq) break;
    const Pair m = *best;
    out.push_back(m);
    for (auto& [s, n] : ws) {
      std::vector<std::string> t;
      for (size_t i = 0; i < s.size(); ++i) {
        if (i + 1 < s.size() && s[i] == m.first && s[i + 1] == m.second) {
          t.push_back(m.first + m.second);
          ++i;
        } else {
          t.push_back(s[i]);
        }
      }
      s = std::move(t);
    }
  }
  return out;
}

std::vector<Pair> merge_strings(const TrainedBpe& bpe) {
  std::vector<Pair> out;
  for (const auto& [l, r] : bpe.merges) out.push_back({bpe.tokens[l], bpe.tokens[r]});
  return out;
}

TEST(BpeTrain, FirstMergesByHand) {
  // Pre-tokens: "ab" x1, " ab" x2, " abc" x1. (a,b) occurs 4 times, then (" ", ab) 3 times;
  // (ab, c) occurs once, below the minimum frequency of 2.
  const TrainedBpe bpe = train_bpe(opts_for({"ab ab ab abc"}, 1000, 2));
  ASSERT_EQ(merge_strings(bpe), (std::vector<Pair>{{"a", "b"}, {" ", "ab"}}));
  EXPECT_EQ(bpe.vocab_size(), kBase + 2 + kAdded);  // the corpus ran out of pairs
  const Tokenizer tok = Tokenizer::load(save(bpe, "hand").string());
  EXPECT_EQ(tok.vocab_size(), kBase + 2 + kAdded);
  const int32_t c = *tok.token_id("c");
  EXPECT_EQ(tok.encode("ab abc"), (std::vector<int32_t>{kBase, kBase + 1, c}));
  EXPECT_EQ(tok.token_text(kBase), "ab");
  EXPECT_EQ(tok.token_text(kBase + 1), mapped(" ab"));
}

TEST(BpeTrain, EncodingAppliesMergesInRankOrder) {
  // Pre-tokens "bc" x1, " bc" x2, " ab" x2. (b,c) 3 times first; then three pairs tie at 2 and
  // go in byte order of (left, right): (" ", "a"), (" ", "bc"), then (" a", "b").
  const TrainedBpe bpe = train_bpe(opts_for({"bc bc bc ab ab"}, 1000, 2));
  ASSERT_EQ(merge_strings(bpe), (std::vector<Pair>{{"b", "c"}, {" ", "a"}, {" ", "bc"}, {" a", "b"}}));
  const Tokenizer tok = Tokenizer::load(save(bpe, "rank").string());
  const int32_t bc = kBase, sp_a = kBase + 1, sp_bc = kBase + 2, sp_ab = kBase + 3;
  // " abc": (b,c) has the lowest rank, so " ab" (which a left-to-right greedy merge would
  // make) never forms.
  EXPECT_EQ(tok.encode(" abc"), (std::vector<int32_t>{sp_a, bc}));
  EXPECT_EQ(tok.encode(" ab"), (std::vector<int32_t>{sp_ab}));
  EXPECT_EQ(tok.encode(" bc"), (std::vector<int32_t>{sp_bc}));
  EXPECT_EQ(tok.encode("abc"), (std::vector<int32_t>{*tok.token_id("a"), bc}));
}

TEST(BpeTrain, MatchesNaiveTrainer) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 6; ++trial) {
    // Small alphabets make many ties.
    const std::string alphabet = trial < 3 ? "ab" : "abcde";
    std::vector<std::string> docs;
    for (int d = 0; d < 40; ++d) {
      std::string doc;
      const int n_words = 1 + int(rng() % 8);
      for (int w = 0; w < n_words; ++w) {
        if (w) doc += ' ';
        const int len = 1 + int(rng() % 7);
        for (int i = 0; i < len; ++i) doc += alphabet[rng() % alphabet.size()];
      }
      docs.push_back(doc);
    }
    const int64_t min_freq = 1 + trial % 3;
    const std::vector<Pair> want = naive_merges(docs, min_freq);
    ASSERT_GT(want.size(), 10u);
    const TrainedBpe bpe = train_bpe(opts_for(docs, 100000, min_freq));
    EXPECT_EQ(merge_strings(bpe), want) << "trial " << trial;
    // One id per distinct merged string (a merge that rebuilt a known string would add none).
    std::set<std::string> distinct;
    for (const Pair& p : want) distinct.insert(p.first + p.second);
    size_t new_tokens = 0;
    for (const std::string& s : distinct) new_tokens += s.size() > 1;
    EXPECT_EQ(bpe.vocab_size(), kBase + int32_t(new_tokens) + kAdded) << "trial " << trial;
  }
}

// Varied text whose pairs last past vocab size 1024.
std::vector<std::string> mixed_corpus() {
  std::vector<std::string> docs = {"Hello world, hello there! The world says hello.",
          "Numbers: 12345 + 678 = 13023; 3.14159 and 2,718.",
          "Chinese 你好世界，日本語のテキスト。Emoji 🙂🚀 and accents: café naïve.",
          "<｜User｜>What is 2+2?<｜Assistant｜><think>\n2+2=4\n</think>\nThe answer is 4.<｜end▁of▁sentence｜>",
          "tabs\tand\r\nnewlines\n\n  spaces   here",
          "hello hello hello world world world"};
  std::mt19937 rng(5);
  for (int d = 0; d < 200; ++d) {
    std::string doc;
    for (int w = 0; w < 12; ++w) {
      const int len = 1 + int(rng() % 9);
      doc += ' ';
      for (int i = 0; i < len; ++i) doc += char('a' + rng() % 26);
    }
    docs.push_back(doc);
  }
  return docs;
}

TEST(BpeTrain, RoundTripsArbitraryUtf8) {
  const TrainedBpe bpe = train_bpe(opts_for(mixed_corpus(), 400, 1));
  const Tokenizer tok = Tokenizer::load(save(bpe, "roundtrip").string());
  const std::vector<std::string> pool = {"a", "Z", " ", "  ", "\n", "\r\n", "\t", "\x01", "\x7f", "0", "42",
                                         "é", "ß", "\u0301", "你", "好", "の", "🙂", "🚀", "👩‍💻", "\u200b",
                                         "!", "<", ">", "<think>", "</think>", "<｜User｜>", "<｜Assistant｜>",
                                         "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "hello", " world",
                                         "\xf4\x8f\xbf\xbf" /* U+10FFFF */, "\xc2\x80"};
  std::mt19937 rng(3);
  for (int t = 0; t < 300; ++t) {
    std::string s;
    const int n = int(rng() % 12);
    for (int i = 0; i < n; ++i) s += pool[rng() % pool.size()];
    const std::vector<int32_t> ids = tok.encode(s);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < bpe.vocab_size()) << id;
    EXPECT_EQ(tok.decode(ids), s);
  }
  // Every one of the 256 bytes is reachable: all two-byte-or-more characters and controls.
  std::string all;
  for (char32_t cp = 1; cp < 0x800; ++cp) utf8::append(all, cp);
  EXPECT_EQ(tok.decode(tok.encode(all)), all);
}

TEST(BpeTrain, SpecialAndChatTokensMapToTheirIds) {
  const TrainedBpe bpe = train_bpe(opts_for(mixed_corpus(), 512, 1));
  const int32_t v = bpe.vocab_size();
  ASSERT_EQ(v, 512);
  const Tokenizer tok = Tokenizer::load(save(bpe, "special").string());
  EXPECT_EQ(tok.bos_id(), 0);
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.token_id("<｜▁pad▁｜>"), 2);
  EXPECT_EQ(tok.token_id("<think>"), v - 4);
  EXPECT_EQ(tok.token_id("</think>"), v - 3);
  EXPECT_EQ(tok.token_id("<｜User｜>"), v - 2);
  EXPECT_EQ(tok.token_id("<｜Assistant｜>"), v - 1);
  EXPECT_TRUE(tok.is_special(0) && tok.is_special(1) && tok.is_special(2));
  EXPECT_FALSE(tok.is_special(v - 1) || tok.is_special(v - 4));
  const std::vector<int32_t> ids =
      tok.encode("<｜begin▁of▁sentence｜><｜User｜>x<｜Assistant｜><think>y</think>z<｜end▁of▁sentence｜>");
  const int32_t x = *tok.token_id("x"), y = *tok.token_id("y"), z = *tok.token_id("z");
  EXPECT_EQ(ids, (std::vector<int32_t>{0, v - 2, x, v - 1, v - 4, y, v - 3, z, 1}));
  EXPECT_EQ(tok.decode(ids, /*skip_special=*/true), "<｜User｜>x<｜Assistant｜><think>y</think>z");
}

TEST(BpeTrain, SpecialTokensInTheCorpusAreNotLearned) {
  std::vector<std::string> docs(50, "<｜User｜>hi<｜Assistant｜><think>ok</think>");
  const TrainedBpe bpe = train_bpe(opts_for(docs, 1000, 1));
  // Only "hi" and "ok" remain once the added tokens are cut out.
  EXPECT_EQ(merge_strings(bpe), (std::vector<Pair>{{"h", "i"}, {"o", "k"}}));
}

TEST(BpeTrain, VocabSizeIsExact) {
  for (int32_t v : {263, 300, 777, 1024}) {
    const TrainedBpe bpe = train_bpe(opts_for(mixed_corpus(), v, 1));
    EXPECT_EQ(bpe.vocab_size(), v);
    const Tokenizer tok = Tokenizer::load(save(bpe, "size").string());
    EXPECT_EQ(tok.vocab_size(), v);
    const json doc = json::parse(slurp(save(bpe, "size") / "tokenizer.json"));
    EXPECT_EQ(int32_t(doc["model"]["vocab"].size()) + kAdded, v);
  }
  EXPECT_THROW(train_bpe(opts_for(mixed_corpus(), 262, 1)), Error);
  EXPECT_THROW(train_bpe(opts_for({"bad \xff byte"}, 300, 1)), Error);
}

TEST(BpeTrain, DeterministicAndIndependentOfDocumentOrder) {
  std::vector<std::string> docs = mixed_corpus();
  for (int i = 0; i < 5; ++i) docs.insert(docs.end(), docs.begin(), docs.begin() + 30);
  const TrainedBpe a = train_bpe(opts_for(docs, 600, 1));
  const TrainedBpe b = train_bpe(opts_for(docs, 600, 1));
  std::reverse(docs.begin(), docs.end());
  const TrainedBpe c = train_bpe(opts_for(docs, 600, 1));
  const fs::path da = save(a, "det-a"), db = save(b, "det-b"), dc = save(c, "det-c");
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_EQ(slurp(da / f), slurp(db / f)) << f;
    EXPECT_EQ(slurp(da / f), slurp(dc / f)) << f;
  }
}

// The files follow the DeepSeek-V3 layout: same pre-tokenizer, decoder, special tokens and
// byte ids, and the same keys in the same order.
TEST(BpeTrain, FilesMirrorDeepSeekV3) {
  const fs::path ref = fs::path(FATHOM_TEST_DATA) / "tokenizers" / "deepseek-v3";
  // The full file for its vocab and added tokens (ordered_json is too slow on 128k entries)...
  const json ds_full = json::parse(slurp(ref / "tokenizer.json"));
  // ...and its 1024-token cut, which keeps its layout, for key order.
  const auto ds = nlohmann::ordered_json::parse(
      slurp(fs::path(FATHOM_TEST_DATA) / "tokenizers" / "tiny" / "tokenizer.json"));
  const auto ds_cfg = nlohmann::ordered_json::parse(slurp(ref / "tokenizer_config.json"));
  const TrainedBpe bpe = train_bpe(opts_for(mixed_corpus(), 300, 1));
  const fs::path dir = save(bpe, "layout");
  const auto doc = nlohmann::ordered_json::parse(slurp(dir / "tokenizer.json"));
  const auto cfg = nlohmann::ordered_json::parse(slurp(dir / "tokenizer_config.json"));

  auto keys = [](const nlohmann::ordered_json& j) {
    std::vector<std::string> k;
    for (auto it = j.begin(); it != j.end(); ++it) k.push_back(it.key());
    return k;
  };
  EXPECT_EQ(keys(doc), keys(ds));
  EXPECT_EQ(keys(doc["model"]), keys(ds["model"]));
  for (const char* k : {"version", "truncation", "padding", "normalizer", "pre_tokenizer", "post_processor", "decoder"})
    EXPECT_EQ(doc[k], ds[k]) << k;
  for (const char* k : {"type", "dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk",
                        "byte_fallback"})
    EXPECT_EQ(doc["model"][k], ds["model"][k]) << k;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(doc["added_tokens"][i], ds["added_tokens"][i]);
  // The chat tokens carry the flags DeepSeek's files give them.
  for (size_t i = 3; i < doc["added_tokens"].size(); ++i) {
    const auto& t = doc["added_tokens"][i];
    EXPECT_EQ(keys(t), keys(ds["added_tokens"][0]));
    EXPECT_EQ(t["special"], false);
    EXPECT_EQ(t["normalized"], true);
    for (const auto& d : ds_full["added_tokens"])
      if (d["content"] == t["content"]) {
        EXPECT_EQ(d["special"], t["special"]) << t["content"];
      }
  }
  // Ids 0..258 name the same tokens as DeepSeek-V3's vocab.
  const auto& dv = ds_full["model"]["vocab"];
  const auto& v = doc["model"]["vocab"];
  int checked = 0;
  for (auto it = dv.begin(); it != dv.end(); ++it)
    if (it.value().get<int>() < kBase) {
      ASSERT_TRUE(v.contains(it.key())) << it.key();
      EXPECT_EQ(v[it.key()], it.value()) << it.key();
      ++checked;
    }
  EXPECT_EQ(checked, kBase);
  // Merges are written "left right" in byte-level spelling.
  for (size_t i = 0; i < bpe.merges.size(); ++i) {
    const auto [l, r] = bpe.merges[i];
    EXPECT_EQ(doc["model"]["merges"][i], mapped(bpe.tokens[l]) + " " + mapped(bpe.tokens[r]));
  }
  EXPECT_EQ(keys(cfg), keys(ds_cfg));
  for (const char* k : {"add_bos_token", "add_eos_token", "bos_token", "eos_token", "pad_token", "unk_token",
                        "tokenizer_class", "legacy", "clean_up_tokenization_spaces"})
    EXPECT_EQ(cfg[k], ds_cfg[k]) << k;
  EXPECT_EQ(cfg["model_max_length"], 4096);
}

TEST(BpeTrain, ChatTemplateRendersTheR1Layout) {
  const TrainedBpe bpe = train_bpe(opts_for(mixed_corpus(), 300, 1));
  const fs::path dir = save(bpe, "chat");
  const ChatTemplate ct = ChatTemplate::load(dir.string());
  const ChatTemplate r1 = ChatTemplate::from_string(
      slurp(fs::path(FATHOM_TEST_DATA) / "templates" / "deepseek-r1.jinja"), "<｜begin▁of▁sentence｜>",
      "<｜end▁of▁sentence｜>");
  const json conv = json::array({{{"role", "system"}, {"content", "Be brief."}},
                                 {{"role", "user"}, {"content", "2+2?"}},
                                 {{"role", "assistant"}, {"content", "<think>\n2+2=4\n</think>\n\n4"}},
                                 {{"role", "user"}, {"content", "3*3?"}}});
  EXPECT_EQ(ct.render(conv, true),
            "<｜begin▁of▁sentence｜>Be brief.<｜User｜>2+2?<｜Assistant｜>\n\n4<｜end▁of▁sentence｜>"
            "<｜User｜>3*3?<｜Assistant｜><think>\n");
  const json two_systems = json::array({{{"role", "system"}, {"content", "A"}},
                                        {{"role", "user"}, {"content", "hi"}},
                                        {{"role", "system"}, {"content", "B"}},
                                        {{"role", "assistant"}, {"content", "hello"}}});
  const json no_system = json::array({{{"role", "user"}, {"content", "x"}}});
  for (const json& c : {conv, two_systems, no_system})
    for (bool gen : {false, true}) EXPECT_EQ(ct.render(c, gen), r1.render(c, gen)) << c.dump() << gen;

  // The rendered prompt tokenizes with the chat tokens whole.
  const Tokenizer tok = Tokenizer::load(dir.string());
  const std::vector<int32_t> ids = tok.encode(ct.render(no_system, true));
  const int32_t v = bpe.vocab_size();
  EXPECT_EQ(ids, (std::vector<int32_t>{0, v - 2, *tok.token_id("x"), v - 1, v - 4, *tok.token_id(mapped("\n"))}));

  // A template given in the options replaces the built-in one.
  BpeTrainOpts o = opts_for(mixed_corpus(), 300, 1);
  o.chat_template = "{{ bos_token }}custom";
  const ChatTemplate custom = ChatTemplate::load(save(train_bpe(o), "chat-custom").string());
  EXPECT_EQ(custom.render(no_system, false), "<｜begin▁of▁sentence｜>custom");
}

TEST(BpeTrain, CommandLine) {
  const fs::path dir = temp_dir("cli");
  fs::create_directories(dir);
  // JSONL documents may hold newlines; a plain text file is one document per line.
  std::ofstream(dir / "corpus.jsonl") << "\"ab\\nab\"\n{\"text\": \"ab ab\"}\n\n";
  const std::string cmd = std::string(FATHOM_BINARY) + " tokenizer-train --data " + (dir / "corpus.jsonl").string() +
                          " --vocab 300 --min-frequency 1 --out " + (dir / "out").string() + " > " +
                          (dir / "log").string() + " 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << slurp(dir / "log");
  const Tokenizer tok = Tokenizer::load((dir / "out").string());
  // Pre-tokens "ab" x3, "\n" x1, " ab" x1: (a,b) first, then (" ", "ab") once.
  EXPECT_EQ(tok.encode("ab\n ab"), (std::vector<int32_t>{kBase, *tok.token_id(mapped("\n")), kBase + 1}));
  EXPECT_EQ(tok.vocab_size(), kBase + 2 + kAdded);  // the corpus ran out of pairs
  EXPECT_NE(slurp(dir / "log").find("vocab size 265"), std::string::npos) << slurp(dir / "log");

  const std::string bad = std::string(FATHOM_BINARY) + " tokenizer-train --data " + (dir / "missing.txt").string() +
                          " --out " + (dir / "out2").string() + " > " + (dir / "log2").string() + " 2>&1";
  EXPECT_NE(std::system(bad.c_str()), 0);
  EXPECT_NE(slurp(dir / "log2").find("cannot read"), std::string::npos) << slurp(dir / "log2");
}

// Not a pass/fail check: prints how long 1 MB of text takes at vocab 2048.
TEST(BpeTrain, TimingOneMegabyte) {
  std::mt19937 rng(11);
  std::vector<std::string> lexicon;
  for (int i = 0; i < 5000; ++i) {
    std::string w;
    const int len = 2 + int(rng() % 9);
    for (int j = 0; j < len; ++j) w += char('a' + rng() % 26);
    lexicon.push_back(w);
  }
  std::vector<std::string> docs;
  size_t bytes = 0;
  while (bytes < (1 << 20)) {
    std::string d;
    for (int i = 0; i < 20; ++i) {
      // Roughly Zipfian word choice, with numbers and punctuation mixed in.
      const double u = std::uniform_real_distribution<double>(0, 1)(rng);
      d += lexicon[size_t(std::pow(lexicon.size(), u)) - 1];
      d += (i % 7 == 6) ? ", " : (i % 11 == 10) ? std::to_string(rng() % 100000) + " " : " ";
    }
    bytes += d.size();
    docs.push_back(std::move(d));
  }
  const auto t0 = std::chrono::steady_clock::now();
  const TrainedBpe bpe = train_bpe(opts_for(docs, 2048, 2));
  const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const fs::path dir = save(bpe, "timing");
  const Tokenizer tok = Tokenizer::load(dir.string());
  const auto t1 = std::chrono::steady_clock::now();
  size_t n_ids = 0;
  for (const std::string& d : docs) n_ids += tok.encode(d).size();
  const double enc_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
  EXPECT_EQ(bpe.vocab_size(), 2048);
  std::printf("[timing] %zu bytes, vocab 2048: train %.3f s; encode %.3f s, %.2f bytes/token\n", bytes, train_s, enc_s,
              double(bytes) / double(n_ids));
}

}  // namespace
}  // namespace fathom
