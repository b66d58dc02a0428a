#include "kernels/backend.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace pixtral::kernels {
namespace {

template <typename T>
absl::StatusOr<Tensor> Upload(Backend& backend, DType dtype, absl::Span<const T> data,
                              std::vector<int64_t> shape) {
  absl::StatusOr<Tensor> t = backend.Alloc(dtype, std::move(shape));
  if (!t.ok()) return t.status();
  if (t->numel() != static_cast<int64_t>(data.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("ToBackend: ", data.size(), " values for a tensor of ", t->DebugString()));
  }
  backend.CopyFromHost(data.data(), *t);
  return t;
}

}  // namespace

absl::StatusOr<Tensor> ToBackend(Backend& backend, absl::Span<const float> data,
                                 std::vector<int64_t> shape) {
  return Upload(backend, DType::kF32, data, std::move(shape));
}

absl::StatusOr<Tensor> ToBackend(Backend& backend, absl::Span<const int32_t> data,
                                 std::vector<int64_t> shape) {
  return Upload(backend, DType::kI32, data, std::move(shape));
}

std::vector<float> ToHost(Backend& backend, const Tensor& tensor) {
  CHECK(tensor.dtype() == DType::kF32) << tensor.DebugString();
  std::vector<float> out(tensor.numel());
  backend.CopyToHost(tensor, out.data());
  return out;
}

}  // namespace pixtral::kernels
