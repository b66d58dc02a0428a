#include "kernels/cpu/cpu_backend.h"

#include <cmath>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/parallel.h"
#include "kernels/testing/stacked_qkv.h"

namespace pixtral::kernels {
namespace {

using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::Pointwise;

std::vector<float> Random(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist;
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

class CpuBackendTest : public ::testing::Test {
 protected:
  void SetUp() override { cpu::SetNumThreads(2); }

  Tensor F32(const std::vector<float>& data, std::vector<int64_t> shape) {
    return *ToBackend(*backend_, data, std::move(shape));
  }
  Tensor I32(const std::vector<int32_t>& data) {
    return *ToBackend(*backend_, data, {static_cast<int64_t>(data.size())});
  }
  Tensor Bf16(const std::vector<float>& data, std::vector<int64_t> shape) {
    std::vector<uint16_t> bits;
    for (float f : data) bits.push_back(FloatToBf16(f));
    Tensor t = *backend_->Alloc(DType::kBF16, std::move(shape));
    backend_->CopyFromHost(bits.data(), t);
    return t;
  }
  Tensor Empty(std::vector<int64_t> shape) { return *backend_->Alloc(DType::kF32, shape); }
  std::vector<float> Host(const Tensor& t) { return ToHost(*backend_, t); }

  std::unique_ptr<Backend> backend_ = NewCpuBackend();
};

TEST_F(CpuBackendTest, MatMulWithBiasHandComputed) {
  Tensor x = F32({1, 2}, {1, 2});
  Tensor w = Bf16({1, 0, 0, 1, 1, 1}, {3, 2});
  Tensor b = F32({0.5, 0, -1}, {3});
  Tensor y = Empty({1, 3});
  backend_->MatMul(x, w, &b, y);
  EXPECT_THAT(Host(y), ElementsAre(1.5f, 2.0f, 2.0f));
}

TEST_F(CpuBackendTest, MatMulBf16ManyThreadsMatchesNaive) {
  const int t = 37, k = 96, n = 300;
  std::vector<float> xs = Random(t * k, 1), ws = Random(n * k, 2);
  for (float& v : ws) v = Bf16ToFloat(FloatToBf16(v));  // exactly representable weights
  Tensor y = Empty({t, n});
  backend_->MatMul(F32(xs, {t, k}), Bf16(ws, {n, k}), nullptr, y);
  std::vector<float> expected(t * n);
  for (int i = 0; i < t; ++i) {
    for (int j = 0; j < n; ++j) {
      double sum = 0;
      for (int c = 0; c < k; ++c) sum += double{xs[i * k + c]} * ws[j * k + c];
      expected[i * n + j] = static_cast<float>(sum);
    }
  }
  EXPECT_THAT(Host(y), Pointwise(FloatNear(1e-4), expected));
}

TEST_F(CpuBackendTest, MatMulF32Weights) {
  Tensor y = Empty({2, 1});
  backend_->MatMul(F32({1, 2, 3, 4}, {2, 2}), F32({10, 1}, {1, 2}), nullptr, y);
  EXPECT_THAT(Host(y), ElementsAre(12.0f, 34.0f));
}

TEST_F(CpuBackendTest, AddIsElementWise) {
  Tensor a = F32({1, 2, 3}, {3});
  backend_->Add(a, F32({10, 20, 30}, {3}), a);
  EXPECT_THAT(Host(a), ElementsAre(11.0f, 22.0f, 33.0f));
}

TEST_F(CpuBackendTest, RmsNormHandComputed) {
  Tensor y = Empty({2, 2});
  backend_->RmsNorm(F32({3, 4, 0, 2}, {2, 2}), Bf16({1, 2}, {2}), 1e-5f, y);
  const float a = 1 / std::sqrt(12.5f + 1e-5f), b = 1 / std::sqrt(2.0f + 1e-5f);
  EXPECT_THAT(Host(y), Pointwise(FloatNear(1e-6), {3 * a, 8 * a, 0.0f, 4 * b}));
}

TEST_F(CpuBackendTest, AddRmsNormIsAddThenRmsNorm) {
  const std::vector<float> xs = Random(3 * 40, 3), ds = Random(3 * 40, 4), gs = Random(40, 5);
  Tensor x = F32(xs, {3, 40}), delta = F32(ds, {3, 40}), g = Bf16(gs, {40});
  Tensor x_ref = F32(xs, {3, 40}), normed_ref = Empty({3, 40});
  backend_->Add(x_ref, F32(ds, {3, 40}), x_ref);
  backend_->RmsNorm(x_ref, g, 1e-5f, normed_ref);
  backend_->AddRmsNorm(x, delta, g, 1e-5f, delta);  // normed over delta, as the decoder does
  EXPECT_EQ(Host(x), Host(x_ref));
  EXPECT_EQ(Host(delta), Host(normed_ref));
}

TEST_F(CpuBackendTest, SiluMulHandComputed) {
  Tensor out = Empty({3});
  backend_->SiluMul(F32({0, 1, -2}, {3}), F32({5, 2, 3}, {3}), out);
  EXPECT_THAT(Host(out), Pointwise(FloatNear(1e-6), {0.0f, 2 * 0.7310586f, 3 * -0.2384058f}));
}

TEST_F(CpuBackendTest, SwiGluIsSiluMulOfTheHalves) {
  Tensor out = Empty({2, 3});
  backend_->SwiGlu(F32({0, 1, -2, 5, 2, 3, /*row 2*/ 1, 1, 1, 1, 2, 4}, {2, 6}), out);
  EXPECT_THAT(Host(out), Pointwise(FloatNear(1e-6), {0.0f, 2 * 0.7310586f, 3 * -0.2384058f,
                                                     0.7310586f, 2 * 0.7310586f, 4 * 0.7310586f}));
}

TEST_F(CpuBackendTest, SplitColumnsCopiesConsecutiveRanges) {
  Tensor a = Empty({2, 1}), b = Empty({2, 2, 1}), c = Empty({2, 0});
  const Tensor parts[] = {a, c, b};
  backend_->SplitColumns(F32({1, 2, 3, 4, 5, 6}, {2, 3}), parts);
  EXPECT_THAT(Host(a), ElementsAre(1, 4));
  EXPECT_THAT(Host(b), ElementsAre(2, 3, 5, 6));
}

TEST_F(CpuBackendTest, GeluIsTheErfForm) {
  Tensor y = Empty({3});
  backend_->Gelu(F32({0, 1, -1}, {3}), y);
  EXPECT_THAT(Host(y), Pointwise(FloatNear(1e-6), {0.0f, 0.8413447f, -0.1586553f}));
}

TEST_F(CpuBackendTest, SoftmaxPerRow) {
  Tensor y = Empty({2, 3});
  backend_->Softmax(F32({1, 2, 3, 1000, 1000, 1000}, {2, 3}), y);
  const float third = 1.0f / 3;
  EXPECT_THAT(Host(y), Pointwise(FloatNear(1e-6),
                                 {0.0900306f, 0.2447285f, 0.6652410f, third, third, third}));
}

TEST_F(CpuBackendTest, RopeRotatesInterleavedPairs) {
  // One token, two heads of dim 4: pairs (x0, x1), (x2, x3) rotate by 90° and 180°.
  Tensor x = F32({1, 0, 1, 2, 3, 4, 5, 6}, {1, 2, 4});
  backend_->Rope(x, F32({0, 1, -1, 0}, {1, 2, 2}));
  EXPECT_THAT(Host(x), Pointwise(FloatNear(1e-6), {0, 1, -1, -2, -4, 3, -5, -6}));
}

TEST_F(CpuBackendTest, GatherWidensBf16Rows) {
  Tensor out = Empty({3, 2});
  backend_->Gather(Bf16({1, 2, 3, 4, 5, 6}, {3, 2}), I32({2, 0, 2}), out);
  EXPECT_THAT(Host(out), ElementsAre(5, 6, 1, 2, 5, 6));
}

TEST_F(CpuBackendTest, ScatterWritesOnlyTheGivenRows) {
  Tensor dst = F32({0, 0, 0, 0, 0, 0}, {3, 2});
  backend_->Scatter(F32({1, 2, 3, 4}, {2, 2}), I32({2, 0}), dst);
  EXPECT_THAT(Host(dst), ElementsAre(3, 4, 0, 0, 1, 2));
}

TEST_F(CpuBackendTest, PatchifyIsRowMajorIm2col) {
  // C=1, H=2, W=4, patch 2: two patches side by side.
  Tensor out = Empty({2, 4});
  backend_->Patchify(F32({0, 1, 2, 3, 4, 5, 6, 7}, {1, 2, 4}), 2, out);
  EXPECT_THAT(Host(out), ElementsAre(0, 1, 4, 5, 2, 3, 6, 7));
}

// Naive attention of query i over keys [begin, end) of contiguous [T, Hkv, D] k/v, GQA.
std::vector<float> NaiveAttention(const std::vector<float>& q, const std::vector<float>& k,
                                  const std::vector<float>& v, int h, int hkv, int d,
                                  const std::vector<std::pair<int, int>>& key_range, float scale) {
  const int t = static_cast<int>(key_range.size());
  std::vector<float> out(t * h * d, 0.0f);
  for (int i = 0; i < t; ++i) {
    for (int head = 0; head < h; ++head) {
      const int kvh = head / (h / hkv);
      std::vector<double> s;
      double mx = -1e30;
      for (int j = key_range[i].first; j < key_range[i].second; ++j) {
        double dot = 0;
        for (int c = 0; c < d; ++c) dot += q[(i * h + head) * d + c] * k[(j * hkv + kvh) * d + c];
        s.push_back(dot * scale);
        mx = std::max(mx, s.back());
      }
      double z = 0;
      for (double& e : s) z += (e = std::exp(e - mx));
      for (int j = key_range[i].first; j < key_range[i].second; ++j) {
        for (int c = 0; c < d; ++c) {
          out[(i * h + head) * d + c] += s[j - key_range[i].first] / z * v[(j * hkv + kvh) * d + c];
        }
      }
    }
  }
  return out;
}

TEST_F(CpuBackendTest, SegmentAttentionIsBlockDiagonal) {
  const int t = 7, h = 2, d = 4;
  std::vector<float> q = Random(t * h * d, 3), k = Random(t * h * d, 4), v = Random(t * h * d, 5);
  Tensor out = Empty({t, h, d});
  backend_->SegmentAttention(F32(q, {t, h, d}), F32(k, {t, h, d}), F32(v, {t, h, d}), I32({3, 4}),
                             0.5f, out);
  std::vector<std::pair<int, int>> ranges = {{0, 3}, {0, 3}, {0, 3}, {3, 7},
                                             {3, 7}, {3, 7}, {3, 7}};
  EXPECT_THAT(Host(out),
              Pointwise(FloatNear(1e-5), NaiveAttention(q, k, v, h, h, d, ranges, 0.5f)));
}

TEST_F(CpuBackendTest, MakePagedBatchSaysWhichKernelsHaveWork) {
  const std::vector<int32_t> table = {0};
  auto batch = [&](std::vector<PagedSequence> seqs) { return *MakePagedBatch(*backend_, seqs); };
  const PagedBatch decode = batch({{0, 1, 3, table}, {1, 1, 0, table}});
  EXPECT_TRUE(decode.has_decode);
  EXPECT_FALSE(decode.has_prefill);
  const PagedBatch prefill = batch({{0, 2, 0, table}, {2, 0, 5, table}});
  EXPECT_FALSE(prefill.has_decode);
  EXPECT_TRUE(prefill.has_prefill);
  const PagedBatch mixed = batch({{0, 4, 0, table}, {4, 1, 7, table}});
  EXPECT_TRUE(mixed.has_decode);
  EXPECT_TRUE(mixed.has_prefill);
}

TEST_F(CpuBackendTest, PagedAttentionIsCausalGqaOverScatteredBlocks) {
  const int h = 4, hkv = 2, d = 4, block = 2, num_blocks = 8;
  // Two sequences in one step: A has 3 new tokens from position 0, B has 2 from position 0.
  const int t = 5;
  std::vector<float> q = Random(t * h * d, 6), k = Random(t * hkv * d, 7),
                     v = Random(t * hkv * d, 8);
  Tensor kc = Empty({num_blocks, block, hkv, d}), vc = Empty({num_blocks, block, hkv, d});
  std::vector<int32_t> table_a = {5, 1}, table_b = {3};
  std::vector<PagedSequence> seqs = {{0, 3, 0, table_a}, {3, 2, 0, table_b}};
  Tensor out = Empty({t, h, d});
  backend_->PagedAttention(F32(StackQkv(q, k, v, t), {t, (h + 2 * hkv) * d}), nullptr,
                           *MakePagedBatch(*backend_, seqs), 0.5f, kc, vc, out);
  std::vector<std::pair<int, int>> ranges = {{0, 1}, {0, 2}, {0, 3}, {3, 4}, {3, 5}};
  EXPECT_THAT(Host(out),
              Pointwise(FloatNear(1e-5), NaiveAttention(q, k, v, h, hkv, d, ranges, 0.5f)));
}

TEST_F(CpuBackendTest, PagedAttentionContinuesFromTheCache) {
  const int h = 2, hkv = 1, d = 4, block = 2;
  const int t = 5;
  std::vector<float> q = Random(t * h * d, 9), k = Random(t * hkv * d, 10),
                     v = Random(t * hkv * d, 11);
  Tensor qkv = F32(StackQkv(q, k, v, t), {t, (h + 2 * hkv) * d});
  Tensor kc = Empty({4, block, hkv, d}), vc = Empty({4, block, hkv, d});
  std::vector<int32_t> table = {2, 0, 3};
  Tensor out = Empty({t, h, d});
  // Positions [0, 3) first, then [3, 5) as a second call.
  std::vector<PagedSequence> first = {{0, 3, 0, table}};
  backend_->PagedAttention(qkv.Rows(0, 3), nullptr, *MakePagedBatch(*backend_, first), 0.5f, kc, vc,
                           out.Rows(0, 3));
  std::vector<PagedSequence> second = {{0, 2, 3, table}};
  backend_->PagedAttention(qkv.Rows(3, 2), nullptr, *MakePagedBatch(*backend_, second), 0.5f, kc,
                           vc, out.Rows(3, 2));
  std::vector<std::pair<int, int>> ranges = {{0, 1}, {0, 2}, {0, 3}, {0, 4}, {0, 5}};
  EXPECT_THAT(Host(out),
              Pointwise(FloatNear(1e-5), NaiveAttention(q, k, v, h, hkv, d, ranges, 0.5f)));
}

// The bf16 activation paths: bf16 in is read exactly, bf16 out is the f32 result rounded once.
std::vector<float> Bf16Host(Backend& backend, const Tensor& t) {
  std::vector<uint16_t> bits(t.numel());
  backend.CopyToHost(t, bits.data());
  std::vector<float> out;
  for (uint16_t b : bits) out.push_back(Bf16ToFloat(b));
  return out;
}

TEST_F(CpuBackendTest, MatMulReadsAndWritesBf16Activations) {
  // Values exact in bf16, products and sums exact in f32: the rounding of y is the only one.
  Tensor x = Bf16({1, 2, 0.5, -3}, {2, 2});
  Tensor w = Bf16({1, 0, 0.25, 1, 1, 1}, {3, 2});
  Tensor b = Bf16({0.5, 0, -1}, {3});
  Tensor y = *backend_->Alloc(DType::kBF16, {2, 3});
  backend_->MatMul(x, w, &b, y);
  // Row 0: 1.5, 2.25, 2; row 1: 1, -2.875, -3.5.
  EXPECT_THAT(Bf16Host(*backend_, y), ElementsAre(1.5f, 2.25f, 2.0f, 1.0f, -2.875f, -3.5f));
  // 1 + 2^-9 is not a bf16: it rounds to 1 (nearest even).
  Tensor one = F32({1.0f + 1.0f / 512, 0}, {1, 2});
  Tensor y1 = *backend_->Alloc(DType::kBF16, {1, 3});
  backend_->MatMul(one, Bf16({1, 0, 0, 1, 1, 1}, {3, 2}), nullptr, y1);
  EXPECT_THAT(Bf16Host(*backend_, y1), ElementsAre(1.0f, 0.0f, 1.0f));
}

TEST_F(CpuBackendTest, MatMulGeluIsTheErfFormOfTheBiasedProduct) {
  Tensor x = F32({1, 2}, {1, 2});
  Tensor w = Bf16({1, 0, 0, 1, 1, 1, -1, 0}, {4, 2});
  Tensor b = F32({0.5, 0, -1, 0}, {4});
  Tensor y = Empty({1, 4});
  backend_->MatMulGelu(x, w, &b, y);
  std::vector<float> want;
  for (double v : {1.5, 2.0, 2.0, -1.0})
    want.push_back(0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
  EXPECT_THAT(Host(y), Pointwise(FloatNear(1e-6), want));
}

TEST_F(CpuBackendTest, NormsAndSwiGluWriteBf16AsTheRoundedF32Result) {
  const std::vector<float> data = Random(3 * 40, 5);
  Tensor x = F32(data, {3, 40}), g = F32(Random(40, 6), {40});
  Tensor y32 = Empty({3, 40}), y16 = *backend_->Alloc(DType::kBF16, {3, 40});
  backend_->RmsNorm(x, g, 1e-5f, y32);
  backend_->RmsNorm(x, g, 1e-5f, y16);
  std::vector<float> rounded;
  for (float v : Host(y32)) rounded.push_back(Bf16ToFloat(FloatToBf16(v)));
  EXPECT_EQ(Bf16Host(*backend_, y16), rounded);

  // AddRmsNorm into a bf16 normed: x still gets the f32 sum.
  Tensor x2 = F32(data, {3, 40}), delta = F32(Random(3 * 40, 7), {3, 40});
  Tensor n16 = *backend_->Alloc(DType::kBF16, {3, 40});
  backend_->AddRmsNorm(x2, delta, g, 1e-5f, n16);
  std::vector<float> sum = Host(x2), want_sum;
  const std::vector<float> d = Host(delta);
  for (size_t i = 0; i < data.size(); ++i) want_sum.push_back(data[i] + d[i]);
  EXPECT_EQ(sum, want_sum);
  Tensor n32 = Empty({3, 40});
  backend_->RmsNorm(x2, g, 1e-5f, n32);
  rounded.clear();
  for (float v : Host(n32)) rounded.push_back(Bf16ToFloat(FloatToBf16(v)));
  EXPECT_EQ(Bf16Host(*backend_, n16), rounded);

  // SwiGlu from a bf16 gate_up into a bf16 out: silu(g) * u of the bf16 inputs, rounded.
  Tensor gu = Bf16({0, 1, -2, 5, 2, 3}, {1, 6});
  Tensor out = *backend_->Alloc(DType::kBF16, {1, 3});
  backend_->SwiGlu(gu, out);
  std::vector<float> want;
  for (auto [gate, up] : {std::pair{0.0f, 5.0f}, {1.0f, 2.0f}, {-2.0f, 3.0f}}) {
    want.push_back(Bf16ToFloat(FloatToBf16(gate / (1.0f + std::exp(-gate)) * up)));
  }
  EXPECT_EQ(Bf16Host(*backend_, out), want);
}

TEST_F(CpuBackendTest, MatMulInputsAreF32OnTheReference) {
  for (int64_t rows : {1, 5, 4096}) EXPECT_EQ(backend_->MatMulInputDType(rows), DType::kF32);
}

}  // namespace
}  // namespace pixtral::kernels
