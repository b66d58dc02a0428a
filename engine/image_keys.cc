#include "engine/image_keys.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/block_hash.h"

namespace pixtral {
namespace {

// [IMG] rows of each image in the prompt: a run ends at [IMG_END].
std::vector<int64_t> ImageRuns(const std::vector<int32_t>& tokens, int image_token,
                               int image_end_token) {
  std::vector<int64_t> runs;
  int64_t rows = 0;
  for (int32_t t : tokens) {
    if (t == image_token) ++rows;
    if (t == image_end_token) {
      runs.push_back(rows);
      rows = 0;
    }
  }
  if (rows > 0) runs.push_back(rows);  // an image without its [IMG_END]
  return runs;
}

}  // namespace

absl::StatusOr<std::vector<uint64_t>> KeyedImageRowKeys(const Prompt& prompt, int image_token,
                                                        int image_end_token, int64_t width) {
  const std::vector<ImageKey>& keys = prompt.image_keys;
  const int64_t image_tokens = std::count(prompt.tokens.begin(), prompt.tokens.end(), image_token);
  int64_t total = 0;
  for (const ImageKey& image : keys) {
    if (image.rows <= 0) return absl::InvalidArgumentError("an image key with no rows");
    total += image.rows;
  }
  if (total != image_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("the image keys cover ", total,
                                                   " rows but the prompt has ", image_tokens,
                                                   " [IMG] tokens"));
  }
  if (image_end_token >= 0) {
    const std::vector<int64_t> runs = ImageRuns(prompt.tokens, image_token, image_end_token);
    if (runs.size() != keys.size()) {
      return absl::InvalidArgumentError(absl::StrCat("the prompt has ", runs.size(), " images but ",
                                                     keys.size(), " image keys came"));
    }
    for (size_t i = 0; i < runs.size(); ++i) {
      if (runs[i] != keys[i].rows) {
        return absl::InvalidArgumentError(absl::StrCat("image ", i, " has ", runs[i],
                                                       " [IMG] tokens but its key says ",
                                                       keys[i].rows, " rows"));
      }
    }
  }
  if (prompt.first_feature_image < 0 || prompt.first_feature_image > std::ssize(keys)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "first_feature_image ", prompt.first_feature_image, " is not in [0, ", keys.size(), "]"));
  }
  const int64_t sent_rows = total - RowsBeforeImage(prompt, prompt.first_feature_image);
  if (width > 0 && std::ssize(prompt.image_features) != sent_rows * width) {
    return absl::InvalidArgumentError(absl::StrCat("the images from ", prompt.first_feature_image,
                                                   " on have ", sent_rows, " feature rows but ",
                                                   prompt.image_features.size(),
                                                   " feature values came (rows of ", width, ")"));
  }
  std::vector<uint64_t> row_keys;
  row_keys.reserve(total);
  for (const ImageKey& image : keys) {
    for (int64_t r = 0; r < image.rows; ++r) row_keys.push_back(ImageRowKey(image.key, r));
  }
  return row_keys;
}

int64_t RowsBeforeImage(const Prompt& prompt, int image) {
  int64_t rows = 0;
  for (int i = 0; i < image && i < std::ssize(prompt.image_keys); ++i) {
    rows += prompt.image_keys[i].rows;
  }
  return rows;
}

int FirstNeededImage(const Prompt& prompt, int64_t cached_positions, int image_token) {
  cached_positions = std::clamp<int64_t>(cached_positions, 0, std::ssize(prompt.tokens));
  const int64_t cached_rows =
      std::count(prompt.tokens.begin(), prompt.tokens.begin() + cached_positions, image_token);
  int image = 0;
  int64_t end = 0;  // rows up to the end of `image`
  while (image < std::ssize(prompt.image_keys) &&
         end + prompt.image_keys[image].rows <= cached_rows) {
    end += prompt.image_keys[image].rows;
    ++image;
  }
  return image;
}

}  // namespace pixtral
