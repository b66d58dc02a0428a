#include "services/gateway/proto_convert.h"

#include <filesystem>
#include <string>
#include <variant>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace pixtral {
namespace {

// The text of a system, assistant or tool message: text chunks only, joined as mistral_common
// joins a message's chunks (empty ones vanish).
absl::StatusOr<std::string> TextOnly(const v1::ChatMessage& message, int index) {
  std::vector<std::string> texts;
  for (const v1::ContentChunk& chunk : message.content()) {
    if (chunk.chunk_case() != v1::ContentChunk::kText) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", index, ": only user messages may hold images"));
    }
    if (!chunk.text().empty()) texts.push_back(chunk.text());
  }
  return absl::StrJoin(texts, "\n\n");
}

ToolCall FromProto(const v1::ToolCall& call) {
  return {.id = call.id().empty() ? "null" : call.id(),
          .name = call.name(),
          .arguments = call.arguments()};
}

void ToProto(const ToolCall& call, v1::ToolCall* out) {
  out->set_id(call.id);
  out->set_name(call.name);
  out->set_arguments(call.arguments);
}

void TextMessage(v1::ChatMessage::Role role, const std::string& text, v1::ChatMessage* out) {
  out->set_role(role);
  out->add_content()->set_text(text);
}

}  // namespace

absl::StatusOr<ChatCompletionRequest> FromProto(const v1::ChatCompletionRequest& request,
                                                const RequestLimits& limits) {
  if (request.messages_size() > limits.max_messages) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", limits.max_messages, " messages, got ", request.messages_size()));
  }
  int64_t text_bytes = 0;
  for (int i = 0; i < request.messages_size(); ++i) {
    const v1::ChatMessage& message = request.messages(i);
    if (message.content_size() > limits.max_chunks_per_message) {
      return absl::InvalidArgumentError(absl::StrCat("message ", i, ": at most ",
                                                     limits.max_chunks_per_message, " chunks, got ",
                                                     message.content_size()));
    }
    if (message.tool_calls_size() > limits.max_chunks_per_message) {
      return absl::InvalidArgumentError(
          absl::StrCat("message ", i, ": at most ", limits.max_chunks_per_message,
                       " tool calls, got ", message.tool_calls_size()));
    }
    // Tool calls, ids and names are prompt text too (mistral_common writes them as JSON).
    text_bytes += static_cast<int64_t>(message.tool_call_id().size() + message.name().size());
    for (const v1::ToolCall& call : message.tool_calls()) {
      text_bytes +=
          static_cast<int64_t>(call.id().size() + call.name().size() + call.arguments().size());
    }
    for (const v1::ContentChunk& chunk : message.content()) {
      text_bytes += static_cast<int64_t>(chunk.text().size());
      if (static_cast<int64_t>(chunk.image_url().size()) > limits.max_url_bytes()) {
        return absl::InvalidArgumentError(
            absl::StrCat("message ", i, ": an image URL of ", chunk.image_url().size(),
                         " bytes exceeds the limit of ", limits.max_url_bytes()));
      }
    }
  }
  if (request.tools_size() > limits.max_tools) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", limits.max_tools, " tools, got ", request.tools_size()));
  }
  for (const v1::Tool& tool : request.tools()) {
    text_bytes += static_cast<int64_t>(tool.name().size() + tool.description().size() +
                                       tool.parameters().size());
  }
  if (text_bytes > limits.max_text_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the messages and tools hold ", text_bytes,
                                                   " bytes of text; at most ",
                                                   limits.max_text_bytes, " are accepted"));
  }
  ChatCompletionRequest chat;
  for (int i = 0; i < request.messages_size(); ++i) {
    const v1::ChatMessage& message = request.messages(i);
    switch (message.role()) {
      case v1::ChatMessage::ROLE_SYSTEM:
      case v1::ChatMessage::ROLE_ASSISTANT:
      case v1::ChatMessage::ROLE_TOOL: {
        absl::StatusOr<std::string> text = TextOnly(message, i);
        if (!text.ok()) return text.status();
        if (message.role() == v1::ChatMessage::ROLE_SYSTEM) {
          chat.messages.push_back(SystemMessage{*std::move(text)});
        } else if (message.role() == v1::ChatMessage::ROLE_TOOL) {
          chat.messages.push_back(
              ToolMessage{*std::move(text), message.tool_call_id(), message.name()});
        } else {
          AssistantMessage assistant{*std::move(text), message.prefix()};
          for (const v1::ToolCall& call : message.tool_calls()) {
            assistant.tool_calls.push_back(FromProto(call));
          }
          chat.messages.push_back(std::move(assistant));
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
  for (const v1::Tool& tool : request.tools()) {
    chat.tools.push_back({tool.name(), tool.description(), tool.parameters()});
  }
  return chat;
}

absl::Status CheckRequestLimits(const ChatCompletionRequest& request, const RequestLimits& limits) {
  if (request.messages.size() > static_cast<size_t>(limits.max_messages)) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", limits.max_messages, " messages, got ", request.messages.size()));
  }
  if (request.tools.size() > static_cast<size_t>(limits.max_tools)) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", limits.max_tools, " tools, got ", request.tools.size()));
  }
  const auto too_many = [&limits](size_t i, size_t count, const char* what) {
    return absl::InvalidArgumentError(absl::StrCat(
        "message ", i, ": at most ", limits.max_chunks_per_message, " ", what, ", got ", count));
  };
  int64_t text_bytes = 0;
  for (const Tool& tool : request.tools) {
    text_bytes +=
        static_cast<int64_t>(tool.name.size() + tool.description.size() + tool.parameters.size());
  }
  for (size_t i = 0; i < request.messages.size(); ++i) {
    const ChatMessage& message = request.messages[i];
    if (const auto* system = std::get_if<SystemMessage>(&message)) {
      text_bytes += static_cast<int64_t>(system->content.size());
    } else if (const auto* assistant = std::get_if<AssistantMessage>(&message)) {
      if (assistant->tool_calls.size() > static_cast<size_t>(limits.max_chunks_per_message)) {
        return too_many(i, assistant->tool_calls.size(), "tool calls");
      }
      text_bytes += static_cast<int64_t>(assistant->content.size());
      for (const ToolCall& call : assistant->tool_calls) {
        text_bytes +=
            static_cast<int64_t>(call.id.size() + call.name.size() + call.arguments.size());
      }
    } else if (const auto* tool = std::get_if<ToolMessage>(&message)) {
      text_bytes += static_cast<int64_t>(tool->content.size() + tool->tool_call_id.size() +
                                         tool->name.size());
    } else {
      const UserMessage& user = std::get<UserMessage>(message);
      if (const auto* text = std::get_if<std::string>(&user.content)) {
        text_bytes += static_cast<int64_t>(text->size());
        continue;
      }
      const auto& chunks = std::get<std::vector<ContentChunk>>(user.content);
      if (chunks.size() > static_cast<size_t>(limits.max_chunks_per_message)) {
        return too_many(i, chunks.size(), "chunks");
      }
      for (const ContentChunk& chunk : chunks) {
        if (const auto* text = std::get_if<TextChunk>(&chunk)) {
          text_bytes += static_cast<int64_t>(text->text.size());
        } else if (const auto* url = std::get_if<ImageURLChunk>(&chunk)) {
          if (static_cast<int64_t>(url->url.size()) > limits.max_url_bytes()) {
            return absl::InvalidArgumentError(
                absl::StrCat("message ", i, ": an image URL of ", url->url.size(),
                             " bytes exceeds the limit of ", limits.max_url_bytes()));
          }
        } else if (const auto* image = std::get_if<ImageChunk>(&chunk)) {
          if (static_cast<int64_t>(image->data.size()) > limits.max_image_bytes) {
            return absl::InvalidArgumentError(
                absl::StrCat("message ", i, ": an inline image of ", image->data.size(),
                             " bytes exceeds the limit of ", limits.max_image_bytes));
          }
        }
      }
    }
  }
  if (text_bytes > limits.max_text_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("the messages and tools hold ", text_bytes,
                                                   " bytes of text; at most ",
                                                   limits.max_text_bytes, " are accepted"));
  }
  return absl::OkStatus();
}

void ToProto(const ChatResult& result, v1::ChatCompletionResponse* out) {
  for (const ToolCall& call : result.tool_calls) ToProto(call, out->add_tool_calls());
  out->set_text(result.text);
  out->mutable_token_ids()->Assign(result.token_ids.begin(), result.token_ids.end());
  out->mutable_logprobs()->Assign(result.logprobs.begin(), result.logprobs.end());
  out->set_finish_reason(ToProto(result.finish));
  ToProto(result.usage, out->mutable_usage());
}

void ToProto(const ChatDelta& delta, v1::ChatCompletionChunk* out) {
  out->set_delta(delta.text);
  out->mutable_token_ids()->Assign(delta.token_ids.begin(), delta.token_ids.end());
  out->mutable_logprobs()->Assign(delta.logprobs.begin(), delta.logprobs.end());
}

absl::StatusOr<v1::ChatCompletionRequest> ToProto(const ChatCompletionRequest& request,
                                                  const ChatParams& params) {
  v1::ChatCompletionRequest out;
  for (size_t i = 0; i < request.messages.size(); ++i) {
    const ChatMessage& message = request.messages[i];
    v1::ChatMessage* proto = out.add_messages();
    if (const auto* system = std::get_if<SystemMessage>(&message)) {
      TextMessage(v1::ChatMessage::ROLE_SYSTEM, system->content, proto);
    } else if (const auto* assistant = std::get_if<AssistantMessage>(&message)) {
      proto->set_role(v1::ChatMessage::ROLE_ASSISTANT);
      if (!assistant->content.empty()) proto->add_content()->set_text(assistant->content);
      proto->set_prefix(assistant->prefix);
      for (const ToolCall& call : assistant->tool_calls) ToProto(call, proto->add_tool_calls());
    } else if (const auto* tool = std::get_if<ToolMessage>(&message)) {
      TextMessage(v1::ChatMessage::ROLE_TOOL, tool->content, proto);
      proto->set_tool_call_id(tool->tool_call_id);
      proto->set_name(tool->name);
    } else {
      const UserMessage& user = std::get<UserMessage>(message);
      if (const auto* text = std::get_if<std::string>(&user.content)) {
        TextMessage(v1::ChatMessage::ROLE_USER, *text, proto);
        continue;
      }
      proto->set_role(v1::ChatMessage::ROLE_USER);
      for (const ContentChunk& chunk : std::get<std::vector<ContentChunk>>(user.content)) {
        v1::ContentChunk* out_chunk = proto->add_content();
        if (const auto* text = std::get_if<TextChunk>(&chunk)) {
          out_chunk->set_text(text->text);
        } else if (const auto* url = std::get_if<ImageURLChunk>(&chunk)) {
          out_chunk->set_image_url(url->url);
        } else {
          out_chunk->set_image(std::get<ImageChunk>(chunk).data);
        }
      }
    }
  }
  for (const Tool& tool : request.tools) {
    v1::Tool* out_tool = out.add_tools();
    out_tool->set_name(tool.name);
    out_tool->set_description(tool.description);
    out_tool->set_parameters(tool.parameters);
  }
  ToProto(params, out.mutable_sampling());
  return out;
}

void ToProto(const ChatParams& params, v1::SamplingParams* out) {
  out->set_max_tokens(params.max_tokens);
  out->set_temperature(params.temperature);
  out->set_top_p(params.top_p);
  if (params.seed.has_value()) out->set_seed(*params.seed);
  out->mutable_stop()->Assign(params.stop.begin(), params.stop.end());
  out->mutable_stop_token_ids()->Assign(params.stop_token_ids.begin(), params.stop_token_ids.end());
  out->set_ignore_eos(params.ignore_eos);
  out->set_logprobs(params.logprobs);
}

ChatFinish FromProto(v1::FinishReason finish) {
  if (finish == v1::FINISH_REASON_TOOL_CALLS) return ChatFinish::kToolCalls;
  return finish == v1::FINISH_REASON_LENGTH ? ChatFinish::kLength : ChatFinish::kStop;
}

std::vector<ToolCall> FromProto(const google::protobuf::RepeatedPtrField<v1::ToolCall>& calls) {
  std::vector<ToolCall> out;
  for (const v1::ToolCall& call : calls) out.push_back(FromProto(call));
  return out;
}

ChatUsage FromProto(const v1::Usage& usage) {
  return {.prompt_tokens = usage.prompt_tokens(),
          .image_tokens = usage.image_tokens(),
          .completion_tokens = usage.completion_tokens()};
}

ChatResult FromProto(const v1::ChatCompletionResponse& response) {
  return {.text = response.text(),
          .tool_calls = FromProto(response.tool_calls()),
          .token_ids = {response.token_ids().begin(), response.token_ids().end()},
          .logprobs = {response.logprobs().begin(), response.logprobs().end()},
          .finish = FromProto(response.finish_reason()),
          .usage = FromProto(response.usage())};
}

ChatDelta FromProto(const v1::ChatCompletionChunk& chunk) {
  return {.text = chunk.delta(),
          .token_ids = {chunk.token_ids().begin(), chunk.token_ids().end()},
          .logprobs = {chunk.logprobs().begin(), chunk.logprobs().end()}};
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
  switch (finish) {
    case ChatFinish::kLength:
      return v1::FINISH_REASON_LENGTH;
    case ChatFinish::kToolCalls:
      return v1::FINISH_REASON_TOOL_CALLS;
    case ChatFinish::kStop:
      break;
  }
  return v1::FINISH_REASON_STOP;
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
