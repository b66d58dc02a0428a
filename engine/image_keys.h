// Prompts whose images come as content keys (Prompt::image_keys) rather than as content alone:
// the prefix-cache keys of their [IMG] rows, and which images' features a decoder still needs
// once it knows how much of the prompt its prefix cache holds.
//
// A sender that keys its images lets a decoder match an image it has seen before without the
// features: the decoder pins the cached prefix (Scheduler::PinPrefix), answers
// FirstNeededImage(prompt, pinned positions), and only the images from there on are sent.
//
//   PIXTRAL_ASSIGN_OR_RETURN(std::vector<uint64_t> rows,
//                            KeyedImageRowKeys(prompt, image_token, image_end_token, width));
//   int first = FirstNeededImage(prompt, /*cached_positions=*/64, image_token);
#ifndef PIXTRAL_ENGINE_IMAGE_KEYS_H_
#define PIXTRAL_ENGINE_IMAGE_KEYS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/request.h"

namespace pixtral {

// ImageRowKey(key, r) for every row of every keyed image, in [IMG] order, after checking the
// keys against the prompt: one key per image (an image's [IMG] rows end at its `image_end_token`;
// negative: only the total is checked), each with its image's row count, first_feature_image
// within them, and with `width` > 0, features of exactly the rows of the images from
// first_feature_image on. InvalidArgument naming the mismatch otherwise.
absl::StatusOr<std::vector<uint64_t>> KeyedImageRowKeys(const Prompt& prompt, int image_token,
                                                        int image_end_token, int64_t width);

// Feature rows of the keyed images before image `image` (the rows not sent when the features
// start there).
int64_t RowsBeforeImage(const Prompt& prompt, int image);

// The first keyed image with a row at or after position `cached_positions` of the prompt: the
// features a decoder needs are those of this image and the ones after it (image_keys.size():
// none).
int FirstNeededImage(const Prompt& prompt, int64_t cached_positions, int image_token);

}  // namespace pixtral

#endif  // PIXTRAL_ENGINE_IMAGE_KEYS_H_
