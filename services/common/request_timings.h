// Where one request's time went on the servers: named durations (seconds) and a few counts,
// summed per name, carried from a worker to the gateway and from the gateway to its client in
// the trailing metadata `x-pixtral-timing` as "name=value;name=value". Benchmarks read them
// (bench/served_bench) instead of guessing from the outside; nothing in serving depends on them.
//
//   RequestTimings timings;
//   timings.Add("vision_call", absl::Now() - start);
//   timings.Merge("vision.", TrailingTiming(client_context));  // the worker's own names
//   server_context->AddTrailingMetadata(kTimingKey, timings.ToHeader());
//
// Names set, by who (seconds unless said otherwise):
//   gateway:  image_fetch, image_decode, image_preprocess (resize and normalization there; zero
//             for images sent as 8-bit RGB), tokenize (the whole chat encoding, images
//             included), vision_call (the Encode calls as the gateway sees them), vision_bytes
//             (pixel bytes sent), decoder_first_token (the Generate call until its first token),
//             first_token and total (from the request's start), image_keys (hashing the images
//             for their content keys), decoder_feature_request (the Generate call until the
//             decoder said which images it needs), images_skipped (count: images whose features
//             the decoder did not need).
//   vision worker (vision. at the gateway): normalize (8-bit RGB to the encoder's floats),
//             encode (the encoder, cache hits included), of that hash (the cache's keys),
//             encoder (the batcher's call: encoder_queued waiting for a batch, encoder_run the
//             encoder and the copy of its output to host memory, encoder_split the batch cut
//             into calls) and cache_copies (the rest: the cache's lookups and copies),
//             serialize (features into FeatureChunks),
//             write (handing the chunks to gRPC), handler (the whole call), images,
//             cache_hits (counts).
//   decoder worker (decoder. at the gateway): prefix_match (keying the prompt and pinning its
//             cached prefix, with features on request), receive (header to the last feature row
//             read; with features on request it includes the gateway's vision call), first_token
//             (submitted to the first token: queue, adapter, prefill and the first sample, which
//             the engine computes in one step).
#ifndef PIXTRAL_SERVICES_COMMON_REQUEST_TIMINGS_H_
#define PIXTRAL_SERVICES_COMMON_REQUEST_TIMINGS_H_

#include <map>
#include <mutex>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace pixtral {

inline constexpr char kTimingKey[] = "x-pixtral-timing";

class RequestTimings {
 public:
  // Thread-safe; repeated names add up (several Encode calls of one request).
  void Add(absl::string_view name, double value);
  void Add(absl::string_view name, absl::Duration duration) {
    Add(name, absl::ToDoubleSeconds(duration));
  }
  // Adds every entry of a header another server sent, each name prefixed. Malformed entries, and
  // entries past the first 64, are skipped: a header is diagnostics, never a reason to fail.
  void Merge(absl::string_view prefix, absl::string_view header);

  std::string ToHeader() const;
  std::map<std::string, double> values() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, double> values_;
};

// The header's entries (as Merge reads them, without a prefix).
std::map<std::string, double> ParseTimingHeader(absl::string_view header);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_COMMON_REQUEST_TIMINGS_H_
