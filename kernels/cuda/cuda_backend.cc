#include "kernels/cuda/cuda_backend.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "kernels/cuda/attention.h"
#include "kernels/cuda/convert.h"
#include "kernels/cuda/decode_attention.h"
#include "kernels/cuda/gemv.h"
#include "kernels/cuda/ops.h"
#include "kernels/cuda/sampling.h"
#include "kernels/cuda/tuned_gemm.h"
#include "kernels/shape_checks.h"

namespace pixtral::kernels {
namespace {

using cuda::WeightType;

// Every allocation is rounded up to this, so that views into it can be 16-byte aligned and a
// zero-element tensor still has an address.
constexpr size_t kAllocationGranularity = 256;

// A CUDA failure inside an op is a broken device or a bug, like a shape mismatch: fatal.
void CheckCuda(cudaError_t error, const char* what) {
  CHECK(error == cudaSuccess) << "CUDA backend: " << what << ": " << cudaGetErrorString(error);
}

void CheckCublas(cublasStatus_t status, const char* what) {
  CHECK(status == CUBLAS_STATUS_SUCCESS)
      << "CUDA backend: " << what << ": " << cublasGetStatusString(status);
}

size_t RoundedBytes(size_t bytes) {
  return std::max(kAllocationGranularity, (bytes + kAllocationGranularity - 1) /
                                              kAllocationGranularity * kAllocationGranularity);
}

// The stream and cuBLAS handle. Shared by the backend and every buffer it made, since a buffer
// frees itself on the stream and may outlive the backend object.
class CudaContext {
 public:
  static absl::StatusOr<std::shared_ptr<CudaContext>> Create(int device) {
    auto context = std::shared_ptr<CudaContext>(new CudaContext());
    cudaError_t error = cudaStreamCreateWithFlags(&context->stream_, cudaStreamNonBlocking);
    if (error != cudaSuccess) {
      return absl::InternalError(
          absl::StrCat("CUDA backend: cannot create a stream: ", cudaGetErrorString(error)));
    }
    if (cublasCreate(&context->cublas_) != CUBLAS_STATUS_SUCCESS) {
      return absl::InternalError("CUDA backend: cannot create a cuBLAS handle");
    }
    CheckCublas(cublasSetStream(context->cublas_, context->stream_), "cublasSetStream");
    error = cudaDeviceGetAttribute(&context->sm_count_, cudaDevAttrMultiProcessorCount, device);
    if (error == cudaSuccess) error = cudaMallocHost(&context->staging_, kStagingBytes);
    if (error != cudaSuccess) {
      return absl::InternalError(
          absl::StrCat("CUDA backend: cannot allocate pinned memory: ", cudaGetErrorString(error)));
    }
    return context;
  }

  ~CudaContext() {
    if (cublas_ != nullptr && cublasDestroy(cublas_) != CUBLAS_STATUS_SUCCESS) {
      LOG(ERROR) << "CUDA backend: cublasDestroy failed";
    }
    if (stream_ == nullptr) return;
    for (const cudaError_t error : {cudaStreamSynchronize(stream_), cudaStreamDestroy(stream_)}) {
      if (error != cudaSuccess) LOG(ERROR) << "CUDA backend: " << cudaGetErrorString(error);
    }
    if (staging_ != nullptr) cudaFreeHost(staging_);
  }

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  int sm_count() const { return sm_count_; }

  // Queues a copy of `bytes` host bytes to `device` without waiting for it: small copies go
  // through a pinned staging ring (the host bytes are copied into it at once, so the caller may
  // reuse them), which is recycled after the stream has drained. Large ones (weights) wait.
  void CopyToDevice(void* device, const void* host, size_t bytes) {
    if (bytes > kStagingBytes / 4) {
      CheckCuda(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream_),
                "copy to device");
      // Pageable host memory may still be read after an async call returns: wait for it.
      CheckCuda(cudaStreamSynchronize(stream_), "copy to device");
      staging_used_ = 0;
      return;
    }
    if (staging_used_ + bytes > kStagingBytes) Drain();
    char* slot = static_cast<char*>(staging_) + staging_used_;
    std::memcpy(slot, host, bytes);
    CheckCuda(cudaMemcpyAsync(device, slot, bytes, cudaMemcpyHostToDevice, stream_),
              "copy to device");
    staging_used_ += RoundedBytes(bytes);
  }

  // Waits for every queued op; the staging ring is free again.
  void Drain() {
    CheckCuda(cudaStreamSynchronize(stream_), "stream synchronize");
    staging_used_ = 0;
  }

 private:
  static constexpr size_t kStagingBytes = size_t{16} << 20;

  CudaContext() = default;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* staging_ = nullptr;  // pinned
  size_t staging_used_ = 0;
  int sm_count_ = 1;
};

// Device memory from the stream-ordered pool (activations, scratch) or from cudaMalloc
// (weights, which live as long as the model).
class DeviceBuffer : public Buffer {
 public:
  enum class Kind { kStreamOrdered, kWeight };

  static absl::StatusOr<std::shared_ptr<DeviceBuffer>> Create(std::shared_ptr<CudaContext> context,
                                                              size_t bytes, Kind kind) {
    const size_t size = RoundedBytes(bytes);
    void* data = nullptr;
    const cudaError_t error = kind == Kind::kWeight
                                  ? cudaMalloc(&data, size)
                                  : cudaMallocAsync(&data, size, context->stream());
    if (error != cudaSuccess) {
      cudaGetLastError();  // an allocation failure is not sticky; clear it
      return absl::ResourceExhaustedError(absl::StrCat("CUDA backend: cannot allocate ", bytes,
                                                       " bytes: ", cudaGetErrorString(error)));
    }
    return std::shared_ptr<DeviceBuffer>(new DeviceBuffer(std::move(context), data, size, kind));
  }

  ~DeviceBuffer() override {
    const cudaError_t error =
        kind_ == Kind::kWeight ? cudaFree(data_) : cudaFreeAsync(data_, context_->stream());
    if (error != cudaSuccess) LOG(ERROR) << "CUDA backend: free: " << cudaGetErrorString(error);
  }

  void* data() override { return data_; }
  size_t size() const override { return size_; }

 private:
  DeviceBuffer(std::shared_ptr<CudaContext> context, void* data, size_t size, Kind kind)
      : context_(std::move(context)), data_(data), size_(size), kind_(kind) {}

  std::shared_ptr<CudaContext> context_;
  void* data_;
  size_t size_;
  Kind kind_;
};

// A CUDA graph instantiated from a stream capture. Holds the scratch buffer its kernels were
// captured with, which the backend may replace by a larger one afterwards.
class CudaGraphOps : public RecordedOps {
 public:
  CudaGraphOps(std::shared_ptr<CudaContext> context, cudaGraphExec_t exec,
               std::shared_ptr<DeviceBuffer> scratch)
      : context_(std::move(context)), exec_(exec), scratch_(std::move(scratch)) {}
  ~CudaGraphOps() override {
    if (cudaGraphExecDestroy(exec_) != cudaSuccess) LOG(ERROR) << "CUDA backend: graph destroy";
  }

  void Replay() override { CheckCuda(cudaGraphLaunch(exec_, context_->stream()), "graph launch"); }

 private:
  std::shared_ptr<CudaContext> context_;
  cudaGraphExec_t exec_;
  std::shared_ptr<DeviceBuffer> scratch_;
};

WeightType WeightTypeOf(const Tensor& t) {
  if (t.dtype() == DType::kBF16) return WeightType::kBF16;
  CHECK(t.dtype() == DType::kF32) << "weights are bf16 or f32, not " << t.DebugString();
  return WeightType::kF32;
}

bool EnvIs(const char* name, std::string_view value) {
  const char* set = std::getenv(name);
  return set != nullptr && std::string_view(set) == value;
}

int32_t ToInt32(int64_t v) {
  CHECK(v >= 0 && v <= std::numeric_limits<int32_t>::max()) << v;
  return static_cast<int32_t>(v);
}

class CudaBackend : public Backend {
 public:
  // `tuned_gemm`: bf16 products of more than a GEMV's rows through it; nullptr: cublasGemmEx.
  CudaBackend(std::shared_ptr<CudaContext> context, std::unique_ptr<cuda::TunedGemm> tuned_gemm)
      : context_(std::move(context)), tuned_gemm_(std::move(tuned_gemm)) {}

  std::string_view name() const override { return "cuda"; }
  void* NativeStream() const override { return stream(); }

  // A stream capture of the ops, instantiated as a CUDA graph.
  absl::StatusOr<std::unique_ptr<RecordedOps>> Record(std::function<absl::Status()> ops) override {
    CHECK(!recording_) << "CUDA backend: a recording inside a recording";
    CheckCuda(cudaStreamBeginCapture(stream(), cudaStreamCaptureModeThreadLocal), "begin capture");
    recording_ = true;
    const absl::Status status = ops();
    recording_ = false;
    cudaGraph_t graph = nullptr;
    cudaError_t error = cudaStreamEndCapture(stream(), &graph);
    cudaGraphExec_t exec = nullptr;
    if (error == cudaSuccess && status.ok()) error = cudaGraphInstantiate(&exec, graph, 0);
    if (graph != nullptr) cudaGraphDestroy(graph);
    if (!status.ok()) return status;
    if (error != cudaSuccess) {
      cudaGetLastError();  // a failed capture is not sticky
      return absl::InternalError(
          absl::StrCat("CUDA backend: cannot record a graph: ", cudaGetErrorString(error)));
    }
    return std::make_unique<CudaGraphOps>(context_, exec, scratch_);
  }

  absl::StatusOr<Tensor> Alloc(DType dtype, std::vector<int64_t> shape) override {
    return AllocKind(dtype, std::move(shape), DeviceBuffer::Kind::kStreamOrdered);
  }

  absl::StatusOr<Tensor> LoadWeight(
      DType dtype, std::vector<int64_t> shape, const void* host,
      std::shared_ptr<const void> /*owner: copied, not kept*/) override {
    absl::StatusOr<Tensor> t = AllocKind(dtype, std::move(shape), DeviceBuffer::Kind::kWeight);
    if (t.ok()) CopyFromHost(host, *t);
    return t;
  }

  void CopyFromHost(const void* host, const Tensor& dst) override {
    CHECK(!recording_) << "CUDA backend: CopyFromHost inside a recording";
    if (dst.bytes() == 0) return;
    context_->CopyToDevice(dst.data<void>(), host, dst.bytes());
  }

  void CopyToHost(const Tensor& src, void* host) override {
    CHECK(!recording_) << "CUDA backend: CopyToHost inside a recording";
    if (src.bytes() == 0) return;
    CheckCuda(
        cudaMemcpyAsync(host, src.data<void>(), src.bytes(), cudaMemcpyDeviceToHost, stream()),
        "copy to host");
    context_->Drain();
  }

  DType KvCacheDType() const override { return DType::kBF16; }

  absl::Status ReserveScratch(int64_t bytes) override {
    if (bytes < 0) return absl::InvalidArgumentError("ReserveScratch: negative size");
    if (scratch_ != nullptr && scratch_->size() >= static_cast<size_t>(bytes)) {
      return absl::OkStatus();
    }
    if (recording_) return absl::FailedPreconditionError("ReserveScratch inside a recording");
    return GrowScratch(static_cast<size_t>(bytes));
  }

  absl::StatusOr<int64_t> FreeMemoryBytes() const override {
    size_t free = 0, total = 0;
    const cudaError_t error = cudaMemGetInfo(&free, &total);
    if (error != cudaSuccess) {
      return absl::InternalError(absl::StrCat("cudaMemGetInfo: ", cudaGetErrorString(error)));
    }
    return static_cast<int64_t>(free);
  }

  // More rows than the GEMV takes read bf16 activations (cuBLAS's input type);
  // PIXTRAL_F32_ACTIVATIONS=1 keeps them f32 (the model's pre-bf16 path, for isolating a fault).
  DType MatMulInputDType(int64_t rows) const override {
    return rows > cuda::kGemvMaxRows && !f32_activations_ ? DType::kBF16 : DType::kF32;
  }

  void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override {
    MatMulThen(x, w, bias, /*gelu=*/false, y);
  }

  void MatMulGelu(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override {
    MatMulThen(x, w, bias, /*gelu=*/true, y);
  }

  void Add(const Tensor& a, const Tensor& b, const Tensor& out) override {
    for (const Tensor* t : {&a, &b, &out}) {
      CheckF32(*t);
      CheckSameShape(a, *t);
    }
    CheckCuda(cuda::LaunchAdd({.a = a.data<float>(),
                               .b = b.data<float>(),
                               .out = out.data<float>(),
                               .count = a.numel()},
                              stream()),
              "Add");
  }

  void RmsNorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& y) override {
    CheckF32(x);
    CheckF32OrBf16(y);
    CheckSameShape(x, y);
    const int64_t d = x.shape().back();
    CHECK(weight.rank() == 1 && weight.dim(0) == d) << weight.DebugString();
    CheckCuda(cuda::LaunchRmsNorm({.x = x.data<float>(),
                                   .weight = weight.data<void>(),
                                   .weight_type = WeightTypeOf(weight),
                                   .y = y.data<void>(),
                                   .rows = x.numel() / d,
                                   .dim = d,
                                   .eps = eps,
                                   .y_bf16 = y.dtype() == DType::kBF16},
                                  stream()),
              "RmsNorm");
  }

  void AddRmsNorm(const Tensor& x, const Tensor& delta, const Tensor& weight, float eps,
                  const Tensor& normed) override {
    CheckF32(x);
    CheckF32(delta);
    CheckF32OrBf16(normed);
    CheckSameShape(x, delta);
    CheckSameShape(x, normed);
    const int64_t d = x.shape().back();
    CHECK(weight.rank() == 1 && weight.dim(0) == d) << weight.DebugString();
    CheckCuda(cuda::LaunchAddRmsNorm({.x = x.data<float>(),
                                      .delta = delta.data<float>(),
                                      .weight = weight.data<void>(),
                                      .weight_type = WeightTypeOf(weight),
                                      .normed = normed.data<void>(),
                                      .rows = x.numel() / d,
                                      .dim = d,
                                      .eps = eps,
                                      .normed_bf16 = normed.dtype() == DType::kBF16},
                                     stream()),
              "AddRmsNorm");
  }

  // At one row the GEMV takes the norm and the residual add along (PIXTRAL_FUSED_NORMS=0: never,
  // for timing the layers without).
  bool FusesRmsNormIntoMatMul(int64_t rows) const override {
    return fused_norms_ && rows == cuda::kGemvMaxRows && !f32_activations_;
  }

  void RmsNormMatMul(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& w,
                     const Tensor& normed, const Tensor& y) override {
    if (!FusedGemv(x, w, &norm_weight, eps, /*accumulate=*/false, y)) {
      Backend::RmsNormMatMul(x, norm_weight, eps, w, normed, y);
    }
  }

  void RmsNormMatMulSwiGlu(const Tensor& x, const Tensor& norm_weight, float eps, const Tensor& w13,
                           const Tensor& normed, const Tensor& gate_up,
                           const Tensor& out) override {
    if (!FusedGemv(x, w13, &norm_weight, eps, /*accumulate=*/false, gate_up, &out)) {
      Backend::RmsNormMatMulSwiGlu(x, norm_weight, eps, w13, normed, gate_up, out);
    }
  }

  void MatMulAddTo(const Tensor& a, const Tensor& w, const Tensor& product,
                   const Tensor& x) override {
    if (!FusedGemv(a, w, nullptr, 0.0f, /*accumulate=*/true, x)) {
      Backend::MatMulAddTo(a, w, product, x);
    }
  }

  void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    for (const Tensor* t : {&gate, &up, &out}) {
      CheckF32(*t);
      CheckSameShape(gate, *t);
    }
    CheckCuda(cuda::LaunchSiluMul({.gate = gate.data<float>(),
                                   .up = up.data<float>(),
                                   .out = out.data<float>(),
                                   .count = gate.numel()},
                                  stream()),
              "SiluMul");
  }

  void SwiGlu(const Tensor& gate_up, const Tensor& out) override {
    const int64_t f = CheckSwiGlu(gate_up, out);
    CheckCuda(cuda::LaunchSwiGlu({.gate_up = gate_up.data<void>(),
                                  .out = out.data<void>(),
                                  .rows = out.dim(0),
                                  .cols = f,
                                  .gate_up_bf16 = gate_up.dtype() == DType::kBF16,
                                  .out_bf16 = out.dtype() == DType::kBF16},
                                 stream()),
              "SwiGlu");
  }

  void SplitColumns(const Tensor& x, absl::Span<const Tensor> parts) override {
    const std::vector<int64_t> widths = CheckSplitColumns(x, parts);
    cuda::SplitColumnsParams p{
        .x = x.data<float>(), .num_parts = static_cast<int>(parts.size()), .rows = x.dim(0)};
    for (size_t i = 0; i < parts.size(); ++i) {
      p.parts[i] = parts[i].data<float>();
      p.widths[i] = widths[i];
    }
    CheckCuda(cuda::LaunchSplitColumns(p, stream()), "SplitColumns");
  }

  void Gelu(const Tensor& x, const Tensor& y) override {
    CheckF32(x);
    CheckF32(y);
    CheckSameShape(x, y);
    CheckCuda(cuda::LaunchGelu({.x = x.data<float>(), .y = y.data<float>(), .count = x.numel()},
                               stream()),
              "Gelu");
  }

  void Softmax(const Tensor& x, const Tensor& y) override {
    CheckF32(x);
    CheckF32(y);
    CheckSameShape(x, y);
    const int64_t n = x.shape().back();
    CheckCuda(cuda::LaunchSoftmax(
                  {.x = x.data<float>(), .y = y.data<float>(), .rows = x.numel() / n, .cols = n},
                  stream()),
              "Softmax");
  }

  void Rope(const Tensor& x, const Tensor& cos_sin) override {
    CheckF32(x);
    CheckF32(cos_sin);
    CHECK_EQ(x.rank(), 3) << x.DebugString();
    const int64_t t = x.dim(0), h = x.dim(1), half = x.dim(2) / 2;
    CHECK(x.dim(2) % 2 == 0 && cos_sin.shape() == std::vector<int64_t>({t, half, 2}))
        << x.DebugString() << " with table " << cos_sin.DebugString();
    CheckCuda(cuda::LaunchRope({.x = x.data<float>(),
                                .cos_sin = cos_sin.data<float>(),
                                .tokens = t,
                                .heads = h,
                                .half = half},
                               stream()),
              "Rope");
  }

  void SegmentAttention(const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& segment_lengths, float scale, const Tensor& out) override {
    for (const Tensor* t : {&q, &k, &v, &out}) {
      CheckF32(*t);
      CheckSameShape(q, *t);
    }
    CHECK_EQ(q.rank(), 3);
    CheckI32(segment_lengths);
    CHECK_EQ(segment_lengths.rank(), 1);
    // k and v in bf16 for the tensor-core kernels, which copy their tiles as they are.
    const int64_t n = k.numel();
    auto* kv_bf16 = static_cast<uint16_t*>(Scratch(2 * n * sizeof(uint16_t)));
    for (const auto& [src, dst] : {std::pair{&k, kv_bf16}, std::pair{&v, kv_bf16 + n}}) {
      CheckCuda(
          cuda::LaunchF32ToBf16({.src = src->data<float>(), .dst = dst, .count = n}, stream()),
          "SegmentAttention: f32 -> bf16");
    }
    CheckCuda(cuda::LaunchSegmentAttention({.q = q.data<float>(),
                                            .k = k.data<float>(),
                                            .v = v.data<float>(),
                                            .out = out.data<float>(),
                                            .k_bf16 = kv_bf16,
                                            .v_bf16 = kv_bf16 + n,
                                            .segment_lengths = segment_lengths.data<int32_t>(),
                                            .num_segments = ToInt32(segment_lengths.dim(0)),
                                            .tokens = ToInt32(q.dim(0)),
                                            .heads = ToInt32(q.dim(1)),
                                            .head_dim = ToInt32(q.dim(2)),
                                            .scale = scale},
                                           stream()),
              "SegmentAttention");
  }

  void PagedAttention(const Tensor& qkv, const Tensor* cos_sin, const PagedBatch& batch,
                      float scale, const Tensor& k_cache, const Tensor& v_cache,
                      const Tensor& out) override {
    CheckF32(qkv);
    CheckF32OrBf16(out);
    CHECK(k_cache.dtype() == DType::kBF16) << k_cache.DebugString();
    CheckSameShape(k_cache, v_cache);
    CHECK(qkv.rank() == 2 && out.rank() == 3 && k_cache.rank() == 4);
    const int64_t t = out.dim(0), h = out.dim(1), d = out.dim(2), hkv = k_cache.dim(2);
    const int64_t row = (h + 2 * hkv) * d;
    CHECK(qkv.dim(0) == t && qkv.dim(1) == row && h % hkv == 0 && k_cache.dim(3) == d)
        << qkv.DebugString() << " for " << out.DebugString() << " and " << k_cache.DebugString();
    if (cos_sin != nullptr) {
      CheckF32(*cos_sin);
      CHECK(cos_sin->shape() == std::vector<int64_t>({t, d / 2, 2}))
          << cos_sin->DebugString() << " for " << out.DebugString();
    }
    const Tensor& seqs = batch.sequences;
    const Tensor& tables = batch.block_tables;
    CheckI32(seqs);
    CheckI32(tables);
    CHECK(seqs.rank() == 2 && seqs.dim(1) == 3 && tables.rank() == 2 &&
          tables.dim(0) == seqs.dim(0));
    // Decode rows take the grouped split-KV kernel where it has an instance for the shape.
    const bool grouped_decode = batch.has_decode && batch.max_decode_context > 0 &&
                                cuda::DecodeAttentionApplies(ToInt32(d), ToInt32(h), ToInt32(hkv));
    float* q = qkv.data<float>();
    const cuda::PagedAttentionParams params{
        .q = q,
        .k = q + h * d,
        .v = q + (h + hkv) * d,
        .qkv_stride = row,
        .out = out.data<void>(),
        .out_bf16 = out.dtype() == DType::kBF16,
        .k_cache = k_cache.data<uint16_t>(),
        .v_cache = v_cache.data<uint16_t>(),
        .sequences = seqs.data<int32_t>(),
        .block_tables = tables.data<int32_t>(),
        .num_sequences = ToInt32(seqs.dim(0)),
        .max_blocks = ToInt32(tables.dim(1)),
        .num_blocks = ToInt32(k_cache.dim(0)),
        .block_size = ToInt32(k_cache.dim(1)),
        .tokens = ToInt32(t),
        .heads = ToInt32(h),
        .kv_heads = ToInt32(hkv),
        .head_dim = ToInt32(d),
        .scale = scale,
        .has_decode = batch.has_decode && !grouped_decode,
        .has_prefill = batch.has_prefill,
        .cos_sin = cos_sin != nullptr ? cos_sin->data<float>() : nullptr};
    CheckCuda(cuda::LaunchPagedAttention(params, stream()), "PagedAttention");
    if (!grouped_decode) return;
    cuda::DecodeAttentionParams decode{.q = params.q,
                                       .q_stride = params.qkv_stride,
                                       .out = params.out,
                                       .out_bf16 = params.out_bf16,
                                       .k_cache = params.k_cache,
                                       .v_cache = params.v_cache,
                                       .sequences = params.sequences,
                                       .block_tables = params.block_tables,
                                       .num_sequences = params.num_sequences,
                                       .max_blocks = params.max_blocks,
                                       .num_blocks = params.num_blocks,
                                       .block_size = params.block_size,
                                       .tokens = params.tokens,
                                       .heads = params.heads,
                                       .kv_heads = params.kv_heads,
                                       .head_dim = params.head_dim,
                                       .scale = scale};
    const cuda::DecodeSplit split = cuda::ChooseDecodeSplit(
        decode.num_sequences, decode.kv_heads, batch.max_decode_context, context_->sm_count());
    if (split.splits > 1) {
      const int64_t partials = int64_t{decode.num_sequences} * h * split.splits;
      float* scratch = static_cast<float*>(Scratch(partials * (d + 2) * sizeof(float)));
      decode.split_out = scratch;
      decode.split_stats = scratch + partials * d;
    }
    CheckCuda(cuda::LaunchDecodeAttention(decode, split, stream()), "PagedAttention: decode");
  }

  void SampleRows(const Tensor& logits, absl::Span<const RowSampling> draws, const Tensor& ids,
                  const Tensor& logprobs) override {
    CHECK(!recording_) << "CUDA backend: SampleRows inside a recording (it uploads the draws)";
    CheckSampleRows(logits, draws.size(), ids, logprobs);
    std::vector<float> packed;
    for (const RowSampling& d : draws) {
      // A draw just under 1 may round up to 1 in f32; the kernel gives it to the last token.
      packed.insert(packed.end(), {d.temperature, d.top_p, static_cast<float>(d.uniform)});
    }
    absl::StatusOr<Tensor> device_draws = ToBackend(*this, packed, {logits.dim(0), 3});
    CHECK(device_draws.ok()) << device_draws.status();
    CheckCuda(cuda::LaunchSample({.logits = logits.data<float>(),
                                  .draws = device_draws->data<float>(),
                                  .ids = ids.data<int32_t>(),
                                  .logprobs = logprobs.data<float>(),
                                  .rows = logits.dim(0),
                                  .vocab = logits.dim(1)},
                                 stream()),
              "SampleRows");
  }

  void Gather(const Tensor& table, const Tensor& ids, const Tensor& out) override {
    CheckF32(out);
    CheckI32(ids);
    CHECK(ids.rank() == 1 && table.rank() == 2 && out.rank() == 2 && out.dim(0) == ids.dim(0) &&
          out.dim(1) == table.dim(1))
        << table.DebugString() << "[" << ids.DebugString() << "] -> " << out.DebugString();
    CheckCuda(cuda::LaunchGather({.table = table.data<void>(),
                                  .table_type = WeightTypeOf(table),
                                  .table_rows = table.dim(0),
                                  .ids = ids.data<int32_t>(),
                                  .out = out.data<float>(),
                                  .count = ids.dim(0),
                                  .dim = table.dim(1)},
                                 stream()),
              "Gather");
  }

  void Scatter(const Tensor& src, const Tensor& rows, const Tensor& dst) override {
    CheckF32(src);
    CheckF32(dst);
    CheckI32(rows);
    CHECK(rows.rank() == 1 && src.rank() == 2 && dst.rank() == 2 && rows.dim(0) == src.dim(0) &&
          src.dim(1) == dst.dim(1))
        << src.DebugString() << " -> " << dst.DebugString() << "[" << rows.DebugString() << "]";
    CheckCuda(cuda::LaunchScatter({.src = src.data<float>(),
                                   .rows = rows.data<int32_t>(),
                                   .dst = dst.data<float>(),
                                   .count = src.dim(0),
                                   .dst_rows = dst.dim(0),
                                   .dim = src.dim(1)},
                                  stream()),
              "Scatter");
  }

  void Patchify(const Tensor& image, int patch_size, const Tensor& out) override {
    CheckF32(image);
    CheckF32(out);
    CHECK_EQ(image.rank(), 3);
    const int64_t c = image.dim(0), h = image.dim(1), w = image.dim(2), p = patch_size;
    CHECK(p > 0 && h % p == 0 && w % p == 0) << image.DebugString() << " patch " << p;
    CHECK(out.shape() == std::vector<int64_t>({(h / p) * (w / p), c * p * p})) << out.DebugString();
    CheckCuda(cuda::LaunchPatchify({.image = image.data<float>(),
                                    .out = out.data<float>(),
                                    .channels = c,
                                    .height = h,
                                    .width = w,
                                    .patch = p},
                                   stream()),
              "Patchify");
  }

 private:
  cudaStream_t stream() const { return context_->stream(); }
  cublasHandle_t cublas() const { return context_->cublas(); }

  // y = act(x · wᵀ + bias): the bias and GELU in cuBLASLt's epilogue where it takes them, else
  // in one pass after the product.
  void MatMulThen(const Tensor& x, const Tensor& w, const Tensor* bias, bool gelu,
                  const Tensor& y) {
    const auto [t, k, n] = CheckMatMul(x, w, bias, y);
    if (t == 0 || n == 0) return;
    const bool x16 = x.dtype() == DType::kBF16, y16 = y.dtype() == DType::kBF16;
    // Row-major y[t, n] = x[t, k] · w[n, k]ᵀ is column-major yᵀ[n, t] = w[n, k] · xᵀ[k, t]:
    // cuBLAS's A is w read transposed, B is x as stored.
    const float one = 1.0f, zero = 0.0f;
    const int m_ = ToInt32(n), n_ = ToInt32(t), k_ = ToInt32(k);
    bool epilogue_done = false;                 // bias and activation applied by the product
    if (WeightTypeOf(w) == WeightType::kF32) {  // CheckMatMul: x and y are f32 too
      CheckCublas(
          cublasGemmEx(cublas(), CUBLAS_OP_T, CUBLAS_OP_N, m_, n_, k_, &one, w.data<void>(),
                       CUDA_R_32F, k_, x.data<void>(), CUDA_R_32F, k_, &zero, y.data<void>(),
                       CUDA_R_32F, m_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          "MatMul: f32 GEMM");
    } else if (const cuda::GemvParams gemv{.x = x16 ? nullptr : x.data<float>(),
                                           .w = w.data<uint16_t>(),
                                           .y = y16 ? nullptr : y.data<float>(),
                                           .rows = t,
                                           .k = k,
                                           .n = n,
                                           .sm_count = context_->sm_count()};
               !x16 && !y16 && cuda::GemvApplies(gemv)) {
      CheckCuda(cuda::LaunchGemvBf16(gemv, stream()), "MatMul: bf16 GEMV");
    } else {
      const void* x_bf16 = x.data<void>();  // f32 x: one conversion pass into the scratch
      if (!x16) {
        void* converted = Scratch(t * k * sizeof(uint16_t));
        CheckCuda(
            cuda::LaunchF32ToBf16(
                {.src = x.data<float>(), .dst = static_cast<uint16_t*>(converted), .count = t * k},
                stream()),
            "MatMul: f32 -> bf16");
        x_bf16 = converted;
      }
      if (tuned_gemm_ != nullptr) {
        cuda::GemmParams gemm{
            .x = x_bf16,
            .w = w.data<void>(),
            .y = y.data<void>(),
            .rows = t,
            .k = k,
            .n = n,
            .y_bf16 = y16,
            .bias = bias != nullptr ? bias->data<void>() : nullptr,
            .bias_bf16 = bias != nullptr && bias->dtype() == DType::kBF16,
            .activation = gelu ? cuda::GemmActivation::kGelu : cuda::GemmActivation::kNone};
        absl::Status status =
            epilogues_ ? tuned_gemm_->Run(gemm) : absl::UnimplementedError("epilogues off");
        epilogue_done = status.ok();
        if (absl::IsUnimplemented(status)) {  // no such epilogue: the plain product, then ours
          gemm.bias = nullptr;
          gemm.activation = cuda::GemmActivation::kNone;
          status = tuned_gemm_->Run(gemm);
        }
        CHECK(status.ok()) << "MatMul: " << status;
      } else {
        CheckCublas(cublasGemmEx(cublas(), CUBLAS_OP_T, CUBLAS_OP_N, m_, n_, k_, &one,
                                 w.data<void>(), CUDA_R_16BF, k_, x_bf16, CUDA_R_16BF, k_, &zero,
                                 y.data<void>(), y16 ? CUDA_R_16BF : CUDA_R_32F, m_,
                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                    "MatMul: bf16 GEMM");
      }
    }
    if (!epilogue_done && (bias != nullptr || gelu)) {
      CheckCuda(cuda::LaunchAddBias(
                    {.y = y.data<void>(),
                     .bias = bias != nullptr ? bias->data<void>() : nullptr,
                     .bias_type = bias != nullptr ? WeightTypeOf(*bias) : WeightType::kF32,
                     .rows = t,
                     .cols = n,
                     .y_bf16 = y16,
                     .gelu = gelu},
                    stream()),
                "MatMul: bias / GELU");
    }
  }

  // y (+)= RmsNorm?(x) · wᵀ as one GEMV where FusesRmsNormIntoMatMul holds and the GEMV takes the
  // operands (bf16 weights, f32 x and y); false, and nothing issued, where not.
  // With swiglu_out: SwiGlu(y) into swiglu_out, and y (the stacked w1/w3 product's shape) left
  // untouched. The shapes (the norm weight's too) are checked whether it fuses or not.
  bool FusedGemv(const Tensor& x, const Tensor& w, const Tensor* norm_weight, float eps,
                 bool accumulate, const Tensor& y, const Tensor* swiglu_out = nullptr) {
    if (norm_weight != nullptr) {
      CHECK(norm_weight->rank() == 1 && norm_weight->dim(0) == x.shape().back())
          << norm_weight->DebugString();
    }
    const auto [t, k, n] = CheckMatMul(x, w, nullptr, y);
    if (swiglu_out != nullptr) {
      CHECK(swiglu_out->shape() == std::vector<int64_t>({t, n / 2}) && n % 2 == 0)
          << swiglu_out->DebugString() << " for " << y.DebugString();
      if (swiglu_out->dtype() != DType::kF32) return false;
    }
    if (!FusesRmsNormIntoMatMul(t) || WeightTypeOf(w) != WeightType::kBF16 ||
        x.dtype() != DType::kF32 || y.dtype() != DType::kF32) {
      return false;
    }
    const cuda::GemvParams gemv{
        .x = x.data<float>(),
        .w = w.data<uint16_t>(),
        .y = (swiglu_out != nullptr ? *swiglu_out : y).data<float>(),
        .rows = t,
        .k = k,
        .n = n,
        .sm_count = context_->sm_count(),
        .norm_weight = norm_weight != nullptr ? norm_weight->data<void>() : nullptr,
        .norm_weight_bf16 = norm_weight != nullptr && norm_weight->dtype() == DType::kBF16,
        .eps = eps,
        .accumulate = accumulate,
        .swiglu = swiglu_out != nullptr};
    if (!cuda::GemvApplies(gemv)) return false;
    CheckCuda(cuda::LaunchGemvBf16(gemv, stream()), "MatMul: fused bf16 GEMV");
    return true;
  }

  // Device scratch of at least `bytes` for the op being issued: ops run in stream order, so each
  // op's use ends before the next one's begins. It grows outside recordings only (a recording's
  // ops ran once before, and sized it); a recording keeps the buffer it captured alive.
  // Callers reserve it first (ReserveScratch): growing here is a bug's last resort, fatal if the
  // memory is not there.
  void* Scratch(size_t bytes) {
    if (scratch_ == nullptr || scratch_->size() < bytes) {
      CHECK(!recording_) << "CUDA backend: " << bytes
                         << " bytes of scratch inside a recording (its ops never ran before)";
      const absl::Status grown = GrowScratch(bytes);
      CHECK(grown.ok()) << "CUDA backend: scratch: " << grown;
    }
    return scratch_->data();
  }

  // Replaces the scratch with one of at least `bytes` (half as large again as the old one where
  // that fits), freeing the old one in stream order, after its users.
  absl::Status GrowScratch(size_t bytes) {
    const size_t old = scratch_ == nullptr ? 0 : scratch_->size();
    for (const size_t size : {std::max(bytes, old * 3 / 2), bytes}) {
      absl::StatusOr<std::shared_ptr<DeviceBuffer>> buffer =
          DeviceBuffer::Create(context_, size, DeviceBuffer::Kind::kStreamOrdered);
      if (buffer.ok()) {
        scratch_ = *std::move(buffer);
        return absl::OkStatus();
      }
      if (size == bytes) return buffer.status();
    }
    return absl::OkStatus();  // not reached
  }

  absl::StatusOr<Tensor> AllocKind(DType dtype, std::vector<int64_t> shape,
                                   DeviceBuffer::Kind kind) {
    if (recording_) {
      return absl::FailedPreconditionError("CUDA backend: Alloc inside a recording");
    }
    int64_t numel = 1;
    for (int64_t d : shape) {
      if (d < 0) return absl::InvalidArgumentError("Alloc: negative dimension");
      numel *= d;
    }
    absl::StatusOr<std::shared_ptr<DeviceBuffer>> buffer =
        DeviceBuffer::Create(context_, static_cast<size_t>(numel) * DTypeSize(dtype), kind);
    if (!buffer.ok()) return buffer.status();
    return Tensor(*std::move(buffer), 0, dtype, std::move(shape));
  }

  std::shared_ptr<CudaContext> context_;
  std::unique_ptr<cuda::TunedGemm> tuned_gemm_;
  std::shared_ptr<DeviceBuffer> scratch_;  // see Scratch
  bool recording_ = false;                 // inside Record's stream capture
  // PIXTRAL_F32_ACTIVATIONS=1: MatMulInputDType is always f32. PIXTRAL_GEMM_EPILOGUES=0: bias
  // and GELU in a pass of their own after every product (as before the cuBLASLt epilogues).
  bool f32_activations_ = EnvIs("PIXTRAL_F32_ACTIVATIONS", "1");
  bool epilogues_ = !EnvIs("PIXTRAL_GEMM_EPILOGUES", "0");
  bool fused_norms_ = !EnvIs("PIXTRAL_FUSED_NORMS", "0");
};

}  // namespace

absl::StatusOr<std::unique_ptr<Backend>> NewCudaBackend(int device) {
  int devices = 0;
  const cudaError_t error = cudaGetDeviceCount(&devices);
  if (error != cudaSuccess || devices == 0) {
    cudaGetLastError();
    return absl::UnavailableError(absl::StrCat(
        "CUDA backend: no CUDA device is available (",
        error == cudaSuccess ? "0 devices" : cudaGetErrorString(error), "); use --backend=cpu"));
  }
  if (device < 0 || device >= devices) {
    return absl::UnavailableError(
        absl::StrCat("CUDA backend: no CUDA device ", device, " (", devices, " visible)"));
  }
  // The calling thread's current device from here on: every op on this backend must be issued
  // from a thread whose current device is `device` (tensor-parallel ranks each have their own).
  CheckCuda(cudaSetDevice(device), "cudaSetDevice");
  // Keep freed activations in the stream-ordered pool instead of returning them to the driver at
  // every synchronization: forward steps allocate and free the same sizes again and again.
  cudaMemPool_t pool;
  CheckCuda(cudaDeviceGetDefaultMemPool(&pool, device), "cudaDeviceGetDefaultMemPool");
  uint64_t threshold = std::numeric_limits<uint64_t>::max();
  CheckCuda(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold),
            "cudaMemPoolSetAttribute");
  absl::StatusOr<std::shared_ptr<CudaContext>> context = CudaContext::Create(device);
  if (!context.ok()) return context.status();
  // PIXTRAL_CUBLAS_DEFAULT=1 keeps cuBLAS's default choice of GEMM kernels, for benchmarks that
  // compare it with the tuned one.
  std::unique_ptr<cuda::TunedGemm> tuned;
  const char* default_gemm = std::getenv("PIXTRAL_CUBLAS_DEFAULT");
  if (default_gemm == nullptr || std::string_view(default_gemm) != "1") {
    tuned = std::make_unique<cuda::TunedGemm>((*context)->stream());
    if (absl::Status status = tuned->Init(); !status.ok()) return status;
  }
  return std::make_unique<CudaBackend>(*std::move(context), std::move(tuned));
}

}  // namespace pixtral::kernels
