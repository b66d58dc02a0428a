#include "kernels/weights.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pixtral::kernels {

absl::StatusOr<Tensor> WeightLoader::Get(absl::string_view name) {
  const TensorView* view = weights_.Find(name);
  if (view == nullptr) return absl::NotFoundError(absl::StrCat("no tensor named ", name));
  switch (view->dtype) {
    case DType::kBF16:
    case DType::kF32:
      return backend_.LoadWeight(view->dtype, view->shape, view->bytes.data(), owner_);
    case DType::kF16: {
      absl::StatusOr<std::vector<float>> wide = ToFloat32(*view);
      if (!wide.ok()) return wide.status();
      return ToBackend(backend_, *wide, view->shape);
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat(name, ": weights must be BF16, F16 or F32, not ", DTypeName(view->dtype)));
  }
}

absl::StatusOr<BlockWeights> LoadBlock(WeightLoader& loader, absl::string_view prefix) {
  BlockWeights b;
  const std::pair<const char*, Tensor*> parts[] = {
      {"attention_norm.weight", &b.attention_norm},
      {"attention.wq.weight", &b.wq},
      {"attention.wk.weight", &b.wk},
      {"attention.wv.weight", &b.wv},
      {"attention.wo.weight", &b.wo},
      {"ffn_norm.weight", &b.ffn_norm},
      {"feed_forward.w1.weight", &b.w1},
      {"feed_forward.w2.weight", &b.w2},
      {"feed_forward.w3.weight", &b.w3},
  };
  for (const auto& [suffix, tensor] : parts) {
    absl::StatusOr<Tensor> t = loader.Get(absl::StrCat(prefix, ".", suffix));
    if (!t.ok()) return t.status();
    *tensor = *std::move(t);
  }
  return b;
}

}  // namespace pixtral::kernels
