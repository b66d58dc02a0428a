// Attention kernels of the CUDA backend: block-diagonal attention for the vision encoder and
// causal attention over the paged bf16 KV cache for the decoder. Prompts (segments, and sequences
// with more than one new token) take tiled, flash-style kernels: one thread block per (64 queries,
// head), key and value tiles staged in shared memory, an online softmax in f32. Decode (one new
// token per sequence), and head dimensions other than 16, 32, 64 and 128, take one thread block
// per (query token, head). Any sequence length works with fixed shared memory.
//
//   PagedAttentionParams p{...};
//   CUDA_CHECK(LaunchPagedAttention(p, stream));  // appends k, v to the cache, then attends
#ifndef PIXTRAL_KERNELS_CUDA_ATTENTION_H_
#define PIXTRAL_KERNELS_CUDA_ATTENTION_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace pixtral::cuda {

// The largest head dimension the kernels take (Pixtral: 128 in the decoder, 64 in the vision
// encoder).
constexpr int kMaxAttentionHeadDim = 256;

// q, k, v, out: f32 [tokens, heads, head_dim]. Consecutive token ranges of segment_lengths
// (i32 [num_segments], device) attend only within themselves; a token outside every segment gets
// NaN. Head dimensions 64 and 128 (tensor cores) read k and v from k_bf16 and v_bf16, the same
// tensors rounded to bf16 (their tiles are copied asynchronously, with no conversion); the
// others read k and v.
struct SegmentAttentionParams {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  const uint16_t* k_bf16 = nullptr;
  const uint16_t* v_bf16 = nullptr;
  const int32_t* segment_lengths;
  int32_t num_segments;
  int32_t tokens;
  int32_t heads;
  int32_t head_dim;
  float scale;
};

// q, k, v: f32, row t of each at t * qkv_stride (the heads of one stacked wq/wk/wv product: q
// [heads, head_dim], k and v [kv_heads, head_dim] each); out: f32 or (out_bf16) bf16 [tokens,
// heads, head_dim]; k_cache, v_cache: bf16 [num_blocks, block_size, kv_heads, head_dim]. sequences
// (i32 [num_sequences, 3]: q_begin, q_len, start_pos) and block_tables (i32 [num_sequences,
// max_blocks], -1 padded) are device memory, as kernels::PagedBatch holds them. Rows of no
// sequence are left untouched; a sequence whose block table is too short or names a block
// outside the cache gets NaN rows.
struct PagedAttentionParams {
  float* q;  // written only where cos_sin rotates it in place
  const float* k;
  const float* v;
  int64_t qkv_stride;
  void* out;
  bool out_bf16 = false;
  uint16_t* k_cache;  // bf16 bit patterns
  uint16_t* v_cache;
  const int32_t* sequences;
  const int32_t* block_tables;
  int32_t num_sequences;
  int32_t max_blocks;
  int32_t num_blocks;
  int32_t block_size;
  int32_t tokens;
  int32_t heads;
  int32_t kv_heads;
  int32_t head_dim;
  float scale;
  // Host-side hints (kernels::PagedBatch's): false skips the decode (q_len == 1) or the prefill
  // (q_len > 1) kernel's launch, for a batch with no such sequence (or whose decode rows another
  // kernel, decode_attention.h's, attends).
  bool has_decode = true;
  bool has_prefill = true;
  // RoPE in the append: with cos_sin (f32 [tokens, head_dim / 2, 2], interleaved pairs), each
  // token's q rows are rotated in place and its k rows rotated before they are stored.
  const float* cos_sin = nullptr;
};

cudaError_t LaunchSegmentAttention(const SegmentAttentionParams& params, cudaStream_t stream);
// Up to three launches on `stream`: the append of every new k, v row into the cache (with RoPE
// where cos_sin is set), then the decode and the prefill attention kernels (each only where the
// hints say it has work).
cudaError_t LaunchPagedAttention(const PagedAttentionParams& params, cudaStream_t stream);

}  // namespace pixtral::cuda

#endif  // PIXTRAL_KERNELS_CUDA_ATTENTION_H_
