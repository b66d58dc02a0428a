// The argument checks every backend makes before an op: dtypes and shapes as backend.h
// documents them. A failure is a bug in the calling model code (CHECK), never bad user input,
// which the model validates first. Shared so a new backend cannot check less than the others.
#ifndef PIXTRAL_KERNELS_SHAPE_CHECKS_H_
#define PIXTRAL_KERNELS_SHAPE_CHECKS_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "kernels/tensor.h"

namespace pixtral::kernels {

void CheckF32(const Tensor& t);
void CheckF32OrBf16(const Tensor& t);
void CheckI32(const Tensor& t);
void CheckSameShape(const Tensor& a, const Tensor& b);

// y[t, n] = x[t, k] · w[n, k]ᵀ (+ bias[n]): x and y f32 or bf16 (f32 with f32 weights), all
// rank 2, the sizes agreeing.
struct MatMulDims {
  int64_t t, k, n;
};
MatMulDims CheckMatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);

// SampleRows: logits f32 [R, V] with `draws` = R; ids i32 [R]; logprobs f32 [R].
void CheckSampleRows(const Tensor& logits, size_t draws, const Tensor& ids, const Tensor& logprobs);

// SwiGlu: gate_up f32 or bf16 [T, 2F], out f32 or bf16 [T, F]. Returns F.
int64_t CheckSwiGlu(const Tensor& gate_up, const Tensor& out);
// SplitColumns: x f32 [T, C]; 1 to 4 f32 parts of T rows whose row sizes add up to C. Returns
// each part's row size.
std::vector<int64_t> CheckSplitColumns(const Tensor& x, absl::Span<const Tensor> parts);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_SHAPE_CHECKS_H_
