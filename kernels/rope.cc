#include "kernels/rope.h"

#include <cmath>

#include "glog/logging.h"

namespace pixtral::kernels {
namespace {

// f_i = theta^(-2i / head_dim), computed in float32 as the references do.
std::vector<float> BaseFrequencies(int head_dim, double theta) {
  std::vector<float> f(head_dim / 2);
  for (int i = 0; i < head_dim / 2; ++i) {
    f[i] = 1.0f / std::pow(static_cast<float>(theta), static_cast<float>(2 * i) / head_dim);
  }
  return f;
}

void Put(float angle, float* out) {
  out[0] = std::cos(angle);
  out[1] = std::sin(angle);
}

}  // namespace

std::vector<float> RopeTable1D(absl::Span<const int32_t> positions, int head_dim, double theta) {
  CHECK_EQ(head_dim % 2, 0);
  const std::vector<float> f = BaseFrequencies(head_dim, theta);
  const int half = head_dim / 2;
  std::vector<float> table(positions.size() * head_dim);
  for (size_t t = 0; t < positions.size(); ++t) {
    for (int i = 0; i < half; ++i) {
      Put(static_cast<float>(positions[t]) * f[i], &table[(t * half + i) * 2]);
    }
  }
  return table;
}

std::vector<float> RopeTable2D(absl::Span<const int32_t> rows, absl::Span<const int32_t> cols,
                               int head_dim, double theta) {
  CHECK_EQ(head_dim % 4, 0);
  CHECK_EQ(rows.size(), cols.size());
  const std::vector<float> f = BaseFrequencies(head_dim, theta);
  const int half = head_dim / 2;
  const int quarter = head_dim / 4;
  std::vector<float> table(rows.size() * head_dim);
  for (size_t t = 0; t < rows.size(); ++t) {
    for (int i = 0; i < quarter; ++i) {
      Put(static_cast<float>(rows[t]) * f[2 * i], &table[(t * half + i) * 2]);
      Put(static_cast<float>(cols[t]) * f[2 * i + 1], &table[(t * half + quarter + i) * 2]);
    }
  }
  return table;
}

}  // namespace pixtral::kernels
