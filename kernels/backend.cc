#include "kernels/backend.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace pixtral::kernels {
namespace {

template <typename T>
absl::StatusOr<Tensor> Upload(Backend& backend, DType dtype, absl::Span<const T> data,
                              std::vector<int64_t> shape) {
  absl::StatusOr<Tensor> t = backend.Alloc(dtype, std::move(shape));
  if (!t.ok()) return t.status();
  if (t->numel() != static_cast<int64_t>(data.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("ToBackend: ", data.size(), " values for a tensor of ", t->DebugString()));
  }
  backend.CopyFromHost(data.data(), *t);
  return t;
}

}  // namespace

absl::StatusOr<Tensor> ToBackend(Backend& backend, absl::Span<const float> data,
                                 std::vector<int64_t> shape) {
  return Upload(backend, DType::kF32, data, std::move(shape));
}

absl::StatusOr<Tensor> ToBackend(Backend& backend, absl::Span<const int32_t> data,
                                 std::vector<int64_t> shape) {
  return Upload(backend, DType::kI32, data, std::move(shape));
}

std::vector<float> ToHost(Backend& backend, const Tensor& tensor) {
  CHECK(tensor.dtype() == DType::kF32) << tensor.DebugString();
  std::vector<float> out(tensor.numel());
  backend.CopyToHost(tensor, out.data());
  return out;
}

absl::StatusOr<PagedBatch> MakePagedBatch(Backend& backend,
                                          absl::Span<const PagedSequence> sequences) {
  const int64_t n = static_cast<int64_t>(sequences.size());
  size_t max_blocks = 1;
  for (const PagedSequence& s : sequences) max_blocks = std::max(max_blocks, s.block_table.size());
  std::vector<int32_t> info, tables(n * max_blocks, -1);
  PagedBatch batch;
  batch.has_decode = batch.has_prefill = false;
  for (int64_t i = 0; i < n; ++i) {
    const PagedSequence& s = sequences[i];
    info.insert(info.end(), {s.q_begin, s.q_len, s.start_pos});
    batch.has_decode |= s.q_len == 1;
    if (s.q_len == 1)
      batch.max_decode_context = std::max(batch.max_decode_context, s.start_pos + 1);
    batch.has_prefill |= s.q_len > 1;
    std::copy(s.block_table.begin(), s.block_table.end(), tables.begin() + i * max_blocks);
  }
  absl::StatusOr<Tensor> t = ToBackend(backend, info, {n, 3});
  if (!t.ok()) return t.status();
  batch.sequences = *std::move(t);
  t = ToBackend(backend, tables, {n, static_cast<int64_t>(max_blocks)});
  if (!t.ok()) return t.status();
  batch.block_tables = *std::move(t);
  return batch;
}

}  // namespace pixtral::kernels
