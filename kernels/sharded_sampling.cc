#include "kernels/sharded_sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "glog/logging.h"

namespace pixtral::kernels {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Round 1, per row and shard: the max, its first id (-1 for an empty or all -inf shard), and
// whether the shard holds a NaN or +inf.
struct ShardMax {
  float max;
  int32_t argmax;
  int32_t bad;
};

// Round 2: sum(exp(x - M)) for the logprob and sum(exp((x - M) / T)) for the draw, M the row's
// global max: the reference's terms, so only the order of the additions differs.
struct ShardSums {
  double untempered;
  double tempered;
};

// A token offered to the merge of the most likely ones (id -1: padding).
struct Candidate {
  float logit;
  int32_t id;
};

// The chosen token of a top_p = 1 row, sent by the rank that holds it (id -1 from the others).
struct Chosen {
  float logit;
  int32_t id;
};

// Every rank's `mine`, in rank order.
template <typename T>
std::vector<T> Gather(Communicator& comm, const std::vector<T>& mine) {
  std::vector<T> all(mine.size() * comm.size());
  comm.AllGather(mine.data(), mine.size() * sizeof(T), all.data());
  return all;
}

// The reference's order of the nucleus: more likely first, ties by lower id.
bool MoreLikely(double pa, int32_t a, double pb, int32_t b) {
  return pa > pb || (pa == pb && a < b);
}

}  // namespace

std::vector<SampledRow> SampleShardedRows(Communicator& comm, absl::Span<const float> shard,
                                          int64_t rows, int64_t vocab_begin, int64_t vocab,
                                          absl::Span<const RowSampling> draws) {
  CHECK_EQ(std::ssize(draws), rows);
  const int64_t width = rows == 0 ? 0 : std::ssize(shard) / rows;
  CHECK_EQ(width * rows, std::ssize(shard)) << "shard of " << shard.size() << " for " << rows;
  const int ranks = comm.size(), me = comm.rank();
  auto row_of = [&](int64_t r) { return shard.subspan(r * width, width); };
  std::vector<SampledRow> out(rows, {-1, std::numeric_limits<float>::quiet_NaN()});

  // Round 1: the global max and argmax (the first among equal maxima: ranks are in id order).
  std::vector<ShardMax> maxes(rows);
  for (int64_t r = 0; r < rows; ++r) {
    ShardMax m{-kInf, -1, 0};
    const absl::Span<const float> x = row_of(r);
    for (int64_t i = 0; i < width; ++i) {
      m.bad |= std::isnan(x[i]) || x[i] == kInf;
      if (x[i] > m.max) m.max = x[i], m.argmax = static_cast<int32_t>(vocab_begin + i);
    }
    maxes[r] = m;
  }
  const std::vector<ShardMax> all_maxes = Gather(comm, maxes);
  std::vector<float> max(rows, -kInf);
  std::vector<int32_t> argmax(rows, -1);
  std::vector<bool> bad(rows, false);
  for (int64_t r = 0; r < rows; ++r) {
    for (int q = 0; q < ranks; ++q) {
      const ShardMax& m = all_maxes[q * rows + r];
      bad[r] = bad[r] || m.bad;
      if (m.argmax >= 0 && (argmax[r] < 0 || m.max > max[r])) max[r] = m.max, argmax[r] = m.argmax;
    }
    if (argmax[r] < 0) bad[r] = true;  // every logit -inf
  }

  // Round 2: the softmax denominators.
  std::vector<ShardSums> sums(rows, {0.0, 0.0});
  for (int64_t r = 0; r < rows; ++r) {
    if (bad[r]) continue;
    const absl::Span<const float> x = row_of(r);
    const double t = draws[r].temperature;
    for (int64_t i = 0; i < width; ++i) {
      sums[r].untempered += std::exp(static_cast<double>(x[i]) - max[r]);
      if (t > 0) sums[r].tempered += std::exp((static_cast<double>(x[i]) - max[r]) / t);
    }
  }
  const std::vector<ShardSums> all_sums = Gather(comm, sums);
  std::vector<double> z(rows, 0.0), z_tempered(rows, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int q = 0; q < ranks; ++q) {
      z[r] += all_sums[q * rows + r].untempered;
      z_tempered[r] += all_sums[q * rows + r].tempered;
    }
  }
  auto finish = [&](int64_t r, int32_t id, float logit) {
    out[r] = {id, static_cast<float>(static_cast<double>(logit) - max[r] - std::log(z[r]))};
  };
  // The tempered probability of a logit in row r, as the reference computes it.
  auto prob = [&](int64_t r, float logit) {
    return std::exp((static_cast<double>(logit) - max[r]) / draws[r].temperature) / z_tempered[r];
  };

  std::vector<int64_t> full, nucleus;  // sampled rows with top_p = 1 and < 1
  for (int64_t r = 0; r < rows; ++r) {
    if (bad[r]) continue;
    if (draws[r].temperature == 0.0f) {
      finish(r, argmax[r], max[r]);
    } else {
      (draws[r].top_p >= 1.0f ? full : nucleus).push_back(r);
    }
  }

  // top_p = 1: the inverse CDF over every token in id order. Each shard's mass says which shard
  // the draw lands in; that shard walks its own tokens and tells the others.
  if (!full.empty()) {
    std::vector<double> mass(full.size(), 0.0);
    for (size_t j = 0; j < full.size(); ++j) {
      for (float x : row_of(full[j])) mass[j] += prob(full[j], x);
    }
    const std::vector<double> all_mass = Gather(comm, mass);
    std::vector<Chosen> chosen(full.size(), {0.0f, -1});
    for (size_t j = 0; j < full.size(); ++j) {
      const int64_t r = full[j];
      const double u = draws[r].uniform;
      int owner = -1, last_nonzero = -1;
      double before = 0.0;  // mass of the shards before `owner`
      for (int q = 0; q < ranks; ++q) {
        const double m = all_mass[q * full.size() + j];
        if (m <= 0.0) continue;
        last_nonzero = q;
        if (u - before < m) {
          owner = q;
          break;
        }
        before += m;
      }
      // If rounding leaves the total just under u, the last token with mass takes it.
      const bool past_the_end = owner < 0;
      if (past_the_end) owner = last_nonzero;
      if (owner != me) continue;
      const absl::Span<const float> x = row_of(r);
      const double target = u - before;
      double cumulative = 0.0;
      for (int64_t i = 0; i < width; ++i) {
        const double p = prob(r, x[i]);
        if (p == 0.0) continue;
        chosen[j] = {x[i], static_cast<int32_t>(vocab_begin + i)};
        cumulative += p;
        if (!past_the_end && target < cumulative) break;
      }
    }
    const std::vector<Chosen> all_chosen = Gather(comm, chosen);
    for (size_t j = 0; j < full.size(); ++j) {
      for (int q = 0; q < ranks; ++q) {
        const Chosen& c = all_chosen[q * full.size() + j];
        if (c.id >= 0) finish(full[j], c.id, c.logit);
      }
    }
  }

  // top_p < 1: merge the shards' most likely tokens in growing rounds until the merged prefix
  // reaches top_p, as the reference grows its partial sort.
  for (int64_t k = std::min<int64_t>(64, vocab); !nucleus.empty(); k = std::min(vocab, 4 * k)) {
    std::vector<Candidate> offered(nucleus.size() * k, {0.0f, -1});
    std::vector<int32_t> order(width);
    std::vector<double> p(width);
    for (size_t j = 0; j < nucleus.size(); ++j) {
      const int64_t r = nucleus[j];
      const absl::Span<const float> x = row_of(r);
      for (int64_t i = 0; i < width; ++i) p[i] = prob(r, x[i]);
      std::iota(order.begin(), order.end(), 0);
      const int64_t n = std::min(k, width);
      std::partial_sort(order.begin(), order.begin() + n, order.end(),
                        [&](int32_t a, int32_t b) { return MoreLikely(p[a], a, p[b], b); });
      for (int64_t i = 0; i < n; ++i) {
        offered[j * k + i] = {x[order[i]], static_cast<int32_t>(vocab_begin + order[i])};
      }
    }
    const std::vector<Candidate> all_offered = Gather(comm, offered);
    std::vector<int64_t> unresolved;
    for (size_t j = 0; j < nucleus.size(); ++j) {
      const int64_t r = nucleus[j];
      struct Token {
        double p;
        float logit;
        int32_t id;
      };
      std::vector<Token> merged;
      for (int q = 0; q < ranks; ++q) {
        for (int64_t i = 0; i < k; ++i) {
          const Candidate& c = all_offered[(q * nucleus.size() + j) * k + i];
          if (c.id >= 0) merged.push_back({prob(r, c.logit), c.logit, c.id});
        }
      }
      // The first k of the merge are the row's first k: each shard offered its own first k.
      const int64_t n = std::min<int64_t>(k, std::ssize(merged));
      std::partial_sort(merged.begin(), merged.begin() + n, merged.end(),
                        [](const Token& a, const Token& b) {
                          return MoreLikely(a.p, a.id, b.p, b.id);
                        });
      double mass = 0.0;
      int64_t kept = 0;
      const float top_p = draws[r].top_p;
      while (kept < n && mass < top_p) mass += merged[kept++].p;
      if (mass < top_p && k < vocab) {
        unresolved.push_back(r);
        continue;
      }
      double kept_mass = 0.0;
      for (int64_t i = 0; i < kept; ++i) kept_mass += merged[i].p;
      merged.resize(kept);
      std::sort(merged.begin(), merged.end(),
                [](const Token& a, const Token& b) { return a.id < b.id; });
      double cumulative = 0.0;
      const Token* pick = nullptr;
      for (const Token& t : merged) {
        const double q = t.p / kept_mass;
        if (q == 0.0) continue;
        pick = &t;
        cumulative += q;
        if (draws[r].uniform < cumulative) break;
      }
      if (pick != nullptr) finish(r, pick->id, pick->logit);
    }
    nucleus = std::move(unresolved);
  }
  return out;
}

}  // namespace pixtral::kernels
