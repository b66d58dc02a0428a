// Test helper: separate q [t, h, d], k and v [t, hkv, d] (row-major host floats) as the one
// stacked row per token that Backend::PagedAttention reads: [t, (h + 2 hkv) d].
#ifndef PIXTRAL_KERNELS_TESTING_STACKED_QKV_H_
#define PIXTRAL_KERNELS_TESTING_STACKED_QKV_H_

#include <cstdint>
#include <vector>

namespace pixtral::kernels {

inline std::vector<float> StackQkv(const std::vector<float>& q, const std::vector<float>& k,
                                   const std::vector<float>& v, int64_t t) {
  const int64_t q_row = static_cast<int64_t>(q.size()) / t;
  const int64_t kv_row = static_cast<int64_t>(k.size()) / t;
  std::vector<float> qkv;
  qkv.reserve(q.size() + k.size() + v.size());
  for (int64_t i = 0; i < t; ++i) {
    qkv.insert(qkv.end(), q.begin() + i * q_row, q.begin() + (i + 1) * q_row);
    qkv.insert(qkv.end(), k.begin() + i * kv_row, k.begin() + (i + 1) * kv_row);
    qkv.insert(qkv.end(), v.begin() + i * kv_row, v.begin() + (i + 1) * kv_row);
  }
  return qkv;
}

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_TESTING_STACKED_QKV_H_
