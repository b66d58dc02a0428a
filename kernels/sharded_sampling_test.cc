#include "kernels/sharded_sampling.h"

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cpu/cpu_communicator.h"
#include "kernels/sampling.h"

namespace pixtral::kernels {
namespace {

// Splits rows [rows, vocab] into `ranks` contiguous id ranges (uneven when vocab is not a
// multiple), samples them on one thread per rank, and checks that every rank agrees.
std::vector<SampledRow> SampleSplit(const std::vector<float>& logits, int64_t rows, int64_t vocab,
                                    const std::vector<RowSampling>& draws, int ranks) {
  auto comms = NewCpuCommunicators(ranks);
  std::vector<std::vector<SampledRow>> results(ranks);
  std::vector<std::thread> threads;
  for (int q = 0; q < ranks; ++q) {
    threads.emplace_back([&, q] {
      const int64_t begin = vocab * q / ranks, end = vocab * (q + 1) / ranks;
      std::vector<float> shard;
      for (int64_t r = 0; r < rows; ++r) {
        shard.insert(shard.end(), logits.begin() + r * vocab + begin,
                     logits.begin() + r * vocab + end);
      }
      results[q] = SampleShardedRows(*comms[q], shard, rows, begin, vocab, draws);
    });
  }
  for (std::thread& t : threads) t.join();
  for (int q = 1; q < ranks; ++q) {
    for (int64_t r = 0; r < rows; ++r) {
      EXPECT_EQ(results[q][r].id, results[0][r].id) << "rank " << q << " row " << r;
    }
  }
  return results[0];
}

// Rows of several kinds: peaked (a trained model's), flat (random weights'), with ties and with
// -inf entries.
std::vector<float> TestLogits(int64_t rows, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> logits(rows * vocab);
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = (r % 4 == 0) ? 8.0f : (r % 4 == 1 ? 0.3f : 2.0f);
    for (int64_t i = 0; i < vocab; ++i) {
      float x = scale * normal(rng);
      if (r % 4 == 2) x = std::round(x);  // many exact ties
      if (r % 4 == 3 && i % 5 == 0) x = -std::numeric_limits<float>::infinity();
      logits[r * vocab + i] = x;
    }
  }
  return logits;
}

void ExpectSameAsReference(float temperature, float top_p) {
  constexpr int64_t kRows = 24, kVocab = 1000;
  const std::vector<float> logits = TestLogits(kRows, kVocab, 7);
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::vector<RowSampling> draws;
  for (int64_t r = 0; r < kRows; ++r) draws.push_back({temperature, top_p, uniform(rng)});
  for (int ranks : {1, 2, 3, 4}) {
    const std::vector<SampledRow> got = SampleSplit(logits, kRows, kVocab, draws, ranks);
    for (int64_t r = 0; r < kRows; ++r) {
      absl::StatusOr<SampledRow> want =
          SampleRow(absl::MakeConstSpan(logits).subspan(r * kVocab, kVocab), draws[r]);
      ASSERT_TRUE(want.ok()) << want.status();
      EXPECT_EQ(got[r].id, want->id) << ranks << " ranks, row " << r;
      EXPECT_NEAR(got[r].logprob, want->logprob, 1e-5) << ranks << " ranks, row " << r;
    }
  }
}

TEST(SampleShardedRowsTest, GreedyIsTheWholeRowsArgmaxWithTiesToTheLowestId) {
  ExpectSameAsReference(0.0f, 1.0f);
  // A tie across two shards: the lower id (rank 0's) wins.
  std::vector<float> tie(8, 0.0f);
  tie[2] = tie[6] = 5.0f;
  EXPECT_EQ(SampleSplit(tie, 1, 8, {{}}, 2)[0].id, 2);
}

TEST(SampleShardedRowsTest, FullDistributionDrawsEqualTheReference) {
  ExpectSameAsReference(0.7f, 1.0f);
  ExpectSameAsReference(1.5f, 1.0f);
}

TEST(SampleShardedRowsTest, NucleusDrawsEqualTheReference) {
  ExpectSameAsReference(0.7f, 0.9f);
  ExpectSameAsReference(1.0f, 0.5f);
  ExpectSameAsReference(2.0f, 0.999f);  // flat enough to need several merge rounds
}

TEST(SampleShardedRowsTest, BadRowsFailAloneOnEveryRank) {
  std::vector<float> logits(2 * 6, 1.0f);
  logits[4] = std::numeric_limits<float>::quiet_NaN();  // row 0, in rank 1's shard
  std::fill(logits.begin() + 6, logits.end(), -std::numeric_limits<float>::infinity());
  const std::vector<RowSampling> draws = {{0.7f, 0.9f, 0.5}, {0.0f, 1.0f, 0.0}};
  const std::vector<SampledRow> got = SampleSplit(logits, 2, 6, draws, 2);
  EXPECT_EQ(got[0].id, -1);
  EXPECT_TRUE(std::isnan(got[0].logprob));
  EXPECT_EQ(got[1].id, -1);
}

}  // namespace
}  // namespace pixtral::kernels
