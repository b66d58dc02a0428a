// The vision worker's and gateway's CPU work for one 1024x1024 image, timed on this machine:
// normalizing 8-bit RGB, hashing the pixels for the feature cache, turning the encoder's rows into
// FeatureChunk tensors (and their wire bytes), and the gateway's relay of them to the decoder
// (FeatureRows, and the f32 round trip it replaced).
//
//   bazel run //bench:vision_cpu_bench
//   MALLOC_MMAP_THRESHOLD_=131072 bazel-bin/bench/vision_cpu_bench  # every buffer fresh pages
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/image_processing.h"
#include "engine/block_hash.h"
#include "proto/vision_worker.pb.h"
#include "services/common/tensor_proto.h"
#include "services/gateway/feature_rows.h"

namespace pixtral {
namespace {

constexpr int kSide = 1024;
constexpr int64_t kRows = (kSide / 16) * (kSide / 16);  // patches
constexpr int64_t kWidth = 1024;                        // Pixtral-12B's encoder width
constexpr int kChunkRows = 512;

// The best of `repeats` runs, in milliseconds (the first is a warm-up as well).
double BestMs(int repeats, const std::function<void()>& work) {
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const absl::Time start = absl::Now();
    work();
    best = std::min(best, absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  return best;
}

void Run() {
  std::mt19937 random(7);
  std::vector<uint8_t> rgb(size_t{kSide} * kSide * 3);
  for (uint8_t& v : rgb) v = static_cast<uint8_t>(random());
  // Encoder rows that are exact bf16 values, as a CUDA encoder's are not (f32), and as a
  // relayed bf16 tensor's are.
  std::vector<float> rows(kRows * kWidth);
  std::normal_distribution<float> normal(0.0f, 2.0f);
  for (float& v : rows) v = normal(random);

  std::vector<float> pixels;
  std::printf("allocate 12 MiB std::vector<float>    %7.2f ms\n", BestMs(10, [&] {
                std::vector<float> zeroed(size_t{3} * kSide * kSide);
                pixels.swap(zeroed);
              }));
  std::printf("normalize rgb8 1024x1024 (no resize)  %7.2f ms\n", BestMs(10, [&] {
                pixels = *ResizeAndNormalizeRgb8(rgb, kSide, kSide, kSide, kSide);
              }));
  std::printf("normalize rgb8 1000x1000 -> 1024x1024 %7.2f ms\n", BestMs(3, [&] {
                std::vector<uint8_t> small(1000 * 1000 * 3, 77);
                pixels = *ResizeAndNormalizeRgb8(small, 1000, 1000, kSide, kSide);
              }));
  const size_t values = size_t{3} * kSide * kSide;
  std::printf("normalize rgb8 into fresh memory      %7.2f ms\n", BestMs(10, [&] {
                auto out = std::make_unique_for_overwrite<float[]>(values);
                (void)ResizeAndNormalizeRgb8Into(rgb, kSide, kSide, kSide, kSide,
                                                 absl::MakeSpan(out.get(), values));
              }));
  pixels = *ResizeAndNormalizeRgb8(rgb, kSide, kSide, kSide, kSide);
  BlockKey key;
  std::printf("hash f32 pixels (12 MiB)              %7.2f ms\n",
              BestMs(10, [&] { key = HashBytes(pixels.data(), pixels.size() * sizeof(float)); }));
  std::printf("hash rgb8 pixels (3 MiB)              %7.2f ms\n",
              BestMs(10, [&] { key = HashBytes(rgb.data(), rgb.size()); }));

  for (v1::Tensor::DType dtype : {v1::Tensor::DTYPE_F32, v1::Tensor::DTYPE_BF16}) {
    const char* name = dtype == v1::Tensor::DTYPE_F32 ? "f32 " : "bf16";
    std::vector<v1::FeatureChunk> chunks(kRows / kChunkRows);
    std::printf(
        "serialize %s: rows -> chunk tensors   %7.2f ms\n", name, BestMs(10, [&] {
          for (int64_t c = 0; c < std::ssize(chunks); ++c) {
            *chunks[c].mutable_features() = MatrixToTensor(
                absl::Span<const float>(rows).subspan(c * kChunkRows * kWidth, kChunkRows * kWidth),
                kChunkRows, kWidth, dtype);
          }
        }));
    std::string wire;
    std::printf("write %s: chunks -> wire bytes        %7.2f ms\n", name, BestMs(10, [&] {
                  for (const v1::FeatureChunk& chunk : chunks) chunk.SerializeToString(&wire);
                }));
    // The gateway's relay: received chunks -> FeatureRows -> decoder tensors.
    FeatureRows relayed;
    std::printf("gateway %s: chunks -> FeatureRows     %7.2f ms\n", name, BestMs(10, [&] {
                  relayed = FeatureRows();
                  relayed.Reserve(kRows * kWidth);
                  for (const v1::FeatureChunk& chunk : chunks) {
                    (void)relayed.Append(chunk.features(), kWidth, kRows);
                  }
                }));
    std::printf("gateway %s: FeatureRows -> decoder tensors %4.2f ms\n", name, BestMs(10, [&] {
                  for (int64_t c = 0; c < kRows / kChunkRows; ++c) {
                    v1::Tensor t = relayed.ToTensor(c * kChunkRows, kChunkRows, kWidth);
                  }
                }));
    // The relay before FeatureRows, for comparison: through f32 and back.
    std::vector<float> received;
    std::printf("gateway %s: chunks -> f32 rows        %7.2f ms\n", name, BestMs(10, [&] {
                  received.clear();
                  received.reserve(kRows * kWidth);
                  for (const v1::FeatureChunk& chunk : chunks) {
                    (void)AppendMatrix(chunk.features(), kWidth, kRows, &received);
                  }
                }));
    std::printf("gateway %s: f32 rows -> decoder tensors %5.2f ms\n", name, BestMs(10, [&] {
                  for (int64_t c = 0; c < kRows / kChunkRows; ++c) {
                    v1::Tensor t =
                        MatrixToTensorExact(absl::Span<const float>(received).subspan(
                                                c * kChunkRows * kWidth, kChunkRows * kWidth),
                                            kChunkRows, kWidth);
                  }
                }));
  }
}

}  // namespace
}  // namespace pixtral

int main() { pixtral::Run(); }
