#include "services/common/tensor_proto.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"

namespace pixtral {

v1::Tensor MatrixToTensor(absl::Span<const float> values, int64_t rows, int64_t cols,
                          v1::Tensor::DType dtype) {
  v1::Tensor tensor;
  tensor.set_dtype(dtype);
  tensor.add_shape(rows);
  tensor.add_shape(cols);
  std::string* data = tensor.mutable_data();
  if (dtype == v1::Tensor::DTYPE_BF16) {
    data->resize(values.size() * 2);
    for (size_t i = 0; i < values.size(); ++i) {
      const uint16_t bits = FloatToBf16(values[i]);
      std::memcpy(data->data() + 2 * i, &bits, 2);
    }
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

absl::StatusOr<int64_t> AppendMatrix(const v1::Tensor& tensor, int64_t cols, int64_t max_rows,
                                     std::vector<float>* out) {
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
  return rows;
}

}  // namespace pixtral
