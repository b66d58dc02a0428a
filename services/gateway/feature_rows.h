// Image feature rows, [rows, width], as the gateway holds them between the vision worker and the
// decoder worker: f32 values, or the bf16 bits a vision worker sent (its --feature_dtype), kept as
// they came. bf16 rows reach the decoder worker as a copy of the received bytes, never widened to
// f32 and checked and narrowed back (for a 1024x1024 image that round trip was 4M values each way
// on the gateway's first-token path).
//
//   FeatureRows rows;
//   for (const v1::FeatureChunk& chunk : received) rows.Append(chunk.features(), width, max_rows);
//   input.mutable_image_features() = rows.ToTensor(first_row, count, width);  // bf16 as it came
//   std::vector<float> values = std::move(rows).ToF32();  // for an in-process decoder
#ifndef PIXTRAL_SERVICES_GATEWAY_FEATURE_ROWS_H_
#define PIXTRAL_SERVICES_GATEWAY_FEATURE_ROWS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "proto/common.pb.h"

namespace pixtral {

class FeatureRows {
 public:
  FeatureRows() = default;
  // f32 rows (an in-process encoder's).
  explicit FeatureRows(std::vector<float> values) : f32_(std::move(values)) {}

  // Values held (rows times width).
  int64_t size() const { return bf16_ ? std::ssize(bits_) / 2 : std::ssize(f32_); }
  bool empty() const { return size() == 0; }
  // Whether the rows are held as the bf16 bits they came in.
  bool bf16() const { return bf16_; }

  // Room for `values` values in all, in whichever dtype the first appended rows have: no
  // regrowth copies of a 1024x1024 image's 4M values.
  void Reserve(int64_t values) { reserve_ = values; }

  // Appends a received tensor, checked as AppendMatrix checks it (rank 2, `width` columns, at
  // most `max_rows` rows, the bytes its shape needs); returns its rows. Rows held as bf16 stay
  // bf16 while bf16 rows come; a tensor of the other dtype (replicas that differ) turns all of
  // them into f32, which holds every bf16 exactly.
  absl::StatusOr<int64_t> Append(const v1::Tensor& tensor, int64_t width, int64_t max_rows);
  // Appends `other`'s rows, by the same rule.
  void Append(FeatureRows other);

  // Rows [first_row, first_row + rows) as a tensor: bf16 bits copied as they are; f32 values as
  // MatrixToTensorExact sends them (bf16 when every one is exactly a bf16, else f32).
  v1::Tensor ToTensor(int64_t first_row, int64_t rows, int64_t width) const;

  // The values as f32 (bf16 widened exactly).
  std::vector<float> ToF32() &&;

 private:
  void WidenToF32();

  int64_t reserve_ = 0;
  bool bf16_ = false;
  std::vector<float> f32_;  // unless bf16_
  std::string bits_;        // when bf16_: 2 little-endian bytes a value
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_FEATURE_ROWS_H_
