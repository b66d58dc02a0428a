#include "kernels/shape_checks.h"

#include "glog/logging.h"

namespace pixtral::kernels {

void CheckF32(const Tensor& t) { CHECK(t.dtype() == DType::kF32) << t.DebugString(); }

void CheckF32OrBf16(const Tensor& t) {
  CHECK(t.dtype() == DType::kF32 || t.dtype() == DType::kBF16) << t.DebugString();
}

void CheckI32(const Tensor& t) { CHECK(t.dtype() == DType::kI32) << t.DebugString(); }

void CheckSameShape(const Tensor& a, const Tensor& b) {
  CHECK(a.shape() == b.shape()) << a.DebugString() << " vs " << b.DebugString();
}

MatMulDims CheckMatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) {
  CheckF32OrBf16(x);
  CheckF32OrBf16(y);
  CheckF32OrBf16(w);
  if (w.dtype() == DType::kF32) {
    CHECK(x.dtype() == DType::kF32 && y.dtype() == DType::kF32)
        << "f32 weights take f32 activations: " << x.DebugString() << " -> " << y.DebugString();
  }
  CHECK(x.rank() == 2 && w.rank() == 2 && y.rank() == 2);
  const MatMulDims dims{x.dim(0), x.dim(1), w.dim(0)};
  CHECK(w.dim(1) == dims.k && y.dim(0) == dims.t && y.dim(1) == dims.n)
      << x.DebugString() << " · " << w.DebugString() << "ᵀ -> " << y.DebugString();
  if (bias != nullptr) CHECK(bias->rank() == 1 && bias->dim(0) == dims.n) << bias->DebugString();
  return dims;
}

void CheckSampleRows(const Tensor& logits, size_t draws, const Tensor& ids,
                     const Tensor& logprobs) {
  CheckF32(logits);
  CheckI32(ids);
  CheckF32(logprobs);
  CHECK(logits.rank() == 2 && static_cast<int64_t>(draws) == logits.dim(0) &&
        ids.shape() == std::vector<int64_t>{logits.dim(0)} && logprobs.shape() == ids.shape())
      << "SampleRows: " << logits.DebugString() << ", " << draws << " draws, " << ids.DebugString()
      << ", " << logprobs.DebugString();
}

int64_t CheckSwiGlu(const Tensor& gate_up, const Tensor& out) {
  CheckF32OrBf16(gate_up);
  CheckF32OrBf16(out);
  CHECK(gate_up.rank() == 2 && out.rank() == 2 && gate_up.dim(0) == out.dim(0) &&
        gate_up.dim(1) == 2 * out.dim(1))
      << "SwiGlu: " << gate_up.DebugString() << " -> " << out.DebugString();
  return out.dim(1);
}

std::vector<int64_t> CheckSplitColumns(const Tensor& x, absl::Span<const Tensor> parts) {
  CheckF32(x);
  CHECK(x.rank() == 2 && !parts.empty() && parts.size() <= 4)
      << "SplitColumns: " << x.DebugString() << " into " << parts.size() << " parts";
  std::vector<int64_t> widths;
  int64_t total = 0;
  for (const Tensor& part : parts) {
    CheckF32(part);
    CHECK(part.rank() >= 1 && part.dim(0) == x.dim(0)) << part.DebugString();
    widths.push_back(part.dim(0) == 0 ? 0 : part.numel() / part.dim(0));
    total += widths.back();
  }
  CHECK_EQ(total, x.dim(1)) << "SplitColumns: parts do not cover " << x.DebugString();
  return widths;
}

}  // namespace pixtral::kernels
