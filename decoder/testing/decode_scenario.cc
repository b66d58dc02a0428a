#include "decoder/testing/decode_scenario.h"

#include "gtest/gtest.h"

namespace pixtral {

std::vector<std::vector<float>> RunDecodeScenario(PixtralModel& model, DecodeGraphMode mode,
                                                  int64_t* replays) {
  Decoder& d = model.decoder();
  d.SetDecodeGraphs(mode);
  const int64_t replays_before = d.decode_replays();
  const int32_t img = model.config().vision->image_token_id;
  std::vector<std::vector<float>> all;
  std::vector<SequenceId> running;
  std::vector<int32_t> next;  // each running sequence's next token
  auto prompt = [&](int length, int seed) {
    std::vector<int32_t> tokens = {1, 3};
    for (int i = 2; i < length; ++i) tokens.push_back(100 + (seed * 131 + i * 17) % 1500);
    const SequenceId seq = d.AddSequence();
    auto out = d.Forward({{.sequence = seq, .tokens = tokens}});
    EXPECT_TRUE(out.ok()) << out.status();
    if (!out.ok()) return;
    all.push_back((*out)[0]);
    running.push_back(seq);
    next.push_back(100 + seed);
  };
  auto decode = [&](int steps) {
    for (int s = 0; s < steps; ++s) {
      std::vector<StepInput> batch;
      for (size_t i = 0; i < running.size(); ++i) {
        batch.push_back({.sequence = running[i], .tokens = {&next[i], 1}, .prompt_tokens = 0});
      }
      auto out = d.Forward(batch);
      ASSERT_TRUE(out.ok()) << out.status();
      for (size_t i = 0; i < running.size(); ++i) {
        all.push_back((*out)[i]);
        next[i] = 100 + (next[i] * 37 + 11) % 1500;
      }
    }
  };
  prompt(505, 1);
  decode(2);  // one row
  prompt(11, 2);
  prompt(20, 3);
  decode(9);  // three rows (bucket 4); the first sequence passes 512 positions
  d.Release(running[1]);
  running.erase(running.begin() + 1);
  next.erase(next.begin() + 1);
  next[0] = img;  // generated, so an ordinary token
  decode(2);      // two rows
  for (int i = 0; i < 7; ++i) prompt(5 + i, 10 + i);
  decode(3);  // nine rows (bucket 16)
  *replays = d.decode_replays() - replays_before;
  for (SequenceId seq : running) d.Release(seq);
  EXPECT_EQ(d.cache().num_used_blocks(), 0);
  return all;
}

}  // namespace pixtral
