#include "services/common/tensor_proto.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"

namespace pixtral {
namespace {

// FloatToBf16's arithmetic without its branch (a NaN stays a quiet NaN, the rest round to nearest
// even): on a fixed-size block the compiler vectorizes it.
void ConvertBf16Block(const float* in, size_t count, uint16_t* out) {
  for (size_t i = 0; i < count; ++i) {
    uint32_t bits;
    std::memcpy(&bits, in + i, sizeof(bits));
    const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    const uint32_t quiet_nan = (bits >> 16) | 0x40u;
    // Both sides are below 2^31, so a signed compare (the one SSE2 has) gives the same answer.
    const bool nan = static_cast<int32_t>(bits & 0x7fffffffu) > int32_t{0x7f800000};
    out[i] = static_cast<uint16_t>(nan ? quiet_nan : rounded);
  }
}

// FloatToBf16 of every value, written to `out` (2 bytes a value). The scalar loop took 10.8 ms
// for a 1024x1024 image's 4M features on two cores of the dev machine (bench/vision_cpu_bench.cc).
void WriteBf16(absl::Span<const float> values, char* out) {
  if (values.empty()) return;  // data() may be null: no offsets from it
  constexpr size_t kBlock = 4096;
  alignas(64) uint16_t block[kBlock];
  size_t start = 0;
  for (; start + kBlock <= values.size(); start += kBlock) {
    ConvertBf16Block(values.data() + start, kBlock, block);  // a constant count: vectorized
    std::memcpy(out + 2 * start, block, sizeof(block));
  }
  const size_t rest = values.size() - start;
  ConvertBf16Block(values.data() + start, rest, block);
  std::memcpy(out + 2 * start, block, 2 * rest);
}

}  // namespace

v1::Tensor MatrixToTensor(absl::Span<const float> values, int64_t rows, int64_t cols,
                          v1::Tensor::DType dtype) {
  v1::Tensor tensor;
  tensor.set_dtype(dtype);
  tensor.add_shape(rows);
  tensor.add_shape(cols);
  std::string* data = tensor.mutable_data();
  if (dtype == v1::Tensor::DTYPE_BF16) {
    data->resize(values.size() * 2);
    WriteBf16(values, data->data());
  } else {
    data->assign(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
  }
  return tensor;
}

v1::Tensor MatrixToTensorExact(absl::Span<const float> values, int64_t rows, int64_t cols) {
  v1::Tensor tensor;
  tensor.set_dtype(v1::Tensor::DTYPE_BF16);
  tensor.add_shape(rows);
  tensor.add_shape(cols);
  std::string* data = tensor.mutable_data();
  data->resize(values.size() * 2);
  for (size_t i = 0; i < values.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &values[i], 4);
    // A bf16 is the top half of an f32 whose low half is zero: anything else would be rounded.
    if ((bits & 0xffffu) != 0) return MatrixToTensor(values, rows, cols, v1::Tensor::DTYPE_F32);
    const uint16_t top = static_cast<uint16_t>(bits >> 16);
    std::memcpy(data->data() + 2 * i, &top, 2);
  }
  return tensor;
}

absl::StatusOr<int64_t> CheckMatrix(const v1::Tensor& tensor, int64_t cols, int64_t max_rows) {
  if (tensor.shape_size() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature tensor must be [rows, cols], got rank ", tensor.shape_size()));
  }
  const int64_t rows = tensor.shape(0);
  if (tensor.shape(1) != cols) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature tensor has ", tensor.shape(1), " columns, expected ", cols));
  }
  if (rows < 0 || rows > max_rows) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature tensor has ", rows, " rows, expected at most ", max_rows));
  }
  int element_size;
  switch (tensor.dtype()) {
    case v1::Tensor::DTYPE_F32:
      element_size = 4;
      break;
    case v1::Tensor::DTYPE_BF16:
      element_size = 2;
      break;
    default:
      return absl::InvalidArgumentError("feature tensor dtype must be F32 or BF16");
  }
  const size_t count = static_cast<size_t>(rows * cols);
  if (tensor.data().size() != count * element_size) {
    return absl::InvalidArgumentError(absl::StrCat("feature tensor holds ", tensor.data().size(),
                                                   " bytes, its shape needs ",
                                                   count * element_size));
  }
  return rows;
}

absl::StatusOr<int64_t> AppendMatrix(const v1::Tensor& tensor, int64_t cols, int64_t max_rows,
                                     std::vector<float>* out) {
  absl::StatusOr<int64_t> rows = CheckMatrix(tensor, cols, max_rows);
  if (!rows.ok()) return rows.status();
  const int element_size = tensor.dtype() == v1::Tensor::DTYPE_F32 ? 4 : 2;
  const size_t count = static_cast<size_t>(*rows * cols);
  const size_t start = out->size();
  out->resize(start + count);
  const char* bytes = tensor.data().data();
  if (element_size == 4) {
    std::memcpy(out->data() + start, bytes, count * 4);
  } else {
    for (size_t i = 0; i < count; ++i) {
      uint16_t bits;
      std::memcpy(&bits, bytes + 2 * i, 2);
      (*out)[start + i] = Bf16ToFloat(bits);
    }
  }
  return *rows;
}

}  // namespace pixtral
