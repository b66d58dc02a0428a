// The argument checks every backend makes before an op: dtypes and shapes as backend.h
// documents them. A failure is a bug in the calling model code (CHECK), never bad user input,
// which the model validates first. Shared so a new backend cannot check less than the others.
#ifndef PIXTRAL_KERNELS_SHAPE_CHECKS_H_
#define PIXTRAL_KERNELS_SHAPE_CHECKS_H_

#include <cstdint>

#include "kernels/tensor.h"

namespace pixtral::kernels {

void CheckF32(const Tensor& t);
void CheckI32(const Tensor& t);
void CheckSameShape(const Tensor& a, const Tensor& b);

// y[t, n] = x[t, k] · w[n, k]ᵀ (+ bias[n]): x and y f32, all rank 2, the sizes agreeing.
struct MatMulDims {
  int64_t t, k, n;
};
MatMulDims CheckMatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_SHAPE_CHECKS_H_
