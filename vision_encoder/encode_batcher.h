// Batches concurrent image-encoding requests into one VisionEncoder::Encode call.
//
// Callers on many threads (gRPC handlers, embedded chats) call Encode; while the encoder is busy,
// new requests queue, and the next run takes as many of them as fit in one batch. Images are
// validated before they queue, so one bad request never fails a batch. The batched attention is
// block-diagonal per image, so each request's features equal those of encoding it alone.
//
//   EncodeBatcher batcher(*model->vision_encoder(), backend, {.max_patches_per_batch = 16384});
//   absl::StatusOr<std::vector<float>> features = batcher.Encode(images);  // [patches, hidden]
#ifndef PIXTRAL_VISION_ENCODER_ENCODE_BATCHER_H_
#define PIXTRAL_VISION_ENCODER_ENCODE_BATCHER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "kernels/backend.h"
#include "vision_encoder/vision_encoder.h"

namespace pixtral {

class EncodeBatcher {
 public:
  struct Options {
    // Patches encoded together at most (a request larger than this runs alone).
    int64_t max_patches_per_batch = 16384;
    // Requests waiting at most; beyond this Encode is RESOURCE_EXHAUSTED.
    int max_waiting = 256;
  };

  // `encoder` and `backend` (the one the encoder computes on) must outlive the batcher. Starts
  // the batching thread.
  EncodeBatcher(VisionEncoder& encoder, kernels::Backend& backend, const Options& options);
  ~EncodeBatcher();  // fails what still waits with UNAVAILABLE and joins the thread

  // Where one Encode call's time went (wall clock).
  struct Times {
    absl::Duration queued;   // waiting for the encoder (a batch before it ran)
    absl::Duration encoder;  // the batch's encoder run and its copy to host memory (device
                             // backends run asynchronously: the copy waits for the device)
    absl::Duration split;    // cutting the batch's rows into each call's features
  };

  // Thread-safe; blocks until the features are ready: f32 [sum of patches, hidden_size], image
  // by image, patches row-major. INVALID_ARGUMENT for invalid images; the pixels are borrowed
  // until it returns. `times` (may be null) gets where the time went.
  absl::StatusOr<std::vector<float>> Encode(absl::Span<const Image> images, Times* times = nullptr);

  // Calls to the encoder so far, and images in them: what batching saved.
  int64_t encoder_calls() const;

 private:
  struct Request;

  void Loop();
  void Run(std::vector<Request*>& batch);

  VisionEncoder& encoder_;
  kernels::Backend& backend_;
  const Options options_;

  mutable std::mutex mutex_;
  std::condition_variable work_;
  std::deque<Request*> waiting_;  // guarded by mutex_
  bool stopping_ = false;         // guarded by mutex_
  int64_t encoder_calls_ = 0;     // guarded by mutex_
  std::thread thread_;
};

}  // namespace pixtral

#endif  // PIXTRAL_VISION_ENCODER_ENCODE_BATCHER_H_
