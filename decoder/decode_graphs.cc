#include "decoder/decode_graphs.h"

#include <tuple>

#include "common/status_macros.h"

namespace pixtral {

using kernels::DType;
using kernels::Tensor;

int DecodeRowBucket(int rows) {
  if (rows < 1 || rows > kMaxDecodeGraphRows) return 0;
  if (rows <= 8) {
    int bucket = 1;
    while (bucket < rows) bucket *= 2;
    return bucket;
  }
  const int step = rows <= 64 ? 8 : 32;
  return (rows + step - 1) / step * step;
}

int64_t DecodeContextBucket(int64_t positions) {
  if (positions < 1 || positions > kMaxDecodeGraphContext) return 0;
  if (positions <= 4096) return (positions + 511) / 512 * 512;
  int64_t bucket = 8192;
  while (bucket < positions) bucket *= 2;
  return bucket;
}

absl::StatusOr<std::unique_ptr<DecodeStepBuffers>> DecodeStepBuffers::Create(
    kernels::Backend& backend, const DecoderConfig& c, int block_size, int rows) {
  std::unique_ptr<DecodeStepBuffers> b(new DecodeStepBuffers(c, block_size, rows));
  const int64_t r = rows, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads;
  const int64_t width = (kMaxDecodeGraphContext + block_size - 1) / block_size;
  // Every activation as f32, the widest type a view of it takes.
  for (auto [tensor, dtype, numel] : {
           std::tuple{&b->ids_, DType::kI32, r},
           {&b->rope_, DType::kF32, r * hd},
           {&b->sequences_, DType::kI32, r * 3},
           {&b->tables_, DType::kI32, r * width},
           {&b->x_, DType::kF32, r * c.dim},
           {&b->h_, DType::kF32, r * c.dim},
           {&b->qkv_, DType::kF32, r * (nh + 2 * nkv) * hd},
           {&b->q_, DType::kF32, r * nh * hd},
           {&b->k_, DType::kF32, r * nkv * hd},
           {&b->v_, DType::kF32, r * nkv * hd},
           {&b->attn_, DType::kF32, r * nh * hd},
           {&b->hn_, DType::kF32, r * c.dim},
           {&b->gate_up_, DType::kF32, r * 2 * c.hidden_dim},
           {&b->gate_, DType::kF32, r * c.hidden_dim},
           {&b->logits_, DType::kF32, r * c.vocab_size},
       }) {
    PIXTRAL_ASSIGN_OR_RETURN(*tensor, backend.Alloc(dtype, {numel}));
  }
  return b;
}

DecodeStepTensors DecodeStepBuffers::For(const kernels::Backend& backend, int rows,
                                         int64_t context) const {
  const DecoderConfig& c = config_;
  const int64_t r = rows, hd = c.head_dim, nh = c.n_heads, nkv = c.n_kv_heads;
  const DType act = backend.MatMulInputDType(r);
  DecodeStepTensors t;
  t.ids = ids_.View(DType::kI32, {r});
  t.rope = rope_.View(DType::kF32, {r, hd / 2, 2});
  t.paged.sequences = sequences_.View(DType::kI32, {r, 3});
  t.paged.block_tables = tables_.View(DType::kI32, {r, (context + block_size_ - 1) / block_size_});
  t.paged.has_decode = true;
  t.paged.has_prefill = false;
  t.paged.max_decode_context = static_cast<int32_t>(context);
  t.x = x_.View(DType::kF32, {r, c.dim});
  t.h = h_.View(DType::kF32, {r, c.dim});
  t.qkv = qkv_.View(DType::kF32, {r, (nh + 2 * nkv) * hd});
  t.q = q_.View(DType::kF32, {r, nh, hd});
  t.k = k_.View(DType::kF32, {r, nkv, hd});
  t.v = v_.View(DType::kF32, {r, nkv, hd});
  t.attn = attn_.View(DType::kF32, {r, nh, hd});
  t.hn = hn_.View(act, {r, c.dim});
  t.gate_up = gate_up_.View(act, {r, 2 * c.hidden_dim});
  t.gate = gate_.View(act, {r, c.hidden_dim});
  t.logits = logits_.View(DType::kF32, {r, c.vocab_size});
  return t;
}

}  // namespace pixtral
