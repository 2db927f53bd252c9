// Stop strings and the <think> split, fed in every possible piece size.
#include <gtest/gtest.h>

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

// Feeds `text` in pieces of `piece` bytes and checks nothing emitted is part of a stop string.
Out run(const TextStreamOpts& o, const std::string& text, size_t piece) {
  TextStream ts(o);
  Out out;
  for (size_t i = 0; i < text.size() && !ts.stopped(); i += piece) {
    TextDelta d = ts.push(text.substr(i, piece));
    out.reasoning += d.reasoning;
    out.content += d.content;
  }
  if (!ts.stopped()) {
    TextDelta d = ts.flush();
    out.reasoning += d.reasoning;
    out.content += d.content;
  }
  out.stopped = ts.stopped();
  return out;
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
