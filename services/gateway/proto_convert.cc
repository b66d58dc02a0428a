#include "services/gateway/proto_convert.h"

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace pixtral {
namespace {

// The text of a system or assistant message: text chunks only, joined.
absl::StatusOr<std::string> TextOnly(const v1::ChatMessage& message, int index) {
  std::string text;
  for (const v1::ContentChunk& chunk : message.content()) {
    if (chunk.chunk_case() != v1::ContentChunk::kText) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", index, ": only user messages may hold images"));
    }
    text += chunk.text();
  }
  return text;
}

}  // namespace

absl::StatusOr<ChatCompletionRequest> FromProto(const v1::ChatCompletionRequest& request,
                                                const RequestLimits& limits) {
  if (request.messages_size() > limits.max_messages) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", limits.max_messages, " messages, got ", request.messages_size()));
  }
  ChatCompletionRequest chat;
  for (int i = 0; i < request.messages_size(); ++i) {
    const v1::ChatMessage& message = request.messages(i);
    switch (message.role()) {
      case v1::ChatMessage::ROLE_SYSTEM:
      case v1::ChatMessage::ROLE_ASSISTANT: {
        absl::StatusOr<std::string> text = TextOnly(message, i);
        if (!text.ok()) return text.status();
        if (message.role() == v1::ChatMessage::ROLE_SYSTEM) {
          chat.messages.push_back(SystemMessage{*std::move(text)});
        } else {
          chat.messages.push_back(AssistantMessage{*std::move(text)});
        }
        break;
      }
      case v1::ChatMessage::ROLE_USER: {
        std::vector<ContentChunk> chunks;
        for (const v1::ContentChunk& chunk : message.content()) {
          switch (chunk.chunk_case()) {
            case v1::ContentChunk::kText:
              chunks.push_back(TextChunk{chunk.text()});
              break;
            case v1::ContentChunk::kImageUrl:
              chunks.push_back(ImageURLChunk{chunk.image_url()});
              break;
            case v1::ContentChunk::kImage:
              if (static_cast<int64_t>(chunk.image().size()) > limits.max_image_bytes) {
                return absl::InvalidArgumentError(
                    absl::StrCat("message ", i, ": an inline image of ", chunk.image().size(),
                                 " bytes exceeds the limit of ", limits.max_image_bytes));
              }
              chunks.push_back(ImageChunk{chunk.image()});
              break;
            case v1::ContentChunk::CHUNK_NOT_SET:
              return absl::InvalidArgumentError(absl::StrCat("message ", i, ": empty chunk"));
          }
        }
        chat.messages.push_back(UserMessage{std::move(chunks)});
        break;
      }
      default:
        return absl::InvalidArgumentError(absl::StrCat("message ", i, ": role is not set"));
    }
  }
  return chat;
}

ChatParams FromProto(const v1::SamplingParams& sampling) {
  ChatParams params;
  params.max_tokens = sampling.max_tokens();
  params.temperature = sampling.temperature();
  params.top_p = sampling.top_p();
  if (sampling.has_seed()) params.seed = sampling.seed();
  params.stop.assign(sampling.stop().begin(), sampling.stop().end());
  params.stop_token_ids.assign(sampling.stop_token_ids().begin(), sampling.stop_token_ids().end());
  params.ignore_eos = sampling.ignore_eos();
  params.logprobs = sampling.logprobs();
  return params;
}

v1::FinishReason ToProto(ChatFinish finish) {
  return finish == ChatFinish::kLength ? v1::FINISH_REASON_LENGTH : v1::FINISH_REASON_STOP;
}

void ToProto(const ChatUsage& usage, v1::Usage* out) {
  out->set_prompt_tokens(usage.prompt_tokens);
  out->set_image_tokens(usage.image_tokens);
  out->set_completion_tokens(usage.completion_tokens);
}

v1::ModelInfo ToModelInfo(const std::string& model_dir, const ModelConfig& config,
                          int max_context_tokens, int max_images_per_request) {
  v1::ModelInfo info;
  // "/models/Pixtral-12B-2409/" names the model as well as "/models/Pixtral-12B-2409".
  std::filesystem::path dir = std::filesystem::path(model_dir).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();
  info.set_model_name(dir.filename().string());
  info.set_vocab_size(config.decoder.vocab_size);
  info.set_max_context_tokens(max_context_tokens);
  if (config.vision.has_value()) {
    info.set_max_image_size(config.vision->image_size);
    info.set_image_patch_size(config.vision->patch_size);
  }
  info.set_max_images_per_request(max_images_per_request);
  return info;
}

}  // namespace pixtral
