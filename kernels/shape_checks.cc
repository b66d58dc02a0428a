#include "kernels/shape_checks.h"

#include "glog/logging.h"

namespace pixtral::kernels {

void CheckF32(const Tensor& t) { CHECK(t.dtype() == DType::kF32) << t.DebugString(); }

void CheckI32(const Tensor& t) { CHECK(t.dtype() == DType::kI32) << t.DebugString(); }

void CheckSameShape(const Tensor& a, const Tensor& b) {
  CHECK(a.shape() == b.shape()) << a.DebugString() << " vs " << b.DebugString();
}

MatMulDims CheckMatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  CheckF32(x);
  CheckF32(y);
  CHECK(x.rank() == 2 && w.rank() == 2 && y.rank() == 2);
  const MatMulDims dims{x.dim(0), x.dim(1), w.dim(0)};
  CHECK(w.dim(1) == dims.k && y.dim(0) == dims.t && y.dim(1) == dims.n)
      << x.DebugString() << " · " << w.DebugString() << "ᵀ -> " << y.DebugString();
  if (bias != nullptr) CHECK(bias->rank() == 1 && bias->dim(0) == dims.n) << bias->DebugString();
  return dims;
}

}  // namespace pixtral::kernels
