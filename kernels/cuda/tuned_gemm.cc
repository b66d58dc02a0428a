#include "kernels/cuda/tuned_gemm.h"

#include <algorithm>
#include <memory>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"

namespace pixtral::cuda {
namespace {

constexpr size_t kWorkspaceBytes = size_t{64} << 20;
constexpr int kCandidates = 16;
constexpr int kTimedRuns = 4;

absl::Status LtError(cublasStatus_t status, const char* what) {
  if (status == CUBLAS_STATUS_SUCCESS) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("cuBLASLt: ", what, ": ", cublasGetStatusString(status)));
}

absl::Status CudaError(cudaError_t error, const char* what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(
      absl::StrCat("cuBLASLt tuning: ", what, ": ", cudaGetErrorString(error)));
}

}  // namespace

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
  int device = 0;
  if (cudaGetDevice(&device) == cudaSuccess) {
    cudaDeviceGetAttribute(&sm_count_, cudaDevAttrMultiProcessorCount, device);
  }
  workspace_bytes_ = kWorkspaceBytes;
  return CudaError(cudaMalloc(&workspace_, workspace_bytes_), "workspace");
}

absl::Status TunedGemm::MakePlan(const GemmParams& p, Plan& plan) {
  // Row-major y[rows, n] = x · wᵀ is column-major yᵀ[n, rows] = w[n, k]-as-[k, n]ᵀ · xᵀ[k, rows].
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
  for (auto [layout, type, rows, cols, ld] :
       {std::tuple{&plan.a, CUDA_R_16BF, k, m, k}, std::tuple{&plan.b, CUDA_R_16BF, k, n, k},
        std::tuple{&plan.c, CUDA_R_32F, m, n, m}}) {
    if (absl::Status s =
            LtError(cublasLtMatrixLayoutCreate(layout, type, rows, cols, ld), "layout");
        !s.ok()) {
      return s;
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
  const cublasStatus_t heuristic = cublasLtMatmulAlgoGetHeuristic(
      handle_, plan.op, plan.a, plan.b, plan.c, plan.c, preference, kCandidates, results, &found);
  cublasLtMatmulPreferenceDestroy(preference);
  if (absl::Status s = LtError(heuristic, "heuristic"); !s.ok()) return s;
  if (found == 0) return absl::InternalError("cuBLASLt: no algorithm for this shape");
  int best = 0;
  const SkinnyGemmParams skinny =
      Skinny(p, ChooseSkinnySplits(p.rows, p.k, p.n, sm_count_, workspace_bytes_));
  const bool skinny_applies = SkinnyGemmApplies(skinny);
  if (p.rows <= kMaxTunedRows && (found > 1 || skinny_applies)) {
    cudaEvent_t start, stop;
    cudaEventCreate(&start);
    cudaEventCreate(&stop);
    // Candidate i < found is cuBLASLt's i-th; i == found is the skinny kernel.
    auto time = [&](int i) {
      const float one = 1.0f, zero = 0.0f;
      float total = 0.0f;
      bool ok = true;
      for (int run = 0; run <= kTimedRuns && ok; ++run) {  // run 0 warms up
        cudaEventRecord(start, stream_);
        ok = i < found ? cublasLtMatmul(handle_, plan.op, &one, p.w, plan.a, p.x, plan.b, &zero,
                                        p.y, plan.c, p.y, plan.c, &results[i].algo, workspace_,
                                        results[i].workspaceSize, stream_) == CUBLAS_STATUS_SUCCESS
                       : LaunchSkinnyGemm(skinny, stream_) == cudaSuccess;
        cudaEventRecord(stop, stream_);
        cudaEventSynchronize(stop);
        float ms = 0.0f;
        cudaEventElapsedTime(&ms, start, stop);
        if (run > 0) total += ms;
      }
      return ok ? total : 1e30f;
    };
    float best_ms = 1e30f;
    for (int i = 0; i < found + (skinny_applies ? 1 : 0); ++i) {
      const float ms = time(i);
      if (ms < best_ms) best_ms = ms, best = i;
    }
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
  if (best == found) {
    plan.skinny_splits = skinny.splits;
  } else {
    plan.algo = results[best].algo;
    plan.workspace = results[best].workspaceSize;
  }
  return CudaError(cudaGetLastError(), "timing");
}

SkinnyGemmParams TunedGemm::Skinny(const GemmParams& p, int splits) const {
  return {.x = static_cast<const uint16_t*>(p.x),
          .w = static_cast<const uint16_t*>(p.w),
          .y = p.y,
          .rows = p.rows,
          .k = p.k,
          .n = p.n,
          .splits = splits,
          .partials = static_cast<float*>(workspace_)};
}

absl::Status TunedGemm::Run(const GemmParams& p) {
  const std::tuple<int64_t, int64_t, int64_t> key{p.rows, p.k, p.n};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    auto plan = std::make_unique<Plan>();
    if (absl::Status s = MakePlan(p, *plan); !s.ok()) return s;
    it = plans_.emplace(key, std::move(plan)).first;
  }
  const Plan& plan = *it->second;
  if (plan.skinny_splits > 0) {
    return CudaError(LaunchSkinnyGemm(Skinny(p, plan.skinny_splits), stream_), "skinny GEMM");
  }
  const float one = 1.0f, zero = 0.0f;
  return LtError(
      cublasLtMatmul(handle_, plan.op, &one, p.w, plan.a, p.x, plan.b, &zero, p.y, plan.c, p.y,
                     plan.c, &plan.algo, workspace_, plan.workspace, stream_),
      "matmul");
}

}  // namespace pixtral::cuda
