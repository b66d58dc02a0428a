#include "services/gateway/feature_rows.h"

#include <cstring>
#include <utility>

#include "absl/types/span.h"
#include "common/dtype.h"
#include "services/common/tensor_proto.h"

namespace pixtral {

absl::StatusOr<int64_t> FeatureRows::Append(const v1::Tensor& tensor, int64_t width,
                                            int64_t max_rows) {
  absl::StatusOr<int64_t> rows = CheckMatrix(tensor, width, max_rows);
  if (!rows.ok()) return rows.status();
  const bool came_bf16 = tensor.dtype() == v1::Tensor::DTYPE_BF16;
  if (empty()) {  // the first rows say how the rest are held
    bf16_ = came_bf16;
    if (bf16_) {
      bits_.reserve(2 * reserve_);
    } else {
      f32_.reserve(reserve_);
    }
  }
  if (bf16_ && came_bf16) {
    bits_.append(tensor.data());
    return *rows;
  }
  if (bf16_) WidenToF32();
  if (absl::StatusOr<int64_t> added = AppendMatrix(tensor, width, max_rows, &f32_); !added.ok()) {
    return added.status();
  }
  return *rows;
}

void FeatureRows::Append(FeatureRows other) {
  if (other.empty()) return;
  if (empty()) {
    *this = std::move(other);
    return;
  }
  if (bf16_ && other.bf16_) {
    bits_.append(other.bits_);
    return;
  }
  if (bf16_) WidenToF32();
  if (other.bf16_) other.WidenToF32();
  f32_.insert(f32_.end(), other.f32_.begin(), other.f32_.end());
}

v1::Tensor FeatureRows::ToTensor(int64_t first_row, int64_t rows, int64_t width) const {
  if (!bf16_) {
    return MatrixToTensorExact(
        absl::Span<const float>(f32_).subspan(first_row * width, rows * width), rows, width);
  }
  v1::Tensor tensor;
  tensor.set_dtype(v1::Tensor::DTYPE_BF16);
  tensor.add_shape(rows);
  tensor.add_shape(width);
  tensor.set_data(bits_.data() + 2 * first_row * width, 2 * rows * width);
  return tensor;
}

std::vector<float> FeatureRows::ToF32() && {
  if (bf16_) WidenToF32();
  return std::move(f32_);
}

void FeatureRows::WidenToF32() {
  const int64_t count = std::ssize(bits_) / 2;
  f32_.resize(count);
  for (int64_t i = 0; i < count; ++i) {
    uint16_t bits;
    std::memcpy(&bits, bits_.data() + 2 * i, 2);
    f32_[i] = Bf16ToFloat(bits);
  }
  bits_ = std::string();
  bf16_ = false;
}

}  // namespace pixtral
