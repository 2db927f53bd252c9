// Stop strings and the <think> split, fed in every possible piece size.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "server/text_stream.h"

using fathom::server::TextDelta;
using fathom::server::TextStream;
using fathom::server::TextStreamOpts;

namespace {

struct Out {
  std::string reasoning, content;
  bool stopped = false;
};

// Feeds `text` cut at the given points.
Out run_split(const TextStreamOpts& o, const std::string& text, const std::vector<size_t>& cuts) {
  TextStream ts(o);
  Out out;
  size_t at = 0;
  for (size_t i = 0; i <= cuts.size() && !ts.stopped(); ++i) {
    const size_t end = i < cuts.size() ? cuts[i] : text.size();
    TextDelta d = ts.push(std::string_view(text).substr(at, end - at));
    out.reasoning += d.reasoning;
    out.content += d.content;
    at = end;
  }
  if (!ts.stopped()) {
    TextDelta d = ts.flush();
    out.reasoning += d.reasoning;
    out.content += d.content;
  }
  out.stopped = ts.stopped();
  return out;
}

// Feeds `text` in pieces of `piece` bytes.
Out run(const TextStreamOpts& o, const std::string& text, size_t piece) {
  std::vector<size_t> cuts;
  for (size_t c = piece; c < text.size(); c += piece) cuts.push_back(c);
  return run_split(o, text, cuts);
}

}  // namespace

TEST(TextStream, PassesTextThroughWithoutStops) {
  for (size_t p = 1; p <= 8; ++p) {
    Out o = run({}, "hello <world> </think>", p);
    EXPECT_EQ(o.content, "hello <world> </think>");
    EXPECT_EQ(o.reasoning, "");
    EXPECT_FALSE(o.stopped);
  }
}

TEST(TextStream, CutsAtTheFirstStopString) {
  TextStreamOpts opts;
  opts.stops = {"STOP", "xyz"};
  for (size_t p = 1; p <= 12; ++p) {
    Out o = run(opts, "abc STxSTOP more xyz", p);
    EXPECT_EQ(o.content, "abc STx") << "piece " << p;
    EXPECT_TRUE(o.stopped);
  }
}

TEST(TextStream, HoldsBackAPossibleStopPrefix) {
  TextStreamOpts opts;
  opts.stops = {"\n\nUser:"};
  TextStream ts(opts);
  EXPECT_EQ(ts.push("answer\n").content, "answer");
  EXPECT_EQ(ts.push("\nUs").content, "");
  EXPECT_EQ(ts.push("x").content, "\n\nUsx");  // not a stop after all: released
  EXPECT_EQ(ts.push("\n\nUser: hi").content, "");
  EXPECT_TRUE(ts.stopped());
  EXPECT_EQ(ts.push("more").content, "");
}

TEST(TextStream, FlushReleasesAHeldPrefix) {
  TextStreamOpts opts;
  opts.stops = {"END"};
  TextStream ts(opts);
  EXPECT_EQ(ts.push("the EN").content, "the ");
  EXPECT_EQ(ts.flush().content, "EN");
}

TEST(TextStream, SplitsReasoning) {
  TextStreamOpts opts;
  opts.split_reasoning = true;
  for (size_t p = 1; p <= 10; ++p) {
    Out o = run(opts, "<think>\nlet me see</think>\n\nThe answer.", p);
    EXPECT_EQ(o.reasoning, "\nlet me see") << "piece " << p;
    EXPECT_EQ(o.content, "\n\nThe answer.");
  }
}

TEST(TextStream, StartsInsideReasoningWhenThePromptOpenedIt) {
  TextStreamOpts opts;
  opts.split_reasoning = true;
  opts.start_in_reasoning = true;
  for (size_t p = 1; p <= 10; ++p) {
    Out o = run(opts, "hmm, 2+2</think>4", p);
    EXPECT_EQ(o.reasoning, "hmm, 2+2");
    EXPECT_EQ(o.content, "4");
  }
  // Never closed: everything is reasoning.
  Out o = run(opts, "still thinking </thi", 3);
  EXPECT_EQ(o.reasoning, "still thinking </thi");
  EXPECT_EQ(o.content, "");
}

TEST(TextStream, StopInsideReasoning) {
  TextStreamOpts opts;
  opts.split_reasoning = true;
  opts.stops = {"##"};
  Out o = run(opts, "<think>a ## b</think>c", 2);
  EXPECT_EQ(o.reasoning, "a ");
  EXPECT_EQ(o.content, "");
  EXPECT_TRUE(o.stopped);
}

TEST(TextStream, PromptOpensReasoning) {
  using fathom::server::prompt_opens_reasoning;
  EXPECT_TRUE(prompt_opens_reasoning("<｜Assistant｜><think>\n"));
  EXPECT_TRUE(prompt_opens_reasoning("x<think>"));
  EXPECT_FALSE(prompt_opens_reasoning("<｜Assistant｜>"));
  EXPECT_FALSE(prompt_opens_reasoning("<think>a</think>"));
}

TEST(TextStream, StopStringsMatchTheTextWithoutTags) {
  // The result is the same in every piece size, also when a stop string spans a tag.
  TextStreamOpts opts;
  opts.split_reasoning = true;
  opts.start_in_reasoning = true;
  opts.stops = {"xy"};
  for (size_t p = 1; p <= 12; ++p) {
    Out o = run(opts, "ab x</think>y more", p);
    EXPECT_EQ(o.reasoning, "ab ") << "piece " << p;
    EXPECT_EQ(o.content, "");
    EXPECT_TRUE(o.stopped);
  }
  opts.stops = {"x</think>y"};
  for (size_t p = 1; p <= 12; ++p) {
    Out o = run(opts, "ab x</think>y", p);
    EXPECT_EQ(o.reasoning, "ab x") << "piece " << p;
    EXPECT_EQ(o.content, "y");
    EXPECT_FALSE(o.stopped);
  }
}

TEST(TextStream, APartialTagAtTheEndCanCompleteAStop) {
  TextStreamOpts opts;
  opts.split_reasoning = true;
  opts.stops = {"a<th"};
  for (size_t p = 1; p <= 5; ++p) {
    Out o = run(opts, "1a<th", p);
    EXPECT_EQ(o.content, "1") << "piece " << p;
    EXPECT_TRUE(o.stopped);
  }
}

namespace {

// The promise, computed on the whole text at once: the tags removed (each byte labelled
// reasoning or content), then cut before the earliest-starting occurrence of any stop.
Out whole_text(const TextStreamOpts& o, const std::string& raw) {
  std::string text, kinds;
  bool reasoning = o.split_reasoning && o.start_in_reasoning;
  for (size_t i = 0; i < raw.size();) {
    const std::string tag = reasoning ? "</think>" : "<think>";
    const size_t at = o.split_reasoning ? raw.find(tag, i) : std::string::npos;
    const size_t end = at == std::string::npos ? raw.size() : at;
    text.append(raw, i, end - i);
    kinds.append(end - i, reasoning ? 'r' : 'c');
    if (at == std::string::npos) break;
    i = at + tag.size();
    reasoning = !reasoning;
  }
  size_t cut = std::string::npos;
  for (const auto& s : o.stops)
    if (!s.empty()) cut = std::min(cut, text.find(s));
  Out out;
  out.stopped = cut != std::string::npos;
  if (out.stopped) text.resize(cut);
  for (size_t i = 0; i < text.size(); ++i) (kinds[i] == 'r' ? out.reasoning : out.content).push_back(text[i]);
  return out;
}

}  // namespace

TEST(TextStream, OverlappingStopsCutAtTheEarliestStartInEveryChunking) {
  TextStreamOpts opts;
  opts.stops = {"abcd", "bc"};
  for (const auto& cuts : std::vector<std::vector<size_t>>{{}, {1, 3}, {1}, {2}, {3}, {1, 2, 3}}) {
    Out o = run_split(opts, "abcd", cuts);
    EXPECT_EQ(o.content, "");
    EXPECT_TRUE(o.stopped);
  }
  EXPECT_EQ(run_split(opts, "abcx", {1, 3}).content, "a");
  EXPECT_EQ(run_split(opts, "abc", {1}).content, "a");  // at the end "bc" is the stop
  opts.stops = {"Observation:", "ion"};
  for (size_t p = 1; p <= 12; ++p) {
    Out o = run(opts, "Observation: done", p);
    EXPECT_EQ(o.content, "") << "piece " << p;
  }
}

// Found by the openai_request fuzzer: a stop string that holds a reasoning tag, split right
// before the tag, released "pr[" where the whole text gives "pr".
TEST(TextStream, StopHoldingATagCutsTheSameWhenSplitBeforeTheTag) {
  TextStreamOpts opts;
  opts.stops = {"[\"</think>\",", "\""};
  opts.split_reasoning = true;
  const std::string text = "pr[\"</think>\",\"";
  for (const auto& cuts : std::vector<std::vector<size_t>>{{}, {4}, {3}, {1, 4, 12}}) {
    Out o = run_split(opts, text, cuts);
    EXPECT_EQ(o.content, "pr") << cuts.size() << " cuts";
    EXPECT_EQ(o.reasoning, "");
  }
}

// The text emitted, and whether it stopped, is the same however the text is split.
TEST(TextStream, OutputIsIndependentOfChunkingOnRandomSplits) {
  std::mt19937 rng(1234);
  const std::string alphabet = "ab<>/thinkc";
  auto rand_str = [&](size_t max_len) {
    std::string s(rng() % (max_len + 1), ' ');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    return s;
  };
  const std::vector<std::string> pieces = {"<think>", "</think>", "ab", "abc", "bc", "c", "a", "b"};
  for (int iter = 0; iter < 20000; ++iter) {
    TextStreamOpts o;
    o.split_reasoning = rng() % 2;
    o.start_in_reasoning = rng() % 2;
    for (size_t i = rng() % 4; i > 0; --i) {
      std::string s = rng() % 2 ? rand_str(5) : pieces[rng() % pieces.size()] + pieces[rng() % pieces.size()];
      o.stops.push_back(s.substr(0, 1 + rng() % std::max<size_t>(1, s.size())));
    }
    std::string text;
    for (size_t i = rng() % 10; i > 0; --i) text += rng() % 3 ? pieces[rng() % pieces.size()] : rand_str(3);
    std::vector<size_t> cuts;
    for (size_t i = 0; i < text.size(); ++i)
      if (rng() % 3 == 0) cuts.push_back(i);
    const Out want = whole_text(o, text), got = run_split(o, text, cuts);
    std::string stops;
    for (auto& s : o.stops) stops += "'" + s + "' ";
    ASSERT_EQ(got.content, want.content) << "text '" << text << "' stops " << stops;
    ASSERT_EQ(got.reasoning, want.reasoning) << "text '" << text << "' stops " << stops;
    ASSERT_EQ(got.stopped, want.stopped) << "text '" << text << "' stops " << stops;
  }
}
