#include "train/evaluate.h"

#include <algorithm>

#include "runtime/batch_generate.h"

namespace fathom::train {

namespace {
bool ends_with(const std::string& s, std::string_view t) {
  return s.size() >= t.size() && s.compare(s.size() - t.size(), t.size(), t) == 0;
}
}  // namespace

std::string chat_prompt(const ChatTemplate& tmpl, const std::string& user) {
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  msgs.push_back({{"role", "user"}, {"content", user}});
  return tmpl.render(msgs, true, nlohmann::ordered_json::object());
}

std::string no_think_suffix(const std::string& prompt) {
  return ends_with(prompt, "<think>\n") ? std::string("\n</think>\n\n") : std::string(tasks::kNoThinkPrefix);
}

std::vector<int32_t> stop_ids(const Tokenizer& tok, const ModelConfig& cfg) {
  std::vector<int32_t> ids;
  if (auto e = tok.eos_id()) ids.push_back(*e);
  for (int64_t e : cfg.eos_token_ids)
    if (std::find(ids.begin(), ids.end(), int32_t(e)) == ids.end()) ids.push_back(int32_t(e));
  return ids;
}

EvalResult evaluate_arith(Model& model, const Tokenizer& tok, const ChatTemplate& tmpl, const EvalOpts& o) {
  std::vector<tasks::Problem> probs;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> forced;  // [n] text of the think block the prompt already holds
  for (int64_t i = 0; i < o.n; ++i) {
    probs.push_back(tasks::generate(o.seed, i, o.difficulty));
    std::string p = chat_prompt(tmpl, probs.back().prompt);
    std::string pre = ends_with(p, "<think>\n") ? "<think>\n" : "";
    if (!o.think) {
      const std::string suf = no_think_suffix(p);
      p += suf;
      pre += suf;
    }
    forced.push_back(pre);
    prompts.push_back(tok.encode(p));
  }
  BatchGenOpts g;
  g.max_new_tokens = o.max_new_tokens;
  g.sampling.temperature = 0;
  g.stop_ids = stop_ids(tok, model.config());
  g.max_slots = o.max_slots;
  g.attn = o.attn;
  BatchGenStats st;
  const auto out = generate_groups(model, prompts, g, &st);
  EvalResult r;
  r.n_by_level.assign(tasks::kMaxDifficulty + 1, 0);
  r.correct_by_level.assign(tasks::kMaxDifficulty + 1, 0);
  for (int64_t i = 0; i < o.n; ++i) {
    std::string text = forced[size_t(i)] + tok.decode(out[size_t(i)][0].ids, /*skip_special=*/true);
    const tasks::Graded gr = tasks::grade(text, probs[size_t(i)]);
    const size_t level = size_t(probs[size_t(i)].difficulty);
    r.items.push_back({std::move(probs[size_t(i)]), std::move(text), gr});
    ++r.n;
    r.correct += gr.correct;
    r.formatted += gr.formatted;
    ++r.n_by_level[level];
    r.correct_by_level[level] += gr.correct;
  }
  r.generated = st.generated;
  r.seconds = st.seconds;
  return r;
}

}  // namespace fathom::train
