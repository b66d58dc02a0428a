#include "kernels/tensor.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "glog/logging.h"

namespace pixtral::kernels {

Tensor::Tensor(std::shared_ptr<Buffer> buffer, size_t offset, DType dtype,
               std::vector<int64_t> shape)
    : buffer_(std::move(buffer)), offset_(offset), dtype_(dtype), shape_(std::move(shape)) {
  CHECK(buffer_ != nullptr);
  CHECK_LE(offset_ + bytes(), buffer_->size()) << DebugString();
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

std::string Tensor::DebugString() const {
  return absl::StrCat(DTypeName(dtype_), "[", absl::StrJoin(shape_, ", "), "]");
}

Tensor Tensor::Rows(int64_t begin, int64_t count) const {
  CHECK_GE(rank(), 1);
  CHECK(begin >= 0 && count >= 0 && begin + count <= shape_[0])
      << "rows [" << begin << ", " << begin + count << ") of " << DebugString();
  std::vector<int64_t> shape = shape_;
  shape[0] = count;
  const size_t row_bytes = shape_[0] == 0 ? 0 : bytes() / shape_[0];
  return Tensor(buffer_, offset_ + begin * row_bytes, dtype_, std::move(shape));
}

Tensor Tensor::View(DType dtype, std::vector<int64_t> shape) const {
  Tensor t(buffer_, offset_, dtype, std::move(shape));
  CHECK_LE(t.bytes(), bytes()) << t.DebugString() << " as a view of " << DebugString();
  return t;
}

Tensor Tensor::Reshape(std::vector<int64_t> shape) const {
  Tensor t(buffer_, offset_, dtype_, std::move(shape));
  CHECK_EQ(t.numel(), numel()) << "reshape of " << DebugString() << " to " << t.DebugString();
  return t;
}

}  // namespace pixtral::kernels
