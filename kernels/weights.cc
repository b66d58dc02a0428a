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

absl::StatusOr<Tensor> WeightLoader::GetStacked(absl::Span<const std::string> names) {
  std::vector<const TensorView*> views;
  int64_t rows = 0;
  for (const std::string& name : names) {
    const TensorView* view = weights_.Find(name);
    if (view == nullptr) return absl::NotFoundError(absl::StrCat("no tensor named ", name));
    const TensorView& first = views.empty() ? *view : *views.front();
    if (view->shape.size() != 2 || view->dtype != first.dtype || view->shape[1] != first.shape[1]) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cannot stack ", name, " (", DTypeName(view->dtype), ") under ", names.front()));
    }
    rows += view->shape[0];
    views.push_back(view);
  }
  if (views.empty()) return absl::InvalidArgumentError("nothing to stack");
  const DType source = views[0]->dtype;
  if (source != DType::kBF16 && source != DType::kF32 && source != DType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(names[0], ": weights must be BF16, F16 or F32, not ", DTypeName(source)));
  }
  absl::StatusOr<Tensor> stacked =
      backend_.Alloc(source == DType::kF16 ? DType::kF32 : source, {rows, views[0]->shape[1]});
  if (!stacked.ok()) return stacked.status();
  int64_t row = 0;
  for (const TensorView* view : views) {
    const Tensor part = stacked->Rows(row, view->shape[0]);
    if (source == DType::kF16) {
      absl::StatusOr<std::vector<float>> wide = ToFloat32(*view);
      if (!wide.ok()) return wide.status();
      backend_.CopyFromHost(wide->data(), part);
    } else {
      backend_.CopyFromHost(view->bytes.data(), part);
    }
    row += view->shape[0];
  }
  return stacked;
}

absl::StatusOr<BlockWeights> LoadBlock(WeightLoader& loader, absl::string_view prefix, bool fused) {
  BlockWeights b;
  auto name = [&](absl::string_view suffix) { return absl::StrCat(prefix, ".", suffix); };
  std::vector<std::pair<const char*, Tensor*>> parts = {
      {"attention_norm.weight", &b.attention_norm},
      {"attention.wo.weight", &b.wo},
      {"ffn_norm.weight", &b.ffn_norm},
      {"feed_forward.w2.weight", &b.w2},
  };
  if (fused) {
    absl::StatusOr<Tensor> t = loader.GetStacked(
        {name("attention.wq.weight"), name("attention.wk.weight"), name("attention.wv.weight")});
    if (!t.ok()) return t.status();
    b.wqkv = *std::move(t);
    t = loader.GetStacked({name("feed_forward.w1.weight"), name("feed_forward.w3.weight")});
    if (!t.ok()) return t.status();
    b.w13 = *std::move(t);
  } else {
    parts.insert(parts.end(), {{"attention.wq.weight", &b.wq},
                               {"attention.wk.weight", &b.wk},
                               {"attention.wv.weight", &b.wv},
                               {"feed_forward.w1.weight", &b.w1},
                               {"feed_forward.w3.weight", &b.w3}});
  }
  for (const auto& [suffix, tensor] : parts) {
    absl::StatusOr<Tensor> t = loader.Get(name(suffix));
    if (!t.ok()) return t.status();
    *tensor = *std::move(t);
  }
  return b;
}

}  // namespace pixtral::kernels
