#include "cli/chat_session.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string_view>

#include "server/text_stream.h"

namespace fathom::cli {

ChatSession::ChatSession(const std::string& dir, const std::string& tok_dir, const LoadOpts& load, ChatOpts opts)
    : model_(load_model(dir, load)), tok_(Tokenizer::load(tok_dir)), tmpl_(ChatTemplate::load(tok_dir)),
      opts_(std::move(opts)), session_(*model_, opts_.ctx) {
  if (auto e = tok_.eos_id()) opts_.gen.stop_ids.push_back(*e);
  for (int64_t e : model_->config().eos_token_ids) opts_.gen.stop_ids.push_back(int32_t(e));
  if (!opts_.system.empty()) messages_.push_back({{"role", "system"}, {"content", opts_.system}});
}

TurnStats ChatSession::turn(const std::string& user_text) {
  messages_.push_back({{"role", "user"}, {"content", user_text}});
  const std::string prompt = tmpl_.render(messages_, true, nlohmann::ordered_json::object());
  const std::vector<int32_t> ids = tok_.encode(prompt);
  TurnStats st;
  st.prompt_tokens = int64_t(ids.size());

  server::TextStream stream({.stops = {}, .split_reasoning = true,
                             .start_in_reasoning = server::prompt_opens_reasoning(prompt)});
  IncrementalDecoder dec(tok_, /*skip_special=*/true);
  std::string content;
  bool in_reasoning_shown = false;
  auto show = [&](const server::TextDelta& d) {
    if (!d.reasoning.empty() && opts_.show_reasoning) {
      if (!in_reasoning_shown) std::fputs(opts_.color ? "\033[2m[thinking]\n" : "[thinking]\n", stdout);
      in_reasoning_shown = true;
      std::fputs(d.reasoning.c_str(), stdout);
    }
    std::string_view text = d.content;
    // The blank lines R1 puts between </think> and the answer are layout, not content.
    if (content.empty()) text.remove_prefix(std::min(text.size(), text.find_first_not_of(" \n")));
    if (!text.empty()) {
      if (in_reasoning_shown) {
        std::fputs(opts_.color ? "\033[0m\n[answer]\n" : "\n[answer]\n", stdout);
        in_reasoning_shown = false;
      }
      std::fwrite(text.data(), 1, text.size(), stdout);
      content += text;
    }
    std::fflush(stdout);
  };
  const auto t0 = std::chrono::steady_clock::now();
  auto out = session_.generate(ids, opts_.gen, [&](int32_t id) {
    if (opts_.interrupt && opts_.interrupt->load()) {
      st.interrupted = true;
      return false;
    }
    show(stream.push(dec.push(id)));
    return true;
  });
  show(stream.push(dec.flush()));
  show(stream.flush());
  if (in_reasoning_shown && opts_.color) std::fputs("\033[0m", stdout);
  std::fputs("\n", stdout);
  std::fflush(stdout);  // before the caller's stats line on stderr
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.generated = int64_t(out.size());
  st.reused_tokens = session_.reused_tokens();
  st.spec = session_.spec_stats();
  // The reply joins the history; templates drop any reasoning from earlier turns themselves.
  messages_.push_back({{"role", "assistant"}, {"content", content}});
  return st;
}

}  // namespace fathom::cli
