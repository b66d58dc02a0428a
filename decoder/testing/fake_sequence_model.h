// A scripted SequenceModel for tests of the generation loop and the scheduler: no weights, just
// logits that follow a fixed rule, with the bookkeeping a real KV cache has (capacity per
// sequence, a total budget, release) and switches to inject failures; and the requests those
// tests send it.
#ifndef PIXTRAL_DECODER_TESTING_FAKE_SEQUENCE_MODEL_H_
#define PIXTRAL_DECODER_TESTING_FAKE_SEQUENCE_MODEL_H_

#include <map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "decoder/generate.h"

namespace pixtral {

constexpr int kFakeVocab = 16;

// A text prompt of `tokens` asking for `max_tokens` greedy tokens.
inline GenerationRequest TextRequest(std::vector<int32_t> tokens, int max_tokens) {
  GenerationRequest r;
  r.prompt.tokens = std::move(tokens);
  r.max_tokens = max_tokens;
  return r;
}

// Scripted logits: after a sequence of length `len` ending in `last`, token (3 * last + len) %
// kFakeVocab is the clear favourite and the others get small, distinct logits, so sampling at
// temperature 1 still spreads. Checks that the loop never exceeds a sequence's capacity.
class FakeSequenceModel : public SequenceModel {
 public:
  static std::vector<float> Logits(int32_t last, int len) {
    std::vector<float> row(kFakeVocab);
    for (int v = 0; v < kFakeVocab; ++v) row[v] = 0.1f * v;
    row[(3 * last + len) % kFakeVocab] = 3.0f;
    return row;
  }

  int vocab_size() const override { return kFakeVocab; }

  absl::StatusOr<PrefillResult> Prefill(absl::Span<const Prompt* const> prompts,
                                        absl::Span<const int> capacities) override {
    ++prefill_calls;
    PrefillResult result;
    for (size_t i = 0; i < prompts.size(); ++i) {
      for (int32_t t : prompts[i]->tokens) {
        if (t < 0 || t >= kFakeVocab) return absl::InvalidArgumentError("token out of range");
      }
      if (capacities[i] > max_capacity) return absl::ResourceExhaustedError("cache full");
    }
    int reserved = 0;
    for (const auto& [id, s] : live) reserved += s.capacity;
    for (int c : capacities) reserved += c;
    if (reserved > max_total_capacity) return absl::ResourceExhaustedError("cache budget spent");
    for (size_t i = 0; i < prompts.size(); ++i) {
      const int len = static_cast<int>(prompts[i]->tokens.size());
      const SequenceId id = next_id++;
      live[id] = {prompts[i]->tokens.back(), len, capacities[i]};
      result.ids.push_back(id);
      std::vector<float> row = Logits(prompts[i]->tokens.back(), len);
      result.logits.insert(result.logits.end(), row.begin(), row.end());
    }
    return result;
  }

  absl::StatusOr<std::vector<float>> Decode(absl::Span<const SequenceId> ids,
                                            absl::Span<const int32_t> tokens) override {
    decode_batch_sizes.push_back(static_cast<int>(ids.size()));
    if (fail_decode_call == static_cast<int>(decode_batch_sizes.size())) {
      return absl::InternalError("injected failure");
    }
    std::vector<float> logits;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto it = live.find(ids[i]);
      if (it == live.end()) return absl::InternalError("decode of an unknown sequence");
      Sequence& s = it->second;
      if (s.len + 1 > s.capacity) return absl::InternalError("capacity exceeded");
      s.last = tokens[i];
      ++s.len;
      std::vector<float> row = Logits(s.last, s.len);
      logits.insert(logits.end(), row.begin(), row.end());
    }
    return logits;
  }

  void Release(SequenceId id) override { live.erase(id); }

  struct Sequence {
    int32_t last;
    int len;
    int capacity;
  };
  std::map<SequenceId, Sequence> live;
  SequenceId next_id = 100;
  int max_capacity = 1000;           // per sequence
  int max_total_capacity = 1 << 30;  // over all live sequences
  int prefill_calls = 0;
  int fail_decode_call = -1;  // 1-based Decode call that fails
  std::vector<int> decode_batch_sizes;
};

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_TESTING_FAKE_SEQUENCE_MODEL_H_
