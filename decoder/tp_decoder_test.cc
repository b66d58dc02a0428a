// The tensor-parallel decoder on CPU backends and the in-process communicator, against the
// plain Decoder (TP=1, no communicator) and the pixtral-tiny goldens: the split must change
// nothing but float32 rounding.
#include "decoder/tp_decoder.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/testing/compare.h"
#include "common/testing/pixtral_tiny.h"
#include "decoder/decoder.h"
#include "decoder/pixtral_model.h"
#include "gtest/gtest.h"
#include "kernels/backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "tools/random_model.h"
#include "vision_encoder/testing/golden_images.h"

namespace pixtral {
namespace {

constexpr int kNumBlocks = 64;

// Float32 sums in another order (the all-reduce adds per-rank partial products) differ from
// TP=1 by rounding only: far below the goldens' 1e-4.
constexpr double kTpTolerance = 1e-5;

ModelLoadOptions CpuTp(int size) { return {.tensor_parallel = CpuTensorParallelGroup(size)}; }

int32_t ArgMax(absl::Span<const float> row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

// One model loaded plainly (the reference) and one split over `size` ranks, from the same folder.
struct Pair {
  std::unique_ptr<kernels::Backend> plain_backend = kernels::NewCpuBackend();
  std::unique_ptr<kernels::Backend> tp_backend = kernels::NewCpuBackend();
  std::unique_ptr<PixtralModel> plain, tp;

  static std::unique_ptr<Pair> Load(const std::string& dir, int size) {
    auto p = std::make_unique<Pair>();
    const CacheOptions cache{.block_size = 4, .num_blocks = kNumBlocks};
    auto plain = PixtralModel::Load(dir, p->plain_backend.get(), cache);
    EXPECT_TRUE(plain.ok()) << plain.status();
    auto tp = PixtralModel::Load(dir, p->tp_backend.get(), cache, CpuTp(size));
    EXPECT_TRUE(tp.ok()) << tp.status();
    if (!plain.ok() || !tp.ok()) return nullptr;
    p->plain = *std::move(plain);
    p->tp = *std::move(tp);
    return p;
  }
};

class TpDecoderGoldenTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    pair_ = Pair::Load(kPixtralTinyDir, GetParam());
    ASSERT_NE(pair_, nullptr);
    ASSERT_NE(dynamic_cast<TpDecoder*>(&pair_->tp->decoder()), nullptr);
    EXPECT_EQ(dynamic_cast<TpDecoder&>(pair_->tp->decoder()).tp_size(), GetParam());
    absl::StatusOr<PixtralTinyGolden> golden = PixtralTinyGolden::Open();
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_.emplace(*std::move(golden));
    golden_images_ = golden_->Images();
    images_ = ImageViews(golden_images_);
    prompt_ = golden_->Ids("input_ids");
    text_prompt_ = golden_->Ids("text_input_ids");
  }

  static absl::StatusOr<std::vector<float>> Prefill(PixtralModel& model,
                                                    absl::Span<const int32_t> tokens,
                                                    absl::Span<const Image> images,
                                                    const PrefillOptions& options) {
    SequenceId seq = model.decoder().AddSequence();
    auto logits = model.Prefill(seq, tokens, images, options);
    model.decoder().Release(seq);
    return logits;
  }

  // Greedy tokens by ForwardSampled (the vocabulary-parallel argmax on a TpDecoder), EOS not
  // stopping them.
  static std::vector<int32_t> Greedy(PixtralModel& model, absl::Span<const int32_t> tokens,
                                     absl::Span<const Image> images, int max_tokens) {
    Decoder& decoder = model.decoder();
    SequenceId seq = decoder.AddSequence();
    absl::StatusOr<std::vector<float>> logits = model.Prefill(seq, tokens, images);
    EXPECT_TRUE(logits.ok()) << logits.status();
    std::vector<int32_t> out;
    if (!logits.ok()) return out;
    out.push_back(ArgMax(*logits));
    while (std::ssize(out) < max_tokens) {
      auto step = decoder.ForwardSampled({{.sequence = seq, .tokens = {&out.back(), 1}}}, {{}});
      EXPECT_TRUE(step.ok()) << step.status();
      if (!step.ok() || !(*step)[0].ok()) break;
      out.push_back((*step)[0]->id);
    }
    decoder.Release(seq);
    return out;
  }

  std::unique_ptr<Pair> pair_;
  std::optional<PixtralTinyGolden> golden_;
  std::vector<GoldenImage> golden_images_;
  std::vector<Image> images_;
  std::vector<int32_t> prompt_, text_prompt_;
};

// The image features are made on rank 0 (the vision encoder and the adapter run there) and
// broadcast to the other ranks inside the step.
TEST_P(TpDecoderGoldenTest, MultimodalLogitsMatchTheGoldenAndTp1) {
  auto want = Prefill(*pair_->plain, prompt_, images_, {.all_logits = true});
  auto got = Prefill(*pair_->tp, prompt_, images_, {.all_logits = true});
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LE(RelativeError(*got, golden_->Floats("logits")), 1e-4);
  EXPECT_LE(RelativeError(*got, *want), kTpTolerance);
}

TEST_P(TpDecoderGoldenTest, TextLogitsInChunksMatchTheGoldenAndTp1) {
  auto want = Prefill(*pair_->plain, text_prompt_, {}, {.chunk_tokens = 5, .all_logits = true});
  auto got = Prefill(*pair_->tp, text_prompt_, {}, {.chunk_tokens = 5, .all_logits = true});
  ASSERT_TRUE(want.ok()) << want.status();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_LE(RelativeError(*got, golden_->Floats("text_logits")), 1e-4);
  EXPECT_LE(RelativeError(*got, *want), kTpTolerance);
}

TEST_P(TpDecoderGoldenTest, GreedyContinuationsMatchTheGolden) {
  EXPECT_EQ(Greedy(*pair_->tp, prompt_, images_, 12), golden_->Ids("greedy_multimodal"));
  EXPECT_EQ(Greedy(*pair_->tp, text_prompt_, {}, 12), golden_->Ids("greedy_text"));
}

// TP=2: one KV head per rank; TP=4: fewer KV heads (2) than ranks, each replicated twice.
INSTANTIATE_TEST_SUITE_P(Sizes, TpDecoderGoldenTest, ::testing::Values(1, 2, 4),
                         [](const auto& info) { return "Tp" + std::to_string(info.param); });

// Drives the same schedule on both decoders: a batch that mixes prefill chunks of one sequence
// with decode rows of others, sampled on the backend, then Forward's logits.
void ExpectSameSchedule(Decoder& plain, Decoder& tp) {
  const std::vector<int32_t> a = {1, 100, 200, 300, 400, 500, 7, 8, 9, 11};
  const std::vector<int32_t> b = {1, 42, 43}, c = {1, 9, 99, 999, 5, 6, 7, 8, 9, 20, 21};
  struct Side {
    Decoder* d;
    SequenceId ids[3];
    std::vector<int32_t> last;
  } sides[2] = {{&plain, {}, {}}, {&tp, {}, {}}};
  for (Side& s : sides) {
    for (SequenceId& id : s.ids) id = s.d->AddSequence();
  }
  // Step 1: a and b whole, the first 4 tokens of c.
  // Step 2: a and b decode (greedy, sampled), c's next 4 tokens.
  // Step 3: a and b decode, c's last 3 tokens.  Steps 4-6: all three decode.
  for (int step = 0; step < 6; ++step) {
    std::vector<std::vector<float>> logits[2];
    std::vector<absl::StatusOr<SampledToken>> sampled[2];
    for (int side = 0; side < 2; ++side) {
      Side& s = sides[side];
      std::vector<int32_t> next = s.last;
      std::vector<StepInput> batch;
      if (step == 0) {
        batch = {{.sequence = s.ids[0], .tokens = a},
                 {.sequence = s.ids[1], .tokens = b},
                 {.sequence = s.ids[2], .tokens = absl::MakeConstSpan(c).first(4)}};
      } else {
        batch = {{.sequence = s.ids[0], .tokens = {&next[0], 1}, .prompt_tokens = 0},
                 {.sequence = s.ids[1], .tokens = {&next[1], 1}, .prompt_tokens = 0}};
        if (step < 3) {
          batch.push_back({.sequence = s.ids[2],
                           .tokens = absl::MakeConstSpan(c).subspan(4 * step, step == 1 ? 4 : 3)});
        } else {
          batch.push_back({.sequence = s.ids[2], .tokens = {&next[2], 1}, .prompt_tokens = 0});
        }
      }
      // Even steps: sampled on the backend; odd steps: whole logits, argmax on the host.
      if (step % 2 == 0) {
        auto out = s.d->ForwardSampled(batch, {{}, {}, {}});
        ASSERT_TRUE(out.ok()) << out.status();
        sampled[side] = *out;
        s.last.clear();
        for (const auto& token : *out) {
          ASSERT_TRUE(token.ok()) << token.status();
          s.last.push_back(token->id);
        }
      } else {
        auto out = s.d->Forward(batch);
        ASSERT_TRUE(out.ok()) << out.status();
        logits[side] = *out;
        s.last.clear();
        for (const auto& row : *out) s.last.push_back(ArgMax(row));
      }
    }
    if (step % 2 == 0) {
      for (int i = 0; i < 3; ++i) {
        EXPECT_EQ(sampled[1][i]->id, sampled[0][i]->id) << "step " << step << " row " << i;
        EXPECT_NEAR(sampled[1][i]->logprob, sampled[0][i]->logprob, 1e-4);
      }
    } else {
      for (int i = 0; i < 3; ++i) {
        EXPECT_LE(RelativeError(logits[1][i], logits[0][i]), kTpTolerance)
            << "step " << step << " row " << i;
      }
    }
    EXPECT_EQ(sides[1].last, sides[0].last) << "step " << step;
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(tp.Length(sides[1].ids[i]), plain.Length(sides[0].ids[i]));
    }
  }
  for (Side& s : sides) {
    for (SequenceId id : s.ids) s.d->Release(id);
  }
  EXPECT_EQ(tp.cache().num_used_blocks(), 0);
}

TEST(TpDecoderTest, MixedPrefillAndDecodeBatchesMatchTp1) {
  for (int size : {2, 4}) {
    SCOPED_TRACE(size);
    std::unique_ptr<Pair> pair = Pair::Load(kPixtralTinyDir, size);
    ASSERT_NE(pair, nullptr);
    ExpectSameSchedule(pair->plain->decoder(), pair->tp->decoder());
  }
}

// The same schedule with the tensor-parallel decode steps recorded (kRecorded: what a CUDA
// backend does by default): steps 4 to 6 decode three rows on the buffers (key (4, 512)); the
// first runs the ops, the other two replay every rank's recording, one of them sampled over the
// vocabulary shards after the replay.
TEST(TpDecoderTest, RecordedDecodeStepsMatchTp1) {
  for (int size : {2, 4}) {
    SCOPED_TRACE(size);
    std::unique_ptr<Pair> pair = Pair::Load(kPixtralTinyDir, size);
    ASSERT_NE(pair, nullptr);
    Decoder& tp = pair->tp->decoder();
    tp.SetDecodeGraphs(DecodeGraphMode::kRecorded);
    ExpectSameSchedule(pair->plain->decoder(), tp);
    EXPECT_EQ(tp.decode_replays(), 2);
    EXPECT_EQ(tp.decode_recordings(), 1);
    tp.SetDecodeGraphs(DecodeGraphMode::kOff);
    EXPECT_EQ(tp.decode_recordings(), 0);
  }
}

// A model with one KV head (replicated on every rank), and hidden and vocabulary sizes that the
// ranks split unevenly (130 hidden units: 32, 33, 32, 33; 2001 ids).
TEST(TpDecoderTest, OneKvHeadAndUnevenSplitsMatchTp1) {
  ModelConfig config = ToyConfig();
  config.decoder.n_kv_heads = 1;
  config.decoder.hidden_dim = 130;
  config.decoder.vocab_size = 2001;
  const std::string dir = ::testing::TempDir() + "/tp_one_kv_head";
  ASSERT_TRUE(WriteRandomModel(dir, config, /*seed=*/7, "").ok());
  for (int size : {2, 4}) {
    SCOPED_TRACE(size);
    std::unique_ptr<Pair> pair = Pair::Load(dir, size);
    ASSERT_NE(pair, nullptr);
    ExpectSameSchedule(pair->plain->decoder(), pair->tp->decoder());
  }
}

// Temperature and nucleus draws over the vocabulary shards pick what the plain decoder's
// backend sampling picks with the same seeded streams.
TEST(TpDecoderTest, NucleusSamplingMatchesTp1) {
  std::unique_ptr<Pair> pair = Pair::Load(kPixtralTinyDir, 2);
  ASSERT_NE(pair, nullptr);
  Decoder& plain = pair->plain->decoder();
  Decoder& tp = pair->tp->decoder();
  const std::vector<int32_t> prompt = {1, 3, 500, 600, 700, 800, 4};
  const SamplingParams params{0.8f, 0.9f, 5};
  Sampler plain_sampler = *Sampler::Create(params), tp_sampler = *Sampler::Create(params);
  SequenceId p = plain.AddSequence(), t = tp.AddSequence();
  int32_t plain_next = 0, tp_next = 0;
  for (int i = 0; i < 8; ++i) {
    StepInput ps{.sequence = p, .tokens = prompt}, ts{.sequence = t, .tokens = prompt};
    if (i > 0) {
      ps = {.sequence = p, .tokens = {&plain_next, 1}, .prompt_tokens = 0};
      ts = {.sequence = t, .tokens = {&tp_next, 1}, .prompt_tokens = 0};
    }
    auto want = plain.ForwardSampled({ps}, {plain_sampler.NextDraw()});
    auto got = tp.ForwardSampled({ts}, {tp_sampler.NextDraw()});
    ASSERT_TRUE(want.ok() && got.ok());
    ASSERT_TRUE((*want)[0].ok() && (*got)[0].ok());
    EXPECT_EQ((*got)[0]->id, (*want)[0]->id) << i;
    EXPECT_NEAR((*got)[0]->logprob, (*want)[0]->logprob, 1e-4);
    plain_next = (*want)[0]->id;
    tp_next = (*got)[0]->id;
  }
}

TEST(TpDecoderTest, ReleaseAndCancelReturnEveryBlock) {
  std::unique_ptr<Pair> pair = Pair::Load(kPixtralTinyDir, 2);
  ASSERT_NE(pair, nullptr);
  Decoder& d = pair->tp->decoder();
  const std::vector<int32_t> prompt = {1, 3, 500, 600, 700, 800, 900, 1000, 1100, 1200, 4};
  SequenceId keep = d.AddSequence();
  ASSERT_TRUE(d.Forward({{.sequence = keep, .tokens = prompt}}).ok());
  const int free_before = d.cache().num_free_blocks();
  // Cancelled halfway through a chunked prompt that reserved its whole length up front.
  SequenceId cancelled = d.AddSequence();
  ASSERT_TRUE(d.Reserve(cancelled, 40).ok());
  ASSERT_TRUE(
      d.Forward({{.sequence = cancelled, .tokens = absl::MakeConstSpan(prompt).first(5)}}).ok());
  EXPECT_EQ(d.cache().num_free_blocks(), free_before - 10);
  d.Release(cancelled);
  EXPECT_EQ(d.cache().num_free_blocks(), free_before);
  EXPECT_EQ(d.Length(cancelled), 0);
  d.Release(keep);
  EXPECT_EQ(d.cache().num_free_blocks(), kNumBlocks);
  EXPECT_EQ(d.cache().num_used_blocks(), 0);
}

// Bad input is refused on the caller's thread before any rank works, and the group stays usable.
TEST(TpDecoderTest, BadStepsChangeNothing) {
  std::unique_ptr<Pair> pair = Pair::Load(kPixtralTinyDir, 4);
  ASSERT_NE(pair, nullptr);
  Decoder& d = pair->tp->decoder();
  Decoder& plain = pair->plain->decoder();
  const std::vector<int32_t> prompt = {1, 3, 500, 600, 4};
  SequenceId seq = d.AddSequence();
  ASSERT_TRUE(d.Forward({{.sequence = seq, .tokens = prompt}}).ok());
  const std::vector<int32_t> bad_id = {5, 2048}, image_token = {10};
  const std::vector<int32_t> too_long(kNumBlocks * 4, 5);
  EXPECT_EQ(d.Forward({{.sequence = seq, .tokens = bad_id}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.Forward({{.sequence = seq, .tokens = image_token}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.Forward({{.sequence = 999, .tokens = prompt}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.Forward({{.sequence = seq, .tokens = too_long}}).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(d.ForwardSampled({{.sequence = seq, .tokens = prompt}}, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.Length(seq), 5);
  const int32_t next = 77;
  auto got = d.Forward({{.sequence = seq, .tokens = {&next, 1}}});
  ASSERT_TRUE(got.ok()) << got.status();
  std::vector<int32_t> all = prompt;
  all.push_back(next);
  SequenceId ref = plain.AddSequence();
  auto want = plain.Forward({{.sequence = ref, .tokens = all}});
  ASSERT_TRUE(want.ok()) << want.status();
  EXPECT_LE(RelativeError((*got)[0], (*want)[0]), kTpTolerance);
}

TEST(TpDecoderTest, ShardsCoverTheModelAndBadSizesAreRefused) {
  DecoderConfig c = ToyConfig().decoder;  // 4 heads, 2 KV heads, 128 hidden
  c.vocab_size = 2001;
  for (int size : {1, 2, 4}) {
    int64_t heads = 0, hidden = 0, vocab = 0;
    for (int r = 0; r < size; ++r) {
      auto s = ShardFor(c, r, size);
      ASSERT_TRUE(s.ok()) << s.status();
      EXPECT_EQ(s->head_begin, heads);
      EXPECT_EQ(s->hidden_begin, hidden);
      EXPECT_EQ(s->vocab_begin, vocab);
      // Each rank's query heads read only its KV heads (GQA groups of n_heads / n_kv_heads).
      const int64_t group = c.n_heads / c.n_kv_heads;
      EXPECT_EQ(s->kv_head_begin, s->head_begin / group);
      EXPECT_EQ(s->kv_heads, std::max<int64_t>(1, s->heads / group));
      heads += s->heads;
      hidden += s->hidden;
      vocab += s->vocab;
    }
    EXPECT_EQ(heads, c.n_heads);
    EXPECT_EQ(hidden, c.hidden_dim);
    EXPECT_EQ(vocab, c.vocab_size);
  }
  EXPECT_EQ(ShardFor(c, 0, 3).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardFor(c, 0, 8).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ShardFor(c, 2, 2).status().code(), absl::StatusCode::kInvalidArgument);
  std::unique_ptr<kernels::Backend> cpu = kernels::NewCpuBackend();
  auto model = PixtralModel::Load(kPixtralTinyDir, cpu.get(), {.num_blocks = 8}, CpuTp(3));
  EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument) << model.status();
}

}  // namespace
}  // namespace pixtral
