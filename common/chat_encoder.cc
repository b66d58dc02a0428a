#include "common/chat_encoder.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "common/chat_json.h"
#include "common/chat_validate.h"

namespace pixtral {
namespace {

// mistral_common joins merged messages, adjacent text chunks and system prompts with this.
constexpr absl::string_view kJoin = "\n\n";

// One piece of a normalized user message: text, or an image chunk of the request.
struct Part {
  std::string text;
  const ContentChunk* image = nullptr;
  size_t message = 0;  // Where the image came from, for error messages.
  size_t chunk = 0;
};

// A message after mistral_common's InstructRequestNormalizer.
struct Turn {
  enum Kind { kUser, kAssistant, kTool };
  Kind kind = kUser;
  bool text_only = true;  // Only text was seen: `text` is the content, encoded in one piece.
  std::string text;
  std::vector<Part> parts;
  bool prefix = false;                      // assistant turns
  std::vector<const ToolCall*> tool_calls;  // assistant turns
  const ToolMessage* tool = nullptr;        // tool turns
};

// _aggregate_content_chunks_impl: texts of different messages join with kJoin, adjacent text
// chunks of one message too; empty texts vanish; images stay where they are.
class ContentAggregator {
 public:
  void AddString(const std::string& text) {
    const bool new_message = !pending_.empty();
    if (text.empty()) return;
    if (new_message) absl::StrAppend(&pending_, kJoin);
    pending_ += text;
  }

  void AddChunks(const std::vector<ContentChunk>& chunks, size_t message) {
    // Between chunks of one message the separator is the same as between messages.
    for (size_t c = 0; c < chunks.size(); ++c) {
      if (const auto* text = std::get_if<TextChunk>(&chunks[c])) {
        AddString(text->text);
        continue;
      }
      Flush();
      parts_.push_back({"", &chunks[c], message, c});
    }
  }

  Turn Finish(Turn::Kind kind) {
    Turn turn;
    turn.kind = kind;
    turn.text_only = parts_.empty();
    if (turn.text_only) {
      turn.text = std::move(pending_);
    } else {
      Flush();
      turn.parts = std::move(parts_);
    }
    return turn;
  }

 private:
  void Flush() {
    if (pending_.empty()) return;
    parts_.push_back({std::move(pending_)});
    pending_.clear();
  }

  std::string pending_;
  std::vector<Part> parts_;
};

// InstructRequestNormalizer: the joined system prompt, and the user/assistant turns with
// consecutive messages of one role merged (a system message between two user messages keeps
// them apart, as in mistral_common); tool messages stay one turn each.
std::vector<Turn> Normalize(const ChatCompletionRequest& request, std::string* system_prompt) {
  std::vector<std::string> system_parts;
  std::vector<Turn> turns;
  size_t i = 0;
  const std::vector<ChatMessage>& messages = request.messages;
  while (i < messages.size()) {
    if (const auto* system = std::get_if<SystemMessage>(&messages[i])) {
      if (!system->content.empty()) system_parts.push_back(system->content);
      ++i;
      continue;
    }
    if (const auto* tool = std::get_if<ToolMessage>(&messages[i])) {
      Turn turn;
      turn.kind = Turn::kTool;
      turn.tool = tool;
      turns.push_back(std::move(turn));
      ++i;
      continue;
    }
    const size_t role = messages[i].index();
    const Turn::Kind kind =
        std::holds_alternative<UserMessage>(messages[i]) ? Turn::kUser : Turn::kAssistant;
    ContentAggregator aggregator;
    bool prefix = false;
    std::vector<const ToolCall*> tool_calls;
    for (; i < messages.size() && messages[i].index() == role; ++i) {
      if (const auto* user = std::get_if<UserMessage>(&messages[i])) {
        if (const auto* text = std::get_if<std::string>(&user->content)) {
          aggregator.AddString(*text);
        } else {
          aggregator.AddChunks(std::get<std::vector<ContentChunk>>(user->content), i);
        }
      } else {
        const auto& assistant = std::get<AssistantMessage>(messages[i]);
        aggregator.AddString(assistant.content);
        prefix |= assistant.prefix;
        for (const ToolCall& call : assistant.tool_calls) tool_calls.push_back(&call);
      }
    }
    turns.push_back(aggregator.Finish(kind));
    turns.back().prefix = prefix;
    turns.back().tool_calls = std::move(tool_calls);
  }
  *system_prompt = absl::StrJoin(system_parts, kJoin);
  if (turns.empty() || turns.front().kind != Turn::kUser) turns.insert(turns.begin(), Turn{});
  return turns;
}

// mistral_common's _normalize_json_content, then _parse_json_content: empty is {}, JSON text is
// its value, anything else is a string.
nlohmann::ordered_json NormalizedJson(absl::string_view text) {
  if (text.empty()) return nlohmann::ordered_json::object();
  return JsonOrString(text);
}

// [{"type": "function", "function": {"name": ..., "description": ..., "parameters": ...}}]
std::string ToolsJson(const std::vector<Tool>& tools) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const Tool& tool : tools) {
    nlohmann::ordered_json function;
    function["name"] = tool.name;
    function["description"] = tool.description;
    function["parameters"] = NormalizedJson(tool.parameters);
    nlohmann::ordered_json entry;
    entry["type"] = "function";
    entry["function"] = std::move(function);
    list.push_back(std::move(entry));
  }
  return PythonJsonDumps(list);
}

// InstructTokenizerV3._prepare_function_call: [{"name": ..., "arguments": ..., "id": ...}].
std::string ToolCallsJson(const std::vector<const ToolCall*>& calls) {
  nlohmann::ordered_json list = nlohmann::ordered_json::array();
  for (const ToolCall* call : calls) {
    nlohmann::ordered_json entry;
    entry["name"] = call->name;
    entry["arguments"] = NormalizedJson(call->arguments);
    if (!call->id.empty() && call->id != "null") entry["id"] = call->id;
    list.push_back(std::move(entry));
  }
  return PythonJsonDumps(list);
}

// InstructTokenizerV3._prepare_tool_result: {"content": ..., "call_id": ...}.
std::string ToolResultJson(const ToolMessage& tool) {
  nlohmann::ordered_json result;
  result["content"] = NormalizedJson(tool.content);
  result["call_id"] = tool.tool_call_id;
  return PythonJsonDumps(result);
}

// _maybe_put_image_first: text chunks followed by a single image put the image first.
void MaybePutImageFirst(std::vector<Part>* parts) {
  if (parts->size() < 2 || parts->back().image == nullptr) return;
  for (size_t i = 0; i + 1 < parts->size(); ++i) {
    if ((*parts)[i].image != nullptr) return;
  }
  std::rotate(parts->begin(), parts->end() - 1, parts->end());
}

absl::Status WithPlace(const absl::Status& status, const Part& part) {
  return absl::Status(status.code(), absl::StrCat("message ", part.message, ", chunk ", part.chunk,
                                                  ": ", status.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<MistralTokenizer>> MistralTokenizer::FromFile(
    const std::string& path, Options options) {
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tekken = TekkenTokenizer::FromFile(path);
  if (!tekken.ok()) return tekken.status();
  return Create(*std::move(tekken), std::move(options));
}

absl::StatusOr<std::unique_ptr<MistralTokenizer>> MistralTokenizer::Create(
    std::unique_ptr<TekkenTokenizer> tekken, Options options) {
  if (tekken == nullptr) return absl::InvalidArgumentError("no tekken tokenizer");
  if (options.max_images < 0 || options.max_prompt_tokens <= 0) {
    return absl::InvalidArgumentError("max_images and max_prompt_tokens must be positive");
  }
  for (const char* name :
       {"[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]", "[AVAILABLE_TOOLS]",
        "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]", "[TOOL_CALLS]"}) {
    if (!tekken->SpecialTokenId(name).ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the tokenizer has no ", name, " token; it cannot encode chats"));
    }
  }
  if (!options.image_config.has_value() && tekken->image_config().has_value()) {
    const TekkenImageConfig& file = *tekken->image_config();
    options.image_config =
        ImageEncoderConfig{file.image_patch_size, file.max_image_size, file.spatial_merge_size};
  }
  if (options.image_config.has_value()) {
    absl::Status status = ValidateImageEncoderConfig(*options.image_config);
    if (!status.ok()) return status;
  }
  return std::unique_ptr<MistralTokenizer>(
      new MistralTokenizer(std::move(tekken), std::move(options)));
}

MistralTokenizer::MistralTokenizer(std::unique_ptr<TekkenTokenizer> tekken, Options options)
    : tekken_(std::move(tekken)), options_(std::move(options)) {
  begin_inst_ = *tekken_->SpecialTokenId("[INST]");
  end_inst_ = *tekken_->SpecialTokenId("[/INST]");
  img_ = *tekken_->SpecialTokenId("[IMG]");
  img_break_ = *tekken_->SpecialTokenId("[IMG_BREAK]");
  img_end_ = *tekken_->SpecialTokenId("[IMG_END]");
  begin_tools_ = *tekken_->SpecialTokenId("[AVAILABLE_TOOLS]");
  end_tools_ = *tekken_->SpecialTokenId("[/AVAILABLE_TOOLS]");
  begin_tool_results_ = *tekken_->SpecialTokenId("[TOOL_RESULTS]");
  end_tool_results_ = *tekken_->SpecialTokenId("[/TOOL_RESULTS]");
  tool_calls_ = *tekken_->SpecialTokenId("[TOOL_CALLS]");
}

absl::StatusOr<EncodedChat> MistralTokenizer::EncodeChatCompletion(
    const ChatCompletionRequest& request, const EncodeCallState& call) const {
  absl::Status valid = ValidateChatRequest(request, options_.max_images);
  if (!valid.ok()) return valid;
  std::string system_prompt;
  std::vector<Turn> turns = Normalize(request, &system_prompt);
  size_t last_user = 0;
  for (size_t t = 0; t < turns.size(); ++t) {
    if (turns[t].kind == Turn::kUser) last_user = t;
  }

  EncodedChat out;
  out.tokens.push_back(tekken_->bos_id());
  auto append_text = [&](absl::string_view text) -> absl::Status {
    absl::StatusOr<std::vector<int>> ids = tekken_->Encode(text, false, false);
    if (!ids.ok()) return ids.status();
    out.tokens.insert(out.tokens.end(), ids->begin(), ids->end());
    return absl::OkStatus();
  };
  auto append_image = [&](const Part& part) -> absl::Status {
    if (absl::Now() >= call.deadline) {
      return absl::DeadlineExceededError("the deadline passed while the images were loaded");
    }
    if (call.cancelled && call.cancelled()) {
      return absl::CancelledError("the request was cancelled while the images were loaded");
    }
    if (!options_.image_config.has_value()) {
      return WithPlace(absl::FailedPreconditionError("this tokenizer has no image section"), part);
    }
    std::string fetched;
    absl::string_view bytes;
    ImageLoadTimes times;
    if (const auto* chunk = std::get_if<ImageChunk>(part.image)) {
      bytes = chunk->data;
    } else {
      if (!options_.fetch_image) {
        return WithPlace(absl::FailedPreconditionError("no image fetcher is configured"), part);
      }
      const absl::Time fetch_start = absl::Now();
      absl::StatusOr<std::string> loaded =
          options_.fetch_image(std::get<ImageURLChunk>(*part.image).url);
      if (!loaded.ok()) return WithPlace(loaded.status(), part);
      times.fetch = absl::Now() - fetch_start;
      fetched = *std::move(loaded);
      bytes = fetched;
    }
    absl::StatusOr<PreprocessedImage> image = PreprocessImage(
        bytes, *options_.image_config, options_.decode_limits, options_.pixel_form, &times.steps);
    if (!image.ok()) return WithPlace(image.status(), part);
    out.image_times.push_back(times);
    for (int row = 0; row < image->grid.rows; ++row) {
      out.tokens.insert(out.tokens.end(), image->grid.cols, img_);
      out.tokens.push_back(row + 1 < image->grid.rows ? img_break_ : img_end_);
    }
    out.images.push_back(*std::move(image));
    return absl::OkStatus();
  };

  for (size_t t = 0; t < turns.size(); ++t) {
    Turn& turn = turns[t];
    absl::Status status;
    if (turn.kind == Turn::kTool) {
      out.tokens.push_back(begin_tool_results_);
      status = append_text(ToolResultJson(*turn.tool));
      if (!status.ok()) return status;
      out.tokens.push_back(end_tool_results_);
      continue;
    }
    if (turn.kind == Turn::kAssistant) {
      if (!turn.tool_calls.empty()) {
        if (!turn.text.empty()) {
          return absl::InvalidArgumentError(
              "consecutive assistant messages mix content and tool calls");
        }
        out.tokens.push_back(tool_calls_);
        status = append_text(ToolCallsJson(turn.tool_calls));
      } else {
        // InstructTokenizerV2 strips trailing spaces from assistant text.
        absl::string_view text = turn.text;
        while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
        status = append_text(text);
      }
      if (!status.ok()) return status;
      if (!turn.prefix) out.tokens.push_back(tekken_->eos_id());
      continue;
    }
    if (t == last_user && !request.tools.empty()) {
      out.tokens.push_back(begin_tools_);
      status = append_text(ToolsJson(request.tools));
      if (!status.ok()) return status;
      out.tokens.push_back(end_tools_);
    }
    const bool with_system = t == last_user && !system_prompt.empty();
    out.tokens.push_back(begin_inst_);
    if (turn.text_only) {
      // A string content takes the system prompt inside the same encode call.
      status = append_text(with_system ? absl::StrCat(system_prompt, kJoin, turn.text) : turn.text);
      if (!status.ok()) return status;
    } else {
      MaybePutImageFirst(&turn.parts);
      if (with_system) {
        status = append_text(absl::StrCat(system_prompt, kJoin));
        if (!status.ok()) return status;
      }
      for (const Part& part : turn.parts) {
        status = part.image == nullptr ? append_text(part.text) : append_image(part);
        if (!status.ok()) return status;
      }
    }
    out.tokens.push_back(end_inst_);
  }

  if (out.tokens.size() > static_cast<size_t>(options_.max_prompt_tokens)) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", out.tokens.size(),
                                                   " tokens, more than the model's context of ",
                                                   options_.max_prompt_tokens));
  }
  absl::StatusOr<std::string> text = tekken_->Decode(out.tokens, SpecialTokenPolicy::kKeep);
  if (!text.ok()) return text.status();
  out.text = *std::move(text);
  return out;
}

}  // namespace pixtral
