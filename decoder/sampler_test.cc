#include "decoder/sampler.h"

#include <cmath>
#include <limits>
#include <vector>

#include "common/splitmix64.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

// Independent reference: softmax(logits / t) in long double.
std::vector<double> ReferenceSoftmax(const std::vector<float>& logits, double t) {
  long double max = -INFINITY;
  for (float x : logits) max = std::max<long double>(max, x);
  std::vector<long double> e(logits.size());
  long double sum = 0;
  for (size_t i = 0; i < logits.size(); ++i) sum += e[i] = std::exp((logits[i] - max) / t);
  std::vector<double> p(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) p[i] = static_cast<double>(e[i] / sum);
  return p;
}

Sampler MakeSampler(SamplingParams params) {
  absl::StatusOr<Sampler> sampler = Sampler::Create(params);
  EXPECT_TRUE(sampler.ok()) << sampler.status();
  return *std::move(sampler);
}

TEST(SamplerTest, GreedyPicksArgmax) {
  Sampler sampler = MakeSampler({.temperature = 0.0f});
  absl::StatusOr<SampledToken> t = sampler.Sample(std::vector<float>{0.5f, -1.0f, 3.25f, 2.0f});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->id, 2);
}

TEST(SamplerTest, GreedyTieGoesToLowestId) {
  Sampler sampler = MakeSampler({.temperature = 0.0f});
  absl::StatusOr<SampledToken> t = sampler.Sample(std::vector<float>{1.0f, 7.0f, 3.0f, 7.0f});
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->id, 1);
}

TEST(SamplerTest, LogprobIsLogSoftmaxOfRawLogits) {
  const std::vector<float> logits = {0.5f, -1.0f, 3.25f, 2.0f};
  const std::vector<double> p = ReferenceSoftmax(logits, 1.0);
  // Temperature does not change the reported logprob (mistral-inference reports raw logprobs).
  for (float temperature : {0.0f, 0.3f}) {
    Sampler sampler = MakeSampler({.temperature = temperature, .seed = 3});
    absl::StatusOr<SampledToken> t = sampler.Sample(logits);
    ASSERT_TRUE(t.ok()) << t.status();
    EXPECT_NEAR(t->logprob, std::log(p[t->id]), 1e-6);
  }
}

TEST(SamplerTest, NucleusKeepsSmallestSetReachingTopP) {
  // softmax of log(probs) is probs itself.
  const std::vector<double> probs = {0.05, 0.4, 0.1, 0.3, 0.15};
  std::vector<float> logits;
  for (double p : probs) logits.push_back(static_cast<float>(std::log(p)));

  // 0.4 + 0.3 = 0.7 < 0.75, so the nucleus needs the 0.15 as well.
  absl::StatusOr<std::vector<double>> d = NucleusDistribution(logits, 1.0f, 0.75f);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ((*d)[0], 0.0);
  EXPECT_EQ((*d)[2], 0.0);
  EXPECT_NEAR((*d)[1], 0.4 / 0.85, 1e-6);
  EXPECT_NEAR((*d)[3], 0.3 / 0.85, 1e-6);
  EXPECT_NEAR((*d)[4], 0.15 / 0.85, 1e-6);

  // A top_p the most likely token already reaches keeps that token alone.
  d = NucleusDistribution(logits, 1.0f, 0.35f);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(*d, (std::vector<double>{0, 1, 0, 0, 0}));
}

TEST(SamplerTest, NucleusOverLargeVocabularyMatchesBruteForce) {
  // Larger than the first partial-sort window, so the window has to grow.
  std::vector<float> logits(5000);
  SplitMix64 rng(11);
  for (float& x : logits) x = static_cast<float>(rng.Uniform() * 4.0);
  const float top_p = 0.6f;
  const std::vector<double> p = ReferenceSoftmax(logits, 0.8);

  absl::StatusOr<std::vector<double>> d = NucleusDistribution(logits, 0.8f, top_p);
  ASSERT_TRUE(d.ok()) << d.status();
  // Brute force: token i is in the nucleus iff the mass strictly more likely than it is < top_p.
  for (size_t i = 0; i < logits.size(); ++i) {
    double above = 0;
    for (size_t j = 0; j < logits.size(); ++j) {
      if (p[j] > p[i]) above += p[j];
    }
    EXPECT_EQ((*d)[i] > 0, above < top_p) << "token " << i;
  }
}

TEST(SamplerTest, EmpiricalFrequenciesMatchSoftmax) {
  const std::vector<float> logits = {1.0f, 0.0f, 2.0f, -1.0f, 1.5f, 0.5f};
  const double temperature = 0.7;
  const std::vector<double> p = ReferenceSoftmax(logits, temperature);
  Sampler sampler = MakeSampler({.temperature = 0.7f, .top_p = 1.0f, .seed = 1234});
  const int draws = 200000;
  std::vector<int> counts(logits.size());
  for (int i = 0; i < draws; ++i) {
    absl::StatusOr<SampledToken> t = sampler.Sample(logits);
    ASSERT_TRUE(t.ok()) << t.status();
    ++counts[t->id];
  }
  // Each count is binomial; 5 standard deviations fails a correct sampler ~1e-6 of the time.
  for (size_t i = 0; i < p.size(); ++i) {
    const double sd = std::sqrt(draws * p[i] * (1 - p[i]));
    EXPECT_NEAR(counts[i], draws * p[i], 5 * sd) << "token " << i;
  }
}

TEST(SamplerTest, EmpiricalFrequenciesRespectNucleus) {
  const std::vector<float> logits = {2.0f, 1.0f, 0.0f, -1.0f};
  std::vector<double> p = ReferenceSoftmax(logits, 1.0);
  // p ~ {0.64, 0.24, 0.09, 0.03}: top_p 0.8 keeps ids 0 and 1.
  ASSERT_LT(p[0], 0.8);
  ASSERT_GE(p[0] + p[1], 0.8);
  const double kept = p[0] + p[1];
  Sampler sampler = MakeSampler({.temperature = 1.0f, .top_p = 0.8f, .seed = 99});
  const int draws = 100000;
  std::vector<int> counts(logits.size());
  for (int i = 0; i < draws; ++i) ++counts[sampler.Sample(logits)->id];
  EXPECT_EQ(counts[2] + counts[3], 0);
  const double q = p[0] / kept;
  EXPECT_NEAR(counts[0], draws * q, 5 * std::sqrt(draws * q * (1 - q)));
}

TEST(SamplerTest, SameSeedSameTokens) {
  std::vector<float> logits(300);
  SplitMix64 rng(5);
  for (float& x : logits) x = static_cast<float>(rng.Uniform() * 3.0);
  auto run = [&](uint64_t seed) {
    Sampler sampler = MakeSampler({.temperature = 1.0f, .top_p = 0.9f, .seed = seed});
    std::vector<int32_t> ids;
    for (int i = 0; i < 50; ++i) ids.push_back(sampler.Sample(logits)->id);
    return ids;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(SamplerTest, RejectsInvalidParams) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (SamplingParams bad :
       {SamplingParams{.temperature = -0.1f}, SamplingParams{.temperature = nan},
        SamplingParams{.temperature = INFINITY}, SamplingParams{.top_p = 0.0f},
        SamplingParams{.top_p = 1.01f}, SamplingParams{.top_p = nan}}) {
    absl::StatusOr<Sampler> sampler = Sampler::Create(bad);
    EXPECT_EQ(sampler.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(SamplerTest, RejectsBadLogits) {
  Sampler greedy = MakeSampler({});
  Sampler random = MakeSampler({.temperature = 1.0f});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (Sampler* s : {&greedy, &random}) {
    absl::StatusOr<SampledToken> t = s->Sample(std::vector<float>{1.0f, nan, 0.0f});
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(t.status().message(), HasSubstr("NaN"));
    EXPECT_FALSE(s->Sample(std::vector<float>{}).ok());
    EXPECT_FALSE(s->Sample(std::vector<float>{-INFINITY, -INFINITY}).ok());
    EXPECT_FALSE(s->Sample(std::vector<float>{INFINITY, 0.0f}).ok());
  }
}

TEST(SamplerTest, NegativeInfinityTokenIsNeverSampled) {
  Sampler sampler = MakeSampler({.temperature = 2.0f, .seed = 1});
  for (int i = 0; i < 1000; ++i) {
    EXPECT_NE(sampler.Sample(std::vector<float>{0.0f, -INFINITY, 0.0f})->id, 1);
  }
}

}  // namespace
}  // namespace pixtral
