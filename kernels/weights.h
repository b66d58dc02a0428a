// Loading checkpoint tensors into a backend, and the weights of one pre-norm transformer block.
//
// The checkpoint stays memory-mapped: the CPU backend computes on its bytes in place, a device
// backend copies them once. `owner` keeps the mapping alive as long as any loaded tensor.
//
//   auto folder = std::make_shared<ModelFolder>(*std::move(OpenModelFolder(dir)));
//   WeightLoader loader(backend, folder->weights, folder);
//   absl::StatusOr<Tensor> norm = loader.Get("norm.weight");
//   absl::StatusOr<BlockWeights> block = LoadBlock(loader, "layers.0");
#ifndef PIXTRAL_KERNELS_WEIGHTS_H_
#define PIXTRAL_KERNELS_WEIGHTS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/safetensors.h"
#include "kernels/backend.h"
#include "kernels/tensor.h"

namespace pixtral::kernels {

class WeightLoader {
 public:
  WeightLoader(Backend& backend, const SafetensorsCheckpoint& weights,
               std::shared_ptr<const void> owner)
      : backend_(backend), weights_(weights), owner_(std::move(owner)) {}

  // The tensor as BF16 or F32 (F16 is widened to F32). NotFound if absent.
  absl::StatusOr<Tensor> Get(absl::string_view name);
  // Matrices of one dtype and column count stacked by rows, in order, into one: a product with
  // it computes theirs side by side in one pass over the weights (e.g. wq, wk, wv).
  absl::StatusOr<Tensor> GetStacked(absl::Span<const std::string> names);

 private:
  Backend& backend_;
  const SafetensorsCheckpoint& weights_;
  std::shared_ptr<const void> owner_;
};

// A Mistral pre-norm block, as both the decoder and the vision encoder name it under `prefix`:
// attention_norm, attention.{wq,wk,wv,wo}, ffn_norm, feed_forward.{w1,w2,w3}. Loaded `fused`,
// wqkv holds wq, wk, wv stacked and w13 holds w1, w3 stacked, and those five stay undefined.
struct BlockWeights {
  Tensor attention_norm, wq, wk, wv, wo;
  Tensor ffn_norm, w1, w2, w3;
  Tensor wqkv, w13;
};

absl::StatusOr<BlockWeights> LoadBlock(WeightLoader& loader, absl::string_view prefix,
                                       bool fused = false);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_WEIGHTS_H_
