#include "services/gateway/remote_stages.h"

#include <algorithm>
#include <map>
#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "proto/decoder_worker.grpc.pb.h"
#include "proto/vision_worker.grpc.pb.h"
#include "services/common/grpc_status.h"
#include "services/common/logging.h"
#include "services/common/model_fingerprint.h"
#include "services/common/tensor_proto.h"

namespace pixtral {
namespace {

// A worker must serve the gateway's model: its fingerprint arrives with its first response.
grpc::Status CheckWorkerModel(const grpc::ClientContext& client, const std::string& expected) {
  if (expected.empty()) return grpc::Status::OK;
  const auto& metadata = client.GetServerInitialMetadata();
  auto it = metadata.find(kModelFingerprintKey);
  const std::string got =
      it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
  if (got.empty()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "the worker sent no model fingerprint: it cannot be checked to serve the "
                        "gateway's model");
  }
  if (!SameModel(got, expected)) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("the worker serves another model (fingerprint ", got,
                                     "; the gateway's model folder has ", expected, ")"));
  }
  return grpc::Status::OK;
}

// The deadline, and the request id for the worker's logs.
void SetDeadline(const CallContext& context, grpc::ClientContext* client) {
  if (!context.request_id.empty()) client->AddMetadata(kRequestIdKey, context.request_id);
  if (context.deadline != absl::InfiniteFuture()) {
    client->set_deadline(absl::ToChronoTime(context.deadline));
  }
}

// Cancels `client` once `context.cancelled` says so, until destroyed. gRPC's blocking calls
// cannot poll, so a watcher thread does it.
class CancelWatcher {
 public:
  CancelWatcher(const CallContext& context, grpc::ClientContext* client) {
    if (!context.cancelled) return;
    thread_ = std::thread([this, &context, client] {
      while (!done_.WaitForNotificationWithTimeout(absl::Milliseconds(20))) {
        if (context.cancelled()) {
          client->TryCancel();
          return;
        }
      }
    });
  }
  ~CancelWatcher() {
    done_.Notify();
    if (thread_.joinable()) thread_.join();
  }

 private:
  absl::Notification done_;
  std::thread thread_;
};

FinishReason FromProto(v1::FinishReason reason) {
  return reason == v1::FINISH_REASON_LENGTH ? FinishReason::kLength : FinishReason::kEos;
}

template <typename Stub>
std::unique_ptr<typename Stub::Stub> StubFor(grpc::Channel& channel) {
  // The pool owns the channel; the stub only borrows it for one call.
  return Stub::NewStub(std::shared_ptr<grpc::Channel>(&channel, [](grpc::Channel*) {}));
}

// What a worker said about its time (services/common/request_timings.h), or "".
std::string TrailingTiming(const grpc::ClientContext& client) {
  const auto& metadata = client.GetServerTrailingMetadata();
  auto it = metadata.find(kTimingKey);
  return it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
}

// Bytes of an image's pixels on the wire, in the form it has.
int64_t PixelBytes(const PreprocessedImage& image) {
  return image.normalized() ? static_cast<int64_t>(image.pixels.size() * sizeof(float))
                            : static_cast<int64_t>(image.rgb8.size());
}

}  // namespace

v1::EncodeRequest ToEncodeRequest(absl::Span<const PreprocessedImage> images) {
  v1::EncodeRequest request;
  auto set_normalized = [](const PreprocessedImage& image, v1::Tensor* tensor) {
    tensor->set_dtype(v1::Tensor::DTYPE_F32);
    tensor->add_shape(3);
    tensor->add_shape(image.height);
    tensor->add_shape(image.width);
    tensor->set_data(reinterpret_cast<const char*>(image.pixels.data()),
                     image.pixels.size() * sizeof(float));
  };
  // Only floats: the `images` field, which workers from before `inputs` read too.
  const bool all_normalized =
      std::all_of(images.begin(), images.end(), [](const auto& i) { return i.normalized(); });
  for (const PreprocessedImage& image : images) {
    if (all_normalized) {
      set_normalized(image, request.add_images());
      continue;
    }
    v1::ImageInput* input = request.add_inputs();
    if (image.normalized()) {
      set_normalized(image, input->mutable_normalized());
      continue;
    }
    v1::RgbImage* rgb = input->mutable_rgb8();
    rgb->set_height(image.source_height);
    rgb->set_width(image.source_width);
    rgb->set_data(reinterpret_cast<const char*>(image.rgb8.data()), image.rgb8.size());
    rgb->set_target_height(image.height);
    rgb->set_target_width(image.width);
  }
  return request;
}

absl::StatusOr<FeatureRows> RemoteVisionStage::Encode(absl::Span<const PreprocessedImage> images,
                                                      const CallContext& context) {
  // Consecutive images whose pixels together fit one call.
  std::vector<absl::Span<const PreprocessedImage>> groups;
  size_t first = 0;
  int64_t bytes = 0;
  for (size_t i = 0; i < images.size(); ++i) {
    const int64_t image_bytes = PixelBytes(images[i]);
    if (i > first && bytes + image_bytes > max_bytes_per_call_) {
      groups.push_back(images.subspan(first, i - first));
      first = i;
      bytes = 0;
    }
    bytes += image_bytes;
  }
  if (first < images.size() || images.empty()) groups.push_back(images.subspan(first));
  if (groups.size() == 1) return EncodeInOneCall(groups[0], context);

  std::vector<absl::StatusOr<FeatureRows>> results(groups.size());
  std::vector<std::thread> calls;
  for (size_t g = 1; g < groups.size(); ++g) {
    calls.emplace_back([&, g] { results[g] = EncodeInOneCall(groups[g], context); });
  }
  results[0] = EncodeInOneCall(groups[0], context);
  for (std::thread& call : calls) call.join();
  FeatureRows features;
  for (absl::StatusOr<FeatureRows>& result : results) {
    if (!result.ok()) return result.status();
    features.Append(*std::move(result));
  }
  return features;
}

absl::StatusOr<FeatureRows> RemoteVisionStage::EncodeInOneCall(
    absl::Span<const PreprocessedImage> images, const CallContext& context) {
  const absl::Time start = absl::Now();
  const v1::EncodeRequest request = ToEncodeRequest(images);
  int64_t total_rows = 0;
  for (const PreprocessedImage& image : images) total_rows += image.grid.rows * image.grid.cols;

  FeatureRows features;
  auto attempt = [&](grpc::Channel& channel, bool* received) {
    features = FeatureRows();
    features.Reserve(total_rows * width_);
    grpc::ClientContext client;
    SetDeadline(context, &client);
    CancelWatcher watcher(context, &client);
    auto reader = StubFor<v1::VisionEncoder>(channel)->Encode(&client, request);
    v1::FeatureChunk chunk;
    int64_t rows = 0;
    absl::Status bad;
    while (reader->Read(&chunk)) {
      if (!*received) {
        if (grpc::Status model = CheckWorkerModel(client, model_fingerprint_); !model.ok()) {
          client.TryCancel();
          reader->Finish();
          return model;
        }
      }
      *received = true;
      // bf16 rows are kept as the bytes that came, for the decoder worker (feature_rows.h).
      absl::StatusOr<int64_t> added = features.Append(chunk.features(), width_, total_rows - rows);
      if (!added.ok()) {
        bad = absl::InternalError(absl::StrCat("vision worker: ", added.status().message()));
        client.TryCancel();
        break;
      }
      rows += *added;
    }
    grpc::Status finished = reader->Finish();
    if (finished.ok() && context.timings != nullptr) {
      context.timings->Merge("vision.", TrailingTiming(client));
    }
    if (!bad.ok()) return ToGrpcStatus(bad);
    if (finished.ok() && rows != total_rows) {
      return grpc::Status(
          grpc::StatusCode::INTERNAL,
          absl::StrCat("vision worker returned ", rows, " feature rows, expected ", total_rows));
    }
    return finished;
  };
  grpc::Status status = pool_.Call(attempt, context.request_id);
  if (!status.ok()) return ToAbslStatus(status);
  if (context.timings != nullptr) {
    context.timings->Add("vision_call", absl::Now() - start);
    context.timings->Add("vision_bytes", static_cast<double>(request.ByteSizeLong()));
  }
  return features;
}

absl::StatusOr<Completion> RemoteDecoderStage::Generate(
    GenerationRequest request,
    const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
    const CallContext& context) {
  return Call(std::move(request), nullptr, on_tokens, context);
}

absl::StatusOr<Completion> RemoteDecoderStage::GenerateWithImages(
    GenerationRequest request, const PromptImages& images,
    const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
    const CallContext& context) {
  if (!features_on_request_) {
    return DecoderStage::GenerateWithImages(std::move(request), images, on_tokens, context);
  }
  return Call(std::move(request), &images, on_tokens, context);
}

absl::StatusOr<Completion> RemoteDecoderStage::Call(
    GenerationRequest request, const PromptImages* images,
    const std::function<bool(absl::Span<const SampledToken> tokens)>& on_tokens,
    const CallContext& context) {
  v1::GenerateInput header_message;
  v1::GenerateHeader& header = *header_message.mutable_header();
  for (int32_t id : request.prompt.tokens) header.add_prompt_token_ids(id);
  int64_t total_rows = static_cast<int64_t>(request.prompt.image_features.size()) / feature_width_;
  if (images != nullptr) {
    total_rows = 0;
    for (const ImageKey& image : images->keys) {
      v1::ImageKey* key = header.add_image_keys();
      key->set_hi(image.key.hi);
      key->set_lo(image.key.lo);
      key->set_rows(static_cast<int32_t>(image.rows));
      total_rows += image.rows;
    }
    header.set_features_on_request(true);
  }
  header.set_image_feature_rows(static_cast<int32_t>(total_rows));
  v1::SamplingParams& sampling = *header.mutable_sampling();
  sampling.set_max_tokens(request.max_tokens);
  sampling.set_temperature(request.sampling.temperature);
  sampling.set_top_p(request.sampling.top_p);
  sampling.set_seed(request.sampling.seed);
  for (int32_t id : request.stop_token_ids) sampling.add_stop_token_ids(id);
  sampling.set_ignore_eos(request.ignore_eos);
  sampling.set_logprobs(request.logprobs);

  Completion completion;
  bool consumer_stopped = false;
  // An error of the vision stage while the decoder waited: returned as it is, not retried on
  // another decoder.
  absl::Status features_error;
  // The features asked for, by first image, kept across attempts on other replicas.
  std::map<int, FeatureRows> asked;
  // Without `images`, every feature of the prompt (f32, from an in-process encoder's interface).
  const FeatureRows all_features(std::move(request.prompt.image_features));
  const absl::Time start = absl::Now();
  bool first = true;
  auto attempt = [&](grpc::Channel& channel, bool* received) {
    completion = Completion();
    grpc::ClientContext client;
    SetDeadline(context, &client);
    CancelWatcher watcher(context, &client);
    auto stream = StubFor<v1::Decoder>(channel)->Generate(&client);
    bool sent = stream->Write(header_message);
    const FeatureRows* features = &all_features;
    v1::GenerateOutput output;
    if (images != nullptr && sent) {
      // The decoder first says which images its prefix cache lacks.
      if (!stream->Read(&output)) return stream->Finish();
      if (grpc::Status model = CheckWorkerModel(client, model_fingerprint_); !model.ok()) {
        client.TryCancel();
        stream->Finish();
        return model;
      }
      const int first_image = output.feature_request().first_image();
      if (!output.has_feature_request() || first_image < 0 ||
          first_image > std::ssize(images->keys)) {
        client.TryCancel();
        stream->Finish();
        return grpc::Status(grpc::StatusCode::INTERNAL,
                            "the decoder worker did not say which image features it needs");
      }
      if (context.timings != nullptr) {
        context.timings->Add("decoder_feature_request", absl::Now() - start);
        context.timings->Add("images_skipped", first_image);
      }
      auto it = asked.find(first_image);
      if (it == asked.end()) {
        absl::StatusOr<FeatureRows> computed = images->features(first_image);
        if (!computed.ok()) {
          features_error = computed.status();
          *received = true;  // the decoder is not at fault: no failover
          client.TryCancel();
          stream->Finish();
          return grpc::Status(grpc::StatusCode::CANCELLED, "no features");
        }
        it = asked.emplace(first_image, *std::move(computed)).first;
      }
      features = &it->second;
    }
    const int64_t rows = features->size() / feature_width_;
    for (int64_t first = 0; sent && first < rows; first += kFeatureRowsPerMessage) {
      const int64_t count = std::min<int64_t>(kFeatureRowsPerMessage, rows - first);
      v1::GenerateInput chunk;
      // Features the vision worker sent as bf16 go on as the bytes it sent; f32 ones stay f32.
      *chunk.mutable_image_features() = features->ToTensor(first, count, feature_width_);
      sent = stream->Write(chunk);
    }
    if (sent) stream->WritesDone();
    std::vector<SampledToken> tokens;
    while (stream->Read(&output)) {
      if (!*received && images == nullptr) {
        if (grpc::Status model = CheckWorkerModel(client, model_fingerprint_); !model.ok()) {
          client.TryCancel();
          stream->Finish();
          return model;
        }
      }
      *received = true;
      tokens.clear();
      for (int i = 0; i < output.token_ids_size(); ++i) {
        tokens.push_back(
            {output.token_ids(i), i < output.logprobs_size() ? output.logprobs(i) : 0});
        completion.tokens.push_back(output.token_ids(i));
        if (request.logprobs) completion.logprobs.push_back(tokens.back().logprob);
      }
      if (output.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
        completion.finish_reason = FromProto(output.finish_reason());
      }
      if (first && !tokens.empty() && context.timings != nullptr) {
        context.timings->Add("decoder_first_token", absl::Now() - start);
        first = false;
      }
      if (!tokens.empty() && !on_tokens(tokens)) {
        consumer_stopped = true;
        client.TryCancel();
        break;
      }
    }
    grpc::Status finished = stream->Finish();
    if (context.timings != nullptr) context.timings->Merge("decoder.", TrailingTiming(client));
    return finished;
  };
  grpc::Status status = pool_.Call(attempt, context.request_id);
  if (!features_error.ok()) return features_error;
  if (consumer_stopped) {
    completion.finish_reason = FinishReason::kCancelled;
    return completion;
  }
  if (!status.ok()) return ToAbslStatus(status);
  return completion;
}

}  // namespace pixtral
