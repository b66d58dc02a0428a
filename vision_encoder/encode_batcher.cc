#include "vision_encoder/encode_batcher.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace pixtral {

struct EncodeBatcher::Request {
  absl::Span<const Image> images;
  int64_t patches = 0;
  std::optional<absl::StatusOr<std::vector<float>>> result;  // set under mutex_
  absl::Time queued = absl::Now();
  Times times;  // set with result
};

EncodeBatcher::EncodeBatcher(VisionEncoder& encoder, kernels::Backend& backend,
                             const Options& options)
    : encoder_(encoder), backend_(backend), options_(options), thread_([this] { Loop(); }) {}

EncodeBatcher::~EncodeBatcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    for (Request* request : waiting_) {
      request->result = absl::UnavailableError("the vision encoder is shutting down");
    }
    waiting_.clear();
  }
  work_.notify_all();
  thread_.join();
}

int64_t EncodeBatcher::encoder_calls() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return encoder_calls_;
}

absl::StatusOr<std::vector<float>> EncodeBatcher::Encode(absl::Span<const Image> images,
                                                         Times* times) {
  if (images.empty()) return std::vector<float>();
  if (absl::Status status = encoder_.Validate(images); !status.ok()) return status;
  Request request{images};
  for (const Image& image : images) request.patches += encoder_.NumPatches(image);
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) return absl::UnavailableError("the vision encoder is shutting down");
  if (static_cast<int>(waiting_.size()) >= options_.max_waiting) {
    return absl::ResourceExhaustedError(
        absl::StrCat(waiting_.size(), " image requests are already waiting for the encoder"));
  }
  waiting_.push_back(&request);
  work_.notify_all();
  work_.wait(lock, [&request] { return request.result.has_value(); });
  if (times != nullptr) *times = request.times;
  return *std::move(request.result);
}

void EncodeBatcher::Loop() {
  while (true) {
    std::vector<Request*> batch;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
      if (stopping_) return;
      int64_t patches = 0;
      while (!waiting_.empty() && (batch.empty() || patches + waiting_.front()->patches <=
                                                        options_.max_patches_per_batch)) {
        patches += waiting_.front()->patches;
        batch.push_back(waiting_.front());
        waiting_.pop_front();
      }
      ++encoder_calls_;
    }
    Run(batch);
  }
}

void EncodeBatcher::Run(std::vector<Request*>& batch) {
  std::vector<Image> images;
  for (const Request* request : batch) {
    images.insert(images.end(), request->images.begin(), request->images.end());
  }
  const absl::Time start = absl::Now();
  absl::StatusOr<kernels::Tensor> encoded = encoder_.Encode(images);
  std::vector<float> all;
  if (encoded.ok()) {
    all.resize(encoded->numel());
    backend_.CopyToHost(*encoded, all.data());
  }
  const absl::Time ran = absl::Now();
  const int64_t width = encoded.ok() ? encoded->dim(1) : 0;
  std::lock_guard<std::mutex> lock(mutex_);
  int64_t row = 0;
  for (Request* request : batch) {
    if (!encoded.ok()) {
      request->result = encoded.status();
      continue;
    }
    if (batch.size() == 1) {  // the usual case: its 16 MiB an image are moved, not copied
      request->result = std::move(all);
      continue;
    }
    request->result = std::vector<float>(all.begin() + row * width,
                                         all.begin() + (row + request->patches) * width);
    row += request->patches;
  }
  const Times times{.encoder = ran - start, .split = absl::Now() - ran};
  for (Request* request : batch) {
    request->times = times;
    request->times.queued = start - request->queued;
  }
  work_.notify_all();
}

}  // namespace pixtral
