#include "services/common/auth.h"

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace pixtral {
namespace {

// Longer tokens than this are not tokens (and would let a caller make each check expensive).
constexpr size_t kMaxTokenBytes = 4096;

// Visits every byte of the longer of the two whatever the contents, so the time taken depends
// only on the lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned char difference = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    difference |= x ^ y;
  }
  return difference == 0;
}

bool IsTokenByte(char c) { return c > ' ' && c < 0x7f; }

}  // namespace

absl::StatusOr<std::shared_ptr<const BearerTokens>> BearerTokens::FromFile(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read the token file ", path));
  std::stringstream text;
  text << in.rdbuf();
  absl::StatusOr<std::shared_ptr<const BearerTokens>> tokens = FromText(text.str());
  if (!tokens.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", tokens.status().message()));
  }
  return tokens;
}

absl::StatusOr<std::shared_ptr<const BearerTokens>> BearerTokens::FromText(absl::string_view text) {
  std::shared_ptr<BearerTokens> tokens(new BearerTokens());
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    for (char c : line) {
      if (!IsTokenByte(c)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "line ", line_number, ": a token may hold only printable ASCII without spaces"));
      }
    }
    if (line.size() > kMaxTokenBytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_number, ": a token is at most ", kMaxTokenBytes, " bytes"));
    }
    tokens->tokens_.emplace_back(line);
  }
  if (tokens->tokens_.empty()) return absl::InvalidArgumentError("no token in the token file");
  return std::shared_ptr<const BearerTokens>(std::move(tokens));
}

absl::Status BearerTokens::Check(absl::string_view authorization) const {
  authorization = absl::StripAsciiWhitespace(authorization);
  if (authorization.empty()) {
    return absl::UnauthenticatedError(
        "this server requires a bearer token: send \"authorization: Bearer <token>\"");
  }
  constexpr absl::string_view kScheme = "bearer ";
  if (authorization.size() <= kScheme.size() ||
      !absl::StartsWithIgnoreCase(authorization, kScheme)) {
    return absl::UnauthenticatedError(
        "the authorization is not a bearer token: send \"authorization: Bearer <token>\"");
  }
  const absl::string_view sent =
      absl::StripLeadingAsciiWhitespace(authorization.substr(kScheme.size()));
  bool known = false;
  if (sent.size() <= kMaxTokenBytes) {
    // Every token is compared, so which one matched (or that none did) shows in no timing.
    for (const std::string& token : tokens_) known |= ConstantTimeEquals(sent, token);
  }
  if (!known) return absl::UnauthenticatedError("the bearer token is not valid");
  return absl::OkStatus();
}

}  // namespace pixtral
