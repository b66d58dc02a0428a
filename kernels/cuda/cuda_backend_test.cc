// Every op of the CUDA backend against the CPU reference backend on random data. GPU outputs are
// poisoned with NaN first, so an unwritten element fails (a NaN error fails every bound). Bounds
// are relative Frobenius errors: float32 arithmetic ~1e-6, bf16 operands (matrix products, the
// bf16 KV cache) ~1e-2.
// Where no GPU is visible (CI) the tests are skipped, not passed.
#include "kernels/cuda/cuda_backend.h"

#include <cmath>
#include <cstdlib>
#include <memory>
#include <numeric>
#include <random>
#include <string_view>
#include <tuple>
#include <vector>

#include "common/testing/compare.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/rope.h"

namespace pixtral::kernels {
namespace {

constexpr double kF32Tolerance = 1e-6;
constexpr double kBf16Tolerance = 1e-2;

std::vector<float> Random(size_t n, uint32_t seed, float stddev = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

int64_t Numel(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t{1}, std::multiplies<>());
}

// Any f32 or bf16 tensor, widened on the host.
std::vector<float> Widened(Backend& backend, const Tensor& t) {
  if (t.dtype() == DType::kF32) return ToHost(backend, t);
  std::vector<uint16_t> bits(t.numel());
  backend.CopyToHost(t, bits.data());
  std::vector<float> out;
  for (uint16_t b : bits) out.push_back(Bf16ToFloat(b));
  return out;
}

// The same tensor on both backends.
struct Pair {
  Tensor cpu, gpu;
};

class CudaBackendTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Backend>> gpu = NewCudaBackend();
    if (!gpu.ok()) {
      EXPECT_EQ(gpu.status().code(), absl::StatusCode::kUnavailable) << gpu.status();
      GTEST_SKIP() << gpu.status();
    }
    gpu_ = *std::move(gpu);
  }

  Pair F32(const std::vector<float>& data, std::vector<int64_t> shape) {
    return {*ToBackend(*cpu_, data, shape), *ToBackend(*gpu_, data, shape)};
  }
  Pair RandomF32(std::vector<int64_t> shape, uint32_t seed, float stddev = 1.0f) {
    return F32(Random(Numel(shape), seed, stddev), shape);
  }
  Pair I32(const std::vector<int32_t>& data) {
    const std::vector<int64_t> shape = {static_cast<int64_t>(data.size())};
    return {*ToBackend(*cpu_, data, shape), *ToBackend(*gpu_, data, shape)};
  }
  // A bf16 weight, loaded as a model's weights are.
  Pair RandomBf16(std::vector<int64_t> shape, uint32_t seed, float stddev = 1.0f) {
    auto bits = std::make_shared<std::vector<uint16_t>>();
    for (float f : Random(Numel(shape), seed, stddev)) bits->push_back(FloatToBf16(f));
    return {*cpu_->LoadWeight(DType::kBF16, shape, bits->data(), bits),
            *gpu_->LoadWeight(DType::kBF16, shape, bits->data(), bits)};
  }
  // An output: uninitialized on the CPU, NaN on the GPU.
  Pair Poisoned(std::vector<int64_t> shape) {
    return {*cpu_->Alloc(DType::kF32, shape),
            *ToBackend(*gpu_, std::vector<float>(Numel(shape), NAN), shape)};
  }

  double Error(const Pair& p) { return RelativeError(ToHost(*gpu_, p.gpu), ToHost(*cpu_, p.cpu)); }

  // bf16 activations: a random f32 tensor rounded to bf16 on the host, the same bits on both.
  Pair RandomBf16Activation(std::vector<int64_t> shape, uint32_t seed, float stddev = 1.0f) {
    std::vector<uint16_t> bits;
    for (float f : Random(Numel(shape), seed, stddev)) bits.push_back(FloatToBf16(f));
    Pair p{*cpu_->Alloc(DType::kBF16, shape), *gpu_->Alloc(DType::kBF16, shape)};
    cpu_->CopyFromHost(bits.data(), p.cpu);
    gpu_->CopyFromHost(bits.data(), p.gpu);
    return p;
  }
  // A bf16 output: uninitialized on the CPU, NaN on the GPU.
  Pair PoisonedBf16(std::vector<int64_t> shape) {
    Pair p{*cpu_->Alloc(DType::kBF16, shape), *gpu_->Alloc(DType::kBF16, shape)};
    const std::vector<uint16_t> nan(Numel(shape), 0x7fc0);
    gpu_->CopyFromHost(nan.data(), p.gpu);
    return p;
  }
  // An f32 or a bf16 output, as `bf16` says.
  Pair PoisonedOf(bool bf16, std::vector<int64_t> shape) {
    return bf16 ? PoisonedBf16(std::move(shape)) : Poisoned(std::move(shape));
  }
  double AnyError(const Pair& p) {
    return RelativeError(Widened(*gpu_, p.gpu), Widened(*cpu_, p.cpu));
  }
  // SplitColumns of x into parts of these shapes on both backends: equal to the bit.
  void ExpectSplitColumnsMatch(const Pair& x, const std::vector<std::vector<int64_t>>& shapes) {
    std::vector<Pair> parts;
    std::vector<Tensor> cpu_parts, gpu_parts;
    for (const std::vector<int64_t>& shape : shapes) parts.push_back(Poisoned(shape));
    for (const Pair& part : parts) cpu_parts.push_back(part.cpu), gpu_parts.push_back(part.gpu);
    cpu_->SplitColumns(x.cpu, cpu_parts);
    gpu_->SplitColumns(x.gpu, gpu_parts);
    for (const Pair& part : parts) EXPECT_EQ(Error(part), 0.0);
  }

  std::unique_ptr<Backend> cpu_ = NewCpuBackend();
  std::unique_ptr<Backend> gpu_;
};

TEST_F(CudaBackendTest, MatMulBf16WithBiasMatchesCpu) {
  for (const auto& [t, k, n] :
       {std::tuple{1, 640, 1000}, {3, 640, 1000}, {37, 96, 300}, {129, 512, 384}}) {
    Pair x = RandomF32({t, k}, 1), w = RandomBf16({n, k}, 2, 0.05f), b = RandomBf16({n}, 3);
    Pair y = Poisoned({t, n});
    cpu_->MatMul(x.cpu, w.cpu, &b.cpu, y.cpu);
    gpu_->MatMul(x.gpu, w.gpu, &b.gpu, y.gpu);
    EXPECT_LE(Error(y), kBf16Tolerance) << t << "x" << k << "x" << n;
  }
}

// One row takes the GEMV kernel where k is a multiple of 8 and the row is 16-byte aligned (a view
// of a row included); the others (2 to 5 rows, k = 100) take the tuned GEMMs.
TEST_F(CudaBackendTest, MatMulBf16FewRowsMatchesCpu) {
  // n = 8500, 5000, 3000, 1031 split each weight row over 1, 2, 4, 8 warps.
  for (const auto& [t, k, n] : {std::tuple{1, 5120, 1031},
                                {1, 16, 8500},
                                {3, 40, 5000},
                                {2, 24, 3000},
                                {2, 8, 3},
                                {3, 264, 77},
                                {4, 1000, 9},
                                {5, 512, 40},
                                {4, 100, 33}}) {
    Pair x = RandomF32({t, k}, 11, 2.0f), w = RandomBf16({n, k}, 12, 0.05f);
    Pair y = Poisoned({t, n});
    cpu_->MatMul(x.cpu, w.cpu, nullptr, y.cpu);
    gpu_->MatMul(x.gpu, w.gpu, nullptr, y.gpu);
    // The GEMV keeps x in f32, so it is held to an f32-accumulation bound, tighter than the
    // bf16-activation one.
    EXPECT_LE(Error(y), t == 1 && k % 8 == 0 ? 1e-5 : kBf16Tolerance) << t << "x" << k << "x" << n;
  }
  Pair x = RandomF32({5, 64}, 13), w = RandomBf16({20, 64}, 14);
  Pair y = Poisoned({1, 20});
  cpu_->MatMul(x.cpu.Rows(3, 1), w.cpu, nullptr, y.cpu);
  gpu_->MatMul(x.gpu.Rows(3, 1), w.gpu, nullptr, y.gpu);
  EXPECT_LE(Error(y), 1e-5);
}

// Prompt-sized products (past TunedGemm::kMaxExactRows: tuned per bucket of rows; 1037 and 1100
// share a bucket, as 200 and 193 (in 224) do, so the second reuses the first's algorithm) with
// every combination of bf16 or f32 input and output, bias of either type, and GELU (cuBLASLt's
// epilogue or the pass after).
TEST_F(CudaBackendTest, MatMulOfPromptShapesWithEpiloguesMatchesCpu) {
  for (const auto& [t, k, n] : {std::tuple{1100, 256, 640},
                                {1037, 256, 640},
                                {200, 256, 640},
                                {193, 256, 640},
                                {600, 1024, 136},
                                {9, 64, 72}}) {
    for (const bool x16 : {false, true}) {
      for (const bool y16 : {false, true}) {
        for (const int bias_kind : {0, 1, 2}) {  // none, f32, bf16
          for (const bool gelu : {false, true}) {
            Pair x = x16 ? RandomBf16Activation({t, k}, 21) : RandomF32({t, k}, 21);
            Pair w = RandomBf16({n, k}, 22, 0.1f);
            Pair b = bias_kind == 2 ? RandomBf16({n}, 23) : RandomF32({n}, 23);
            const Tensor* cpu_bias = bias_kind == 0 ? nullptr : &b.cpu;
            const Tensor* gpu_bias = bias_kind == 0 ? nullptr : &b.gpu;
            Pair y = PoisonedOf(y16, {t, n});
            if (gelu) {
              cpu_->MatMulGelu(x.cpu, w.cpu, cpu_bias, y.cpu);
              gpu_->MatMulGelu(x.gpu, w.gpu, gpu_bias, y.gpu);
            } else {
              cpu_->MatMul(x.cpu, w.cpu, cpu_bias, y.cpu);
              gpu_->MatMul(x.gpu, w.gpu, gpu_bias, y.gpu);
            }
            EXPECT_LE(AnyError(y), kBf16Tolerance)
                << t << "x" << k << "x" << n << " x16 " << x16 << " y16 " << y16 << " bias "
                << bias_kind << " gelu " << gelu;
          }
        }
      }
    }
  }
}

TEST_F(CudaBackendTest, MatMulInputsAreBf16PastTheGemvRows) {
  EXPECT_EQ(gpu_->MatMulInputDType(1), DType::kF32);
  // PIXTRAL_F32_ACTIVATIONS=1 in the environment makes every answer f32.
  const char* f32 = std::getenv("PIXTRAL_F32_ACTIVATIONS");
  const bool forced = f32 != nullptr && std::string_view(f32) == "1";
  EXPECT_EQ(gpu_->MatMulInputDType(2), forced ? DType::kF32 : DType::kBF16);
  EXPECT_EQ(gpu_->MatMulInputDType(4213), forced ? DType::kF32 : DType::kBF16);
}

// Norms and SwiGlu writing bf16 (the inputs of the next product), SwiGlu reading a bf16 product.
TEST_F(CudaBackendTest, Bf16OutputsOfNormsAndSwiGluMatchCpu) {
  for (int64_t dim : {5120, 1024, 77}) {
    Pair x = RandomF32({33, dim}, 31, 2.0f), delta = RandomF32({33, dim}, 32);
    Pair g16 = RandomBf16({dim}, 33), g32 = RandomF32({dim}, 34);
    Pair y = PoisonedBf16({33, dim});
    cpu_->RmsNorm(x.cpu, g16.cpu, 1e-5f, y.cpu);
    gpu_->RmsNorm(x.gpu, g16.gpu, 1e-5f, y.gpu);
    // Both round the same f32 value; a last-bit difference in f32 may flip one rounding.
    EXPECT_LE(AnyError(y), 4e-3) << "dim " << dim;
    Pair normed = PoisonedBf16({33, dim});
    cpu_->AddRmsNorm(x.cpu, delta.cpu, g32.cpu, 1e-5f, normed.cpu);
    gpu_->AddRmsNorm(x.gpu, delta.gpu, g32.gpu, 1e-5f, normed.gpu);
    EXPECT_LE(Error(x), kF32Tolerance) << "dim " << dim;
    EXPECT_LE(AnyError(normed), 4e-3) << "dim " << dim;
  }
  for (const bool in16 : {false, true}) {
    for (const bool out16 : {false, true}) {
      Pair gate_up = in16 ? RandomBf16Activation({37, 2 * 700}, 35) : RandomF32({37, 2 * 700}, 35);
      Pair out = PoisonedOf(out16, {37, 700});
      cpu_->SwiGlu(gate_up.cpu, out.cpu);
      gpu_->SwiGlu(gate_up.gpu, out.gpu);
      EXPECT_LE(AnyError(out), out16 ? 4e-3 : kF32Tolerance) << in16 << out16;
    }
  }
}

TEST_F(CudaBackendTest, MatMulF32WeightsOnRowViewsMatchCpu) {
  Pair x = RandomF32({20, 72}, 4), w = RandomF32({50, 72}, 5), b = RandomF32({50}, 6);
  Pair y = Poisoned({20, 50});
  // Rows 3..17 of x into rows 5..19 of y: views at offsets, not whole buffers.
  cpu_->MatMul(x.cpu.Rows(3, 15), w.cpu, &b.cpu, y.cpu.Rows(5, 15));
  gpu_->MatMul(x.gpu.Rows(3, 15), w.gpu, &b.gpu, y.gpu.Rows(5, 15));
  EXPECT_LE(RelativeError(ToHost(*gpu_, y.gpu.Rows(5, 15)), ToHost(*cpu_, y.cpu.Rows(5, 15))),
            1e-5);
}

TEST_F(CudaBackendTest, ElementWiseOpsMatchCpu) {
  const std::vector<int64_t> shape = {33, 1000};
  Pair a = RandomF32(shape, 7, 3.0f), b = RandomF32(shape, 8, 3.0f);
  Pair sum = Poisoned(shape), silu = Poisoned(shape), gelu = Poisoned(shape);
  for (Backend* be : {cpu_.get(), gpu_.get()}) {
    const bool gpu = be == gpu_.get();
    auto pick = [gpu](const Pair& p) { return gpu ? p.gpu : p.cpu; };
    be->Add(pick(a), pick(b), pick(sum));
    be->SiluMul(pick(a), pick(b), pick(silu));
    be->Gelu(pick(a), pick(gelu));
  }
  EXPECT_LE(Error(sum), kF32Tolerance);
  EXPECT_LE(Error(silu), kF32Tolerance);
  EXPECT_LE(Error(gelu), kF32Tolerance);
}

TEST_F(CudaBackendTest, SwiGluAndSplitColumnsMatchCpu) {
  Pair gate_up = RandomF32({37, 2 * 700}, 81), out = Poisoned({37, 700});
  cpu_->SwiGlu(gate_up.cpu, out.cpu);
  gpu_->SwiGlu(gate_up.gpu, out.gpu);
  EXPECT_LE(Error(out), kF32Tolerance);
  ExpectSplitColumnsMatch(RandomF32({5, 48 + 16 + 16}, 82), {{5, 3, 16}, {5, 1, 16}, {5, 16}});
}

TEST_F(CudaBackendTest, InPlaceElementWiseMatchesCpu) {
  Pair a = RandomF32({5, 77}, 9), b = RandomF32({5, 77}, 10);
  cpu_->SiluMul(a.cpu, b.cpu, a.cpu);
  gpu_->SiluMul(a.gpu, b.gpu, a.gpu);
  cpu_->Add(a.cpu, b.cpu, a.cpu);
  gpu_->Add(a.gpu, b.gpu, a.gpu);
  EXPECT_LE(Error(a), kF32Tolerance);
}

TEST_F(CudaBackendTest, RmsNormMatchesCpuForBf16AndF32Weights) {
  Pair x = RandomF32({17, 5120}, 11, 2.0f);
  Pair g16 = RandomBf16({5120}, 12), g32 = RandomF32({5120}, 13);
  Pair y16 = Poisoned({17, 5120});
  cpu_->RmsNorm(x.cpu, g16.cpu, 1e-5f, y16.cpu);
  gpu_->RmsNorm(x.gpu, g16.gpu, 1e-5f, y16.gpu);
  EXPECT_LE(Error(y16), kF32Tolerance);
  cpu_->RmsNorm(x.cpu, g32.cpu, 1e-5f, x.cpu);  // in place
  gpu_->RmsNorm(x.gpu, g32.gpu, 1e-5f, x.gpu);
  EXPECT_LE(Error(x), kF32Tolerance);
}

TEST_F(CudaBackendTest, AddRmsNormMatchesCpuForBf16AndF32Weights) {
  for (int64_t dim : {5120, 1024, 9000, 77}) {
    Pair x = RandomF32({5, dim}, 14, 2.0f), delta = RandomF32({5, dim}, 15);
    Pair g16 = RandomBf16({dim}, 16), g32 = RandomF32({dim}, 17);
    Pair normed = Poisoned({5, dim});
    cpu_->AddRmsNorm(x.cpu, delta.cpu, g16.cpu, 1e-5f, normed.cpu);
    gpu_->AddRmsNorm(x.gpu, delta.gpu, g16.gpu, 1e-5f, normed.gpu);
    EXPECT_LE(Error(x), kF32Tolerance) << "dim " << dim;
    EXPECT_LE(Error(normed), kF32Tolerance) << "dim " << dim;
    cpu_->AddRmsNorm(x.cpu, delta.cpu, g32.cpu, 1e-5f, delta.cpu);  // normed over delta
    gpu_->AddRmsNorm(x.gpu, delta.gpu, g32.gpu, 1e-5f, delta.gpu);
    EXPECT_LE(Error(x), kF32Tolerance) << "dim " << dim;
    EXPECT_LE(Error(delta), kF32Tolerance) << "dim " << dim;
  }
}

// At one row the GEMV normalizes x inside the product (RmsNormMatMul, RmsNormMatMulSwiGlu with
// the SwiGLU after it) and adds its result to the residual (MatMulAddTo); other row counts run
// the ops apart. Small x (mean square 1e-4) makes eps (1e-5) matter; k = 14336 is w2's width,
// n = 77 leaves a block part empty.
TEST_F(CudaBackendTest, NormAndResidualInsideTheProductMatchCpu) {
  EXPECT_TRUE(gpu_->FusesRmsNormIntoMatMul(1));
  EXPECT_FALSE(gpu_->FusesRmsNormIntoMatMul(2));
  for (const auto [rows, k, n, stddev] :
       {std::tuple<int64_t, int64_t, int64_t, float>{1, 5120, 6144, 0.01f},
        {1, 14336, 77, 2.0f},
        {1, 256, 5120, 1.0f},
        {3, 5120, 300, 1.0f}}) {
    SCOPED_TRACE(testing::Message() << rows << " x " << k << " -> " << n);
    // Past one row the products take bf16 activations and so round x once more.
    const double tolerance = rows == 1 ? 1e-5 : kBf16Tolerance;
    Pair x = RandomF32({rows, k}, 40, stddev), w = RandomBf16({n, k}, 41, 0.02f);
    Pair g16 = RandomBf16({k}, 42), g32 = RandomF32({k}, 43);
    for (const Pair* g : {&g16, &g32}) {
      Pair y = Poisoned({rows, n});
      Pair normed = {*cpu_->Alloc(cpu_->MatMulInputDType(rows), {rows, k}),
                     *gpu_->Alloc(gpu_->MatMulInputDType(rows), {rows, k})};
      cpu_->RmsNormMatMul(x.cpu, g->cpu, 1e-5f, w.cpu, normed.cpu, y.cpu);
      gpu_->RmsNormMatMul(x.gpu, g->gpu, 1e-5f, w.gpu, normed.gpu, y.gpu);
      EXPECT_LE(Error(y), tolerance) << (g == &g16 ? "bf16" : "f32") << " norm weight";
    }
    // The MLP's form: n stacked gate and up rows, SwiGLU inside the product at one row.
    if (n % 2 == 0) {
      Pair gate_up = Poisoned({rows, n}), out = Poisoned({rows, n / 2});
      Pair normed = {*cpu_->Alloc(cpu_->MatMulInputDType(rows), {rows, k}),
                     *gpu_->Alloc(gpu_->MatMulInputDType(rows), {rows, k})};
      cpu_->RmsNormMatMulSwiGlu(x.cpu, g16.cpu, 1e-5f, w.cpu, normed.cpu, gate_up.cpu, out.cpu);
      gpu_->RmsNormMatMulSwiGlu(x.gpu, g16.gpu, 1e-5f, w.gpu, normed.gpu, gate_up.gpu, out.gpu);
      EXPECT_LE(Error(out), tolerance) << "SwiGLU";
      if (rows == 1) {  // fused: the stacked product is not written
        for (float v : ToHost(*gpu_, gate_up.gpu)) ASSERT_TRUE(std::isnan(v));
      }
    }
    Pair a = RandomF32({rows, k}, 44), residual = RandomF32({rows, n}, 45);
    Pair product = Poisoned({rows, n});
    cpu_->MatMulAddTo(a.cpu, w.cpu, product.cpu, residual.cpu);
    gpu_->MatMulAddTo(a.gpu, w.gpu, product.gpu, residual.gpu);
    EXPECT_LE(Error(residual), tolerance);
    if (rows == 1) {  // fused: the scratch is not written
      for (float v : ToHost(*gpu_, product.gpu)) ASSERT_TRUE(std::isnan(v));
    }
  }
}

// Prompt row counts take the 256-thread vector kernels (row in registers) where the row is a
// multiple of 4 of at most 8192 elements; others, and decode row counts, the 1024-thread one.
TEST_F(CudaBackendTest, NormsOfPromptRowCountsMatchCpu) {
  for (int64_t dim : {5120, 1024, 8192, 9000, 78}) {
    Pair x = RandomF32({600, dim}, 41, 2.0f), delta = RandomF32({600, dim}, 42);
    Pair g16 = RandomBf16({dim}, 43), g32 = RandomF32({dim}, 44);
    Pair y = PoisonedBf16({600, dim}), y32 = Poisoned({600, dim});
    cpu_->RmsNorm(x.cpu, g16.cpu, 1e-5f, y.cpu);
    gpu_->RmsNorm(x.gpu, g16.gpu, 1e-5f, y.gpu);
    EXPECT_LE(AnyError(y), 4e-3) << "dim " << dim;
    cpu_->RmsNorm(x.cpu, g32.cpu, 1e-5f, y32.cpu);
    gpu_->RmsNorm(x.gpu, g32.gpu, 1e-5f, y32.gpu);
    EXPECT_LE(Error(y32), kF32Tolerance) << "dim " << dim;
    cpu_->AddRmsNorm(x.cpu, delta.cpu, g16.cpu, 1e-5f, y.cpu);
    gpu_->AddRmsNorm(x.gpu, delta.gpu, g16.gpu, 1e-5f, y.gpu);
    EXPECT_LE(Error(x), kF32Tolerance) << "dim " << dim;
    EXPECT_LE(AnyError(y), 4e-3) << "dim " << dim;
    cpu_->AddRmsNorm(x.cpu, delta.cpu, g32.cpu, 1e-5f, delta.cpu);  // normed over delta
    gpu_->AddRmsNorm(x.gpu, delta.gpu, g32.gpu, 1e-5f, delta.gpu);
    EXPECT_LE(Error(x), kF32Tolerance) << "dim " << dim;
    EXPECT_LE(Error(delta), kF32Tolerance) << "dim " << dim;
  }
  // Widths that are not multiples of 4 keep the element-wise kernels.
  Pair gate_up = RandomBf16Activation({9, 2 * 702}, 45), out = PoisonedBf16({9, 702});
  cpu_->SwiGlu(gate_up.cpu, out.cpu);
  gpu_->SwiGlu(gate_up.gpu, out.gpu);
  EXPECT_LE(AnyError(out), 4e-3);
  ExpectSplitColumnsMatch(RandomF32({600, 18 + 6 + 6}, 46), {{600, 3, 6}, {600, 6}, {600, 6}});
}

// A scratch reservation the device cannot hold is RESOURCE_EXHAUSTED, not an abort, and the
// backend goes on computing (its ops then grow the scratch they need as before).
TEST_F(CudaBackendTest, ScratchBeyondTheDeviceIsResourceExhausted) {
  EXPECT_EQ(gpu_->ReserveScratch(int64_t{1} << 50).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(gpu_->ReserveScratch(int64_t{1} << 20).ok());
  Pair x = RandomF32({9, 256}, 51), w = RandomBf16({40, 256}, 52), y = Poisoned({9, 40});
  cpu_->MatMul(x.cpu, w.cpu, nullptr, y.cpu);
  gpu_->MatMul(x.gpu, w.gpu, nullptr, y.gpu);
  EXPECT_LE(Error(y), kBf16Tolerance);
}

TEST_F(CudaBackendTest, SoftmaxMatchesCpu) {
  Pair x = RandomF32({9, 3001}, 14, 10.0f), y = Poisoned({9, 3001});
  cpu_->Softmax(x.cpu, y.cpu);
  gpu_->Softmax(x.gpu, y.gpu);
  EXPECT_LE(Error(y), kF32Tolerance);
}

TEST_F(CudaBackendTest, RopeMatchesCpu) {
  const int t = 23, h = 8, d = 128;
  std::vector<int32_t> positions(t);
  std::iota(positions.begin(), positions.end(), 1000);
  Pair table = F32(RopeTable1D(positions, d, 1e6), {t, d / 2, 2});
  Pair x = RandomF32({t, h, d}, 15);
  cpu_->Rope(x.cpu, table.cpu);
  gpu_->Rope(x.gpu, table.gpu);
  EXPECT_LE(Error(x), kF32Tolerance);
}

// The tiled attention kernels of head_dim 64 and 128 run q·kᵀ and p·v on tensor cores with bf16
// operands: q, k, v and the probabilities each carry a rounding of up to 2^-9 relative (~2e-3),
// so the output's relative error is a few 1e-3; the other head sizes stay in f32.
double TiledAttentionTolerance(int64_t head_dim) {
  return head_dim == 64 || head_dim == 128 ? kBf16Tolerance : 1e-5;
}

TEST_F(CudaBackendTest, SegmentAttentionMatchesCpu) {
  // Segments longer and shorter than one chunk of keys; head_dim 64 as in the vision encoder.
  const std::vector<int32_t> lengths = {5, 300, 20, 1};
  const int64_t t = 326, h = 4, d = 64;
  Pair q = RandomF32({t, h, d}, 16), k = RandomF32({t, h, d}, 17), v = RandomF32({t, h, d}, 18);
  Pair segments = I32(lengths), out = Poisoned({t, h, d});
  const float scale = 1.0f / std::sqrt(float{d});
  cpu_->SegmentAttention(q.cpu, k.cpu, v.cpu, segments.cpu, scale, out.cpu);
  gpu_->SegmentAttention(q.gpu, k.gpu, v.gpu, segments.gpu, scale, out.gpu);
  EXPECT_LE(Error(out), TiledAttentionTolerance(d));
}

TEST_F(CudaBackendTest, SegmentAttentionOfPromptSizesMatchesCpu) {
  // Segments shorter than, equal to and longer than a 64-query tile, most not a multiple of it,
  // for every head dimension of the tiled kernel, and one (48) of the per-query kernel.
  const std::vector<int32_t> lengths = {70, 64, 3, 257, 1, 130};
  const int64_t t = 525, h = 3;
  for (const int64_t d : {16, 32, 64, 128, 48}) {
    Pair q = RandomF32({t, h, d}, 40), k = RandomF32({t, h, d}, 41), v = RandomF32({t, h, d}, 42);
    Pair segments = I32(lengths), out = Poisoned({t, h, d});
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    cpu_->SegmentAttention(q.cpu, k.cpu, v.cpu, segments.cpu, scale, out.cpu);
    gpu_->SegmentAttention(q.gpu, k.gpu, v.gpu, segments.gpu, scale, out.gpu);
    EXPECT_LE(Error(out), TiledAttentionTolerance(d)) << "head_dim " << d;
  }
}

TEST_F(CudaBackendTest, SegmentAttentionGivesNanAfterTheSegments) {
  const std::vector<int32_t> lengths = {10};
  Pair q = RandomF32({80, 2, 64}, 43), out = Poisoned({80, 2, 64});
  Pair segments = I32(lengths);
  gpu_->SegmentAttention(q.gpu, q.gpu, q.gpu, segments.gpu, 0.125f, out.gpu);
  const std::vector<float> host = ToHost(*gpu_, out.gpu);
  for (size_t i = 0; i < host.size(); ++i) {
    ASSERT_EQ(std::isnan(host[i]), i >= 10 * 2 * 64) << i;
  }
}

// The same steps of paged attention on both backends over one shared cache layout; the GPU's
// output in bf16 where `bf16_out` (as the decoder's attention feeds a bf16 product).
class PagedAttentionSteps {
 public:
  PagedAttentionSteps(Backend& cpu, Backend& gpu, int64_t heads, int64_t kv_heads, int64_t head_dim,
                      int64_t block_size, int64_t num_blocks, bool bf16_out = false)
      : cpu_(cpu),
        gpu_(gpu),
        h_(heads),
        hkv_(kv_heads),
        d_(head_dim),
        bf16_out_(bf16_out),
        k_cache_(Cache({num_blocks, block_size, kv_heads, head_dim})),
        v_cache_(Cache({num_blocks, block_size, kv_heads, head_dim})) {}

  // Runs one step over `t` new rows and returns the relative error of the output.
  double Step(const std::vector<PagedSequence>& seqs, int64_t t) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(d_));
    const std::vector<int64_t> qkv_shape = {t, (h_ + 2 * hkv_) * d_};
    const std::vector<float> data = Random(Numel(qkv_shape), ++seed_);
    Pair qkv = {*ToBackend(cpu_, data, qkv_shape), *ToBackend(gpu_, data, qkv_shape)};
    const std::vector<int64_t> out_shape = {t, h_, d_};
    Pair out = {*cpu_.Alloc(DType::kF32, out_shape),
                *gpu_.Alloc(bf16_out_ ? DType::kBF16 : DType::kF32, out_shape)};
    // bf16 NaNs: two of them are an f32 NaN.
    const std::vector<uint16_t> nan(Numel(out_shape) * (bf16_out_ ? 1 : 2), 0x7fc0);
    gpu_.CopyFromHost(nan.data(), out.gpu);
    PagedBatch cpu_batch = *MakePagedBatch(cpu_, seqs), gpu_batch = *MakePagedBatch(gpu_, seqs);
    cpu_.PagedAttention(qkv.cpu, nullptr, cpu_batch, scale, k_cache_.cpu, v_cache_.cpu, out.cpu);
    gpu_.PagedAttention(qkv.gpu, nullptr, gpu_batch, scale, k_cache_.gpu, v_cache_.gpu, out.gpu);
    return RelativeError(Widened(gpu_, out.gpu), ToHost(cpu_, out.cpu));
  }

 private:
  Pair Cache(const std::vector<int64_t>& shape) {
    return {*cpu_.Alloc(cpu_.KvCacheDType(), shape), *gpu_.Alloc(gpu_.KvCacheDType(), shape)};
  }

  Backend& cpu_;
  Backend& gpu_;
  const int64_t h_, hkv_, d_;
  const bool bf16_out_;
  Pair k_cache_, v_cache_;
  uint32_t seed_ = 200;
};

TEST_F(CudaBackendTest, PagedAttentionChunkedPrefillMatchesCpu) {
  // GQA (4 query heads per kv head), block sizes that do and do not divide a key tile; prompts
  // in chunks (start_pos > 0), several sequences of different lengths in one batch, prefill
  // mixed with decode.
  for (const auto& [d, block_size] : {std::pair{128, 16}, {64, 5}, {16, 16}, {48, 8}}) {
    PagedAttentionSteps steps(*cpu_, *gpu_, 8, 2, d, block_size, 160);
    std::vector<int32_t> table_a(60), table_b(60);
    for (int i = 0; i < 60; ++i)
      table_a[i] = 159 - 2 * i, table_b[i] = 2 * i;  // a's blocks are odd, b's even
    EXPECT_LE(steps.Step({{0, 100, 0, table_a}, {100, 2, 0, table_b}}, 102), kBf16Tolerance)
        << "head_dim " << d << ", first chunks";
    EXPECT_LE(steps.Step({{0, 7, 2, table_b}, {7, 130, 100, table_a}}, 137), kBf16Tolerance)
        << "head_dim " << d << ", second chunks";
    EXPECT_LE(steps.Step({{0, 1, 230, table_a}, {1, 65, 9, table_b}}, 66), kBf16Tolerance)
        << "head_dim " << d << ", decode beside a chunk";
  }
}

TEST_F(CudaBackendTest, PagedAttentionPrefillThenDecodeMatchesCpu) {
  const int64_t h = 8, hkv = 2, d = 128, block_size = 16, num_blocks = 40;
  const std::vector<int64_t> cache_shape = {num_blocks, block_size, hkv, d};
  Pair k_cache = {*cpu_->Alloc(cpu_->KvCacheDType(), cache_shape),
                  *gpu_->Alloc(gpu_->KvCacheDType(), cache_shape)};
  Pair v_cache = {*cpu_->Alloc(cpu_->KvCacheDType(), cache_shape),
                  *gpu_->Alloc(gpu_->KvCacheDType(), cache_shape)};
  // Two sequences on scattered blocks; the second is longer than one chunk of keys.
  const std::vector<int32_t> table_a = {7, 3, 30, 12};
  const std::vector<int32_t> table_b = {0, 39, 5, 6, 21, 22, 9, 1, 2, 8, 10};
  uint32_t seed = 100;
  auto step = [&](std::vector<PagedSequence> seqs, int64_t t) {
    const float scale = 1.0f / std::sqrt(float{d});
    Pair qkv = RandomF32({t, (h + 2 * hkv) * d}, ++seed), out = Poisoned({t, h, d});
    PagedBatch cpu_batch = *MakePagedBatch(*cpu_, seqs), gpu_batch = *MakePagedBatch(*gpu_, seqs);
    cpu_->PagedAttention(qkv.cpu, nullptr, cpu_batch, scale, k_cache.cpu, v_cache.cpu, out.cpu);
    gpu_->PagedAttention(qkv.gpu, nullptr, gpu_batch, scale, k_cache.gpu, v_cache.gpu, out.gpu);
    return Error(out);
  };
  // Prefill: 40 tokens of a, 150 of b.
  EXPECT_LE(step({{0, 40, 0, table_a}, {40, 150, 0, table_b}}, 190), kBf16Tolerance);
  // Decode: b first this time, 3 new tokens of b and 1 of a.
  EXPECT_LE(step({{0, 3, 150, table_b}, {3, 1, 40, table_a}}, 4), kBf16Tolerance);
  // Decode only (the prefill kernel is not launched), then a chunk only (nor the decode one).
  EXPECT_LE(step({{0, 1, 41, table_a}, {1, 1, 153, table_b}}, 2), kBf16Tolerance);
  EXPECT_LE(step({{0, 2, 42, table_a}}, 2), kBf16Tolerance);
}

TEST_F(CudaBackendTest, PagedAttentionDecodeOfLongContextsMatchesCpu) {
  // Decode over contexts long enough to be split across blocks (split-KV), for every query group
  // size the grouped kernel has (1, 2, 4, 8 query heads per kv head), next to a short one; block
  // sizes that do and do not divide a split.
  for (const auto& [h, hkv, d, block_size] : {std::tuple{32, 8, 128, 16},
                                              {8, 8, 128, 16},
                                              {16, 8, 64, 7},
                                              {8, 1, 128, 32},
                                              {4, 2, 64, 16}}) {
    const int64_t blocks_each = 3000 / block_size + 2;
    PagedAttentionSteps steps(*cpu_, *gpu_, h, hkv, d, block_size, 3 * blocks_each);
    std::vector<int32_t> a(blocks_each), b(blocks_each), c(blocks_each);
    for (int64_t i = 0; i < blocks_each; ++i) {
      a[i] = 3 * i, b[i] = 3 * (blocks_each - 1 - i) + 1, c[i] = 3 * i + 2;
    }
    // Fill the caches with prompts, then decode one token each at long and short positions.
    EXPECT_LE(steps.Step({{0, 2900, 0, a}, {2900, 700, 0, b}, {3600, 5, 0, c}}, 3605),
              kBf16Tolerance)
        << h << "/" << hkv << " heads, head_dim " << d;
    EXPECT_LE(steps.Step({{0, 1, 2900, a}, {1, 1, 700, b}, {2, 1, 5, c}}, 3), kBf16Tolerance)
        << h << "/" << hkv << " heads, head_dim " << d << ", decode";
    EXPECT_LE(steps.Step({{0, 1, 6, c}, {1, 1, 2901, a}}, 2), kBf16Tolerance)
        << h << "/" << hkv << " heads, head_dim " << d << ", decode again";
  }
}

TEST_F(CudaBackendTest, PagedAttentionDecodeSplitMergeRepeatsMatchCpu) {
  // Many (sequence, kv head) pairs at once, steps one after another with different split counts
  // (each merge reading only its own step's partials), each against the CPU.
  const int64_t h = 16, hkv = 8, d = 128, block_size = 16, sequences = 12;
  const int64_t blocks_each = 1600 / block_size + 2;
  PagedAttentionSteps steps(*cpu_, *gpu_, h, hkv, d, block_size, sequences * blocks_each);
  std::vector<std::vector<int32_t>> tables(sequences, std::vector<int32_t>(blocks_each));
  std::vector<PagedSequence> prompts;
  int64_t rows = 0;
  for (int64_t s = 0; s < sequences; ++s) {
    for (int64_t i = 0; i < blocks_each; ++i) {
      tables[s][i] = static_cast<int32_t>(sequences * i + s);
    }
    const int32_t length = static_cast<int32_t>(200 + 120 * s);
    prompts.push_back({static_cast<int32_t>(rows), length, 0, tables[s]});
    rows += length;
  }
  ASSERT_LE(steps.Step(prompts, rows), kBf16Tolerance) << "prompts";
  for (const int64_t decoding : {sequences, int64_t{3}, sequences, int64_t{1}}) {
    std::vector<PagedSequence> decode;
    for (int64_t s = 0; s < decoding; ++s) {
      decode.push_back({static_cast<int32_t>(s), 1, prompts[s].q_len, tables[s]});
    }
    EXPECT_LE(steps.Step(decode, decoding), kBf16Tolerance) << decoding << " sequences decoding";
  }
}

TEST_F(CudaBackendTest, PagedAttentionWritesBf16Output) {
  // The decoder's attention output in bf16 (it feeds wo's bf16 product): prompt chunks on the
  // tiled kernel, decode on the grouped kernel with and without a split, and the per-query
  // kernel of a head size without a tiled one; each the f32 result rounded once.
  for (const auto& [h, hkv, d, block_size] :
       {std::tuple{32, 8, 128, 16}, {16, 8, 64, 7}, {4, 2, 48, 8}}) {
    const int64_t blocks_each = 3000 / block_size + 2;
    PagedAttentionSteps steps(*cpu_, *gpu_, h, hkv, d, block_size, 2 * blocks_each,
                              /*bf16_out=*/true);
    std::vector<int32_t> a(blocks_each), b(blocks_each);
    for (int64_t i = 0; i < blocks_each; ++i) a[i] = 2 * i, b[i] = 2 * i + 1;
    EXPECT_LE(steps.Step({{0, 2900, 0, a}, {2900, 70, 0, b}}, 2970), kBf16Tolerance)
        << h << "/" << hkv << " heads, head_dim " << d << ", prompts";
    EXPECT_LE(steps.Step({{0, 1, 2900, a}, {1, 1, 70, b}}, 2), kBf16Tolerance)
        << h << "/" << hkv << " heads, head_dim " << d << ", decode";
    EXPECT_LE(steps.Step({{0, 3, 71, b}, {3, 1, 2901, a}}, 4), kBf16Tolerance)
        << h << "/" << hkv << " heads, head_dim " << d << ", decode beside a chunk";
  }
}

TEST_F(CudaBackendTest, PagedAttentionWithRopeMatchesCpu) {
  // RoPE rotated in the append: q is rotated in place on both backends, k as it is stored.
  const int64_t h = 8, hkv = 2, d = 128, block_size = 16, t = 37;
  const std::vector<int64_t> cache_shape = {8, block_size, hkv, d};
  Pair k_cache = {*cpu_->Alloc(cpu_->KvCacheDType(), cache_shape),
                  *gpu_->Alloc(gpu_->KvCacheDType(), cache_shape)};
  Pair v_cache = {*cpu_->Alloc(cpu_->KvCacheDType(), cache_shape),
                  *gpu_->Alloc(gpu_->KvCacheDType(), cache_shape)};
  const std::vector<int32_t> table = {4, 2, 7};
  std::vector<int32_t> positions(t);
  std::iota(positions.begin(), positions.end(), 0);
  const std::vector<float> table_data = RopeTable1D(positions, d, 1e6f);
  Pair rope = F32(table_data, {t, d / 2, 2});
  Pair qkv = RandomF32({t, (h + 2 * hkv) * d}, 71);
  Pair out = Poisoned({t, h, d});
  // One prompt chunk of t positions.
  const std::vector<PagedSequence> one = {{0, t, 0, table}};
  PagedBatch cpu_batch = *MakePagedBatch(*cpu_, one), gpu_batch = *MakePagedBatch(*gpu_, one);
  cpu_->PagedAttention(qkv.cpu, &rope.cpu, cpu_batch, 0.1f, k_cache.cpu, v_cache.cpu, out.cpu);
  gpu_->PagedAttention(qkv.gpu, &rope.gpu, gpu_batch, 0.1f, k_cache.gpu, v_cache.gpu, out.gpu);
  EXPECT_LE(Error(out), kBf16Tolerance);
  // q is rotated in place alike (k only as it is stored: the backends may leave qkv's k columns
  // either way).
  auto q_columns = [&](const std::vector<float>& rows) {
    std::vector<float> q;
    for (int64_t i = 0; i < t; ++i) {
      const auto row = rows.begin() + i * (h + 2 * hkv) * d;
      q.insert(q.end(), row, row + h * d);
    }
    return q;
  };
  EXPECT_LE(RelativeError(q_columns(ToHost(*gpu_, qkv.gpu)), q_columns(ToHost(*cpu_, qkv.cpu))),
            kF32Tolerance);
  // A decode step at position t continues from the rotated cache.
  std::vector<int32_t> next = {static_cast<int32_t>(t)};
  Pair rope1 = F32(RopeTable1D(next, d, 1e6f), {1, d / 2, 2});
  Pair qkv1 = RandomF32({1, (h + 2 * hkv) * d}, 74);
  Pair out1 = Poisoned({1, h, d});
  const std::vector<PagedSequence> step = {{0, 1, static_cast<int32_t>(t), table}};
  cpu_batch = *MakePagedBatch(*cpu_, step), gpu_batch = *MakePagedBatch(*gpu_, step);
  cpu_->PagedAttention(qkv1.cpu, &rope1.cpu, cpu_batch, 0.1f, k_cache.cpu, v_cache.cpu, out1.cpu);
  gpu_->PagedAttention(qkv1.gpu, &rope1.gpu, gpu_batch, 0.1f, k_cache.gpu, v_cache.gpu, out1.gpu);
  EXPECT_LE(Error(out1), kBf16Tolerance);
}

TEST_F(CudaBackendTest, PagedAttentionWithABadBlockGivesNan) {
  const std::vector<int64_t> cache_shape = {4, 4, 1, 16};
  Tensor k_cache = *gpu_->Alloc(DType::kBF16, cache_shape);
  Tensor v_cache = *gpu_->Alloc(DType::kBF16, cache_shape);
  const std::vector<int32_t> table = {9};  // outside the cache's 4 blocks
  Pair qkv = RandomF32({2, 3 * 16}, 20);
  Pair out = RandomF32({2, 1, 16}, 22);
  PagedBatch batch = *MakePagedBatch(*gpu_, std::vector<PagedSequence>{{0, 2, 0, table}});
  gpu_->PagedAttention(qkv.gpu, nullptr, batch, 0.25f, k_cache, v_cache, out.gpu);
  for (float x : ToHost(*gpu_, out.gpu)) EXPECT_TRUE(std::isnan(x));
}

// Device sampling against kernels/sampling.h's reference (f64) on the same logits and draws:
// greedy with ties, temperatures and nuclei on a vocabulary of Pixtral's size, a row of equal
// logits (every token a tie), -inf entries, and invalid rows. The device works in f32, so a draw
// within 1e-4 of a boundary between two tokens' cumulative mass may pick the neighbour; the draws
// here are random and such cases are counted, not asserted away.
TEST_F(CudaBackendTest, SampleRowsMatchesTheReference) {
  const int64_t vocab = 131072;
  std::vector<RowSampling> draws;
  std::vector<float> logits;
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  const std::vector<std::pair<float, float>> settings = {
      {0.0f, 1.0f}, {0.7f, 0.9f}, {1.0f, 1.0f}, {0.35f, 0.5f}, {1.5f, 0.99f}, {0.7f, 0.05f}};
  for (int r = 0; r < 48; ++r) {
    const auto [temperature, top_p] = settings[r % settings.size()];
    draws.push_back({temperature, top_p, uniform(rng)});
    std::vector<float> row = Random(vocab, 500 + r, 3.0f);
    if (r % 8 == 1) row[777] = row[99999] = 40.0f;  // a tie for the maximum: the lower id wins
    if (r % 8 == 2) std::fill(row.begin(), row.end(), 0.5f);  // all ties
    if (r % 8 == 3) std::fill(row.begin(), row.begin() + vocab / 2, -INFINITY);
    logits.insert(logits.end(), row.begin(), row.end());
  }
  const int64_t rows = std::ssize(draws);
  // Two invalid rows at the end: a NaN, and every logit -inf.
  draws.push_back({0.7f, 0.9f, 0.5});
  draws.push_back({0.0f, 1.0f, 0.0});
  std::vector<float> nan_row = Random(vocab, 9, 1.0f);
  nan_row[5] = NAN;
  logits.insert(logits.end(), nan_row.begin(), nan_row.end());
  logits.insert(logits.end(), vocab, -INFINITY);

  Tensor device_logits = *ToBackend(*gpu_, logits, {rows + 2, vocab});
  Tensor ids = *ToBackend(*gpu_, std::vector<int32_t>(rows + 2, -7), {rows + 2});
  Tensor logprobs = *gpu_->Alloc(DType::kF32, {rows + 2});
  gpu_->SampleRows(device_logits, draws, ids, logprobs);
  std::vector<int32_t> got(rows + 2);
  gpu_->CopyToHost(ids, got.data());
  const std::vector<float> got_logprobs = ToHost(*gpu_, logprobs);
  int differing = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const auto row = absl::MakeConstSpan(logits).subspan(r * vocab, vocab);
    const absl::StatusOr<SampledRow> want = SampleRow(row, draws[r]);
    ASSERT_TRUE(want.ok()) << want.status();
    if (got[r] != want->id) {
      ++differing;
      ASSERT_TRUE(draws[r].temperature > 0.0f)
          << "greedy row " << r << ": " << got[r] << " vs " << want->id;
      // A neighbour in the nucleus at most: it must be a token the reference could draw.
      const std::vector<double> nucleus =
          *NucleusDistribution(row, draws[r].temperature, draws[r].top_p);
      ASSERT_GE(got[r], 0);
      EXPECT_GT(nucleus[got[r]], 0.0) << "row " << r;
      continue;
    }
    EXPECT_NEAR(got_logprobs[r], want->logprob, 1e-3 + 1e-5 * std::abs(want->logprob)) << r;
  }
  EXPECT_LE(differing, 1) << "draws off by more than f32 rounding";
  EXPECT_EQ(got[rows], -1);
  EXPECT_EQ(got[rows + 1], -1);
}

TEST_F(CudaBackendTest, GatherScatterPatchifyAreExact) {
  Pair table16 = RandomBf16({100, 48}, 23), table32 = RandomF32({100, 48}, 24);
  Pair ids = I32({5, 99, 0, 5, 42});
  for (const Pair* table : {&table16, &table32}) {
    Pair out = Poisoned({5, 48});
    cpu_->Gather(table->cpu, ids.cpu, out.cpu);
    gpu_->Gather(table->gpu, ids.gpu, out.gpu);
    EXPECT_EQ(ToHost(*gpu_, out.gpu), ToHost(*cpu_, out.cpu));
  }

  Pair src = RandomF32({3, 48}, 25), dst = RandomF32({10, 48}, 26), rows = I32({9, 2, 4});
  cpu_->Scatter(src.cpu, rows.cpu, dst.cpu);
  gpu_->Scatter(src.gpu, rows.gpu, dst.gpu);
  EXPECT_EQ(ToHost(*gpu_, dst.gpu), ToHost(*cpu_, dst.cpu));

  Pair image = RandomF32({3, 48, 32}, 27), patches = Poisoned({6, 3 * 16 * 16});
  cpu_->Patchify(image.cpu, 16, patches.cpu);
  gpu_->Patchify(image.gpu, 16, patches.gpu);
  EXPECT_EQ(ToHost(*gpu_, patches.gpu), ToHost(*cpu_, patches.cpu));
}

TEST_F(CudaBackendTest, GatherOfAnOutOfRangeIdGivesNan) {
  Pair table = RandomF32({4, 8}, 28), ids = I32({1, 4}), out = Poisoned({2, 8});
  gpu_->Gather(table.gpu, ids.gpu, out.gpu);
  const std::vector<float> host = ToHost(*gpu_, out.gpu);
  EXPECT_FALSE(std::isnan(host[0]));
  EXPECT_TRUE(std::isnan(host[8]));
}

TEST_F(CudaBackendTest, EmptyInputsAreNoOps) {
  Pair x = RandomF32({0, 16}, 29), w = RandomBf16({8, 16}, 30), y = Poisoned({0, 8});
  gpu_->MatMul(x.gpu, w.gpu, nullptr, y.gpu);
  gpu_->Add(x.gpu, x.gpu, x.gpu);
  EXPECT_TRUE(ToHost(*gpu_, y.gpu).empty());
}

}  // namespace
}  // namespace pixtral::kernels
