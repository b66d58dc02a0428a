#include "decoder/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "kernels/rope.h"

namespace pixtral {
namespace {

// The prompt part of a step's tokens: the only tokens where [IMG] is a placeholder.
absl::Span<const int32_t> PromptPart(const StepInput& in) {
  return in.prompt_tokens < 0
             ? in.tokens
             : in.tokens.first(std::min<size_t>(in.prompt_tokens, in.tokens.size()));
}

// The KV cache blocks that `cache.free_memory_fraction` of the backend's free memory holds.
absl::StatusOr<int> BlocksInFreeMemory(kernels::Backend& backend, const DecoderConfig& config,
                                       const CacheOptions& cache) {
  PIXTRAL_ASSIGN_OR_RETURN(const int64_t free, backend.FreeMemoryBytes());
  // k and v, every layer, in the backend's cache dtype.
  const int64_t block_bytes = int64_t{2} * config.n_layers * cache.block_size * config.n_kv_heads *
                              config.head_dim * DTypeSize(backend.KvCacheDType());
  const int64_t blocks =
      static_cast<int64_t>(static_cast<double>(free) * cache.free_memory_fraction) / block_bytes;
  if (blocks < 1) {
    return absl::ResourceExhaustedError(
        absl::StrCat("no room for a KV cache: ", free, " bytes free, a block takes ", block_bytes));
  }
  const int num_blocks =
      static_cast<int>(std::min<int64_t>(blocks, std::numeric_limits<int>::max()));
  LOG(INFO) << "KV cache sized from free device memory: " << num_blocks << " blocks, "
            << int64_t{num_blocks} * cache.block_size << " positions ("
            << int64_t{num_blocks} * block_bytes / (1 << 20) << " MiB of " << free / (1 << 20)
            << " MiB free)";
  return num_blocks;
}

}  // namespace

using kernels::Backend;
using kernels::BlockWeights;
using kernels::DType;
using kernels::PagedSequence;
using kernels::Tensor;

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::Create(Backend* backend,
                                                         const DecoderConfig& config,
                                                         int image_token_id,
                                                         kernels::WeightLoader& loader,
                                                         const CacheOptions& cache) {
  if (config.sliding_window.has_value()) {
    return absl::UnimplementedError("sliding-window attention is not supported");
  }
  std::unique_ptr<Decoder> d(new Decoder(backend, config, image_token_id));
  PIXTRAL_ASSIGN_OR_RETURN(d->tok_embeddings_, loader.Get("tok_embeddings.weight"));
  PIXTRAL_ASSIGN_OR_RETURN(d->norm_, loader.Get("norm.weight"));
  PIXTRAL_ASSIGN_OR_RETURN(d->output_, loader.Get("output.weight"));
  for (int i = 0; i < config.n_layers; ++i) {
    PIXTRAL_ASSIGN_OR_RETURN(
        BlockWeights layer, kernels::LoadBlock(loader, absl::StrCat("layers.", i), /*fused=*/true));
    d->layers_.push_back(std::move(layer));
  }
  int num_blocks = cache.num_blocks;
  if (num_blocks == 0) {
    PIXTRAL_ASSIGN_OR_RETURN(num_blocks, BlocksInFreeMemory(*backend, config, cache));
  }
  d->graph_mode_ = DefaultDecodeGraphMode(*backend);
  PIXTRAL_ASSIGN_OR_RETURN(d->cache_,
                           PagedKvCache::Create(*backend, {.num_layers = config.n_layers,
                                                           .num_kv_heads = config.n_kv_heads,
                                                           .head_dim = config.head_dim,
                                                           .block_size = cache.block_size,
                                                           .num_blocks = num_blocks}));
  return d;
}

SequenceId Decoder::AddSequence() {
  const SequenceId id = next_id_++;
  sequences_[id] = Sequence{};
  return id;
}

absl::Status Decoder::Reserve(SequenceId sequence, int64_t num_positions) {
  auto it = sequences_.find(sequence);
  if (it == sequences_.end()) return absl::NotFoundError(absl::StrCat("no sequence ", sequence));
  return cache_->Reserve(num_positions, it->second.blocks);
}

void Decoder::Release(SequenceId sequence) {
  auto it = sequences_.find(sequence);
  if (it == sequences_.end()) return;
  cache_->Free(it->second.blocks);
  sequences_.erase(it);
}

int64_t Decoder::Length(SequenceId sequence) const {
  auto it = sequences_.find(sequence);
  return it == sequences_.end() ? 0 : it->second.length;
}

int Decoder::AttachCachedPrefix(SequenceId sequence, absl::Span<const BlockKey> keys) {
  auto it = sequences_.find(sequence);
  if (it == sequences_.end() || it->second.length > 0 || !it->second.blocks.empty()) return 0;
  Sequence& s = it->second;
  for (const BlockKey& key : keys) {
    const int32_t block = cache_->Find(key);
    if (block < 0) break;
    cache_->Share(block, s.blocks);
  }
  s.length = std::ssize(s.blocks) * cache_->layout().block_size;
  return static_cast<int>(s.blocks.size());
}

void Decoder::PublishBlocks(SequenceId sequence, absl::Span<const BlockKey> keys) {
  auto it = sequences_.find(sequence);
  if (it == sequences_.end()) return;
  const Sequence& s = it->second;
  const int64_t full = std::min<int64_t>(s.length / cache_->layout().block_size, std::ssize(keys));
  for (int64_t i = 0; i < full; ++i) cache_->Publish(s.blocks[i], keys[i]);
}

int64_t Decoder::NumBlocks(SequenceId sequence) const {
  auto it = sequences_.find(sequence);
  return it == sequences_.end() ? 0 : std::ssize(it->second.blocks);
}

absl::Status Decoder::CheckTokens(absl::Span<const int32_t> tokens) const {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("token id ", tokens[i], " at index ", i,
                                                     " is outside the vocabulary [0, ",
                                                     config_.vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status Decoder::Validate(absl::Span<const StepInput> batch) const {
  if (batch.empty()) return absl::InvalidArgumentError("empty batch");
  absl::flat_hash_set<SequenceId> seen;
  int64_t blocks_needed = 0;
  const int64_t block = cache_->layout().block_size;
  for (const StepInput& in : batch) {
    auto it = sequences_.find(in.sequence);
    if (it == sequences_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("no sequence ", in.sequence));
    }
    if (!seen.insert(in.sequence).second) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", in.sequence, " twice in a step"));
    }
    if (in.tokens.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", in.sequence, ": no tokens"));
    }
    PIXTRAL_RETURN_IF_ERROR(CheckTokens(in.tokens));
    const absl::Span<const int32_t> prompt = PromptPart(in);
    const int64_t image_tokens = std::count(prompt.begin(), prompt.end(), image_token_id_);
    const int64_t rows = in.image_features.defined() ? in.image_features.dim(0) : 0;
    if (rows != image_tokens) {
      return absl::InvalidArgumentError(absl::StrCat(
          "sequence ", in.sequence, ": ", image_tokens, " [IMG] tokens but ", rows,
          " image feature rows (the images' patch counts must match the [IMG] tokens)"));
    }
    if (rows > 0 && (in.image_features.dtype() != DType::kF32 ||
                     in.image_features.shape() != std::vector<int64_t>{rows, config_.dim})) {
      return absl::InvalidArgumentError(
          absl::StrCat("image features are ", in.image_features.DebugString(), ", expected F32[",
                       rows, ", ", config_.dim, "]"));
    }
    const Sequence& s = it->second;
    const int64_t length = s.length + static_cast<int64_t>(in.tokens.size());
    if (length > cache_->capacity()) {
      return absl::ResourceExhaustedError(absl::StrCat("sequence ", in.sequence, " of ", length,
                                                       " tokens is longer than the KV cache (",
                                                       cache_->capacity(), " positions)"));
    }
    blocks_needed +=
        std::max<int64_t>(0, (length + block - 1) / block - static_cast<int64_t>(s.blocks.size()));
  }
  if (blocks_needed > cache_->num_free_blocks()) {
    return absl::ResourceExhaustedError(absl::StrCat("this step needs ", blocks_needed,
                                                     " KV cache blocks, ",
                                                     cache_->num_free_blocks(), " are free"));
  }
  return absl::OkStatus();
}

// The multimodal merge: text embeddings, then each [IMG] row overwritten by its image feature.
absl::Status Decoder::Embed(absl::Span<const StepInput> batch, const Tensor& ids, const Tensor& x) {
  backend_->Gather(tok_embeddings_, ids, x);
  int64_t offset = 0;
  for (const StepInput& in : batch) {
    std::vector<int32_t> rows;
    const absl::Span<const int32_t> prompt = PromptPart(in);
    for (size_t i = 0; i < prompt.size(); ++i) {
      if (prompt[i] == image_token_id_) rows.push_back(static_cast<int32_t>(offset + i));
    }
    if (!rows.empty()) {
      PIXTRAL_ASSIGN_OR_RETURN(Tensor r, kernels::ToBackend(*backend_, rows, {std::ssize(rows)}));
      backend_->Scatter(in.image_features, r, x);
    }
    offset += std::ssize(in.tokens);
  }
  return absl::OkStatus();
}

void Decoder::SetDecodeGraphs(DecodeGraphMode mode) {
  graph_mode_ = mode;
  graphs_.clear();
}

void Decoder::Layers(const LayerTensors& t) {
  Backend& b = *backend_;
  const DecoderConfig& c = config_;
  const int64_t rows = t.x.dim(0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  // Each block's pre-norm and residual add: inside its products where the backend fuses them
  // (one decode row on the GPU), else one AddRmsNorm pass between the products.
  const bool fused = b.FusesRmsNormIntoMatMul(rows);
  const auto norm_then_product = [&](const Tensor& norm, const Tensor& w, const Tensor& y) {
    if (fused) {
      b.RmsNormMatMul(t.x, norm, c.norm_eps, w, t.hn, y);
    } else {
      b.MatMul(t.hn, w, nullptr, y);  // hn: normalized by the pass before
    }
  };
  const auto product_into_residual = [&](const Tensor& a, const Tensor& w,
                                         const Tensor* next_norm) {
    if (fused) {
      b.MatMulAddTo(a, w, t.h, t.x);
      return;
    }
    b.MatMul(a, w, nullptr, t.h);
    if (next_norm != nullptr) {
      b.AddRmsNorm(t.x, t.h, *next_norm, c.norm_eps, t.hn);
    } else {
      b.Add(t.x, t.h, t.x);
    }
  };
  if (!fused && !layers_.empty()) b.RmsNorm(t.x, layers_[0].attention_norm, c.norm_eps, t.hn);
  for (size_t l = 0; l < layers_.size(); ++l) {
    const BlockWeights& w = layers_[l];
    // wq, wk, wv stacked: one pass over the weights; attention reads the three column ranges.
    norm_then_product(w.attention_norm, w.wqkv, t.qkv);
    b.PagedAttention(t.qkv, &t.rope, t.paged, scale, cache_->keys(l), cache_->values(l), t.attn);
    product_into_residual(t.attn.Reshape({rows, c.n_heads * c.head_dim}), w.wo, &w.ffn_norm);
    // w1, w3 stacked; with the fused norm, SwiGLU inside the product too.
    if (fused) {
      b.RmsNormMatMulSwiGlu(t.x, w.ffn_norm, c.norm_eps, w.w13, t.hn, t.gate_up, t.gate);
    } else {
      norm_then_product(w.ffn_norm, w.w13, t.gate_up);
      b.SwiGlu(t.gate_up, t.gate);
    }
    product_into_residual(t.gate, w.w2,
                          l + 1 < layers_.size() ? &layers_[l + 1].attention_norm : nullptr);
  }
}

absl::StatusOr<Tensor> Decoder::Run(absl::Span<const StepInput> batch) {
  PIXTRAL_RETURN_IF_ERROR(Validate(batch));
  // The ops' scratch now, so that no op fails to get it midway (ResourceExhausted, nothing run);
  // a decode step on the fixed buffers is padded to as many as kMaxDecodeGraphRows rows and to
  // its context bucket.
  int64_t step_rows = 0, longest = 0;
  for (const StepInput& in : batch) {
    step_rows += std::ssize(in.tokens);
    longest = std::max(longest, sequences_.at(in.sequence).length + std::ssize(in.tokens));
  }
  PIXTRAL_RETURN_IF_ERROR(backend_->ReserveScratch(
      StepScratchBytes(DecodeStepShape::Of(config_), step_rows, std::ssize(batch), longest)));
  if (graph_mode_ != DecodeGraphMode::kOff) {
    PIXTRAL_ASSIGN_OR_RETURN(Tensor logits, RunOnDecodeBuffers(batch));
    if (logits.defined()) return logits;
  }
  Backend& b = *backend_;
  const DecoderConfig& c = config_;

  // Flatten the batch: token ids, their positions, attention ranges and the rows to project.
  std::vector<int32_t> ids, positions, logit_rows;
  std::vector<PagedSequence> attention;
  for (const StepInput& in : batch) {
    Sequence& s = sequences_[in.sequence];
    const int32_t begin = static_cast<int32_t>(ids.size()), n = std::ssize(in.tokens);
    PIXTRAL_RETURN_IF_ERROR(cache_->Reserve(s.length + n, s.blocks));  // Validate counted them
    attention.push_back({begin, n, static_cast<int32_t>(s.length), s.blocks});
    for (int32_t i = 0; i < n; ++i) {
      ids.push_back(in.tokens[i]);
      positions.push_back(static_cast<int32_t>(s.length) + i);
      if (in.all_logits || i == n - 1) logit_rows.push_back(begin + i);
    }
  }
  const int64_t t = std::ssize(ids), r = std::ssize(logit_rows);
  const int64_t hd = c.head_dim;
  LayerTensors lt;
  PIXTRAL_ASSIGN_OR_RETURN(Tensor ids_t, kernels::ToBackend(b, ids, {t}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor rows_t, kernels::ToBackend(b, logit_rows, {r}));
  PIXTRAL_ASSIGN_OR_RETURN(
      lt.rope,
      kernels::ToBackend(b, kernels::RopeTable1D(positions, hd, c.rope_theta), {t, hd / 2, 2}));
  PIXTRAL_ASSIGN_OR_RETURN(lt.paged, kernels::MakePagedBatch(b, attention));
  PIXTRAL_RETURN_IF_ERROR(AllocLayerActivations(b, DecodeStepShape::Of(c), t, lt));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor last, b.Alloc(DType::kF32, {r, c.dim}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor logits, b.Alloc(DType::kF32, {r, c.vocab_size}));

  PIXTRAL_RETURN_IF_ERROR(Embed(batch, ids_t, lt.x));
  Layers(lt);
  b.Gather(lt.x, rows_t, last);  // only the positions whose logits were asked for
  b.RmsNormMatMul(last, norm_, c.norm_eps, output_, last, logits);
  for (const StepInput& in : batch) sequences_[in.sequence].length += std::ssize(in.tokens);
  return logits;
}

absl::StatusOr<Tensor> Decoder::RunOnDecodeBuffers(absl::Span<const StepInput> batch) {
  const int n = static_cast<int>(batch.size());
  int64_t positions = 0;
  for (const StepInput& in : batch) {
    const bool image = in.image_features.defined() && in.image_features.dim(0) > 0;
    if (in.tokens.size() != 1 || in.all_logits || image) return Tensor();
    positions = std::max(positions, sequences_.at(in.sequence).length + 1);
  }
  const int rows = DecodeRowBucket(n);
  const int64_t context = DecodeContextBucket(positions);
  if (rows == 0 || context == 0) return Tensor();
  Backend& b = *backend_;
  if (decode_buffers_ == nullptr || decode_buffers_->rows() < rows) {
    graphs_.clear();  // recorded on the old buffers
    decode_buffers_.reset();
    absl::StatusOr<std::unique_ptr<DecodeStepBuffers>> buffers = DecodeStepBuffers::Create(
        b, DecodeStepShape::Of(config_), cache_->layout().block_size, rows);
    if (!buffers.ok()) {
      LOG(WARNING) << "decode steps go back to the ordinary path: " << buffers.status();
      graph_mode_ = DecodeGraphMode::kOff;
      return Tensor();
    }
    decode_buffers_ = *std::move(buffers);
  }
  const DecodeStepTensors s = decode_buffers_->For(b, rows, context);

  std::vector<int32_t> tokens;
  std::vector<int64_t> lengths;
  std::vector<absl::Span<const int32_t>> blocks;
  for (const StepInput& in : batch) {
    Sequence& seq = sequences_[in.sequence];
    PIXTRAL_RETURN_IF_ERROR(cache_->Reserve(seq.length + 1, seq.blocks));  // Validate counted them
    tokens.push_back(in.tokens[0]);
    lengths.push_back(seq.length);
    blocks.push_back(seq.blocks);
  }
  UploadDecodeStep(b,
                   PadDecodeStep(rows, context, cache_->layout().block_size, config_.head_dim,
                                 config_.rope_theta, tokens, lengths, blocks),
                   s);

  const LayerTensors t = s;  // the layers' share of the step's tensors
  // Captures by value: a recording replays these ops on these tensors.
  const std::function<absl::Status()> ops = [this, t, ids = s.ids, logits = s.logits] {
    backend_->Gather(tok_embeddings_, ids, t.x);
    Layers(t);
    backend_->RmsNormMatMul(t.x, norm_, config_.norm_eps, output_, t.hn, logits);
    return absl::OkStatus();
  };
  const DecodeGraphKey key{rows, context};
  auto it = graphs_.find(key);
  if (it != graphs_.end() && it->second != nullptr) {
    it->second->Replay();
    ++decode_replays_;
  } else {
    PIXTRAL_RETURN_IF_ERROR(ops());  // the first step of a key also tunes its products
    if (graph_mode_ == DecodeGraphMode::kRecorded && it == graphs_.end()) {
      absl::StatusOr<std::unique_ptr<kernels::RecordedOps>> recorded = b.Record(ops);
      if (!recorded.ok()) {
        LOG(WARNING) << "decode steps of " << rows << " rows and " << context
                     << " positions are not recorded: " << recorded.status();
      }
      graphs_[key] = recorded.ok() ? *std::move(recorded) : nullptr;
    }
  }
  for (const StepInput& in : batch) sequences_[in.sequence].length += 1;
  return s.logits.Rows(0, n);
}

absl::StatusOr<std::vector<std::vector<float>>> Decoder::Forward(
    absl::Span<const StepInput> batch) {
  PIXTRAL_ASSIGN_OR_RETURN(Tensor logits, Run(batch));
  const std::vector<float> host = kernels::ToHost(*backend_, logits);
  std::vector<std::vector<float>> out;
  auto next = host.begin();
  for (const StepInput& in : batch) {
    const int64_t rows = in.all_logits ? std::ssize(in.tokens) : 1;
    out.emplace_back(next, next + rows * config_.vocab_size);
    next += rows * config_.vocab_size;
  }
  return out;
}

absl::Status Decoder::ValidateSampledBatch(absl::Span<const StepInput> batch,
                                           absl::Span<const kernels::RowSampling> draws) {
  if (draws.size() != batch.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(draws.size(), " draws for a batch of ", batch.size()));
  }
  for (const StepInput& in : batch) {
    if (in.all_logits) return absl::InvalidArgumentError("ForwardSampled samples last tokens only");
  }
  for (const kernels::RowSampling& draw : draws) {
    PIXTRAL_RETURN_IF_ERROR(kernels::ValidateRowSampling(draw.temperature, draw.top_p));
  }
  return absl::OkStatus();
}

absl::StatusOr<SampledToken> Decoder::SampledResult(SequenceId sequence, int32_t id,
                                                    float logprob) {
  if (id < 0) {
    return absl::InternalError(
        absl::StrCat("sequence ", sequence, ": its logits hold a NaN or +inf, or only -inf"));
  }
  return SampledToken{.id = id, .logprob = logprob};
}

absl::StatusOr<std::vector<absl::StatusOr<SampledToken>>> Decoder::ForwardSampled(
    absl::Span<const StepInput> batch, absl::Span<const kernels::RowSampling> draws) {
  PIXTRAL_RETURN_IF_ERROR(ValidateSampledBatch(batch, draws));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor logits, Run(batch));
  Backend& b = *backend_;
  const int64_t rows = std::ssize(batch);
  PIXTRAL_ASSIGN_OR_RETURN(Tensor ids, b.Alloc(DType::kI32, {rows}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor logprobs, b.Alloc(DType::kF32, {rows}));
  b.SampleRows(logits, draws, ids, logprobs);
  std::vector<int32_t> host_ids(rows);
  std::vector<float> host_logprobs(rows);
  b.CopyToHost(ids, host_ids.data());
  b.CopyToHost(logprobs, host_logprobs.data());
  std::vector<absl::StatusOr<SampledToken>> out;
  for (int64_t i = 0; i < rows; ++i) {
    out.push_back(SampledResult(batch[i].sequence, host_ids[i], host_logprobs[i]));
  }
  return out;
}

}  // namespace pixtral
