#include "kernels/cuda/tuned_gemm.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"

namespace pixtral::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{64} << 20;
// Decode shapes: every candidate, 4 timed runs after a warm-up (each run is tens of us).
constexpr int kCandidates = 16;
constexpr int kTimedRuns = 4;
// Prompt shapes: a run is ~0.1-3 ms and a bucket is tuned once; 8 candidates, 2 timed runs.
constexpr int kPromptCandidates = 8;
constexpr int kPromptTimedRuns = 2;

absl::Status LtError(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("cuBLASLt: ", what, ": ", cublasGetStatusString(status)));
}

absl::Status CudaError(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("cuBLASLt tuning: ", what, ": ", cudaGetErrorString(error)));
}

cublasLtEpilogue_t EpilogueOf(const GemmParams& p) {
  const bool gelu = p.activation == GemmActivation::kGelu;
  if (p.bias != nullptr) return gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  return gelu ? CUBLASLT_EPILOGUE_GELU : CUBLASLT_EPILOGUE_DEFAULT;
}

}  // namespace

TunedGemm::TunedGemm(cudaStream_t stream) : stream_(stream) {
  const char* tune = std::getenv("PIXTRAL_TUNE_PROMPT_GEMMS");
  tune_prompts_ = tune == nullptr || std::string_view(tune) != "0";
}

TunedGemm::Plan::~Plan() {
  if (a != nullptr) cublasLtMatrixLayoutDestroy(a);
  if (b != nullptr) cublasLtMatrixLayoutDestroy(b);
  if (c != nullptr) cublasLtMatrixLayoutDestroy(c);
  if (op != nullptr) cublasLtMatmulDescDestroy(op);
}

TunedGemm::~TunedGemm() {
  plans_.clear();
  if (workspace_ != nullptr) cudaFree(workspace_);
  if (handle_ != nullptr) cublasLtDestroy(handle_);
}

absl::Status TunedGemm::Init() {
  if (absl::Status s = LtError(cublasLtCreate(&handle_), "create"); !s.ok()) return s;
  workspace_bytes_ = kWorkspaceBytes;
  return CudaError(cudaMalloc(&workspace_, workspace_bytes_), "workspace");
}

int64_t TunedGemm::RowBucket(int64_t rows) {
  if (rows <= kMaxExactRows) return rows;
  const int64_t step = rows <= kMaxTunedRows ? 32 : rows <= 8192 ? 512 : 2048;
  return (rows + step - 1) / step * step;
}

TunedGemm::Key TunedGemm::KeyOf(const GemmParams& p, int64_t rows) {
  const int bias = p.bias == nullptr ? 0 : p.bias_bf16 ? 2 : 1;
  return {rows, p.k, p.n, p.y_bf16, bias, static_cast<int>(p.activation)};
}

absl::Status TunedGemm::Describe(const GemmParams& p, Plan& plan) {
  // Row-major y[rows, n] = x · wᵀ is column-major yᵀ[n, rows] = w[n, k]-as-[k, n]ᵀ · xᵀ[k, rows];
  // the bias runs along yᵀ's rows, i.e. per output feature, as the epilogue applies it.
  const cublasOperation_t transpose = CUBLAS_OP_T, keep = CUBLAS_OP_N;
  const uint64_t m = p.n, n = p.rows, k = p.k;
  if (absl::Status s = LtError(cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F),
                               "matmul desc");
      !s.ok()) {
    return s;
  }
  cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &transpose,
                                 sizeof(transpose));
  cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &keep, sizeof(keep));
  const cublasLtEpilogue_t epilogue = EpilogueOf(p);
  if (epilogue != CUBLASLT_EPILOGUE_DEFAULT) {
    // A descriptor that does not take the epilogue or the bias type is "no algorithm": the
    // caller applies them itself.
    const cudaDataType_t bias_type = p.bias_bf16 ? CUDA_R_16BF : CUDA_R_32F;
    if (cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue,
                                       sizeof(epilogue)) != CUBLAS_STATUS_SUCCESS ||
        (p.bias != nullptr &&
         (cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type,
                                         sizeof(bias_type)) != CUBLAS_STATUS_SUCCESS ||
          cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &p.bias,
                                         sizeof(p.bias)) != CUBLAS_STATUS_SUCCESS))) {
      return absl::UnimplementedError("cuBLASLt: epilogue not supported");
    }
  }
  const cudaDataType_t y_type = p.y_bf16 ? CUDA_R_16BF : CUDA_R_32F;
  for (auto [layout, type, rows, cols, ld] :
       {std::tuple{&plan.a, CUDA_R_16BF, k, m, k}, std::tuple{&plan.b, CUDA_R_16BF, k, n, k},
        std::tuple{&plan.c, y_type, m, n, m}}) {
    if (absl::Status s =
            LtError(cublasLtMatrixLayoutCreate(layout, type, rows, cols, ld), "layout");
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

int TunedGemm::Fastest(const GemmParams& p, const Plan& plan,
                       const cublasLtMatmulHeuristicResult_t* results, int found, int runs) {
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  float best_ms = 1e30f;
  int best = 0;
  const float one = 1.0f, zero = 0.0f;
  for (int i = 0; i < found; ++i) {
    float total = 0.0f;
    bool ok = true;
    for (int run = 0; run <= runs && ok; ++run) {  // run 0 warms up
      cudaEventRecord(start, stream_);
      ok = cublasLtMatmul(handle_, plan.op, &one, p.w, plan.a, p.x, plan.b, &zero, p.y, plan.c, p.y,
                          plan.c, &results[i].algo, workspace_, results[i].workspaceSize,
                          stream_) == CUBLAS_STATUS_SUCCESS;
      cudaEventRecord(stop, stream_);
      cudaEventSynchronize(stop);
      float ms = 0.0f;
      cudaEventElapsedTime(&ms, start, stop);
      if (run > 0) total += ms;
    }
    if (ok && total < best_ms) best_ms = total, best = i;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best;
}

absl::Status TunedGemm::MakePlan(const GemmParams& p, Plan& plan) {
  if (absl::Status s = Describe(p, plan); !s.ok()) return s;
  const bool prompt = p.rows > kMaxTunedRows;
  const bool shared = p.rows > kMaxExactRows && (!prompt || tune_prompts_);
  const Key bucket = KeyOf(p, RowBucket(p.rows));
  if (shared) {
    // Another row count of this bucket was tuned: its winner, where cuBLASLt takes it here.
    if (auto it = bucket_algos_.find(bucket); it != bucket_algos_.end()) {
      cublasLtMatmulHeuristicResult_t check{};
      if (cublasLtMatmulAlgoCheck(handle_, plan.op, plan.a, plan.b, plan.c, plan.c, &it->second,
                                  &check) == CUBLAS_STATUS_SUCCESS &&
          check.workspaceSize <= workspace_bytes_) {
        plan.algo = it->second;
        plan.workspace = check.workspaceSize;
        return absl::OkStatus();
      }
    }
  }
  cublasLtMatmulPreference_t preference;
  if (absl::Status s = LtError(cublasLtMatmulPreferenceCreate(&preference), "preference");
      !s.ok()) {
    return s;
  }
  cublasLtMatmulPreferenceSetAttribute(preference, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                       &workspace_bytes_, sizeof(workspace_bytes_));
  cublasLtMatmulHeuristicResult_t results[kCandidates];
  int found = 0;
  const int wanted = prompt ? kPromptCandidates : kCandidates;
  const cublasStatus_t heuristic = cublasLtMatmulAlgoGetHeuristic(
      handle_, plan.op, plan.a, plan.b, plan.c, plan.c, preference, wanted, results, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  const bool has_epilogue = EpilogueOf(p) != CUBLASLT_EPILOGUE_DEFAULT;
  if (has_epilogue && (heuristic != CUBLAS_STATUS_SUCCESS || found == 0)) {
    return absl::UnimplementedError("cuBLASLt: no algorithm for this epilogue");
  }
  if (absl::Status s = LtError(heuristic, "heuristic"); !s.ok()) return s;
  if (found == 0) return absl::InternalError("cuBLASLt: no algorithm for this shape");
  int best = 0;
  if (found > 1 && (!prompt || tune_prompts_)) {
    best = Fastest(p, plan, results, found, prompt ? kPromptTimedRuns : kTimedRuns);
  }
  plan.algo = results[best].algo;
  plan.workspace = results[best].workspaceSize;
  if (shared) bucket_algos_.emplace(bucket, plan.algo);
  return CudaError(cudaGetLastError(), "timing");
}

absl::Status TunedGemm::Run(const GemmParams& p) {
  const Key key = KeyOf(p, p.rows);
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    if (unsupported_.contains(key)) {
      return absl::UnimplementedError("cuBLASLt: no algorithm for this epilogue");
    }
    cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
    cudaStreamIsCapturing(stream_, &capture);
    if (capture != cudaStreamCaptureStatusNone) {  // timing synchronizes: not in a capture
      return absl::FailedPreconditionError(
          "TunedGemm: a shape seen first inside a stream capture (run it once before)");
    }
    auto plan = std::make_unique<Plan>();
    if (absl::Status s = MakePlan(p, *plan); !s.ok()) {
      if (absl::IsUnimplemented(s)) unsupported_.insert(key);
      return s;
    }
    it = plans_.emplace(key, std::move(plan)).first;
  }
  const Plan& plan = *it->second;
  // The plan is shared by every bias of its shape (one per layer): point it at this one.
  if (p.bias != nullptr) {
    if (absl::Status s =
            LtError(cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                   &p.bias, sizeof(p.bias)),
                    "bias pointer");
        !s.ok()) {
      return s;
    }
  }
  const float one = 1.0f, zero = 0.0f;
  return LtError(
      cublasLtMatmul(handle_, plan.op, &one, p.w, plan.a, p.x, plan.b, &zero, p.y, plan.c, p.y,
                     plan.c, &plan.algo, workspace_, plan.workspace, stream_),
      "matmul");
}

}  // namespace pixtral::cuda
