// The decoder split over the backends of a tensor-parallel group (Megatron-style), driven
// exactly like Decoder: the engine sees one Decoder, the ranks stay inside.
//
// Rank r of `size` holds, read straight from the memory-mapped checkpoint:
//   - column-parallel wq/wk/wv and w1/w3 (its heads, its KV heads, its hidden units), stacked
//     into one product each as Decoder stacks them whole;
//   - row-parallel wo and w2 (the matching input columns), each product followed by one
//     all-reduce of the [tokens, dim] partial sums: two all-reduces per layer;
//   - the output projection's rows for its contiguous range of the vocabulary; sampling runs on
//     the shards, so no rank gathers a whole row of logits: a greedy step samples each shard on
//     its device and merges 12 bytes a row a rank; any other step copies each rank's shard,
//     f32 [rows, vocab / size], to the host for kernels/sharded_sampling.h (0.5 MB a row at TP=1
//     on Pixtral-12B; a device-side sharded nucleus is not built yet);
//   - the embedding table, the norms and the residual stream whole (replicated): the embedding
//     is a gather of a few rows a step, and replicating it costs 2 bytes x vocab x dim of memory
//     per rank (1.3 GB on Pixtral-12B) but no all-reduce, where a vocab-parallel embedding
//     would add one per step;
//   - its KV heads' share of the paged KV cache. With fewer KV heads than ranks each KV head is
//     replicated on size / n_kv_heads ranks (each rank one KV head).
// The image features of a step arrive on rank 0's backend (the vision-language adapter runs
// there: 0.4 ms for a 4096-token image on an H200, not worth splitting) and are broadcast.
//
// One thread per rank: rank 0 on the caller's thread with the decoder's `backend`, ranks 1.. on
// threads of their own with backends made there (a CUDA backend is bound to its thread's
// device: rank r on GPU r). The sequence bookkeeping (block tables, the prefix cache) is
// Decoder's, on the caller's thread; every rank's cache uses the same block ids.
//
// Decode steps run as Decoder's do (decoder/decode_graphs.h, SetDecodeGraphs): on fixed buffers
// per rank, sized for its shard, and on the CUDA backend replayed from a CUDA graph per rank and
// (rows, context) key that holds the step's kernels and its NCCL all-reduces; sampling stays
// outside the recordings.
//
//   PIXTRAL_ASSIGN_OR_RETURN(auto decoder,
//                            TpDecoder::Create(backend, config, image_token_id, checkpoint,
//                                              owner, cache, CpuTensorParallelGroup(2)));
//   ... decoder->ForwardSampled(batch, draws), as Decoder.
#ifndef PIXTRAL_DECODER_TP_DECODER_H_
#define PIXTRAL_DECODER_TP_DECODER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/model_config.h"
#include "common/safetensors.h"
#include "decoder/decoder.h"
#include "kernels/backend.h"
#include "kernels/communicator.h"

namespace pixtral {

struct TensorParallelOptions {
  int size = 1;
  // Rank r's backend (r >= 1), called on rank r's thread. Rank 0 is the decoder's `backend`.
  std::function<absl::StatusOr<std::unique_ptr<kernels::Backend>>(int rank)> make_backend;
  // The group's communicators (element r for rank r) once every rank's backend exists.
  std::function<absl::StatusOr<std::vector<std::unique_ptr<kernels::Communicator>>>(
      absl::Span<kernels::Backend* const> backends)>
      make_communicators;
};

// What rank `rank` of `size` holds: [begin, begin + count) of the query heads, KV heads, hidden
// units and vocabulary.
struct TpShard {
  int64_t head_begin, heads;
  int64_t kv_head_begin, kv_heads;
  int64_t hidden_begin, hidden;
  int64_t vocab_begin, vocab;
};

// InvalidArgument unless n_heads is a multiple of `size` and n_kv_heads and `size` divide one
// another (so that every rank's query heads share its KV heads).
absl::StatusOr<TpShard> ShardFor(const DecoderConfig& config, int rank, int size);

// The in-process CPU group (kernels/cpu/cpu_communicator.h) as make_communicators wants it.
absl::StatusOr<std::vector<std::unique_ptr<kernels::Communicator>>> CpuCommunicatorsFor(
    absl::Span<kernels::Backend* const> backends);

// A group of `size` CPU backends (one made per rank) over the in-process communicator: the
// tensor-parallel path CI runs. decoder/tp_groups.h has the CUDA one.
TensorParallelOptions CpuTensorParallelGroup(int size);

class TpDecoder : public Decoder {
 public:
  // As Decoder::Create, from the checkpoint itself (each rank loads its slices onto its own
  // backend); `owner` keeps the mapping alive. Size 1 is allowed (with a communicator: the
  // tensor-parallel path on one device, for tests).
  static absl::StatusOr<std::unique_ptr<TpDecoder>> Create(
      kernels::Backend* backend, const DecoderConfig& config, int image_token_id,
      const SafetensorsCheckpoint& weights, std::shared_ptr<const void> owner,
      const CacheOptions& cache, const TensorParallelOptions& tp);
  ~TpDecoder() override;

  int tp_size() const { return static_cast<int>(ranks_.size()); }
  // Rank r's backend and communicator (for benchmarks that time the collectives alone).
  kernels::Backend& rank_backend(int r) const;
  kernels::Communicator& rank_communicator(int r) const;
  // Runs fn(rank) on every rank's thread at once and returns when all have.
  void OnRanks(const std::function<void(int rank)>& fn);

  absl::StatusOr<std::vector<std::vector<float>>> Forward(
      absl::Span<const StepInput> batch) override;
  absl::StatusOr<std::vector<absl::StatusOr<SampledToken>>> ForwardSampled(
      absl::Span<const StepInput> batch, absl::Span<const kernels::RowSampling> draws) override;

  // As Decoder's, on every rank: decode steps on per-rank fixed buffers (sized for the rank's
  // shard), each rank recording and replaying its own ops, all-reduces included. A step counts
  // as replayed when every rank replayed it; the keys recorded are rank 0's (every rank records
  // the same ones).
  void SetDecodeGraphs(DecodeGraphMode mode) override;
  int64_t decode_recordings() const override;

 private:
  struct Rank;
  class Threads;
  struct Plan;

  TpDecoder(kernels::Backend* backend, const DecoderConfig& config, int image_token_id);

  // Loads rank r's weight slices onto its backend, on rank r's thread.
  absl::Status LoadRank(int r, const SafetensorsCheckpoint& weights,
                        const std::shared_ptr<const void>& owner);
  // Validates the batch, reserves its blocks and flattens it into the step's plan.
  absl::StatusOr<Plan> Prepare(absl::Span<const StepInput> batch);
  // Reserves the step's scratch on `rank` where it grows (Backend::ReserveScratch), the ranks
  // agreeing on a failure: RESOURCE_EXHAUSTED on every rank, before any collective.
  absl::Status ReserveRankScratch(Rank& rank, const Plan& plan);
  // Rank r's share of the step: its logits shard f32 [rows, its vocab] in `logits`.
  absl::Status RunRank(int r, const Plan& plan, absl::Span<const StepInput> batch,
                       kernels::Tensor& logits);
  // Rank r's share of a step planned on the decode buffers (plan.decode); false, on every rank
  // alike, when some rank could not allocate its buffers (the step then takes RunRank's path).
  bool RunRankOnDecodeBuffers(int r, const Plan& plan, kernels::Tensor& logits);
  // The layers over t.x on rank `rank`'s slices, with the all-reduces of its partial sums.
  void RankLayers(Rank& rank, const LayerTensors& t) const;
  DecodeStepShape RankShape(const TpShard& shard) const;
  // Runs the step on every rank, then per rank `after(r, logits shard)`; advances the sequences.
  absl::Status Step(absl::Span<const StepInput> batch,
                    const std::function<void(int, const kernels::Tensor&)>& after);

  std::vector<std::unique_ptr<Rank>> ranks_;
  std::unique_ptr<Threads> threads_;
};

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_TP_DECODER_H_
