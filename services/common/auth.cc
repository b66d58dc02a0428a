#include "services/common/auth.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "glog/logging.h"

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

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read the token file ", path));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// What changes when the file is replaced or rewritten (a Kubernetes Secret swaps a symlink).
std::string FileStamp(const std::string& path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) return "";
  return absl::StrCat(info.st_ino, ":", info.st_size, ":", info.st_mtim.tv_sec, ".",
                      info.st_mtim.tv_nsec);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const BearerTokens>> BearerTokens::FromFile(
    const std::string& path, absl::Duration reload_interval) {
  const std::string stamp = FileStamp(path);
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::StatusOr<std::vector<std::string>> parsed = Parse(*text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
  }
  std::shared_ptr<BearerTokens> tokens(new BearerTokens());
  tokens->path_ = path;
  tokens->reload_interval_ = reload_interval;
  {
    absl::MutexLock lock(&tokens->mutex_);
    tokens->tokens_ = *std::move(parsed);
    tokens->file_stamp_ = stamp;
    tokens->next_look_ = absl::Now() + reload_interval;
  }
  return std::shared_ptr<const BearerTokens>(std::move(tokens));
}

absl::StatusOr<std::shared_ptr<const BearerTokens>> BearerTokens::FromText(absl::string_view text) {
  absl::StatusOr<std::vector<std::string>> parsed = Parse(text);
  if (!parsed.ok()) return parsed.status();
  std::shared_ptr<BearerTokens> tokens(new BearerTokens());
  {
    absl::MutexLock lock(&tokens->mutex_);
    tokens->tokens_ = *std::move(parsed);
  }
  return std::shared_ptr<const BearerTokens>(std::move(tokens));
}

absl::StatusOr<std::vector<std::string>> BearerTokens::Parse(absl::string_view text) {
  std::vector<std::string> tokens;
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
    tokens.emplace_back(line);
  }
  if (tokens.empty()) return absl::InvalidArgumentError("no token in the token file");
  return tokens;
}

void BearerTokens::MaybeReload() const {
  if (path_.empty()) return;
  absl::MutexLock lock(&mutex_);
  const absl::Time now = absl::Now();
  if (now < next_look_) return;
  next_look_ = now + reload_interval_;
  const std::string stamp = FileStamp(path_);
  if (stamp == file_stamp_) return;
  absl::StatusOr<std::string> text = ReadFile(path_);
  absl::StatusOr<std::vector<std::string>> parsed =
      text.ok() ? Parse(*text) : absl::StatusOr<std::vector<std::string>>(text.status());
  if (!parsed.ok()) {
    LOG(ERROR) << "keeping the previous tokens: " << path_ << ": " << parsed.status();
    return;
  }
  file_stamp_ = stamp;
  tokens_ = *std::move(parsed);
  LOG(INFO) << "reloaded " << tokens_.size() << " tokens from " << path_;
}

size_t BearerTokens::size() const {
  MaybeReload();
  absl::MutexLock lock(&mutex_);
  return tokens_.size();
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
  MaybeReload();
  absl::MutexLock lock(&mutex_);
  bool known = false;
  if (sent.size() <= kMaxTokenBytes) {
    // Every token is compared, so which one matched (or that none did) shows in no timing.
    for (const std::string& token : tokens_) known |= ConstantTimeEquals(sent, token);
  }
  if (!known) return absl::UnauthenticatedError("the bearer token is not valid");
  return absl::OkStatus();
}

}  // namespace pixtral
