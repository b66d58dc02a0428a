#include "common/chat_encoder.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"

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
  bool is_user = true;
  bool text_only = true;  // Only text was seen: `text` is the content, encoded in one piece.
  std::string text;
  std::vector<Part> parts;
  bool prefix = false;  // Assistant turns only.
};

bool IsImage(const ContentChunk& chunk) { return !std::holds_alternative<TextChunk>(chunk); }

const char* RoleName(const ChatMessage& message) {
  if (std::holds_alternative<SystemMessage>(message)) return "system";
  if (std::holds_alternative<UserMessage>(message)) return "user";
  return "assistant";
}

absl::Status Invalid(absl::string_view what) { return absl::InvalidArgumentError(what); }

// MistralRequestValidator(V3) without tools, plus our limits.
absl::Status Validate(const ChatCompletionRequest& request, int max_images) {
  const std::vector<ChatMessage>& messages = request.messages;
  if (messages.empty()) return Invalid("the request has no messages");
  const ChatMessage& last = messages.back();
  if (messages.size() == 1 && std::holds_alternative<AssistantMessage>(last)) {
    return Invalid("a conversation must start with a user or system message");
  }
  if (messages.size() > 1) {
    const auto* assistant = std::get_if<AssistantMessage>(&last);
    if (std::holds_alternative<SystemMessage>(last) ||
        (assistant != nullptr && !assistant->prefix)) {
      return Invalid(
          absl::StrCat("the last message must be a user message or an assistant prefix, "
                       "not a ",
                       RoleName(last), " message"));
    }
  }
  int images = 0;
  for (size_t i = 0; i < messages.size(); ++i) {
    if (i > 0 && std::holds_alternative<AssistantMessage>(messages[i - 1]) &&
        std::holds_alternative<SystemMessage>(messages[i])) {
      return Invalid(
          absl::StrCat("message ", i, ": a system message cannot follow an assistant message"));
    }
    if (const auto* assistant = std::get_if<AssistantMessage>(&messages[i])) {
      if (assistant->content.empty()) {
        return Invalid(absl::StrCat("message ", i, ": an assistant message needs content"));
      }
      if (assistant->prefix && i + 1 != messages.size()) {
        return Invalid(
            absl::StrCat("message ", i, ": an assistant prefix must be the last message"));
      }
    }
    const auto* user = std::get_if<UserMessage>(&messages[i]);
    if (user == nullptr) continue;
    const auto* chunks = std::get_if<std::vector<ContentChunk>>(&user->content);
    if (chunks == nullptr) continue;
    if (chunks->empty()) return Invalid(absl::StrCat("message ", i, ": the content list is empty"));
    for (size_t c = 0; c < chunks->size(); ++c) {
      const ContentChunk& chunk = (*chunks)[c];
      if (!IsImage(chunk)) continue;
      const bool empty = std::holds_alternative<ImageChunk>(chunk)
                             ? std::get<ImageChunk>(chunk).data.empty()
                             : std::get<ImageURLChunk>(chunk).url.empty();
      if (empty) return Invalid(absl::StrCat("message ", i, ", chunk ", c, ": the image is empty"));
      ++images;
    }
  }
  if (images > max_images) {
    return Invalid(
        absl::StrCat("the request has ", images, " images; at most ", max_images, " are allowed"));
  }
  return absl::OkStatus();
}

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

  Turn Finish(bool is_user) {
    Turn turn;
    turn.is_user = is_user;
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
// them apart, as in mistral_common).
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
    const bool is_user = std::holds_alternative<UserMessage>(messages[i]);
    ContentAggregator aggregator;
    bool prefix = false;
    for (; i < messages.size() && std::holds_alternative<UserMessage>(messages[i]) == is_user &&
           !std::holds_alternative<SystemMessage>(messages[i]);
         ++i) {
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
      }
    }
    turns.push_back(aggregator.Finish(is_user));
    turns.back().prefix = prefix;
  }
  *system_prompt = absl::StrJoin(system_parts, kJoin);
  if (turns.empty() || !turns.front().is_user) turns.insert(turns.begin(), Turn{});
  return turns;
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
  for (const char* name : {"[INST]", "[/INST]", "[IMG]", "[IMG_BREAK]", "[IMG_END]"}) {
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
}

absl::StatusOr<EncodedChat> MistralTokenizer::EncodeChatCompletion(
    const ChatCompletionRequest& request, const EncodeCallState& call) const {
  absl::Status valid = Validate(request, options_.max_images);
  if (!valid.ok()) return valid;
  std::string system_prompt;
  std::vector<Turn> turns = Normalize(request, &system_prompt);
  size_t last_user = 0;
  for (size_t t = 0; t < turns.size(); ++t) {
    if (turns[t].is_user) last_user = t;
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
    if (const auto* chunk = std::get_if<ImageChunk>(part.image)) {
      bytes = chunk->data;
    } else {
      if (!options_.fetch_image) {
        return WithPlace(absl::FailedPreconditionError("no image fetcher is configured"), part);
      }
      absl::StatusOr<std::string> loaded =
          options_.fetch_image(std::get<ImageURLChunk>(*part.image).url);
      if (!loaded.ok()) return WithPlace(loaded.status(), part);
      fetched = *std::move(loaded);
      bytes = fetched;
    }
    absl::StatusOr<PreprocessedImage> image =
        PreprocessImage(bytes, *options_.image_config, options_.decode_limits);
    if (!image.ok()) return WithPlace(image.status(), part);
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
    if (!turn.is_user) {
      // InstructTokenizerV2 strips trailing spaces from assistant text.
      absl::string_view text = turn.text;
      while (!text.empty() && text.back() == ' ') text.remove_suffix(1);
      status = append_text(text);
      if (!status.ok()) return status;
      if (!turn.prefix) out.tokens.push_back(tekken_->eos_id());
      continue;
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
