#include "common/tekken.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <queue>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/utf8.h"
#include "nlohmann/json.hpp"

namespace pixtral {
namespace {

using Json = nlohmann::json;

// The real file is ~15 MB; anything far larger is not a tokenizer.
constexpr size_t kMaxFileBytes = 256u << 20;
// Pieces longer than this merge with a heap (n log n) instead of tiktoken's quadratic scan, so
// a megabyte of one repeated letter cannot stall the gateway. Both give identical tokens.
constexpr size_t kLongPieceBytes = 64;

constexpr const char* kKnownVersions[] = {"v1", "v2", "v3", "v7", "v11", "v13", "v15"};

// The control tokens of tekken files that have no `special_tokens` list (all 2024 files),
// mistral_common's Tekkenizer.DEPRECATED_SPECIAL_TOKENS, at ids 0..19. <SPECIAL_n> fills the
// rest of the special range.
constexpr const char* kDefaultSpecialTokens[] = {
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
};

// tiktoken's regex engine reads `\s` as the Unicode White_Space property. PCRE2 10.42's UCP `\s`
// also matches U+180E, which left White_Space in Unicode 6.3; spell the property out instead.
constexpr char kWhiteSpaceRanges[] =
    "\\t-\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}"
    "\\x{205F}\\x{3000}";

// Rewrites `\s` and `\S` (outside character classes) to White_Space classes.
std::string TranslateWhiteSpace(absl::string_view pattern) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[++i];
      if (next == 's') {
        absl::StrAppend(&out, in_class ? "" : "[", kWhiteSpaceRanges, in_class ? "" : "]");
      } else if (next == 'S' && !in_class) {
        absl::StrAppend(&out, "[^", kWhiteSpaceRanges, "]");
      } else {
        out.push_back(c);
        out.push_back(next);
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out.push_back(c);
      // A ']' right after '[' or '[^' is a literal, not the end of the class.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out.push_back(pattern[++i]);
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out.push_back(pattern[++i]);
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out.push_back(c);
  }
  return out;
}

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("tekken.json: ", what));
}

// An int field of `object`, or an error naming `where`.
absl::StatusOr<int> IntField(const Json& object, const char* key, absl::string_view where,
                             int64_t min_value) {
  auto it = object.find(key);
  if (it == object.end()) return Invalid(absl::StrCat(where, ".", key, " is missing"));
  if (!it->is_number_integer() || it->get<int64_t>() < min_value ||
      it->get<int64_t>() > std::numeric_limits<int>::max()) {
    return Invalid(absl::StrCat(where, ".", key, " must be an integer >= ", min_value));
  }
  return it->get<int>();
}

absl::StatusOr<std::string> StringField(const Json& object, const char* key,
                                        absl::string_view where) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) {
    return Invalid(absl::StrCat(where, ".", key, " must be a string"));
  }
  return it->get<std::string>();
}

}  // namespace

struct TekkenTokenizer::Pcre2 {
  pcre2_code* code = nullptr;
  ~Pcre2() { pcre2_code_free(code); }
};

TekkenTokenizer::TekkenTokenizer() = default;
TekkenTokenizer::~TekkenTokenizer() = default;

absl::StatusOr<std::unique_ptr<TekkenTokenizer>> TekkenTokenizer::FromFile(const std::string& path,
                                                                           const Options& options) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open tokenizer file ", path));
  file.seekg(0, std::ios::end);
  const std::streamoff size = file.tellg();
  if (size < 0 || static_cast<size_t>(size) > kMaxFileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a tokenizer file (size ", size, ")"));
  }
  std::string json(static_cast<size_t>(size), '\0');
  file.seekg(0);
  if (!file.read(json.data(), size)) {
    return absl::DataLossError(absl::StrCat("cannot read tokenizer file ", path));
  }
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tokenizer = FromJson(json, options);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<std::unique_ptr<TekkenTokenizer>> TekkenTokenizer::FromJson(absl::string_view json,
                                                                           const Options& options) {
  std::unique_ptr<TekkenTokenizer> tokenizer(new TekkenTokenizer());
  absl::Status status = tokenizer->Init(json, options);
  if (!status.ok()) return status;
  return tokenizer;
}

absl::Status TekkenTokenizer::Init(absl::string_view json_text, const Options& options) {
  const Json root = Json::parse(json_text.begin(), json_text.end(), nullptr,
                                /*allow_exceptions=*/false);
  if (root.is_discarded()) return Invalid("not valid JSON");
  if (!root.is_object()) return Invalid("the top level must be an object");

  auto config_it = root.find("config");
  if (config_it == root.end() || !config_it->is_object()) {
    return Invalid("`config` must be an object");
  }
  const Json& config = *config_it;
  absl::StatusOr<std::string> pattern = StringField(config, "pattern", "config");
  if (!pattern.ok()) return pattern.status();
  absl::StatusOr<std::string> version = StringField(config, "version", "config");
  if (!version.ok()) return version.status();
  if (std::find(std::begin(kKnownVersions), std::end(kKnownVersions), *version) ==
      std::end(kKnownVersions)) {
    return Invalid(absl::StrCat("unknown config.version \"", *version, "\""));
  }
  version_ = *version;
  absl::StatusOr<int> num_special = IntField(config, "default_num_special_tokens", "config", 1);
  if (!num_special.ok()) return num_special.status();
  absl::StatusOr<int> vocab_size = IntField(config, "default_vocab_size", "config", 1);
  if (!vocab_size.ok()) return vocab_size.status();
  vocab_size_ = options.vocab_size.value_or(*vocab_size);
  if (vocab_size_ <= *num_special) {
    return Invalid(absl::StrCat("vocab size ", vocab_size_, " leaves no room after ", *num_special,
                                " special tokens"));
  }

  // Control tokens: the file's list, else the default list; <SPECIAL_n> up to num_special.
  auto special_it = root.find("special_tokens");
  if (special_it == root.end() || special_it->is_null()) {
    if (version_ != "v1" && version_ != "v2" && version_ != "v3" && version_ != "v7") {
      return Invalid(absl::StrCat("`special_tokens` is required for version ", version_));
    }
    special_tokens_.assign(std::begin(kDefaultSpecialTokens), std::end(kDefaultSpecialTokens));
  } else {
    if (!special_it->is_array()) return Invalid("`special_tokens` must be a list");
    for (const Json& entry : *special_it) {
      const std::string where = absl::StrCat("special_tokens[", special_tokens_.size(), "]");
      if (!entry.is_object()) return Invalid(absl::StrCat(where, " must be an object"));
      absl::StatusOr<int> rank = IntField(entry, "rank", where, 0);
      if (!rank.ok()) return rank.status();
      if (*rank != static_cast<int>(special_tokens_.size())) {
        return Invalid(
            absl::StrCat(where, ".rank is ", *rank, ", expected ", special_tokens_.size()));
      }
      absl::StatusOr<std::string> name = StringField(entry, "token_str", where);
      if (!name.ok()) return name.status();
      special_tokens_.push_back(*std::move(name));
    }
  }
  if (static_cast<int>(special_tokens_.size()) > *num_special) {
    return Invalid(
        absl::StrCat(special_tokens_.size(), " special tokens do not fit in ", *num_special));
  }
  for (int i = static_cast<int>(special_tokens_.size()); i < *num_special; ++i) {
    special_tokens_.push_back(absl::StrCat("<SPECIAL_", i, ">"));
  }
  for (int i = 0; i < num_special_tokens(); ++i) {
    if (!special_token_ids_.emplace(special_tokens_[i], i).second) {
      return Invalid(absl::StrCat("special token \"", special_tokens_[i], "\" appears twice"));
    }
  }
  absl::StatusOr<int> bos = SpecialTokenId("<s>");
  absl::StatusOr<int> eos = SpecialTokenId("</s>");
  if (!bos.ok() || !eos.ok()) return Invalid("the special tokens must include <s> and </s>");
  bos_id_ = *bos;
  eos_id_ = *eos;

  // Text tokens: the first vocab_size - num_special ranks, in rank order.
  auto vocab_it = root.find("vocab");
  if (vocab_it == root.end() || !vocab_it->is_array()) return Invalid("`vocab` must be a list");
  const size_t num_ranks = static_cast<size_t>(vocab_size_ - *num_special);
  if (vocab_it->size() < num_ranks) {
    return Invalid(absl::StrCat("`vocab` has ", vocab_it->size(), " tokens, fewer than the ",
                                num_ranks, " that vocab size ", vocab_size_, " needs"));
  }
  rank_offsets_.reserve(num_ranks + 1);
  rank_offsets_.push_back(0);
  std::string bytes;
  for (size_t r = 0; r < num_ranks; ++r) {
    const Json& entry = (*vocab_it)[r];
    const std::string where = absl::StrCat("vocab[", r, "]");
    if (!entry.is_object()) return Invalid(absl::StrCat(where, " must be an object"));
    absl::StatusOr<int> rank = IntField(entry, "rank", where, 0);
    if (!rank.ok()) return rank.status();
    if (static_cast<size_t>(*rank) != r) {
      return Invalid(absl::StrCat(where, ".rank is ", *rank, ", expected ", r,
                                  " (ranks must be 0, 1, 2, ... in order)"));
    }
    absl::StatusOr<std::string> encoded = StringField(entry, "token_bytes", where);
    if (!encoded.ok()) return encoded.status();
    if (!absl::Base64Unescape(*encoded, &bytes) || bytes.empty()) {
      return Invalid(absl::StrCat(where, ".token_bytes is not non-empty base64"));
    }
    if (r < 256 && (bytes.size() != 1 || static_cast<uint8_t>(bytes[0]) != r)) {
      return Invalid(absl::StrCat(where, " must be the single byte ", r));
    }
    if (token_bytes_.size() + bytes.size() > std::numeric_limits<uint32_t>::max()) {
      return Invalid("`vocab` is too large");
    }
    token_bytes_ += bytes;
    rank_offsets_.push_back(static_cast<uint32_t>(token_bytes_.size()));
  }
  // Keys view token_bytes_, which no longer grows.
  ranks_.reserve(num_ranks);
  for (size_t r = 0; r < num_ranks; ++r) {
    const absl::string_view key(token_bytes_.data() + rank_offsets_[r],
                                rank_offsets_[r + 1] - rank_offsets_[r]);
    if (!ranks_.emplace(key, static_cast<int32_t>(r)).second) {
      return Invalid(absl::StrCat("vocab[", r, "] repeats the bytes of vocab[", ranks_[key], "]"));
    }
  }

  // `multimodal` is the older name of `image`.
  auto image_it = root.find("image");
  if (image_it == root.end() || image_it->is_null()) image_it = root.find("multimodal");
  if (image_it != root.end() && !image_it->is_null()) {
    if (!image_it->is_object()) return Invalid("`image` must be an object");
    TekkenImageConfig image;
    absl::StatusOr<int> patch = IntField(*image_it, "image_patch_size", "image", 1);
    if (!patch.ok()) return patch.status();
    absl::StatusOr<int> max_size = IntField(*image_it, "max_image_size", "image", 1);
    if (!max_size.ok()) return max_size.status();
    image.image_patch_size = *patch;
    image.max_image_size = *max_size;
    if (image_it->contains("spatial_merge_size")) {
      absl::StatusOr<int> merge = IntField(*image_it, "spatial_merge_size", "image", 1);
      if (!merge.ok()) return merge.status();
      image.spatial_merge_size = *merge;
    }
    image_config_ = image;
  }
  return CompilePattern(*pattern);
}

absl::Status TekkenTokenizer::CompilePattern(absl::string_view pattern) {
  const std::string translated = TranslateWhiteSpace(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_ = std::make_unique<Pcre2>();
  pcre2_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                               PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr);
  if (pcre2_->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return Invalid(
        absl::StrCat("config.pattern does not compile: ", reinterpret_cast<const char*>(message)));
  }
  // Without JIT (an exotic platform) matching still works, only slower.
  pcre2_jit_compile(pcre2_->code, PCRE2_JIT_COMPLETE);
  return absl::OkStatus();
}

int32_t TekkenTokenizer::Rank(absl::string_view bytes) const {
  auto it = ranks_.find(bytes);
  return it == ranks_.end() ? -1 : it->second;
}

absl::StatusOr<std::vector<int>> TekkenTokenizer::Encode(absl::string_view text, bool bos,
                                                         bool eos) const {
  if (size_t bad = FindInvalidUtf8(text); bad != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("text is not valid UTF-8 (byte ", bad, " of ", text.size(), ")"));
  }
  std::vector<int> ids;
  ids.reserve(text.size() / 3 + 2);
  if (bos) ids.push_back(bos_id_);

  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(pcre2_->code, nullptr), &pcre2_match_data_free);
  if (match == nullptr) return absl::ResourceExhaustedError("out of memory for regex match");
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0;
  while (pos < text.size()) {
    // The text was checked above; PCRE2 would otherwise re-check it on every call.
    const int rc = pcre2_match(pcre2_->code, subject, text.size(), pos, PCRE2_NO_UTF_CHECK,
                               match.get(), nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(rc, message, sizeof(message));
      return absl::InternalError(
          absl::StrCat("pre-tokenizer regex failed: ", reinterpret_cast<const char*>(message)));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    const size_t start = ovector[0];
    size_t end = ovector[1];
    if (end == start) {
      // An empty match (possible only with unusual patterns) yields no token; step over one
      // character so the scan always advances.
      end = start + 1;
      while (end < text.size() && (static_cast<uint8_t>(text[end]) & 0xC0) == 0x80) ++end;
      pos = end;
      continue;
    }
    EncodePiece(text.substr(start, end - start), &ids);
    pos = end;
  }
  if (eos) ids.push_back(eos_id_);
  return ids;
}

void TekkenTokenizer::EncodePiece(absl::string_view piece, std::vector<int>* out) const {
  const int offset = num_special_tokens();
  // Most pieces are whole tokens; tiktoken checks this before merging, and so must we (a
  // vocabulary may hold a piece that merging would not reach).
  if (int32_t rank = Rank(piece); rank >= 0) {
    out->push_back(rank + offset);
    return;
  }
  if (piece.size() > kLongPieceBytes) {
    MergeLongPiece(piece, out);
  } else {
    MergeShortPiece(piece, out);
  }
}

// tiktoken's byte_pair_merge: repeatedly merge the adjacent pair whose concatenation has the
// lowest rank (the leftmost on ties) until no adjacent pair is a token.
void TekkenTokenizer::MergeShortPiece(absl::string_view piece, std::vector<int>* out) const {
  constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
  struct Part {
    uint32_t start;
    int32_t rank;  // Rank of this part merged with the next one, or kNone.
  };
  Part parts[kLongPieceBytes + 2];
  const size_t n = piece.size();
  auto pair_rank = [&](size_t num_parts, size_t i) -> int32_t {
    if (i + 2 >= num_parts) return kNone;
    const int32_t rank = Rank(piece.substr(parts[i].start, parts[i + 2].start - parts[i].start));
    return rank < 0 ? kNone : rank;
  };
  size_t num_parts = n + 1;  // The last part is a sentinel at the end of the piece.
  for (size_t i = 0; i <= n; ++i) parts[i] = {static_cast<uint32_t>(i), kNone};
  for (size_t i = 0; i + 1 < n; ++i) parts[i].rank = pair_rank(num_parts, i);
  while (num_parts > 2) {
    size_t best = 0;
    int32_t best_rank = kNone;
    for (size_t i = 0; i + 1 < num_parts; ++i) {
      if (parts[i].rank < best_rank) {
        best_rank = parts[i].rank;
        best = i;
      }
    }
    if (best_rank == kNone) break;
    std::copy(parts + best + 2, parts + num_parts, parts + best + 1);
    --num_parts;
    parts[best].rank = pair_rank(num_parts, best);
    if (best > 0) parts[best - 1].rank = pair_rank(num_parts, best - 1);
  }
  const int offset = num_special_tokens();
  for (size_t i = 0; i + 1 < num_parts; ++i) {
    out->push_back(Rank(piece.substr(parts[i].start, parts[i + 1].start - parts[i].start)) +
                   offset);
  }
}

// The same merge order as MergeShortPiece, in O(n log n): candidate pairs wait in a min-heap
// ordered by (rank, position); a pair whose parts changed since it was pushed is skipped.
void TekkenTokenizer::MergeLongPiece(absl::string_view piece, std::vector<int>* out) const {
  const size_t n = piece.size();
  std::vector<uint32_t> end(n);       // Part starting at i covers [i, end[i]); 0 if merged away.
  std::vector<uint32_t> prev(n);      // Start of the previous part (valid when i > 0).
  std::vector<uint32_t> stamp(n, 0);  // Bumped whenever the pair starting at i changes.
  for (size_t i = 0; i < n; ++i) {
    end[i] = static_cast<uint32_t>(i + 1);
    prev[i] = static_cast<uint32_t>(i == 0 ? 0 : i - 1);
  }
  struct Candidate {
    int32_t rank;
    uint32_t start;
    uint32_t stamp;
    bool operator>(const Candidate& other) const {
      return rank != other.rank ? rank > other.rank : start > other.start;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> heap;
  auto push_pair = [&](uint32_t start) {
    const uint32_t right = end[start];
    if (right >= n) return;
    const int32_t rank = Rank(piece.substr(start, end[right] - start));
    if (rank >= 0) heap.push({rank, start, stamp[start]});
  };
  for (uint32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    if (end[top.start] == 0 || top.stamp != stamp[top.start]) continue;
    const uint32_t right = end[top.start];
    end[top.start] = end[right];
    end[right] = 0;
    if (end[top.start] < n) prev[end[top.start]] = top.start;
    ++stamp[top.start];
    push_pair(top.start);
    if (top.start > 0) {
      const uint32_t left = prev[top.start];
      ++stamp[left];
      push_pair(left);
    }
  }
  const int offset = num_special_tokens();
  for (uint32_t i = 0; i < n; i = end[i]) {
    out->push_back(Rank(piece.substr(i, end[i] - i)) + offset);
  }
}

absl::StatusOr<std::string> TekkenTokenizer::Decode(absl::Span<const int> ids,
                                                    SpecialTokenPolicy policy) const {
  std::string text;
  std::string run;  // Bytes of consecutive text tokens.
  for (int id : ids) {
    if (id < 0 || id >= vocab_size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("token id ", id, " is outside the vocabulary [0, ", vocab_size_, ")"));
    }
    if (!IsSpecial(id)) {
      absl::StrAppend(&run, TokenBytes(id));
      continue;
    }
    if (policy == SpecialTokenPolicy::kRaise) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot decode special token ", id, " (", special_tokens_[id], ")"));
    }
    AppendUtf8Replacing(run, &text);
    run.clear();
    if (policy == SpecialTokenPolicy::kKeep) text += special_tokens_[id];
  }
  AppendUtf8Replacing(run, &text);
  return text;
}

absl::string_view TekkenTokenizer::TokenBytes(int id) const {
  if (IsSpecial(id)) return special_tokens_[id];
  const size_t rank = static_cast<size_t>(id - num_special_tokens());
  return absl::string_view(token_bytes_.data() + rank_offsets_[rank],
                           rank_offsets_[rank + 1] - rank_offsets_[rank]);
}

absl::StatusOr<int> TekkenTokenizer::SpecialTokenId(absl::string_view name) const {
  auto it = special_token_ids_.find(name);
  if (it == special_token_ids_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown special token \"", name, "\""));
  }
  return it->second;
}

TekkenStreamDecoder::TekkenStreamDecoder(const TekkenTokenizer& tokenizer,
                                         SpecialTokenPolicy policy)
    : tokenizer_(tokenizer), policy_(policy) {}

absl::StatusOr<std::string> TekkenStreamDecoder::Add(int id) {
  if (id < 0 || id >= tokenizer_.vocab_size()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token id ", id, " is outside the vocabulary [0, ", tokenizer_.vocab_size(), ")"));
  }
  std::string text;
  if (tokenizer_.IsSpecial(id)) {
    if (policy_ == SpecialTokenPolicy::kRaise) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot decode special token ", id, " (", tokenizer_.TokenBytes(id), ")"));
    }
    // A control token ends the byte run, as in Decode: an unfinished character stays unfinished.
    text = Finish();
    if (policy_ == SpecialTokenPolicy::kKeep) absl::StrAppend(&text, tokenizer_.TokenBytes(id));
    return text;
  }
  absl::StrAppend(&pending_, tokenizer_.TokenBytes(id));
  const size_t hold = IncompleteUtf8SuffixLength(pending_);
  AppendUtf8Replacing(absl::string_view(pending_).substr(0, pending_.size() - hold), &text);
  pending_.erase(0, pending_.size() - hold);
  return text;
}

std::string TekkenStreamDecoder::Finish() {
  std::string text;
  AppendUtf8Replacing(pending_, &text);
  pending_.clear();
  return text;
}

}  // namespace pixtral
