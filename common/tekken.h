// The tekken tokenizer of Mistral's 2024 models (Mistral NeMo, Pixtral): byte-level BPE in the
// style of tiktoken, loaded from a `tekken.json` file, agreeing token for token with
// mistral_common's `Tekkenizer`.
//
// Ids 0..num_special_tokens()-1 are control tokens (<unk>, <s>, </s>, [INST], [IMG], ...); text
// token ids are the BPE rank plus num_special_tokens(). Encoding never produces a control token:
// "[INST]" typed by a user is ordinary text. Text is split with the file's regex (PCRE2, JIT),
// then each piece is merged by rank exactly as tiktoken does.
//
//   absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tekken =
//       TekkenTokenizer::FromFile("/models/pixtral/tekken.json");
//   if (!tekken.ok()) return tekken.status();
//   absl::StatusOr<std::vector<int>> ids = (*tekken)->Encode("Hello!", /*bos=*/true,
//   /*eos=*/false); absl::StatusOr<std::string> text = (*tekken)->Decode(*ids,
//   SpecialTokenPolicy::kIgnore);
//
// A loaded tokenizer is immutable; Encode and Decode may be called from many threads at once.
// For streaming generated text use TekkenStreamDecoder, which never splits a UTF-8 character.
#ifndef PIXTRAL_COMMON_TEKKEN_H_
#define PIXTRAL_COMMON_TEKKEN_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace pixtral {

// What decoding does with control tokens, as mistral_common's SpecialTokenPolicy.
enum class SpecialTokenPolicy {
  kIgnore,  // Drop them.
  kKeep,    // Write their names, e.g. "[INST]".
  kRaise,   // Fail with InvalidArgument.
};

// The `image` section of tekken.json (mistral_common's ImageConfig).
struct TekkenImageConfig {
  int image_patch_size = 16;
  int max_image_size = 1024;
  int spatial_merge_size = 1;
};

class TekkenTokenizer {
 public:
  struct Options {
    // Overrides the file's config.default_vocab_size, as mistral_common's `vocab_size` argument
    // does; only the first vocab_size - num_special_tokens ranks are used.
    std::optional<int> vocab_size;
  };

  // Loads and validates a tekken.json. Malformed JSON, missing or mistyped fields, bad base64,
  // ranks out of order, duplicate token bytes and an invalid pattern are InvalidArgument errors
  // naming the problem.
  static absl::StatusOr<std::unique_ptr<TekkenTokenizer>> FromFile(const std::string& path,
                                                                   const Options& options = {});
  static absl::StatusOr<std::unique_ptr<TekkenTokenizer>> FromJson(absl::string_view json,
                                                                   const Options& options = {});

  ~TekkenTokenizer();
  TekkenTokenizer(const TekkenTokenizer&) = delete;
  TekkenTokenizer& operator=(const TekkenTokenizer&) = delete;

  // Token ids for `text`, which must be valid UTF-8 (InvalidArgument with the byte offset
  // otherwise). `bos`/`eos` add <s> and </s>.
  absl::StatusOr<std::vector<int>> Encode(absl::string_view text, bool bos, bool eos) const;

  // The text of `ids`. Ids outside [0, vocab_size()) are InvalidArgument, as are control
  // tokens under kRaise. Runs of text tokens are joined as bytes and repaired to valid UTF-8
  // (each ill-formed subsequence becomes U+FFFD), run by run, as mistral_common does.
  absl::StatusOr<std::string> Decode(absl::Span<const int> ids, SpecialTokenPolicy policy) const;

  // The raw bytes of a text token, or the name of a control token. `id` must be in range.
  absl::string_view TokenBytes(int id) const;

  // The id of a control token by name ("<s>", "[IMG]"...), or NotFound.
  absl::StatusOr<int> SpecialTokenId(absl::string_view name) const;

  bool IsSpecial(int id) const { return id >= 0 && id < num_special_tokens(); }
  int vocab_size() const { return vocab_size_; }
  int num_special_tokens() const { return static_cast<int>(special_tokens_.size()); }
  int bos_id() const { return bos_id_; }
  int eos_id() const { return eos_id_; }
  const std::string& version() const { return version_; }
  // The file's `image` section, absent for text-only tokenizers.
  const std::optional<TekkenImageConfig>& image_config() const { return image_config_; }

 private:
  TekkenTokenizer();
  absl::Status Init(absl::string_view json, const Options& options);
  absl::Status CompilePattern(absl::string_view pattern);
  // The rank of `bytes`, or -1 if it is not a token.
  int32_t Rank(absl::string_view bytes) const;
  void EncodePiece(absl::string_view piece, std::vector<int>* out) const;
  void MergeShortPiece(absl::string_view piece, std::vector<int>* out) const;
  void MergeLongPiece(absl::string_view piece, std::vector<int>* out) const;

  struct Pcre2;  // The compiled pattern; PCRE2's types stay out of this header.
  std::unique_ptr<Pcre2> pcre2_;

  std::string version_;
  int vocab_size_ = 0;
  std::vector<std::string> special_tokens_;
  absl::flat_hash_map<std::string, int> special_token_ids_;
  int bos_id_ = -1;
  int eos_id_ = -1;
  std::optional<TekkenImageConfig> image_config_;

  // Every rank's bytes back to back; rank r is token_bytes_[rank_offsets_[r], rank_offsets_[r+1]).
  std::string token_bytes_;
  std::vector<uint32_t> rank_offsets_;
  absl::flat_hash_map<absl::string_view, int32_t> ranks_;
};

// Turns generated ids into text one token at a time, holding back the bytes of a character
// whose remaining bytes have not arrived yet, so every chunk it returns is valid UTF-8. The
// concatenation of all chunks equals TekkenTokenizer::Decode of all ids.
//
//   TekkenStreamDecoder stream(*tekken, SpecialTokenPolicy::kIgnore);
//   for (int id : generated) {
//     absl::StatusOr<std::string> chunk = stream.Add(id);
//     ...send *chunk...
//   }
//   send(stream.Finish());
class TekkenStreamDecoder {
 public:
  // `tokenizer` must outlive the decoder.
  TekkenStreamDecoder(const TekkenTokenizer& tokenizer, SpecialTokenPolicy policy);

  // The text that `id` completes (possibly empty). Same errors as Decode.
  absl::StatusOr<std::string> Add(int id);
  // The held-back bytes, each unfinished character as U+FFFD.
  std::string Finish();

 private:
  const TekkenTokenizer& tokenizer_;
  SpecialTokenPolicy policy_;
  std::string pending_;  // At most 3 bytes: the start of an unfinished character.
};

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_TEKKEN_H_
