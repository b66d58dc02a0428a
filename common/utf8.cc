#include "common/utf8.h"

#include <cstdint>

namespace pixtral {
namespace {

constexpr char kReplacement[] = "\xEF\xBF\xBD";

// The byte ranges a well-formed sequence allows after its lead byte (Unicode Table 3-7).
struct SequenceShape {
  int length;                // 0: the byte cannot start a character.
  uint8_t second_lo = 0x80;  // The second byte's range; later bytes are always 80..BF.
  uint8_t second_hi = 0xBF;
};

SequenceShape ShapeOf(uint8_t lead) {
  if (lead < 0x80) return {1};
  if (lead < 0xC2) return {0};
  if (lead < 0xE0) return {2};
  if (lead == 0xE0) return {3, 0xA0, 0xBF};
  if (lead == 0xED) return {3, 0x80, 0x9F};
  if (lead < 0xF0) return {3};
  if (lead == 0xF0) return {4, 0x90, 0xBF};
  if (lead < 0xF4) return {4};
  if (lead == 0xF4) return {4, 0x80, 0x8F};
  return {0};
}

// How many bytes from `pos` form a valid prefix of the character starting there (at least 1),
// and whether that prefix is the whole character.
struct Scan {
  size_t valid;
  bool complete;
};

Scan ScanCharacter(absl::string_view bytes, size_t pos) {
  const SequenceShape shape = ShapeOf(static_cast<uint8_t>(bytes[pos]));
  if (shape.length == 0) return {1, false};
  size_t n = 1;
  while (n < static_cast<size_t>(shape.length) && pos + n < bytes.size()) {
    const uint8_t byte = static_cast<uint8_t>(bytes[pos + n]);
    const uint8_t lo = n == 1 ? shape.second_lo : 0x80;
    const uint8_t hi = n == 1 ? shape.second_hi : 0xBF;
    if (byte < lo || byte > hi) return {n, false};
    ++n;
  }
  return {n, n == static_cast<size_t>(shape.length)};
}

}  // namespace

size_t FindInvalidUtf8(absl::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // ASCII runs dominate real text; skip them eight bytes at a time.
    while (pos + 8 <= text.size()) {
      uint64_t word;
      __builtin_memcpy(&word, text.data() + pos, 8);
      if (word & 0x8080808080808080ull) break;
      pos += 8;
    }
    if (pos >= text.size()) break;
    if (static_cast<uint8_t>(text[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const Scan scan = ScanCharacter(text, pos);
    if (!scan.complete) return pos;
    pos += scan.valid;
  }
  return absl::string_view::npos;
}

void AppendUtf8Replacing(absl::string_view bytes, std::string* out) {
  size_t pos = 0;
  while (pos < bytes.size()) {
    const Scan scan = ScanCharacter(bytes, pos);
    if (scan.complete) {
      out->append(bytes.data() + pos, scan.valid);
    } else {
      out->append(kReplacement);
    }
    pos += scan.valid;
  }
}

size_t IncompleteUtf8SuffixLength(absl::string_view bytes) {
  // A character is at most 4 bytes, so only a lead byte among the last 3 can be unfinished.
  const size_t first = bytes.size() > 3 ? bytes.size() - 3 : 0;
  for (size_t pos = first; pos < bytes.size(); ++pos) {
    if (ShapeOf(static_cast<uint8_t>(bytes[pos])).length < 2) continue;
    const Scan scan = ScanCharacter(bytes, pos);
    if (!scan.complete && pos + scan.valid == bytes.size()) return bytes.size() - pos;
  }
  return 0;
}

}  // namespace pixtral
