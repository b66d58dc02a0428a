// The engine's model adapter under the name tools and tests used before the engine moved to
// engine/: PixtralSequenceModel(model, max_row_tokens) is engine/pixtral_runner.h's PixtralRunner.
#ifndef PIXTRAL_DECODER_PIXTRAL_SEQUENCE_MODEL_H_
#define PIXTRAL_DECODER_PIXTRAL_SEQUENCE_MODEL_H_

#include "engine/pixtral_runner.h"

namespace pixtral {

using PixtralSequenceModel = PixtralRunner;

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_PIXTRAL_SEQUENCE_MODEL_H_
