#include "kernels/cpu/cpu_backend.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "glog/logging.h"
#include "kernels/cpu/parallel.h"
#include "kernels/shape_checks.h"

namespace pixtral::kernels {
namespace {

using cpu::ParallelFor;

constexpr size_t kAlignment = 64;

class HostBuffer : public Buffer {
 public:
  HostBuffer(void* data, size_t size) : data_(data), size_(size) {}
  ~HostBuffer() override { std::free(data_); }
  void* data() override { return data_; }
  size_t size() const override { return size_; }

 private:
  void* data_;
  size_t size_;
};

// Host memory someone else owns (a memory-mapped checkpoint), kept alive by `owner`.
class BorrowedBuffer : public Buffer {
 public:
  BorrowedBuffer(const void* data, size_t size, std::shared_ptr<const void> owner)
      : data_(const_cast<void*>(data)), size_(size), owner_(std::move(owner)) {}
  void* data() override { return data_; }
  size_t size() const override { return size_; }

 private:
  void* data_;
  size_t size_;
  std::shared_ptr<const void> owner_;
};

// Row `r` of a bf16 or f32 matrix with `cols` columns, widened into `out`.
void ReadRow(const Tensor& m, int64_t r, int64_t cols, float* out) {
  if (m.dtype() == DType::kF32) {
    std::memcpy(out, m.data<float>() + r * cols, cols * sizeof(float));
    return;
  }
  CHECK(m.dtype() == DType::kBF16) << m.DebugString();
  const uint16_t* src = m.data<uint16_t>() + r * cols;
  for (int64_t i = 0; i < cols; ++i) out[i] = Bf16ToFloat(src[i]);
}

// `cols` floats into row `r` of an f32 or bf16 matrix (bf16: rounded to nearest even).
void WriteRow(const Tensor& m, int64_t r, int64_t cols, const float* in) {
  if (m.dtype() == DType::kF32) {
    std::memcpy(m.data<float>() + r * cols, in, cols * sizeof(float));
    return;
  }
  CHECK(m.dtype() == DType::kBF16) << m.DebugString();
  uint16_t* dst = m.data<uint16_t>() + r * cols;
  for (int64_t i = 0; i < cols; ++i) dst[i] = FloatToBf16(in[i]);
}

// The whole of an f32 or bf16 tensor as floats: the tensor's own memory where it is f32, else a
// widened copy in `storage`.
const float* Widened(const Tensor& t, std::vector<float>& storage) {
  if (t.dtype() == DType::kF32) return t.data<float>();
  const int64_t cols = t.rank() == 0 ? 1 : t.shape().back();
  const int64_t rows = cols == 0 ? 0 : t.numel() / cols;
  storage.resize(t.numel());
  for (int64_t r = 0; r < rows; ++r) ReadRow(t, r, cols, storage.data() + r * cols);
  return storage.data();
}

float ExactGelu(float v) { return 0.5f * v * (1.0f + std::erf(v / static_cast<float>(M_SQRT2))); }

// Eight independent partial sums, so that the compiler vectorizes the loop without -ffast-math.
float Dot(const float* a, const float* b, int64_t n) {
  constexpr int kLanes = 8;
  float acc[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int j = 0; j < kLanes; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (float lane : acc) sum += lane;
  return sum;
}

template <typename F>
void ElementWise(const Tensor& a, const Tensor& out, F f) {
  CheckF32(a);
  CheckF32(out);
  CheckSameShape(a, out);
  const float* x = a.data<float>();
  float* y = out.data<float>();
  ParallelFor(a.numel(), 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) y[i] = f(x[i], i);
  });
}

// Rotates, in place, `heads` heads of `d` elements at the start of each of t rows `stride`
// floats apart (Backend::Rope's interleaved layout), row i by cos_sin[i] (f32 [t, d/2, 2]).
void RotateHeads(float* x, int64_t t, int64_t stride, int64_t heads, int64_t d,
                 const Tensor& cos_sin) {
  CheckF32(cos_sin);
  const int64_t half = d / 2;
  CHECK(cos_sin.shape() == std::vector<int64_t>({t, half, 2}))
      << "RoPE table " << cos_sin.DebugString() << " for " << t << " rows of " << heads
      << " heads of " << d;
  ParallelFor(t, 6 * heads * half, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const float* cs = cos_sin.data<float>() + i * half * 2;
      for (int64_t head = 0; head < heads; ++head) {
        float* v = x + i * stride + head * d;
        for (int64_t p = 0; p < half; ++p) {
          const float re = v[2 * p], im = v[2 * p + 1], c = cs[2 * p], s = cs[2 * p + 1];
          v[2 * p] = re * c - im * s;
          v[2 * p + 1] = re * s + im * c;
        }
      }
    }
  });
}

// Softmax-weighted sum for one query row against `n` keys: scores -> out[D].
// keys(j) / values(j) return pointers to key/value j.
template <typename KeyFn, typename ValueFn>
void AttendOne(const float* q, int64_t n, int64_t head_dim, float scale, KeyFn keys, ValueFn values,
               float* scores, float* out) {
  float max_score = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    scores[j] = Dot(q, keys(j), head_dim) * scale;
    max_score = std::max(max_score, scores[j]);
  }
  float denom = 0.0f;
  for (int64_t j = 0; j < n; ++j) {
    scores[j] = std::exp(scores[j] - max_score);
    denom += scores[j];
  }
  std::fill(out, out + head_dim, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    const float w = scores[j] / denom;
    const float* v = values(j);
    for (int64_t d = 0; d < head_dim; ++d) out[d] += w * v[d];
  }
}

// The host view of a PagedBatch: block tables without their -1 padding.
std::vector<PagedSequence> ReadBatch(const PagedBatch& batch) {
  CHECK(batch.sequences.dtype() == DType::kI32 && batch.block_tables.dtype() == DType::kI32);
  CHECK(batch.sequences.rank() == 2 && batch.sequences.dim(1) == 3 &&
        batch.block_tables.rank() == 2 && batch.block_tables.dim(0) == batch.sequences.dim(0));
  const int64_t width = batch.block_tables.dim(1);
  std::vector<PagedSequence> out;
  for (int64_t i = 0; i < batch.sequences.dim(0); ++i) {
    const int32_t* info = batch.sequences.data<int32_t>() + i * 3;
    const int32_t* table = batch.block_tables.data<int32_t>() + i * width;
    const int64_t blocks = std::find(table, table + width, -1) - table;
    out.push_back({info[0], info[1], info[2], absl::MakeConstSpan(table, blocks)});
  }
  return out;
}

class CpuBackend : public Backend {
 public:
  explicit CpuBackend(CpuBackendOptions options) : options_(options) {}

  std::string_view name() const override { return "cpu"; }

  bool FusesRmsNormIntoMatMul(int64_t /*rows*/) const override {
    return options_.norms_inside_products;
  }

  // Keeps the ops and calls them again at each replay; while they run, the ops that a device
  // backend cannot record (allocations, copies, sampling) are fatal, as they would be there.
  absl::StatusOr<std::unique_ptr<RecordedOps>> Record(std::function<absl::Status()> ops) override {
    class Recorded : public RecordedOps {
     public:
      Recorded(CpuBackend* backend, std::function<absl::Status()> ops)
          : backend_(backend), ops_(std::move(ops)) {}
      void Replay() override {
        CHECK(!backend_->replaying_) << "CPU backend: a replay inside a replay";
        backend_->replaying_ = true;
        const absl::Status status = ops_();
        backend_->replaying_ = false;
        CHECK(status.ok()) << "CPU backend: recorded ops failed on replay: " << status;
      }

     private:
      CpuBackend* backend_;
      std::function<absl::Status()> ops_;
    };
    return std::make_unique<Recorded>(this, std::move(ops));
  }

  absl::StatusOr<Tensor> Alloc(DType dtype, std::vector<int64_t> shape) override {
    CheckNotReplaying("Alloc");
    int64_t numel = 1;
    for (int64_t d : shape) {
      if (d < 0) return absl::InvalidArgumentError("Alloc: negative dimension");
      numel *= d;
    }
    const size_t bytes = static_cast<size_t>(numel) * DTypeSize(dtype);
    const size_t rounded = std::max(kAlignment, (bytes + kAlignment - 1) / kAlignment * kAlignment);
    void* data = std::aligned_alloc(kAlignment, rounded);
    if (data == nullptr) {
      return absl::ResourceExhaustedError(
          absl::StrCat("CPU backend: cannot allocate ", bytes, " bytes"));
    }
    return Tensor(std::make_shared<HostBuffer>(data, rounded), 0, dtype, std::move(shape));
  }

  absl::StatusOr<Tensor> LoadWeight(DType dtype, std::vector<int64_t> shape, const void* host,
                                    std::shared_ptr<const void> owner) override {
    if (reinterpret_cast<uintptr_t>(host) % DTypeSize(dtype) == 0) {
      int64_t numel = 1;
      for (int64_t d : shape) numel *= d;
      auto buffer = std::make_shared<BorrowedBuffer>(host, numel * DTypeSize(dtype), owner);
      return Tensor(std::move(buffer), 0, dtype, std::move(shape));
    }
    absl::StatusOr<Tensor> t = Alloc(dtype, std::move(shape));  // misaligned: copy
    if (t.ok()) CopyFromHost(host, *t);
    return t;
  }

  void CopyFromHost(const void* host, const Tensor& dst) override {
    CheckNotReplaying("CopyFromHost");
    std::memcpy(dst.data<void>(), host, dst.bytes());
  }
  void CopyToHost(const Tensor& src, void* host) override {
    CheckNotReplaying("CopyToHost");
    std::memcpy(host, src.data<void>(), src.bytes());
  }
  DType KvCacheDType() const override { return DType::kF32; }
  DType MatMulInputDType(int64_t /*rows*/) const override { return DType::kF32; }

  absl::StatusOr<int64_t> FreeMemoryBytes() const override {
    return absl::UnimplementedError("the CPU backend's KV cache is sized by its caller");
  }

  void MatMul(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override {
    MatMulThen(x, w, bias, y, [](float v) { return v; });
  }

  void MatMulGelu(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y) override {
    MatMulThen(x, w, bias, y, ExactGelu);
  }

  void Add(const Tensor& a, const Tensor& b, const Tensor& out) override {
    CheckF32(b);
    CheckSameShape(a, b);
    const float* bs = b.data<float>();
    ElementWise(a, out, [bs](float x, int64_t i) { return x + bs[i]; });
  }

  void RmsNorm(const Tensor& x, const Tensor& weight, float eps, const Tensor& y) override {
    CheckF32(x);
    CheckF32OrBf16(y);
    CheckSameShape(x, y);
    const int64_t d = x.shape().back();
    const int64_t rows = x.numel() / d;
    CHECK(weight.rank() == 1 && weight.dim(0) == d) << weight.DebugString();
    std::vector<float> g(d);
    ReadRow(weight, 0, d, g.data());
    ParallelFor(rows, 3 * d, [&](int64_t begin, int64_t end) {
      std::vector<float> out(d);
      for (int64_t r = begin; r < end; ++r) {
        const float* in = x.data<float>() + r * d;
        const float mean_square = Dot(in, in, d) / static_cast<float>(d);
        const float inv = 1.0f / std::sqrt(mean_square + eps);
        for (int64_t i = 0; i < d; ++i) out[i] = in[i] * inv * g[i];
        WriteRow(y, r, d, out.data());
      }
    });
  }

  void AddRmsNorm(const Tensor& x, const Tensor& delta, const Tensor& weight, float eps,
                  const Tensor& normed) override {
    Add(x, delta, x);
    RmsNorm(x, weight, eps, normed);
  }

  void SiluMul(const Tensor& gate, const Tensor& up, const Tensor& out) override {
    CheckF32(up);
    CheckSameShape(gate, up);
    const float* u = up.data<float>();
    ElementWise(gate, out, [u](float g, int64_t i) { return g / (1.0f + std::exp(-g)) * u[i]; });
  }

  void SwiGlu(const Tensor& gate_up, const Tensor& out) override {
    const int64_t f = CheckSwiGlu(gate_up, out);
    ParallelFor(out.dim(0), 8 * f, [&](int64_t begin, int64_t end) {
      std::vector<float> g(2 * f), o(f);
      for (int64_t r = begin; r < end; ++r) {
        ReadRow(gate_up, r, 2 * f, g.data());
        for (int64_t i = 0; i < f; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * g[f + i];
        WriteRow(out, r, f, o.data());
      }
    });
  }

  void Gelu(const Tensor& x, const Tensor& y) override {
    ElementWise(x, y, [](float v, int64_t) { return ExactGelu(v); });
  }

  void Softmax(const Tensor& x, const Tensor& y) override {
    CheckF32(x);
    CheckF32(y);
    CheckSameShape(x, y);
    const int64_t n = x.shape().back();
    const int64_t rows = x.numel() / n;
    ParallelFor(rows, 4 * n, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* in = x.data<float>() + r * n;
        float* out = y.data<float>() + r * n;
        const float m = *std::max_element(in, in + n);
        float sum = 0.0f;
        for (int64_t i = 0; i < n; ++i) sum += (out[i] = std::exp(in[i] - m));
        for (int64_t i = 0; i < n; ++i) out[i] /= sum;
      }
    });
  }

  void Rope(const Tensor& x, const Tensor& cos_sin) override {
    CheckF32(x);
    CHECK_EQ(x.rank(), 3) << x.DebugString();
    CHECK(x.dim(2) % 2 == 0) << x.DebugString();
    RotateHeads(x.data<float>(), x.dim(0), x.dim(1) * x.dim(2), x.dim(1), x.dim(2), cos_sin);
  }

  void SegmentAttention(const Tensor& q, const Tensor& k, const Tensor& v,
                        const Tensor& segment_lengths, float scale, const Tensor& out) override {
    for (const Tensor* t : {&q, &k, &v, &out}) {
      CheckF32(*t);
      CheckSameShape(q, *t);
    }
    CHECK_EQ(q.rank(), 3);
    const int64_t h = q.dim(1), d = q.dim(2);
    std::vector<std::pair<int64_t, int64_t>> segment_of(q.dim(0));  // (begin, length)
    int64_t begin = 0;
    CHECK(segment_lengths.dtype() == DType::kI32 && segment_lengths.rank() == 1);
    for (int64_t s = 0; s < segment_lengths.dim(0); ++s) {
      const int32_t len = segment_lengths.data<int32_t>()[s];
      CHECK_GE(len, 0);
      CHECK_LE(begin + len, q.dim(0));
      for (int64_t i = begin; i < begin + len; ++i) segment_of[i] = {begin, len};
      begin += len;
    }
    CHECK_EQ(begin, q.dim(0)) << "segment lengths do not cover the tokens";
    const int64_t row = h * d;
    ParallelFor(q.dim(0) * h, 4 * d * 64, [&](int64_t first, int64_t last) {
      std::vector<float> scores;
      for (int64_t item = first; item < last; ++item) {
        const int64_t i = item / h, head = item % h;
        const auto [seg_begin, seg_len] = segment_of[i];
        scores.resize(seg_len);
        const float* ks = k.data<float>() + seg_begin * row + head * d;
        const float* vs = v.data<float>() + seg_begin * row + head * d;
        AttendOne(
            q.data<float>() + i * row + head * d, seg_len, d, scale,
            [&](int64_t j) { return ks + j * row; }, [&](int64_t j) { return vs + j * row; },
            scores.data(), out.data<float>() + i * row + head * d);
      }
    });
  }

  void PagedAttention(const Tensor& qkv, const Tensor* cos_sin, const PagedBatch& batch,
                      float scale, const Tensor& k_cache, const Tensor& v_cache,
                      const Tensor& out) override {
    for (const Tensor* t : {&qkv, &out, &k_cache, &v_cache}) CheckF32(*t);
    CheckSameShape(k_cache, v_cache);
    CHECK(qkv.rank() == 2 && out.rank() == 3 && k_cache.rank() == 4) << qkv.DebugString();
    const int64_t t = out.dim(0), h = out.dim(1), d = out.dim(2), hkv = k_cache.dim(2);
    const int64_t block_size = k_cache.dim(1), num_blocks = k_cache.dim(0);
    const int64_t row = (h + 2 * hkv) * d, kv_row = hkv * d;
    CHECK(qkv.dim(0) == t && qkv.dim(1) == row && h % hkv == 0 && d % 2 == 0)
        << qkv.DebugString() << " for " << out.DebugString() << " and " << k_cache.DebugString();
    CHECK_EQ(k_cache.dim(3), d) << k_cache.DebugString();
    const float* q = qkv.data<float>();
    const float* k = q + h * d;
    const float* v = k + kv_row;
    if (cos_sin != nullptr) {
      RotateHeads(qkv.data<float>(), t, row, h, d, *cos_sin);
      RotateHeads(qkv.data<float>() + h * d, t, row, hkv, d, *cos_sin);
    }
    const std::vector<PagedSequence> sequences = ReadBatch(batch);
    auto slot = [&](const PagedSequence& s, int64_t pos) {
      const int64_t block = s.block_table[pos / block_size];
      CHECK(block >= 0 && block < num_blocks);
      return (block * block_size + pos % block_size) * kv_row;
    };
    for (const PagedSequence& s : sequences) {
      CHECK(s.q_begin >= 0 && s.q_len >= 0 && s.q_begin + s.q_len <= t);
      CHECK_LE(s.start_pos + s.q_len, static_cast<int64_t>(s.block_table.size()) * block_size);
      for (int64_t i = 0; i < s.q_len; ++i) {
        const int64_t dst = slot(s, s.start_pos + i), src = (s.q_begin + i) * row;
        std::memcpy(k_cache.data<float>() + dst, k + src, kv_row * sizeof(float));
        std::memcpy(v_cache.data<float>() + dst, v + src, kv_row * sizeof(float));
      }
    }
    // One work item per (sequence, new token, head).
    std::vector<std::pair<const PagedSequence*, int64_t>> rows;
    for (const PagedSequence& s : sequences) {
      for (int64_t i = 0; i < s.q_len; ++i) rows.push_back({&s, i});
    }
    const int64_t group = h / hkv;
    ParallelFor(
        static_cast<int64_t>(rows.size()) * h, 4 * d * 256, [&](int64_t first, int64_t last) {
          std::vector<float> scores;
          for (int64_t item = first; item < last; ++item) {
            const auto [s, i] = rows[item / h];
            const int64_t head = item % h, kv_head = head / group;
            const int64_t n = s->start_pos + i + 1;  // causal: positions [0, start_pos + i]
            scores.resize(n);
            AttendOne(
                q + (s->q_begin + i) * row + head * d, n, d, scale,
                [&](int64_t j) { return k_cache.data<float>() + slot(*s, j) + kv_head * d; },
                [&](int64_t j) { return v_cache.data<float>() + slot(*s, j) + kv_head * d; },
                scores.data(), out.data<float>() + ((s->q_begin + i) * h + head) * d);
          }
        });
  }

  void SplitColumns(const Tensor& x, absl::Span<const Tensor> parts) override {
    const std::vector<int64_t> widths = CheckSplitColumns(x, parts);
    const int64_t cols = x.dim(1);
    for (int64_t r = 0; r < x.dim(0); ++r) {
      int64_t offset = 0;
      for (size_t i = 0; i < parts.size(); ++i) {
        std::memcpy(parts[i].data<float>() + r * widths[i], x.data<float>() + r * cols + offset,
                    widths[i] * sizeof(float));
        offset += widths[i];
      }
    }
  }

  void SampleRows(const Tensor& logits, absl::Span<const RowSampling> draws, const Tensor& ids,
                  const Tensor& logprobs) override {
    CheckNotReplaying("SampleRows");
    CheckSampleRows(logits, draws.size(), ids, logprobs);
    const int64_t vocab = logits.dim(1);
    ParallelFor(logits.dim(0), 8 * vocab, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const absl::StatusOr<SampledRow> row =
            SampleRow(absl::MakeConstSpan(logits.data<float>() + r * vocab, vocab), draws[r]);
        ids.data<int32_t>()[r] = row.ok() ? row->id : -1;
        logprobs.data<float>()[r] =
            row.ok() ? row->logprob : std::numeric_limits<float>::quiet_NaN();
      }
    });
  }

  void Gather(const Tensor& table, const Tensor& ids, const Tensor& out) override {
    CheckF32(out);
    CHECK(ids.dtype() == DType::kI32 && ids.rank() == 1) << ids.DebugString();
    CHECK(table.rank() == 2 && out.rank() == 2 && out.dim(0) == ids.dim(0) &&
          out.dim(1) == table.dim(1))
        << table.DebugString() << "[" << ids.DebugString() << "] -> " << out.DebugString();
    const int64_t d = table.dim(1);
    for (int64_t i = 0; i < ids.dim(0); ++i) {
      const int32_t id = ids.data<int32_t>()[i];
      CHECK(id >= 0 && id < table.dim(0)) << "row " << id << " of " << table.DebugString();
      ReadRow(table, id, d, out.data<float>() + i * d);
    }
  }

  void Scatter(const Tensor& src, const Tensor& rows, const Tensor& dst) override {
    CheckF32(src);
    CheckF32(dst);
    CHECK(rows.dtype() == DType::kI32 && rows.rank() == 1 && rows.dim(0) == src.dim(0));
    CHECK(src.rank() == 2 && dst.rank() == 2 && src.dim(1) == dst.dim(1));
    const int64_t d = src.dim(1);
    for (int64_t i = 0; i < src.dim(0); ++i) {
      const int32_t r = rows.data<int32_t>()[i];
      CHECK(r >= 0 && r < dst.dim(0)) << "row " << r << " of " << dst.DebugString();
      std::memcpy(dst.data<float>() + r * d, src.data<float>() + i * d, d * sizeof(float));
    }
  }

  void Patchify(const Tensor& image, int patch_size, const Tensor& out) override {
    CheckF32(image);
    CheckF32(out);
    CHECK_EQ(image.rank(), 3);
    const int64_t c = image.dim(0), h = image.dim(1), w = image.dim(2), p = patch_size;
    CHECK(h % p == 0 && w % p == 0) << image.DebugString() << " patch " << p;
    const int64_t cols = w / p;
    CHECK(out.shape() == std::vector<int64_t>({(h / p) * cols, c * p * p})) << out.DebugString();
    const float* in = image.data<float>();
    float* o = out.data<float>();
    for (int64_t patch = 0; patch < out.dim(0); ++patch) {
      const int64_t r = patch / cols, col = patch % cols;
      for (int64_t ch = 0; ch < c; ++ch) {
        for (int64_t y = 0; y < p; ++y) {
          const float* src = in + (ch * h + r * p + y) * w + col * p;
          std::memcpy(o + ((patch * c + ch) * p + y) * p, src, p * sizeof(float));
        }
      }
    }
  }

 private:
  void CheckNotReplaying(const char* op) const {
    CHECK(!replaying_) << "CPU backend: " << op << " inside recorded ops";
  }

  // y = then(x · wᵀ + bias), each output rounded once into y's type.
  template <typename Then>
  void MatMulThen(const Tensor& x, const Tensor& w, const Tensor* bias, const Tensor& y,
                  Then then) {
    const auto [t, k, n] = CheckMatMul(x, w, bias, y);
    std::vector<float> x_storage, y_storage;
    const float* xs = Widened(x, x_storage);
    float* ys = y.data<float>();
    if (y.dtype() != DType::kF32) {
      y_storage.resize(t * n);
      ys = y_storage.data();
    }
    // Each thread owns a range of output features: widen a weight row once, dot it with all rows.
    ParallelFor(n, 2 * t * k, [&](int64_t begin, int64_t end) {
      std::vector<float> row(k);
      float b = 0.0f;
      for (int64_t j = begin; j < end; ++j) {
        ReadRow(w, j, k, row.data());
        if (bias != nullptr) ReadRow(*bias, j, 1, &b);
        for (int64_t i = 0; i < t; ++i) ys[i * n + j] = then(Dot(xs + i * k, row.data(), k) + b);
      }
    });
    if (y.dtype() != DType::kF32) {
      for (int64_t i = 0; i < t; ++i) WriteRow(y, i, n, ys + i * n);
    }
  }

  const CpuBackendOptions options_;
  bool replaying_ = false;  // inside a RecordedOps::Replay
};

}  // namespace

std::unique_ptr<Backend> NewCpuBackend(CpuBackendOptions options) {
  return std::make_unique<CpuBackend>(options);
}

}  // namespace pixtral::kernels
