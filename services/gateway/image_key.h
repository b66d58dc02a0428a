// The content key the gateway gives an image so that a decoder can match it in its prefix cache
// without receiving its features (DecoderStage::GenerateWithImages).
//
// A 128-bit hash (engine/block_hash.h HashBytes) of exactly what the gateway would send to a
// vision worker (the 8-bit RGB with its source and target sizes, or the normalized floats with
// their size): the same image in the same form always gives the same key, and any pixel, size
// or form that changes the features changes the key (short of a 128-bit collision).
//
//   ImageKey key{ImageContentKey(image), image.grid.rows * image.grid.cols};
#ifndef PIXTRAL_SERVICES_GATEWAY_IMAGE_KEY_H_
#define PIXTRAL_SERVICES_GATEWAY_IMAGE_KEY_H_

#include "common/image_processing.h"
#include "decoder/kv_cache.h"

namespace pixtral {

BlockKey ImageContentKey(const PreprocessedImage& image);

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_IMAGE_KEY_H_
