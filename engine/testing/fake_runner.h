// A scripted ModelRunner for tests of the scheduler, Generate() and the decoder service: no
// weights, logits that follow a fixed rule, the real block bookkeeping (a PagedKvCache of a
// one-value layout, so ref counts, the prefix cache and eviction are the real ones), and switches
// to inject failures; and the requests those tests send it.
#ifndef PIXTRAL_ENGINE_TESTING_FAKE_RUNNER_H_
#define PIXTRAL_ENGINE_TESTING_FAKE_RUNNER_H_

#include <algorithm>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "decoder/kv_cache.h"
#include "engine/block_hash.h"
#include "engine/image_keys.h"
#include "engine/model_runner.h"
#include "kernels/cpu/cpu_backend.h"

namespace pixtral {

constexpr int kFakeVocab = 16;
constexpr int kFakeImageToken = 10;

// A text prompt of `tokens` asking for `max_tokens` greedy tokens.
inline GenerationRequest TextRequest(std::vector<int32_t> tokens, int max_tokens) {
  GenerationRequest r;
  r.prompt.tokens = std::move(tokens);
  r.max_tokens = max_tokens;
  return r;
}

// Scripted logits: after a sequence of length `len` ending in `last`, token (3 * last + len) %
// kFakeVocab is the clear favourite and the others get small, distinct logits, so sampling at
// temperature 1 still spreads.
class FakeRunner : public ModelRunner {
 public:
  explicit FakeRunner(int block_size = 4, int num_blocks = 4096) {
    cache_ = *PagedKvCache::Create(*backend_, {.num_layers = 1,
                                               .num_kv_heads = 1,
                                               .head_dim = 1,
                                               .block_size = block_size,
                                               .num_blocks = num_blocks});
  }

  static std::vector<float> Logits(int32_t last, int64_t len) {
    std::vector<float> row(kFakeVocab);
    for (int v = 0; v < kFakeVocab; ++v) row[v] = 0.1f * v;
    row[(3 * last + len) % kFakeVocab] = 3.0f;
    return row;
  }

  int vocab_size() const override { return kFakeVocab; }
  int block_size() const override { return cache_->layout().block_size; }
  int num_blocks() const override { return cache_->layout().num_blocks; }
  int num_free_blocks() const override { return cache_->num_free_blocks(); }
  int num_used_blocks() const override { return cache_->num_used_blocks(); }
  const PagedKvCache& cache() const { return *cache_; }

  absl::StatusOr<std::vector<uint64_t>> PromptKeys(const Prompt& prompt) const override {
    std::vector<uint64_t> keys;
    if (!prompt.image_keys.empty()) {
      absl::StatusOr<std::vector<uint64_t>> rows =
          KeyedImageRowKeys(prompt, kFakeImageToken, /*image_end_token=*/-1, /*width=*/0);
      if (!rows.ok()) return rows.status();
      size_t row = 0;
      for (int32_t t : prompt.tokens) {
        if (t < 0 || t >= kFakeVocab) return absl::InvalidArgumentError("token out of range");
        keys.push_back(t == kFakeImageToken ? (*rows)[row++] : TokenKey(t));
      }
      return keys;
    }
    const int64_t images = std::count(prompt.tokens.begin(), prompt.tokens.end(), kFakeImageToken);
    const int64_t width = images > 0 ? std::ssize(prompt.image_features) / images : 0;
    int64_t row = 0;
    for (int32_t t : prompt.tokens) {
      if (t < 0 || t >= kFakeVocab) return absl::InvalidArgumentError("token out of range");
      if (t == kFakeImageToken && width > 0) {
        keys.push_back(ImageRowKey(
            HashBytes(prompt.image_features.data() + row++ * width, width * sizeof(float)), 0));
      } else {
        keys.push_back(TokenKey(t));
      }
    }
    return keys;
  }

  SequenceId AddSequence() override {
    const SequenceId id = next_id++;
    live[id] = {};
    return id;
  }
  int AttachCachedPrefix(SequenceId id, absl::Span<const BlockKey> blocks) override {
    Sequence& s = live.at(id);
    for (const BlockKey& key : blocks) {
      const int32_t block = cache_->Find(key);
      if (block < 0) break;
      cache_->Share(block, s.table);
    }
    s.len = std::ssize(s.table) * block_size();
    return static_cast<int>(s.table.size());
  }
  void PublishBlocks(SequenceId id, absl::Span<const BlockKey> blocks) override {
    const Sequence& s = live.at(id);
    for (int64_t i = 0; i < std::min<int64_t>(s.len / block_size(), std::ssize(blocks)); ++i) {
      cache_->Publish(s.table[i], blocks[i]);
    }
  }
  absl::Status PreparePrompt(SequenceId, const Prompt& prompt, int64_t first) override {
    prepared_from.push_back(first);
    // As PixtralRunner: rows whose features were not sent must be cached.
    const int64_t cached_rows =
        std::count(prompt.tokens.begin(),
                   prompt.tokens.begin() + std::min<int64_t>(first, std::ssize(prompt.tokens)),
                   kFakeImageToken);
    if (cached_rows < RowsBeforeImage(prompt, prompt.first_feature_image)) {
      return absl::FailedPreconditionError("unsent image rows are not cached");
    }
    if (std::find(prompt.tokens.begin(), prompt.tokens.end(), fail_prepare_token) !=
        prompt.tokens.end()) {
      return absl::InvalidArgumentError("injected bad prompt");
    }
    return absl::OkStatus();
  }
  void Release(SequenceId id) override {
    auto it = live.find(id);
    if (it == live.end()) return;
    cache_->Free(it->second.table);
    live.erase(it);
  }

  absl::StatusOr<std::vector<RowOutput>> Step(absl::Span<const Row> rows) override {
    ++step_calls;
    int64_t tokens = 0, blocks = 0;
    for (const Row& row : rows) {
      auto it = live.find(row.sequence);
      if (it == live.end()) return absl::InternalError("a step on an unknown sequence");
      if (row.tokens.empty()) return absl::InternalError("an empty row");
      const auto prompt_end =
          row.tokens.begin() + std::min<int64_t>(row.prompt_tokens, std::ssize(row.tokens));
      if (std::find(row.tokens.begin(), prompt_end, poison_token) != prompt_end) {
        return absl::InternalError("injected failure: poisoned row");
      }
      const int64_t len = it->second.len + std::ssize(row.tokens);
      blocks += (len + block_size() - 1) / block_size() - std::ssize(it->second.table);
      tokens += std::ssize(row.tokens);
    }
    if (fail_step == step_calls) return absl::InternalError("injected failure");
    if (blocks > cache_->num_free_blocks()) return absl::ResourceExhaustedError("cache full");
    step_rows.push_back(static_cast<int>(rows.size()));
    step_tokens.push_back(tokens);
    std::vector<RowOutput> out(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      Sequence& s = live.at(rows[i].sequence);
      s.len += std::ssize(rows[i].tokens);
      if (!cache_->Reserve(s.len, s.table).ok()) return absl::InternalError("counted wrong");
      if (rows[i].sampler == nullptr) continue;
      absl::StatusOr<SampledToken> t =
          rows[i].sampler->Sample(Logits(rows[i].tokens.back(), s.len));
      out[i].sampled = t.ok();
      if (t.ok()) out[i].token = *t;
    }
    return out;
  }

  struct Sequence {
    std::vector<int32_t> table;
    int64_t len = 0;
  };
  std::map<SequenceId, Sequence> live;
  SequenceId next_id = 100;
  int step_calls = 0;
  int fail_step = -1;         // the 1-based Step call that fails as a whole
  int32_t poison_token = -1;  // a batch with a row whose prompt part holds this token fails
  int32_t fail_prepare_token = -1;
  std::vector<int> step_rows;  // rows of each successful step
  std::vector<int64_t> step_tokens;
  std::vector<int64_t> prepared_from;  // PreparePrompt's `first`, call by call

 private:
  std::unique_ptr<kernels::Backend> backend_ = kernels::NewCpuBackend();
  std::unique_ptr<PagedKvCache> cache_;
};

}  // namespace pixtral

#endif  // PIXTRAL_ENGINE_TESTING_FAKE_RUNNER_H_
