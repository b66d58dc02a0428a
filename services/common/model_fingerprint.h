// A model folder's identity, cheap to compute on every server: FNV-1a 64 of params.json's bytes
// and of the safetensors header (tensor names, dtypes, shapes and offsets; not the 25 GB of
// weights). Workers send theirs with every response (`x-model-fingerprint` initial metadata);
// the gateway refuses a worker whose fingerprint differs from its own folder's.
//
//   "params=1c0ffee0badc0de5 weights=0123456789abcdef"   ("weights=none" without a safetensors
//                                                          file: a gateway's folder may lack it)
#ifndef PIXTRAL_SERVICES_COMMON_MODEL_FINGERPRINT_H_
#define PIXTRAL_SERVICES_COMMON_MODEL_FINGERPRINT_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace pixtral {

inline constexpr char kModelFingerprintKey[] = "x-model-fingerprint";

// NotFound without params.json; InvalidArgument for a safetensors file with a bad header.
absl::StatusOr<std::string> ModelFingerprint(const std::string& dir);

// Whether two fingerprints name the same model: equal params, and equal weights where both
// have them.
bool SameModel(absl::string_view a, absl::string_view b);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_MODEL_FINGERPRINT_H_
