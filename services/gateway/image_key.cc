#include "services/gateway/image_key.h"

#include <cstdint>

#include "engine/block_hash.h"

namespace pixtral {

BlockKey ImageContentKey(const PreprocessedImage& image) {
  const BlockKey pixels = image.normalized()
                              ? HashBytes(image.pixels.data(), image.pixels.size() * sizeof(float))
                              : HashBytes(image.rgb8.data(), image.rgb8.size());
  // The sizes and the form decide the features as much as the bytes do: hash them with the
  // bytes' key, as fixed-width words so that no two different tuples read the same.
  const uint64_t words[] = {pixels.hi,
                            pixels.lo,
                            image.normalized() ? uint64_t{1} : uint64_t{2},
                            static_cast<uint64_t>(image.height),
                            static_cast<uint64_t>(image.width),
                            static_cast<uint64_t>(image.source_height),
                            static_cast<uint64_t>(image.source_width)};
  return HashBytes(words, sizeof(words));
}

}  // namespace pixtral
