#include "decoder/decode_graphs.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>
#include <tuple>

#include "common/status_macros.h"
#include "kernels/rope.h"

namespace pixtral {

using kernels::DType;
using kernels::Tensor;

DecodeGraphMode DefaultDecodeGraphMode(const kernels::Backend& backend) {
  if (backend.name() != "cuda") return DecodeGraphMode::kOff;
  const char* graphs = std::getenv("PIXTRAL_CUDA_GRAPHS");
  return graphs != nullptr && std::string_view(graphs) == "0" ? DecodeGraphMode::kBuffers
                                                              : DecodeGraphMode::kRecorded;
}

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
    kernels::Backend& backend, const DecodeStepShape& c, int block_size, int rows) {
  std::unique_ptr<DecodeStepBuffers> b(new DecodeStepBuffers(c, block_size, rows));
  const int64_t r = rows, hd = c.head_dim, nh = c.heads, nkv = c.kv_heads;
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
           {&b->attn_, DType::kF32, r * nh * hd},
           {&b->hn_, DType::kF32, r * c.dim},
           {&b->gate_up_, DType::kF32, r * 2 * c.hidden},
           {&b->gate_, DType::kF32, r * c.hidden},
           {&b->logits_, DType::kF32, r * c.vocab},
       }) {
    PIXTRAL_ASSIGN_OR_RETURN(*tensor, backend.Alloc(dtype, {numel}));
  }
  return b;
}

int64_t StepScratchBytes(const DecodeStepShape& c, int64_t rows, int64_t sequences,
                         int64_t positions) {
  rows = std::max<int64_t>(rows, kMaxDecodeGraphRows);
  positions = std::max(positions, DecodeContextBucket(positions));
  const int64_t conversion = rows * std::max<int64_t>(c.heads * c.head_dim, c.dim) * 2;
  const int64_t partials = sequences * c.heads * ((positions + 127) / 128) * (c.head_dim + 2) * 4;
  return std::max(conversion, partials);
}

absl::Status AllocLayerActivations(kernels::Backend& b, const DecodeStepShape& c, int64_t t,
                                   LayerTensors& lt) {
  const int64_t hd = c.head_dim, nh = c.heads, nkv = c.kv_heads;
  PIXTRAL_ASSIGN_OR_RETURN(lt.x, b.Alloc(DType::kF32, {t, c.dim}));
  PIXTRAL_ASSIGN_OR_RETURN(lt.h, b.Alloc(DType::kF32, {t, c.dim}));
  PIXTRAL_ASSIGN_OR_RETURN(lt.qkv, b.Alloc(DType::kF32, {t, (nh + 2 * nkv) * hd}));
  // The tensors only products read (normed rows, the attention output, the MLP's) in the
  // backend's input type: bf16 on the GPU for prompts, so no product converts its input; f32 on
  // the CPU (hn is then h).
  const DType act = b.MatMulInputDType(t);
  PIXTRAL_ASSIGN_OR_RETURN(lt.attn, b.Alloc(act, {t, nh, hd}));
  lt.hn = lt.h;
  if (act != DType::kF32) {
    PIXTRAL_ASSIGN_OR_RETURN(lt.hn, b.Alloc(act, {t, c.dim}));
  }
  PIXTRAL_ASSIGN_OR_RETURN(lt.gate_up, b.Alloc(act, {t, 2 * c.hidden}));
  PIXTRAL_ASSIGN_OR_RETURN(lt.gate, b.Alloc(act, {t, c.hidden}));
  return absl::OkStatus();
}

DecodeStepTensors DecodeStepBuffers::For(const kernels::Backend& backend, int rows,
                                         int64_t context) const {
  const DecodeStepShape& c = shape_;
  const int64_t r = rows, hd = c.head_dim, nh = c.heads, nkv = c.kv_heads;
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
  t.attn = attn_.View(act, {r, nh, hd});
  t.hn = hn_.View(act, {r, c.dim});
  t.gate_up = gate_up_.View(act, {r, 2 * c.hidden});
  t.gate = gate_.View(act, {r, c.hidden});
  t.logits = logits_.View(DType::kF32, {r, c.vocab});
  return t;
}

DecodeStepInputs PadDecodeStep(int rows, int64_t context, int block_size, int head_dim,
                               double rope_theta, absl::Span<const int32_t> tokens,
                               absl::Span<const int64_t> lengths,
                               absl::Span<const absl::Span<const int32_t>> blocks) {
  const int n = static_cast<int>(tokens.size());
  const int64_t width = (context + block_size - 1) / block_size;
  DecodeStepInputs in{.rows = rows, .context = context};
  in.ids.assign(rows, 0);
  in.sequences.assign(rows * 3, 0);
  in.tables.assign(rows * width, -1);
  std::vector<int32_t> positions(rows, 0);
  for (int i = 0; i < rows; ++i) in.sequences[3 * i] = i;  // q_begin; q_len 0: padding
  for (int i = 0; i < n; ++i) {
    in.ids[i] = tokens[i];
    positions[i] = static_cast<int32_t>(lengths[i]);
    in.sequences[3 * i + 1] = 1;
    in.sequences[3 * i + 2] = static_cast<int32_t>(lengths[i]);
    std::copy_n(blocks[i].begin(), std::min<int64_t>(width, std::ssize(blocks[i])),
                in.tables.begin() + i * width);
  }
  in.rope = kernels::RopeTable1D(positions, head_dim, rope_theta);
  return in;
}

void UploadDecodeStep(kernels::Backend& backend, const DecodeStepInputs& in,
                      const DecodeStepTensors& t) {
  backend.CopyFromHost(in.ids.data(), t.ids);
  backend.CopyFromHost(in.rope.data(), t.rope);
  backend.CopyFromHost(in.sequences.data(), t.paged.sequences);
  backend.CopyFromHost(in.tables.data(), t.paged.block_tables);
}

}  // namespace pixtral
