#include "services/decoder_worker/decoder_service.h"

#include <utility>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status_macros.h"
#include "engine/image_keys.h"
#include "engine/run_on_scheduler.h"
#include "services/common/grpc_status.h"
#include "services/common/request_timings.h"
#include "services/common/tensor_proto.h"

namespace pixtral {
namespace {

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kEos:
    case FinishReason::kStopToken:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kCancelled:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

// Reads the feature rows that follow the header: those of the images from `first_image` on.
absl::StatusOr<std::vector<float>> ReadFeatures(
    const v1::GenerateHeader& header, int first_image, int64_t width,
    grpc::ServerReaderWriter<v1::GenerateOutput, v1::GenerateInput>& stream) {
  int64_t expected = header.image_feature_rows();
  for (int i = 0; i < first_image && i < header.image_keys_size(); ++i) {
    expected -= header.image_keys(i).rows();
  }
  if (expected < 0) {
    return absl::InvalidArgumentError("the image keys hold more rows than image_feature_rows");
  }
  // Not reserved from `expected`: the header is the client's word, the rows are what came.
  std::vector<float> features;
  v1::GenerateInput input;
  for (int64_t rows = 0; rows < expected;) {
    if (!stream.Read(&input) || !input.has_image_features()) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected ", expected - rows, " more image feature rows"));
    }
    PIXTRAL_ASSIGN_OR_RETURN(const int64_t added, AppendMatrix(input.image_features(), width,
                                                               expected - rows, &features));
    rows += added;
  }
  // A sender that was asked for features half-closes after them: anything more is features of
  // images it was not asked for.
  if (header.features_on_request() && stream.Read(&input)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "more than the ", expected, " requested feature rows came (features from image ",
        first_image, " on were asked for)"));
  }
  return features;
}

}  // namespace

absl::StatusOr<GenerationRequest> ToGenerationRequest(const v1::GenerateHeader& header,
                                                      std::vector<float> image_features,
                                                      const DecoderServiceOptions& options,
                                                      int first_feature_image) {
  GenerationRequest request;
  if (header.prompt_token_ids().empty()) return absl::InvalidArgumentError("empty prompt");
  int64_t image_tokens = 0;
  for (int32_t id : header.prompt_token_ids()) {
    if (id < 0 || id >= options.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "token id ", id, " is outside the vocabulary [0, ", options.vocab_size, ")"));
    }
    image_tokens += id == options.image_token_id;
  }
  if (image_tokens != header.image_feature_rows()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the prompt has ", image_tokens, " image tokens but ",
                     header.image_feature_rows(), " feature rows were announced"));
  }
  for (const v1::ImageKey& key : header.image_keys()) {
    request.prompt.image_keys.push_back(
        {.key = {.hi = key.hi(), .lo = key.lo()}, .rows = key.rows()});
  }
  request.prompt.first_feature_image = first_feature_image;
  if (first_feature_image != 0 && header.image_keys().empty()) {
    return absl::InvalidArgumentError("features left out of a prompt without image keys");
  }
  const int64_t sent_rows =
      image_tokens - RowsBeforeImage(request.prompt, request.prompt.first_feature_image);
  if (static_cast<int64_t>(image_features.size()) != sent_rows * options.feature_width) {
    return absl::InvalidArgumentError("image features do not match the announced rows");
  }
  const v1::SamplingParams& sampling = header.sampling();
  if (sampling.max_tokens() < 0) return absl::InvalidArgumentError("max_tokens must be >= 0");
  request.max_tokens =
      sampling.max_tokens() > 0 ? sampling.max_tokens() : options.default_max_tokens;
  const int64_t total = int64_t{header.prompt_token_ids_size()} + request.max_tokens;
  if (total > options.max_context_tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "prompt (", header.prompt_token_ids_size(), " tokens) plus max_tokens (",
        request.max_tokens, ") exceeds the context of ", options.max_context_tokens, " tokens"));
  }
  request.prompt.tokens.assign(header.prompt_token_ids().begin(), header.prompt_token_ids().end());
  request.prompt.image_features = std::move(image_features);
  request.sampling.temperature = sampling.temperature();
  request.sampling.top_p = sampling.top_p() == 0 ? 1.0f : sampling.top_p();
  request.sampling.seed =
      sampling.has_seed() ? sampling.seed() : absl::Uniform<uint64_t>(absl::BitGen());
  request.stop_token_ids.assign(sampling.stop_token_ids().begin(), sampling.stop_token_ids().end());
  request.ignore_eos = sampling.ignore_eos();
  request.logprobs = sampling.logprobs();
  if (absl::Status status = ValidateSamplingParams(request.sampling); !status.ok()) return status;
  return request;
}

absl::StatusOr<DecoderService::FeatureAsk> DecoderService::AskForFeatures(
    const v1::GenerateHeader& header) {
  if (header.image_keys().empty()) {
    return absl::InvalidArgumentError("features_on_request needs image keys");
  }
  // The prompt as it stands with no features: enough to key it and match the prefix cache.
  absl::StatusOr<GenerationRequest> keyed =
      ToGenerationRequest(header, {}, options_, header.image_keys_size());
  if (!keyed.ok()) return keyed.status();
  PIXTRAL_ASSIGN_OR_RETURN(PinnedPrefix pinned,
                           PinPrefixAndWait(scheduler_, keyed->prompt, options_.image_token_id));
  return FeatureAsk{.pin = pinned.pin.id, .first_image = pinned.first_needed_image};
}

grpc::Status DecoderService::Generate(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<v1::GenerateOutput, v1::GenerateInput>* stream) {
  v1::GenerateInput input;
  if (!stream->Read(&input) || !input.has_header()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the first message must be a header");
  }
  const absl::Time received_header = absl::Now();
  const v1::GenerateHeader header = input.header();
  if (header.image_feature_rows() < 0 ||
      header.image_feature_rows() > header.prompt_token_ids_size()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "image_feature_rows must be between 0 and the prompt length");
  }
  // Where this call's time went, for benchmarks (services/common/request_timings.h).
  RequestTimings timings;
  // With features on request: which images the prefix cache lacks, held until the request ends.
  FeatureAsk ask;
  // The pin goes to the scheduler with the request; every earlier exit gives it back.
  absl::Cleanup unpin = [&] { scheduler_.Unpin(ask.pin); };
  if (header.features_on_request()) {
    const absl::Time start = absl::Now();
    absl::StatusOr<FeatureAsk> asked = AskForFeatures(header);
    if (!asked.ok()) return ToGrpcStatus(asked.status());
    ask = *asked;
    timings.Add("prefix_match", absl::Now() - start);
    v1::GenerateOutput answer;
    answer.mutable_feature_request()->set_first_image(ask.first_image);
    if (!stream->Write(answer)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
    }
  }
  absl::StatusOr<std::vector<float>> features =
      ReadFeatures(header, ask.first_image, options_.feature_width, *stream);
  if (!features.ok()) return ToGrpcStatus(features.status());
  absl::StatusOr<GenerationRequest> request =
      ToGenerationRequest(header, *std::move(features), options_, ask.first_image);
  if (!request.ok()) return ToGrpcStatus(request.status());
  request->prefix_pin = ask.pin;
  std::move(unpin).Cancel();
  const int prompt_tokens = static_cast<int>(request->prompt.tokens.size());
  const absl::Time submitted = absl::Now();
  timings.Add("receive", submitted - received_header);
  bool first = true;

  const bool logprobs = header.sampling().logprobs();
  absl::StatusOr<Completion> completion = RunOnScheduler(
      scheduler_, *std::move(request),
      [&](absl::Span<const SampledToken> tokens) {
        if (first && !tokens.empty()) {
          timings.Add("first_token", absl::Now() - submitted);
          first = false;
        }
        v1::GenerateOutput output;
        for (const SampledToken& token : tokens) {
          output.add_token_ids(token.id);
          if (logprobs) output.add_logprobs(token.logprob);
        }
        return stream->Write(output);
      },
      [&] { return context->IsCancelled(); });
  if (!completion.ok()) return ToGrpcStatus(completion.status());
  if (completion->finish_reason == FinishReason::kCancelled) {
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  v1::GenerateOutput last;
  last.set_finish_reason(ToProto(completion->finish_reason));
  last.mutable_usage()->set_prompt_tokens(prompt_tokens);
  last.mutable_usage()->set_completion_tokens(static_cast<int>(completion->tokens.size()));
  context->AddTrailingMetadata(kTimingKey, timings.ToHeader());
  stream->Write(last);
  return grpc::Status::OK;
}

}  // namespace pixtral
