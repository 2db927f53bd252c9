// Encode throughput of the DeepSeek-V3 tokenizer on a mixed corpus of several MB:
// English prose, C++/Python code, Chinese and Japanese text, numbers and whitespace runs.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

const char* kWords[] = {"the", "model", "attention", "token", "inference", "of", "and", "a", "with", "latency",
                        "memory", "throughput", "is", "expert", "routing", "cache", "sequence", "layer",
                        "DeepSeek", "Mixture-of-Experts", "benchmark", "we", "observe", "that", "results",
                        "significantly", "improved", "quantization", "precision", "hardware"};
const char* kCode[] = {
    "for (int i = 0; i < n; ++i) {\n    sum += x[i] * w[i];\n}\n",
    "def forward(self, x):\n    h = self.norm(x)\n    return x + self.mlp(h)\n\n",
    "    if (!ok) return fail(\"bad input: {}\", path);\n",
    "std::vector<int32_t> ids = tok.encode(text);\t// ids\n",
    "SELECT id, name FROM users WHERE age > 30 ORDER BY name;\n"};
const char* kCjk[] = {"深度学习模型的推理速度非常重要。", "我们在这个基准测试中观察到显著的改进。",
                      "トークナイザーの性能を測定します。", "混合专家模型使用路由机制选择专家。",
                      "東京は日本の首都です。", "大規模言語モデル"};

std::string build_corpus(size_t bytes) {
  std::mt19937 rng(42);
  std::string s;
  s.reserve(bytes + 1024);
  while (s.size() < bytes) {
    switch (rng() % 6) {
      case 0:
      case 1: {  // prose
        const int n = 8 + static_cast<int>(rng() % 25);
        for (int i = 0; i < n; ++i) {
          if (i) s += ' ';
          s += kWords[rng() % std::size(kWords)];
          if (rng() % 12 == 0) s += ',';
        }
        s += ". ";
        if (rng() % 4 == 0) s += "\n\n";
        break;
      }
      case 2:
        s += kCode[rng() % std::size(kCode)];
        break;
      case 3:
        s += kCjk[rng() % std::size(kCjk)];
        break;
      case 4: {  // numbers
        s += std::to_string(rng() % 1000000) + "." + std::to_string(rng() % 1000) + " ";
        s += "3.14159265 2024-01-15 ";
        break;
      }
      case 5:  // whitespace runs
        s += std::string(1 + rng() % 12, ' ');
        s += rng() % 2 ? "\n" : "\t\t";
        break;
    }
  }
  return s;
}

// FATHOM_TOKENIZER_DIR overrides; otherwise the copy under tests/data, found from this
// file's own path (the bench build defines no source-dir macro).
std::string tokenizer_dir() {
  if (const char* d = std::getenv("FATHOM_TOKENIZER_DIR")) return d;
  std::string here = __FILE__;
  return here.substr(0, here.rfind("/bench/")) + "/tests/data/tokenizers/deepseek-v3";
}

const fathom::Tokenizer& tokenizer() {
  static const fathom::Tokenizer t = fathom::Tokenizer::load(tokenizer_dir());
  return t;
}

void BM_EncodeMixedCorpus(benchmark::State& state) {
  const std::string corpus = build_corpus(static_cast<size_t>(state.range(0)) << 20);
  const auto& tok = tokenizer();
  size_t n_ids = 0;
  for (auto _ : state) {
    auto ids = tok.encode(corpus);
    n_ids = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * corpus.size()));
  state.counters["bytes_per_token"] = static_cast<double>(corpus.size()) / static_cast<double>(n_ids);
}
BENCHMARK(BM_EncodeMixedCorpus)->Arg(4)->Unit(benchmark::kMillisecond)->MinTime(2.0);

// Request-sized documents (about 2 KB each) from the same corpus.
void BM_EncodeSmallDocs(benchmark::State& state) {
  const std::string corpus = build_corpus(4 << 20);
  std::vector<std::string_view> docs;
  for (size_t i = 0; i + 2048 <= corpus.size(); i += 2048) {
    size_t b = i;
    while ((static_cast<unsigned char>(corpus[b]) & 0xC0) == 0x80) ++b;  // start on a character
    size_t e = i + 2048;
    while (e < corpus.size() && (static_cast<unsigned char>(corpus[e]) & 0xC0) == 0x80) ++e;
    docs.emplace_back(corpus.data() + b, e - b);
  }
  const auto& tok = tokenizer();
  size_t bytes = 0;
  for (auto _ : state) {
    for (std::string_view d : docs) {
      auto ids = tok.encode(d);
      benchmark::DoNotOptimize(ids.data());
      bytes += d.size();
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_EncodeSmallDocs)->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace
