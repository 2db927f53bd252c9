// fathom run: one chat turn with streamed output. fathom chat: an interactive conversation.
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>

#include "cli/chat_session.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/options.h"
#include "core/error.h"

namespace fathom::cli {

namespace {

struct Args {
  ModelArgs m;
  std::string prompt, system, tokenizer;
  int64_t max_tokens = 2048, ctx = 8192;
  float temperature = 0.6f, top_p = 0.95f;  // DeepSeek's recommended settings for R1
  int32_t top_k = 0;
  uint64_t seed = 0;
  bool hide_reasoning = false;
  SpeculativeArgs spec;
};

void add_common(CLI::App* sub, Args& a) {
  a.m.add(sub);
  add_tokenizer_option(sub, a.tokenizer);
  sub->add_option("--system", a.system, "system prompt");
  sub->add_option("-n,--max-tokens", a.max_tokens, "most tokens per reply")->check(at_least(1));
  sub->add_option("--ctx", a.ctx, "context length, tokens (the whole conversation)")->check(at_least(1));
  sub->add_option("--temperature", a.temperature, "sampling temperature; 0 = greedy")->check(at_least(0));
  sub->add_option("--top-p", a.top_p, "nucleus sampling: keep the likeliest tokens up to this probability mass")
      ->check(in_range(0, 1));
  sub->add_option("--top-k", a.top_k, "keep only the k likeliest tokens; 0 = all")->check(at_least(0));
  sub->add_option("--seed", a.seed, "sampling seed");
  sub->add_flag("--hide-reasoning", a.hide_reasoning, "do not print R1's <think> reasoning");
  a.spec.add(sub);
}

ChatOpts chat_opts(const Args& a, const std::atomic<bool>* interrupt) {
  ChatOpts o;
  o.gen.max_new_tokens = a.max_tokens;
  o.gen.sampling.temperature = a.temperature;
  o.gen.sampling.top_p = a.top_p;
  o.gen.sampling.top_k = a.top_k;
  o.gen.sampling.seed = a.seed;
  o.gen.attn = parse_attn(a.m.attn);
  o.gen.draft = a.spec.draft_tokens();
  o.ctx = a.ctx;
  o.system = a.system;
  o.color = isatty(1);
  o.show_reasoning = !a.hide_reasoning;
  o.interrupt = interrupt;
  return o;
}

void print_stats(const TurnStats& st) {
  std::string spec;
  if (st.spec.steps > 0)
    spec = fmt::format("; drafts {:.0f}% accepted, {:.2f} tokens per step", 100.0 * st.spec.acceptance(),
                       st.spec.tokens_per_step());
  std::fprintf(stderr, "[%lld tokens in %.2f s, %.1f tok/s%s; prompt %lld tokens, %lld from cache%s]\n",
               (long long)st.generated, st.seconds, st.seconds > 0 ? double(st.generated) / st.seconds : 0.0,
               spec.c_str(), (long long)st.prompt_tokens, (long long)st.reused_tokens,
               st.interrupted ? "; interrupted" : "");
}

// Ctrl-C stops the reply being generated, not the program. A signal handler can only reach
// a flag with static storage; it is the one such flag in fathom and it lives here.
std::atomic<bool> g_interrupt{false};
extern "C" void on_sigint(int) { g_interrupt.store(true); }

}  // namespace

void add_run(CLI::App& app) {
  auto a = std::make_shared<Args>();
  auto* run = app.add_subcommand("run", "one chat turn with streamed output");
  add_common(run, *a);
  run->add_option("-p,--prompt", a->prompt, "the user's message")->required();
  run->callback([a] {
    ChatSession chat(a->m.model, tokenizer_dir(a->m.model, a->tokenizer), a->m.load_opts(),
                     chat_opts(*a, nullptr));
    print_stats(chat.turn(a->prompt));
  });

  auto b = std::make_shared<Args>();
  auto* chat = app.add_subcommand("chat", "interactive multi-turn chat (Ctrl-C stops a reply, Ctrl-D quits)");
  add_common(chat, *b);
  chat->callback([b] {
    ChatSession session(b->m.model, tokenizer_dir(b->m.model, b->tokenizer), b->m.load_opts(),
                        chat_opts(*b, &g_interrupt));
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, nullptr);  // no SA_RESTART: Ctrl-C at the prompt interrupts the read
    const bool tty = isatty(0);
    for (;;) {
      if (tty) std::fputs("\n> ", stdout);
      std::fflush(stdout);
      g_interrupt.store(false);
      std::string line;
      if (!std::getline(std::cin, line)) {
        if (g_interrupt.load() && tty) {  // Ctrl-C at the prompt: keep the session
          std::cin.clear();
          std::fputs("\n(Ctrl-D or /exit quits)", stdout);
          continue;
        }
        break;
      }
      if (line == "/exit" || line == "/quit") break;
      if (line.empty()) continue;
      print_stats(session.turn(line));
    }
  });
}

}  // namespace fathom::cli
