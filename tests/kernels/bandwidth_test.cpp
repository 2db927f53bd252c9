// The read-bandwidth probe: what it reports must add up, whatever the buffer size.
#include <gtest/gtest.h>

#include <cmath>

#include "backend/cpu/bandwidth.h"

namespace fathom::cpu {
namespace {

TEST(ReadProbe, SlicesAddUpAndWrap) {
  ThreadPool pool(2);
  ReadProbe probe(pool, size_t(3) << 20);  // regions of 1.5 MiB: every slice is a whole region
  EXPECT_EQ(probe.bytes(), size_t(3) << 20);
  EXPECT_GE(probe.resident_bytes(), probe.bytes());
  const ReadProbe::Sample one = probe.read_for(0);
  EXPECT_EQ(one.bytes, double(probe.bytes()));  // one slice at least, and a region is smaller
  EXPECT_GT(one.seconds, 0.0);
  // Many slices round the regions; each call at least as long as asked.
  const ReadProbe::Sample s = probe.read_for(0.02);
  EXPECT_GE(s.seconds, 0.02);
  EXPECT_GE(s.bytes, 2.0 * double(probe.bytes()));
  EXPECT_EQ(std::fmod(s.bytes, double(probe.bytes())), 0.0);
  EXPECT_GE(s.best_gbs * (1 + 1e-9), s.bytes / s.seconds / 1e9);  // the fastest slice bounds the mean
}

TEST(ReadProbe, BigBufferReadsInSlicesThatWrap) {
  ThreadPool pool(2);
  ReadProbe probe(pool, size_t(40) << 20);  // 20 MiB regions, 8 MiB of each per slice
  const ReadProbe::Sample one = probe.read_for(0);
  EXPECT_EQ(one.bytes, double(size_t(16) << 20));
  // 2.5 slices fit in a region, so the third slice and later ones wrap mid-slice.
  double bytes = 0;
  for (int i = 0; i < 6; ++i) bytes += probe.read_for(0).bytes;
  EXPECT_EQ(bytes, 6.0 * double(size_t(16) << 20));
}

TEST(ReadProbe, OddSizesRoundToPages) {
  ThreadPool pool(3);
  ReadProbe probe(pool, 10000);  // below a page per thread: one page each
  EXPECT_EQ(probe.bytes(), size_t(3) * 4096);
  EXPECT_GT(probe.pass(), 0.0);
  EXPECT_EQ(probe.read_for(0).bytes, double(probe.bytes()));
}

TEST(ReadBandwidth, SustainedIsAtMostTheBestPass) {
  ThreadPool pool(2);
  const ReadBandwidth r = measure_read_bandwidth(pool, size_t(8) << 20, 0.01);
  EXPECT_GE(r.passes, 3);
  EXPECT_GT(r.sustained_gbs, 0.0);
  EXPECT_LE(r.sustained_gbs, r.best_pass_gbs * (1 + 1e-9));
}

}  // namespace
}  // namespace fathom::cpu
