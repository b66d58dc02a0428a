// The op interface: everything the Pixtral model computes, behind one abstract Backend.
//
// Model code (vision_encoder/, decoder/) is written once against this interface; kernels/cpu is
// the float32 reference implementation and a CUDA backend (device memory, one stream) plugs in
// behind the same calls. A backend owns the memory of every tensor it computes on: weights are
// loaded into it, activations are allocated from it, and host data crosses the boundary only
// through CopyFromHost / CopyToHost. Ops run in the order they are issued (on the backend's
// stream); CopyToHost waits for them.
//
// Layout conventions: tensors are row-major with tokens as rows. Activations are f32 (the
// inputs and outputs of MatMul, and the outputs of the ops that feed one, may be bf16: see
// MatMulInputDType); weights
// (matrices in the checkpoint's [out, in] layout, biases, norm scales, embedding tables) are bf16
// or f32; token ids and row indices are i32. Shapes are checked; a mismatch is a bug in
// the calling model code (CHECK), never a result of user input, which the model validates first.
//
// Example: one pre-norm SwiGLU MLP block over `x` [T, dim].
//
//   Backend& b = *backend;
//   Tensor h    = *b.Alloc(DType::kF32, {T, dim});
//   Tensor gate = *b.Alloc(DType::kF32, {T, hidden});
//   Tensor up   = *b.Alloc(DType::kF32, {T, hidden});
//   b.RmsNorm(x, ffn_norm, 1e-5f, h);
//   b.MatMul(h, w1, nullptr, gate);
//   b.MatMul(h, w3, nullptr, up);
//   b.SiluMul(gate, up, gate);          // in place is allowed for element-wise ops
//   b.MatMul(gate, w2, nullptr, h);
//   b.Add(x, h, x);                     // residual
//   std::vector<float> out(x.numel());
//   b.CopyToHost(x, out.data());
#ifndef PIXTRAL_KERNELS_BACKEND_H_
#define PIXTRAL_KERNELS_BACKEND_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/sampling.h"
#include "kernels/tensor.h"

namespace pixtral::kernels {

// One sequence's share of a batched attention step over the paged KV cache. Its new tokens are
// rows [q_begin, q_begin + q_len) of q/k/v and sit at positions start_pos, start_pos + 1, ...;
// the cache already holds its positions [0, start_pos). Position p lives in cache block
// block_table[p / block_size] at slot p % block_size.
struct PagedSequence {
  int32_t q_begin;
  int32_t q_len;
  int32_t start_pos;
  absl::Span<const int32_t> block_table;
};

// The PagedSequences of one step in backend memory, made once per step by MakePagedBatch and read
// by PagedAttention in every layer (a device backend uploads the metadata once, not per layer).
struct PagedBatch {
  Tensor sequences;     // i32 [S, 3]: q_begin, q_len, start_pos
  Tensor block_tables;  // i32 [S, max blocks]: one block table per row, padded with -1
  // Whether some sequence has one new token (decode) / more than one (a prompt chunk), known on
  // the host: a device backend skips launching the kernel of a kind that has no work. True is
  // always correct.
  bool has_decode = true;
  bool has_prefill = true;
  // The most positions a decode sequence attends over (start_pos + 1), known on the host: a
  // device backend sizes its split of long contexts by it. Larger is always correct.
  int32_t max_decode_context = 0;
};

// Ops recorded by Backend::Record, replayed as one unit (a CUDA graph on the CUDA backend: one
// launch instead of hundreds). A replay reads and writes the same tensors as the recording did;
// what they hold may change between replays.
class RecordedOps {
 public:
  virtual ~RecordedOps() = default;
  virtual void Replay() = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;
  // The device stream the ops run on (a cudaStream_t for the CUDA backend), so that a
  // communicator (kernels/communicator.h) can queue its collectives in order with them; nullptr
  // for host backends, whose ops are done when they return.
  virtual void* NativeStream() const { return nullptr; }

  // Records the ops that `ops` issues, without running them, for replay. Inside `ops` only
  // compute ops may be issued (no Alloc, copies, LoadWeight or SampleRows, which reach the host),
  // and every matrix product's shape must already have run once outside a recording (a device
  // backend tunes a new shape by timing it). The CPU backend's recording keeps `ops` and calls it
  // again at each replay, so `ops` must capture by value what its ops read.
  virtual absl::StatusOr<std::unique_ptr<RecordedOps>> Record(
      std::function<absl::Status()> ops) = 0;

  // ---- Memory -----------------------------------------------------------------------------------

  // An uninitialized tensor in backend memory.
  virtual absl::StatusOr<Tensor> Alloc(DType dtype, std::vector<int64_t> shape) = 0;
  // A weight whose bytes are in host memory that stays valid while `owner` lives (e.g. a
  // memory-mapped checkpoint). Host backends may use the bytes in place; device backends copy.
  virtual absl::StatusOr<Tensor> LoadWeight(DType dtype, std::vector<int64_t> shape,
                                            const void* host,
                                            std::shared_ptr<const void> owner) = 0;
  // dst.bytes() bytes from host to backend / backend to host. CopyToHost waits for queued ops.
  virtual void CopyFromHost(const void* host, const Tensor& dst) = 0;
  virtual void CopyToHost(const Tensor& src, void* host) = 0;
  // The element type the KV cache is stored in (f32 on the CPU, bf16 on the GPU).
  virtual DType KvCacheDType() const = 0;
  // The element type in which this backend wants activations that are only read by MatMul
  // (normed rows, SwiGLU products, a product feeding another product) for `rows` rows: f32 on
  // the CPU (the reference); bf16 on the GPU for more rows than its GEMV takes, since its GEMMs
  // read bf16 and an f32 input costs a conversion pass. Either is always correct.
  virtual DType MatMulInputDType(int64_t rows) const = 0;
  // Makes the scratch that ops use inside (a device backend's input conversions, attention
  // partials) at least `bytes`, so that the ops of a step that needs no more cannot fail to get
  // it: ResourceExhausted if the memory is not there. Host backends need none.
  virtual absl::Status ReserveScratch(int64_t /*bytes*/) { return absl::OkStatus(); }
  // Bytes of device memory still free, for sizing the KV cache after the weights are loaded;
  // Unimplemented on host backends (whose caches are sized by the caller).
  virtual absl::StatusOr<int64_t> FreeMemoryBytes() const = 0;

  // ---- Linear algebra ---------------------------------------------------------------------------

  // y[T, N] = x[T, K] · w[N, K]ᵀ (+ bias[N]).  w, bias: bf16 or f32; x, y: f32 or bf16 (with
  // f32 weights, f32), products accumulated in f32 and y rounded once.
  virtual void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) = 0;
  // y = gelu(x · wᵀ + bias), MatMul then Gelu in one op (a device backend applies both in the
  // product's epilogue, where GELU may be the tanh form: within 1e-3 of the exact one).
  virtual void MatMulGelu(const Tensor& x, const Tensor& w, const Tensor* bias,
                          const Tensor& y) = 0;
  // out[T, D] = a + b.
  virtual void Add(const Tensor& a, const Tensor& b, const Tensor& out) = 0;

  // ---- Normalization and activations ------------------------------------------------------------

  // y = x / sqrt(mean(x²) + eps) * weight, per row.  weight[D]: f32 or bf16; y: f32 or bf16.
  virtual void RmsNorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& y) = 0;
  // x += delta, then normed = RmsNorm(x): a residual add and the next block's pre-norm in one
  // pass. normed may be delta (or x), or a bf16 tensor of their shape.
  virtual void AddRmsNorm(const Tensor& x, const Tensor& delta, const Tensor& weight, float eps,
                          const Tensor& normed) = 0;
  // y = RmsNorm(x) · wᵀ: a block's pre-norm and the product after it. The default runs them
  // apart through `normed` (x's shape, in MatMulInputDType; may be x); a backend whose
  // FusesRmsNormIntoMatMul(rows) is true normalizes inside the product and leaves it untouched.
  virtual void RmsNormMatMul(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& w,
                             const Tensor& normed, const Tensor& y) {
    RmsNorm(x, norm_weight, eps, normed);
    MatMul(normed, w, nullptr, y);
  }
  // out = SwiGlu(RmsNorm(x) · w13ᵀ): the MLP's pre-norm, its stacked w1/w3 product and the SwiGLU.
  // The default runs them apart through `normed` (as RmsNormMatMul) and `gate_up` ([T, 2F]); a
  // backend whose FusesRmsNormIntoMatMul(rows) is true may do all three in one product and leave
  // both untouched.
  virtual void RmsNormMatMulSwiGlu(const Tensor& x, const Tensor& norm_weight, float eps,
                                   const Tensor& w13, const Tensor& normed, const Tensor& gate_up,
                                   const Tensor& out) {
    RmsNormMatMul(x, norm_weight, eps, w13, normed, gate_up);
    SwiGlu(gate_up, out);
  }
  // x += a · wᵀ: a block's output product and the residual add. The default runs them apart
  // through `product` (f32, x's shape).
  virtual void MatMulAddTo(const Tensor& a, const Tensor& w, const Tensor& product,
                           const Tensor& x) {
    MatMul(a, w, nullptr, product);
    Add(x, product, x);
  }
  // Whether RmsNormMatMul and MatMulAddTo of `rows` rows each run as one product. Where they do,
  // a decoder layer uses them in place of AddRmsNorm between its products (one small pass fewer
  // a norm); where not, AddRmsNorm's one pass beats the defaults' two.
  virtual bool FusesRmsNormIntoMatMul(int64_t /*rows*/) const { return false; }
  // out = silu(gate) * up, element-wise (SwiGLU).
  virtual void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) = 0;
  // SiluMul over the halves of a stacked w1/w3 product: gate_up [T, 2F], out [T, F] =
  // silu(gate_up[:, :F]) * gate_up[:, F:]. gate_up and out: f32 or bf16 each.
  virtual void SwiGlu(const Tensor& gate_up, const Tensor& out) = 0;
  // y = gelu(x) with the exact erf form (torch.nn.GELU()).
  virtual void Gelu(const Tensor& x, const Tensor& y) = 0;
  // y = softmax(x) along the last dimension.
  virtual void Softmax(const Tensor& x, const Tensor& y) = 0;

  // ---- Positions --------------------------------------------------------------------------------

  // Rotates x[T, H, D] in place, Mistral's interleaved layout: elements (2i, 2i+1) of each head
  // are one complex number, multiplied by cos_sin[t, i] = (cos θ, sin θ), cos_sin: f32[T, D/2, 2].
  // The same op serves 1D (decoder) and 2D (vision) RoPE; kernels/rope.h builds the tables.
  virtual void Rope(const Tensor& x, const Tensor& cos_sin) = 0;

  // ---- Attention --------------------------------------------------------------------------------

  // Bidirectional attention confined to segments: q, k, v, out [T, H, D]; consecutive token
  // ranges of the lengths in `segment_lengths` (i32 [S], summing to T) attend only within
  // themselves. The vision encoder's per-image (block-diagonal) attention.
  virtual void SegmentAttention(const Tensor& q, const Tensor& k, const Tensor& v,
                                const Tensor& segment_lengths, float scale, const Tensor& out) = 0;
  // Appends each sequence's new k and v to the paged cache k_cache, v_cache [num_blocks,
  // block_size, Hkv, D], then computes causal attention of its q over all of that sequence's
  // cached positions into out [T, H, D]. qkv [T, (H + 2 Hkv) D] (f32) holds each token's H q
  // heads, then its Hkv k heads, then its Hkv v heads, as the stacked wq/wk/wv product gives them
  // (no copy into separate tensors); H (from out) must be a multiple of Hkv (GQA). out is f32, or
  // bf16 where MatMulInputDType(T) is (it feeds wo's MatMul). With `cos_sin` (as Rope takes it,
  // [T, D/2, 2]), q is rotated in place in qkv and k before it is stored (RoPE), in the same pass
  // as the append on a device backend (qkv's k columns are left rotated or not); nullptr: they
  // are used as they are.
  virtual void PagedAttention(const Tensor& qkv, const Tensor* cos_sin, const PagedBatch& batch,
                              float scale, const Tensor& k_cache, const Tensor& v_cache,
                              const Tensor& out) = 0;

  // ---- Sampling ---------------------------------------------------------------------------------

  // One token per row of logits [R, V] (f32), row r drawn as draws[r] says, by
  // kernels/sampling.h's rule (a device backend computes in f32, so a draw on the boundary
  // between two tokens may fall the other way). ids: i32 [R], -1 for a row with a NaN or +inf
  // logit or only -inf ones; logprobs: f32 [R], log_softmax of the raw logits at the id.
  virtual void SampleRows(const Tensor& logits, absl::Span<const RowSampling> draws,
                          const Tensor& ids, const Tensor& logprobs) = 0;

  // ---- Gather / scatter -------------------------------------------------------------------------

  // Consecutive column ranges of x [T, C] (f32) copied into `parts`, in order: part i holds T
  // rows of c_i elements (any shape with T first), and the c_i add up to C. The q, k and v of a
  // stacked wq/wk/wv product. At most 4 parts.
  virtual void SplitColumns(const Tensor& x, absl::Span<const Tensor> parts) = 0;
  // out[i, :] = table[ids[i], :].  table: bf16 or f32 [V, D]; ids: i32 [N]; out: f32 [N, D].
  virtual void Gather(const Tensor& table, const Tensor& ids, const Tensor& out) = 0;
  // dst[rows[i], :] = src[i, :].  src: f32 [N, D]; rows: i32 [N]; dst: f32 [T, D].
  virtual void Scatter(const Tensor& src, const Tensor& rows, const Tensor& dst) = 0;
  // out[(r * W/p + c), :] = image[:, r*p : (r+1)*p, c*p : (c+1)*p] flattened (channel, y, x),
  // i.e. the im2col of a stride-p, p×p convolution.  image: f32 [C, H, W].
  virtual void Patchify(const Tensor& image, int patch_size, const Tensor& out) = 0;
};

// Host data to a new backend tensor, and back.
absl::StatusOr<Tensor> ToBackend(Backend& backend, absl::Span<const float> data,
                                 std::vector<int64_t> shape);
absl::StatusOr<Tensor> ToBackend(Backend& backend, absl::Span<const int32_t> data,
                                 std::vector<int64_t> shape);
std::vector<float> ToHost(Backend& backend, const Tensor& tensor);  // f32 tensors

absl::StatusOr<PagedBatch> MakePagedBatch(Backend& backend,
                                          absl::Span<const PagedSequence> sequences);

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_BACKEND_H_
