#pragma once
// A GRPO reward computed by an outside program (`fathom grpo --reward-cmd CMD`), so a verifiable
// task needs no C++: the program reads one JSON object per completion on stdin and prints one
// number per completion on stdout. Anything else it does (exits non-zero, prints garbage, hangs)
// is an Error that names the command, never a silently wrong reward.
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace fathom::train {

struct RewardCmdOpts {
  std::string command;    // run with /bin/sh -c, once per batch, in its own process group
  double timeout_s = 60;  // wall clock for the whole batch; then the group is killed (SIGKILL) and it is an error
};

// One completion to score. The JSON line written for it is
// {"prompt": ..., "completion": ..., "answer": ... (omitted when empty), "index": i} plus every key
// of `extra` (an object; the four keys above win over extra keys of the same name). Text that is
// not valid UTF-8 is written with U+FFFD in place of the bad bytes.
struct RewardItem {
  std::string prompt, completion, answer;
  nlohmann::json extra = nlohmann::json::object();
};

// Runs the command once: writes one JSON object per line to its stdin (then closes it) and reads
// its stdout, which must hold exactly one finite number per item, one per line, in order (blank
// lines ignored; a line may also be a JSON object {"reward": x}). Returns those numbers
// ([items.size()]). No items: returns {} without running anything. Throws fathom::Error naming the
// command when it cannot start, exits non-zero or by a signal (with the tail of its stderr), runs
// past the timeout, or prints a line that is not a finite number, or too few or too many lines.
// A program that stops reading its input early is fine as long as it prints every number.
std::vector<double> run_reward_cmd(const RewardCmdOpts& o, const std::vector<RewardItem>& items);

// The reading of the program's stdout that run_reward_cmd does: at most `n` finite rewards, one
// per non-blank line (a number, or {"reward": number}), surrounding whitespace ignored. Returns
// the rewards read (fewer than n when the output ends early: the caller reports that). Throws
// fathom::Error naming `command` and the line for a line that is not a finite reward, or for
// more than n rewards.
std::vector<double> parse_reward_output(std::string_view out, size_t n, const std::string& command);

}  // namespace fathom::train
