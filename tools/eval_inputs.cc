#include "tools/eval_inputs.h"

#include <limits>
#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safetensors.h"

namespace pixtral {

absl::StatusOr<Prompt> LoadEvalInputs(const std::string& path) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  if (!file.ok()) return file.status();
  auto bad = [&path](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
  };

  Prompt prompt;
  const TensorView* ids = (*file)->Find("input_ids");
  if (ids == nullptr) return bad("no input_ids tensor");
  if (ids->dtype != DType::kI64 || ids->shape.size() != 1 || ids->shape[0] == 0) {
    return bad(absl::StrCat("input_ids must be a non-empty int64 [S], got ", DTypeName(ids->dtype),
                            " [", absl::StrJoin(ids->shape, ","), "]"));
  }
  absl::StatusOr<std::vector<int64_t>> wide = ToInt64(*ids);
  if (!wide.ok()) return wide.status();
  for (int64_t id : *wide) {
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
      return bad(absl::StrCat("input_ids holds ", id, ", not a token id"));
    }
    prompt.tokens.push_back(static_cast<int32_t>(id));
  }

  // Every other tensor must be pixel_values_<k>, numbered 0, 1, ... without gaps.
  size_t images = 0;
  for (const TensorView& t : (*file)->tensors()) {
    if (t.name == "input_ids") continue;
    int index;
    if (!absl::StartsWith(t.name, "pixel_values_") ||
        !absl::SimpleAtoi(absl::string_view(t.name).substr(13), &index) || index < 0) {
      return bad(absl::StrCat("unexpected tensor \"", t.name, "\""));
    }
    ++images;
  }
  for (size_t k = 0; k < images; ++k) {
    const std::string name = absl::StrCat("pixel_values_", k);
    const TensorView* t = (*file)->Find(name);
    if (t == nullptr) return bad(absl::StrCat("images are not numbered 0..", images - 1));
    if (t->dtype != DType::kF32 || t->shape.size() != 3 || t->shape[0] != 3 || t->shape[1] <= 0 ||
        t->shape[2] <= 0) {
      return bad(absl::StrCat(name, " must be float32 [3, H, W], got ", DTypeName(t->dtype), " [",
                              absl::StrJoin(t->shape, ","), "]"));
    }
    absl::StatusOr<std::vector<float>> pixels = ToFloat32(*t);
    if (!pixels.ok()) return pixels.status();
    prompt.images.push_back({t->shape[1], t->shape[2], *std::move(pixels)});
  }
  return prompt;
}

}  // namespace pixtral
