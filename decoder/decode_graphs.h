// Decode steps on fixed buffers, recorded once per shape and replayed (CUDA graphs).
//
// A decode step (one new token for each of its sequences) issues ~500 small kernels; launched
// one by one they leave the GPU idle between them and cost the host more time than some of them
// take. Replayed from a CUDA graph they are one launch. A graph replays the kernels it recorded
// with their parameters and addresses, so a step that uses one must run on the same buffers,
// with the same shapes, as the recording did:
//   - rows: the batch is padded to a bucket of row counts (DecodeRowBucket); a padding row holds
//     token 0 at position 0 and belongs to a sequence of no new tokens, which the attention
//     kernels skip;
//   - context: every row's block table is padded (-1) to the width of a bucket of context
//     lengths (DecodeContextBucket), which also fixes how decode attention splits it;
//   - buffers: the step's inputs (token ids, RoPE table, sequences, block tables) and every
//     activation live in DecodeStepBuffers, allocated once for the largest bucket seen, and are
//     overwritten by each step.
// The graphs are keyed by (row bucket, context bucket), recorded lazily: the first step of a key
// runs its ops directly (which also tunes the products of its shape, as a recording requires),
// later ones replay. Steps outside the buckets (longer contexts, more rows) take the ordinary
// path.
#ifndef PIXTRAL_DECODER_DECODE_GRAPHS_H_
#define PIXTRAL_DECODER_DECODE_GRAPHS_H_

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/model_config.h"
#include "kernels/backend.h"

namespace pixtral {

// How decode steps run (Decoder::SetDecodeGraphs).
enum class DecodeGraphMode {
  kOff,       // every step on the ordinary path (its own allocations, no padding)
  kBuffers,   // decode steps on the padded fixed buffers, their ops issued one by one
  kRecorded,  // as kBuffers, and replayed from a recording after a key's first step
};

// The default mode on `backend`: kRecorded on the CUDA backend (kBuffers with
// PIXTRAL_CUDA_GRAPHS=0: the same kernels, launched one by one), kOff elsewhere.
DecodeGraphMode DefaultDecodeGraphMode(const kernels::Backend& backend);

// Most rows and context positions a decode step takes on the fixed buffers.
inline constexpr int kMaxDecodeGraphRows = 256;
inline constexpr int64_t kMaxDecodeGraphContext = 32768;

// The row bucket of a step of `rows` sequences (1, 2, 4, 8, then multiples of 8 to 64, of 32 to
// 256); 0 past kMaxDecodeGraphRows.
int DecodeRowBucket(int rows);
// The context bucket of a step whose longest sequence attends over `positions` positions:
// multiples of 512 up to 4096, then powers of two; 0 past kMaxDecodeGraphContext.
int64_t DecodeContextBucket(int64_t positions);

// The sizes of the model that a decode step's buffers hold: the whole model's (Decoder), or one
// tensor-parallel rank's share of it (TpDecoder: its heads, KV heads, hidden units and
// vocabulary range; the residual stream is whole on every rank).
struct DecodeStepShape {
  int64_t dim, head_dim, heads, kv_heads, hidden, vocab;

  static DecodeStepShape Of(const DecoderConfig& c) {
    return {c.dim, c.head_dim, c.n_heads, c.n_kv_heads, c.hidden_dim, c.vocab_size};
  }
};

// The activations and step inputs that a decoder's layers read and write, for t rows: x, h
// f32 [t, dim]; qkv f32 [t, (heads + 2 kv_heads) head_dim] (each row's q, k and v heads, which
// PagedAttention reads in place); attn [t, heads, head_dim], hn [t, dim], gate_up [t, 2 hidden],
// gate [t, hidden] in the backend's MatMul input type for t rows; rope f32 [t, head_dim / 2, 2];
// paged: the step's sequences and block tables.
struct LayerTensors {
  kernels::Tensor x, h, qkv, attn, hn, gate_up, gate, rope;
  kernels::PagedBatch paged;
};

// LayerTensors' activations (all but rope and paged) for an ordinary step of `rows` rows, each
// its own allocation (hn is h where the MatMul input type is f32).
absl::Status AllocLayerActivations(kernels::Backend& backend, const DecodeStepShape& shape,
                                   int64_t rows, LayerTensors& t);

// Scratch a backend's ops may need inside a step of `rows` token rows over `sequences` sequences
// of at most `positions` positions, on decode buffers or not (the buckets' padding included): the
// widest f32 input a product converts to bf16 (the normed last rows), or decode attention's split
// partials (at most one split per 128 positions, the CUDA backend's shortest, for each head of
// each sequence). Reserved before a step (Backend::ReserveScratch), so that a device without the
// memory fails the step with RESOURCE_EXHAUSTED instead of aborting inside an op.
int64_t StepScratchBytes(const DecodeStepShape& shape, int64_t rows, int64_t sequences,
                         int64_t positions);

// The tensors of one decode step over `rows` rows: views into DecodeStepBuffers; the layers'
// tensors, the token ids (i32 [rows]) and the logits (f32 [rows, vocab]).
struct DecodeStepTensors : LayerTensors {
  kernels::Tensor ids;
  kernels::Tensor logits;
};

// One decode step's inputs on the host, padded to its buckets: what DecodeStepTensors' ids,
// rope, sequences and block tables receive before the step's ops (outside any recording).
struct DecodeStepInputs {
  int rows = 0;         // the row bucket
  int64_t context = 0;  // the context bucket
  std::vector<int32_t> ids, sequences, tables;
  std::vector<float> rope;
};

// Row i < tokens.size() decodes tokens[i] at position lengths[i] over blocks[i] (its block
// table, cut to the context bucket's width: blocks reserved ahead hold no position the step
// reads); the rows past them are padding, token 0 at position 0 of a sequence of no new tokens,
// which the attention kernels skip; block tables are padded with -1.
DecodeStepInputs PadDecodeStep(int rows, int64_t context, int block_size, int head_dim,
                               double rope_theta, absl::Span<const int32_t> tokens,
                               absl::Span<const int64_t> lengths,
                               absl::Span<const absl::Span<const int32_t>> blocks);
// Copies `in` into the step's input tensors (views of `rows` rows and `context` positions).
void UploadDecodeStep(kernels::Backend& backend, const DecodeStepInputs& in,
                      const DecodeStepTensors& t);

// The buffers behind DecodeStepTensors, for up to `rows` rows and kMaxDecodeGraphContext.
class DecodeStepBuffers {
 public:
  static absl::StatusOr<std::unique_ptr<DecodeStepBuffers>> Create(kernels::Backend& backend,
                                                                   const DecodeStepShape& shape,
                                                                   int block_size, int rows);
  int rows() const { return rows_; }
  // Views for a step of `rows` rows (at most rows()) and `context` positions (a bucket).
  DecodeStepTensors For(const kernels::Backend& backend, int rows, int64_t context) const;

 private:
  DecodeStepBuffers(const DecodeStepShape& shape, int block_size, int rows)
      : shape_(shape), block_size_(block_size), rows_(rows) {}

  DecodeStepShape shape_;
  int block_size_;
  int rows_;
  // Each of the largest size any view of it takes; views of another element type share them.
  kernels::Tensor ids_, rope_, sequences_, tables_, x_, h_, qkv_, attn_, hn_, gate_up_, gate_,
      logits_;
};

// The recorded decode steps, by (row bucket, context bucket). A key whose recording failed holds
// nullptr: its steps issue their ops directly.
using DecodeGraphKey = std::pair<int, int64_t>;
using DecodeGraphs = absl::flat_hash_map<DecodeGraphKey, std::unique_ptr<kernels::RecordedOps>>;

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_DECODE_GRAPHS_H_
