// One scenario of prompts and decode steps for the decode-graph tests (decode_graphs_test on the
// CPU and the GPU, cuda_tp_test over NCCL): batches of 1 to 9 rows (row buckets 1, 4, 2, 16: the
// buffers grow twice), a context crossing the 512-position bucket, a sequence released and others
// added between steps, and a generated [IMG] token. The tokens fed are fixed, not picked from the
// logits, so that a near-tie cannot change the scenario. Its replays, keyed (rows, context):
// (1, 512) 1, (4, 512) 4, (4, 1024) 3, (2, 1024) 1, (16, 1024) 2.
#ifndef PIXTRAL_DECODER_TESTING_DECODE_SCENARIO_H_
#define PIXTRAL_DECODER_TESTING_DECODE_SCENARIO_H_

#include <cstdint>
#include <vector>

#include "decoder/decode_graphs.h"
#include "decoder/pixtral_model.h"

namespace pixtral {

// Steps of RunDecodeScenario that replay a recording when every key's first step records.
inline constexpr int64_t kDecodeScenarioReplays = 1 + 4 + 3 + 1 + 2;

// Runs the scenario on `model` (whose cache holds at least 48 blocks of 16 positions) in `mode`
// and returns every step's logits; *replays: the decode steps it replayed. Every sequence is
// released at the end (checked: no cache block stays used).
std::vector<std::vector<float>> RunDecodeScenario(PixtralModel& model, DecodeGraphMode mode,
                                                  int64_t* replays);

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_TESTING_DECODE_SCENARIO_H_
