// Matrices on the wire: pixtral.v1.Tensor <-> float32 rows, with every field of a received
// tensor checked (dtype, rank, sizes, byte count) before a byte of it is read.
#ifndef PIXTRAL_SERVICES_COMMON_TENSOR_PROTO_H_
#define PIXTRAL_SERVICES_COMMON_TENSOR_PROTO_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proto/common.pb.h"

namespace pixtral {

// f32 [rows, cols] -> Tensor of `dtype` (F32 exact; BF16 rounded to nearest even).
v1::Tensor MatrixToTensor(absl::Span<const float> values, int64_t rows, int64_t cols,
                          v1::Tensor::DType dtype = v1::Tensor::DTYPE_F32);

// f32 [rows, cols] -> Tensor, BF16 when every value is exactly a bf16 (features a vision worker
// sent as BF16, relayed by the gateway: half the bytes, nothing rounded), else F32.
v1::Tensor MatrixToTensorExact(absl::Span<const float> values, int64_t rows, int64_t cols);

// The row count of a tensor AppendMatrix would take (the same checks); the same errors.
absl::StatusOr<int64_t> CheckMatrix(const v1::Tensor& tensor, int64_t cols, int64_t max_rows);

// Tensor -> f32 values appended to `out`; returns its row count. INVALID_ARGUMENT unless it is a
// rank-2 F32 or BF16 tensor with `cols` columns, at most `max_rows` rows, and exactly the bytes
// its shape needs.
absl::StatusOr<int64_t> AppendMatrix(const v1::Tensor& tensor, int64_t cols, int64_t max_rows,
                                     std::vector<float>* out);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_TENSOR_PROTO_H_
