// Loading parts of checkpoint matrices: the slices a tensor-parallel rank holds.
//
// A rank of a Megatron-style split reads only its rectangle of each weight from the
// memory-mapped checkpoint: a range of rows (outputs: heads, hidden units, vocabulary) for a
// column-parallel product, a range of columns (inputs) for a row-parallel one. Several slices
// stack by rows into one tensor, as WeightLoader::GetStacked stacks whole matrices, so that a
// rank's wq/wk/wv (or w1/w3) parts stay one product.
//
//   // Rank 1 of 2 of a [4096, 5120] wq and its [1024, 5120] wk, wv: heads 16..31, KV heads 4..7.
//   PIXTRAL_ASSIGN_OR_RETURN(Tensor wqkv, LoadSlices(backend, checkpoint, owner, {
//       {.name = "layers.0.attention.wq.weight", .row_begin = 2048, .rows = 2048},
//       {.name = "layers.0.attention.wk.weight", .row_begin = 512, .rows = 512},
//       {.name = "layers.0.attention.wv.weight", .row_begin = 512, .rows = 512}}));
//   // wo by input columns: [5120, 2048].
//   PIXTRAL_ASSIGN_OR_RETURN(Tensor wo, LoadSlices(backend, checkpoint, owner, {
//       {.name = "layers.0.attention.wo.weight", .col_begin = 2048, .cols = 2048}}));
//
// One whole-width row range of a BF16 or F32 tensor is handed to Backend::LoadWeight in place
// (the CPU backend then computes on the mapped bytes, as for a whole tensor); anything else is
// gathered into a host buffer first, which the tensor keeps alive on a host backend.
#ifndef PIXTRAL_KERNELS_WEIGHT_SHARDS_H_
#define PIXTRAL_KERNELS_WEIGHT_SHARDS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/safetensors.h"
#include "kernels/backend.h"
#include "kernels/tensor.h"

namespace pixtral::kernels {

// Rows [row_begin, row_begin + rows) and columns [col_begin, col_begin + cols) of tensor `name`;
// -1 counts to the end. A 1-D tensor (a norm scale, a bias) has rows only.
struct MatrixSlice {
  std::string name;
  int64_t row_begin = 0;
  int64_t rows = -1;
  int64_t col_begin = 0;
  int64_t cols = -1;
};

// The slices stacked by rows, in order, as BF16 or F32 (F16 widened to F32). NotFound for a
// missing tensor; InvalidArgument for a slice outside its tensor or slices whose dtypes or
// column counts differ.
absl::StatusOr<Tensor> LoadSlices(Backend& backend, const SafetensorsCheckpoint& weights,
                                  std::shared_ptr<const void> owner,
                                  absl::Span<const MatrixSlice> slices);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_WEIGHT_SHARDS_H_
