// Tensors: typed, row-major views into memory that a backend owns.
//
// A Buffer is one allocation made by a Backend (host RAM for the CPU backend, device memory for
// CUDA). A Tensor is a cheap, copyable view of part of a Buffer: a dtype, a shape and a byte
// offset. Copies of a Tensor share the Buffer, which lives while any view of it does. Views never
// copy data: `Rows` slices along the first dimension and `Reshape` reinterprets the shape.
//
//   Tensor x = *backend.Alloc(DType::kF32, {tokens, dim});
//   Tensor first = x.Rows(0, 1);                      // [1, dim], same memory
//   Tensor heads = x.Reshape({tokens, n_heads, head_dim});
//
// Only host backends let callers dereference `data()`; model code moves data with
// Backend::CopyFromHost / CopyToHost.
#ifndef PIXTRAL_KERNELS_TENSOR_H_
#define PIXTRAL_KERNELS_TENSOR_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/dtype.h"

namespace pixtral::kernels {

// Backends store kBF16 and kF32 weights, kF32 activations and kI32 indices (common/dtype.h).
using ::pixtral::DType;

// One allocation made by a backend. `data()` is a host or a device address.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual void* data() = 0;
  virtual size_t size() const = 0;
};

class Tensor {
 public:
  Tensor() = default;
  Tensor(std::shared_ptr<Buffer> buffer, size_t offset, DType dtype, std::vector<int64_t> shape);

  bool defined() const { return buffer_ != nullptr; }
  DType dtype() const { return dtype_; }
  const std::vector<int64_t>& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const { return shape_[i]; }
  int64_t numel() const;
  size_t bytes() const { return static_cast<size_t>(numel()) * DTypeSize(dtype_); }
  std::string DebugString() const;  // e.g. "F32[3, 64]"

  // Rows [begin, begin + count) along the first dimension.
  Tensor Rows(int64_t begin, int64_t count) const;
  // The same elements under another shape with the same element count.
  Tensor Reshape(std::vector<int64_t> shape) const;
  // The leading bytes of the same memory as a tensor of another element type and shape, which
  // must fit in this one's bytes: one buffer reused for tensors of several shapes.
  Tensor View(DType dtype, std::vector<int64_t> shape) const;

  template <typename T>
  T* data() const {
    return reinterpret_cast<T*>(static_cast<char*>(buffer_->data()) + offset_);
  }

 private:
  std::shared_ptr<Buffer> buffer_;
  size_t offset_ = 0;
  DType dtype_ = DType::kF32;
  std::vector<int64_t> shape_;
};

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_TENSOR_H_
