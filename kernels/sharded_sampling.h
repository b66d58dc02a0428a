// Sampling from vocabulary-parallel logits: each rank of a tensor-parallel group holds the
// logits of one contiguous range of token ids, and every rank gets the token that
// kernels/sampling.h's SampleRow would pick from the whole row, without any rank seeing the
// whole row.
//
//   // Rank r holds ids [begin, begin + shard_width) of every row, [rows, shard_width] row-major.
//   std::vector<SampledRow> next = SampleShardedRows(comm, shard, rows, begin, vocab, draws);
//
// What crosses between ranks, per row: each shard's max, argmax and softmax sums (greedy rows
// need nothing else); for top_p = 1 each shard's probability mass and then the one chosen
// token; for top_p < 1 the shards' most likely tokens, merged in the reference's order
// (probability down, id up) and gathered in growing rounds of 64, 256, ... per shard until the
// merged prefix holds top_p of the mass. That is the nucleus, which for a trained model at
// top_p 0.9 is tens to hundreds of tokens; a nearly flat distribution makes it most of the
// vocabulary (a radix select over all-reduced histograms would bound that: not built yet).
//
// The arithmetic is the reference's (f64 exponentials of the same f32 logits, the same order
// of the nucleus and of the inverse-CDF walk); only the softmax denominators are summed shard
// by shard, so a draw within ~1e-16 of a boundary between two tokens may fall the other way.
// Greedy choices are exact.
#ifndef PIXTRAL_KERNELS_SHARDED_SAMPLING_H_
#define PIXTRAL_KERNELS_SHARDED_SAMPLING_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "kernels/communicator.h"
#include "kernels/sampling.h"

namespace pixtral::kernels {

// One token per row from this rank's shard (host memory, rows x shard width, ids
// [vocab_begin, vocab_begin + width) of `vocab`). Every rank of `comm` must call it with the
// same rows and draws; all get the same result. A row with a NaN or +inf logit anywhere, or only
// -inf ones, gets id -1 and a NaN logprob (as Backend::SampleRows).
std::vector<SampledRow> SampleShardedRows(Communicator& comm, absl::Span<const float> shard,
                                          int64_t rows, int64_t vocab_begin, int64_t vocab,
                                          absl::Span<const RowSampling> draws);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_SHARDED_SAMPLING_H_
