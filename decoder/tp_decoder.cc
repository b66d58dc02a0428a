#include "decoder/tp_decoder.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "glog/logging.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/cpu_communicator.h"
#include "kernels/rope.h"
#include "kernels/sharded_sampling.h"
#include "kernels/weight_shards.h"

namespace pixtral {
namespace {

using kernels::Backend;
using kernels::DType;
using kernels::MatrixSlice;
using kernels::Tensor;

// The prompt part of a step's tokens: the only tokens where [IMG] is a placeholder.
absl::Span<const int32_t> PromptPart(const StepInput& in) {
  return in.prompt_tokens < 0
             ? in.tokens
             : in.tokens.first(std::min<size_t>(in.prompt_tokens, in.tokens.size()));
}

// Greedy rows sampled on the device: Backend::SampleRows on the rank's shard gives each row's
// local argmax and its logit minus the shard's log-sum-exp, a gather reads the argmax's logit,
// and one all-gather of 12 bytes a row a rank leaves every rank the global argmax (the largest
// logit, ties to the lower rank: the lower ids) and log-sum-exp. Only those bytes cross to the
// host, not the [rows, vocab / size] shard. nullopt on every rank alike (then the caller samples
// on the host) when some rank's shard row has no argmax (a NaN or +inf logit, or only -inf
// ones: which of these only the whole row tells) or its buffers could not be allocated.
std::optional<std::vector<kernels::SampledRow>> GreedyOverShards(
    Backend& b, kernels::Communicator& comm, const Tensor& logits,
    absl::Span<const kernels::RowSampling> draws, const TpShard& shard) {
  struct Local {
    float max, lse;
    int32_t id;  // in the whole vocabulary; -1: no argmax here, -2: no buffers
  };
  const int64_t rows = logits.dim(0), width = logits.dim(1);
  std::vector<Local> local(rows, Local{0, 0, -2});
  absl::StatusOr<Tensor> ids = b.Alloc(DType::kI32, {rows});
  absl::StatusOr<Tensor> logprobs = b.Alloc(DType::kF32, {rows});
  absl::StatusOr<Tensor> flat = b.Alloc(DType::kI32, {rows});
  absl::StatusOr<Tensor> max = b.Alloc(DType::kF32, {rows, 1});
  if (ids.ok() && logprobs.ok() && flat.ok() && max.ok()) {
    b.SampleRows(logits, draws, *ids, *logprobs);
    std::vector<int32_t> host_ids(rows), host_flat(rows);
    b.CopyToHost(*ids, host_ids.data());
    for (int64_t i = 0; i < rows; ++i) {
      host_flat[i] = static_cast<int32_t>(i * width + std::max(host_ids[i], 0));
    }
    b.CopyFromHost(host_flat.data(), *flat);
    b.Gather(logits.Reshape({rows * width, 1}), *flat, *max);  // each row's argmax logit
    std::vector<float> host_logprobs(rows), host_max(rows);
    b.CopyToHost(*logprobs, host_logprobs.data());
    b.CopyToHost(*max, host_max.data());
    for (int64_t i = 0; i < rows; ++i) {
      local[i] = host_ids[i] < 0 ? Local{0, 0, -1}
                                 : Local{host_max[i], host_max[i] - host_logprobs[i],
                                         static_cast<int32_t>(shard.vocab_begin + host_ids[i])};
    }
  }
  std::vector<Local> all(rows * comm.size());
  comm.AllGather(local.data(), rows * sizeof(Local), all.data());
  std::vector<kernels::SampledRow> out(rows);
  for (int64_t i = 0; i < rows; ++i) {
    const Local* best = nullptr;
    double lse_max = -std::numeric_limits<double>::infinity();
    for (int r = 0; r < comm.size(); ++r) {
      const Local& l = all[r * rows + i];
      if (l.id < 0) return std::nullopt;
      if (best == nullptr || l.max > best->max) best = &l;
      lse_max = std::max<double>(lse_max, l.lse);
    }
    double sum = 0;
    for (int r = 0; r < comm.size(); ++r) sum += std::exp(all[r * rows + i].lse - lse_max);
    out[i] = {.id = best->id, .logprob = static_cast<float>(best->max - (lse_max + std::log(sum)))};
  }
  return out;
}

}  // namespace

absl::StatusOr<TpShard> ShardFor(const DecoderConfig& c, int rank, int size) {
  if (size < 1 || rank < 0 || rank >= size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", rank, " of ", size));
  }
  if (c.n_heads % size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor parallelism over ", size,
                                                   " ranks (--tp) needs a multiple of ", size,
                                                   " attention heads; the model has ", c.n_heads));
  }
  if (c.n_kv_heads % size != 0 && size % c.n_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("tensor parallelism over ", size,
                                                   " ranks (--tp) cannot split ", c.n_kv_heads,
                                                   " KV heads (one must divide the other)"));
  }
  TpShard s;
  s.heads = c.n_heads / size;
  s.head_begin = rank * s.heads;
  if (c.n_kv_heads >= size) {
    s.kv_heads = c.n_kv_heads / size;
    s.kv_head_begin = rank * s.kv_heads;
  } else {  // KV heads replicated: this rank's query heads all read the one their group reads
    s.kv_heads = 1;
    s.kv_head_begin = s.head_begin / (c.n_heads / c.n_kv_heads);
  }
  s.hidden_begin = c.hidden_dim * rank / size;
  s.hidden = c.hidden_dim * (rank + 1) / size - s.hidden_begin;
  s.vocab_begin = c.vocab_size * rank / size;
  s.vocab = c.vocab_size * (rank + 1) / size - s.vocab_begin;
  return s;
}

absl::StatusOr<std::vector<std::unique_ptr<kernels::Communicator>>> CpuCommunicatorsFor(
    absl::Span<Backend* const> backends) {
  for (Backend* b : backends) {
    if (b->NativeStream() != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("the in-process communicator works on host backends, not \"",
                       std::string(b->name()), "\""));
    }
  }
  return kernels::NewCpuCommunicators(static_cast<int>(backends.size()));
}

TensorParallelOptions CpuTensorParallelGroup(int size) {
  return {.size = size,
          .make_backend = [](int) -> absl::StatusOr<std::unique_ptr<Backend>> {
            return kernels::NewCpuBackend();
          },
          .make_communicators = CpuCommunicatorsFor};
}

// One rank's weights (its slices), cache and communicator.
struct TpDecoder::Rank {
  struct Layer {
    Tensor attention_norm, ffn_norm;
    Tensor wqkv;  // its heads' rows of wq, then its KV heads' of wk and wv
    Tensor wo;    // the input columns of its heads
    Tensor w13;   // its hidden units' rows of w1, then of w3
    Tensor w2;    // the input columns of its hidden units
  };

  std::unique_ptr<Backend> owned_backend;  // ranks >= 1
  Backend* backend = nullptr;
  std::unique_ptr<kernels::Communicator> comm;
  TpShard shard{};
  Tensor tok_embeddings, norm, output;
  std::vector<Layer> layers;
  std::unique_ptr<PagedKvCache> own_cache;  // ranks >= 1; rank 0's is Decoder::cache_
  PagedKvCache* cache = nullptr;
  // Decode steps on fixed buffers (decoder/decode_graphs.h), sized for this rank's shard, and
  // their recordings by (rows, context). Every rank's buffers grow on the same steps, and every
  // rank records the same keys in the same order.
  std::unique_ptr<DecodeStepBuffers> decode_buffers;
  DecodeGraphs graphs;
  // The scratch reserved on this rank's backend so far (grown on the same steps on every rank).
  int64_t reserved_scratch = 0;
  // How this rank ran the last step (read by Step on the caller's thread after the ranks).
  enum class Ran { kOrdinary, kBuffers, kReplayed, kNoBuffers } ran = Ran::kOrdinary;
};

// What a rank's step tensors hold: its heads, KV heads, hidden units and vocabulary range, the
// residual stream whole.
DecodeStepShape TpDecoder::RankShape(const TpShard& shard) const {
  return {.dim = config_.dim,
          .head_dim = config_.head_dim,
          .heads = shard.heads,
          .kv_heads = shard.kv_heads,
          .hidden = shard.hidden,
          .vocab = shard.vocab};
}

// Threads for ranks 1.. that wait for work; rank 0 works on the caller's thread.
class TpDecoder::Threads {
 public:
  explicit Threads(int size) {
    for (int r = 1; r < size; ++r) threads_.emplace_back([this, r] { Loop(r); });
  }

  ~Threads() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    start_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

  void Run(const std::function<void(int)>& fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = &fn;
      pending_ = static_cast<int>(threads_.size());
      ++generation_;
    }
    start_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void Loop(int rank) {
    int64_t seen = 0;
    while (true) {
      const std::function<void(int)>* job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        start_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      (*job)(rank);
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex mu_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

// A step flattened once on the caller's thread: what every rank computes over.
struct TpDecoder::Plan {
  std::vector<int32_t> ids, positions, logit_rows;
  std::vector<kernels::PagedSequence> attention;
  // Set when the step runs on the decode buffers: its padded inputs, the same on every rank
  // (every rank's cache uses the same block ids).
  std::optional<DecodeStepInputs> decode;
};

TpDecoder::TpDecoder(Backend* backend, const DecoderConfig& config, int image_token_id)
    : Decoder(backend, config, image_token_id) {}

TpDecoder::~TpDecoder() {
  // Each rank's tensors are freed on its own thread (a CUDA backend's current device).
  if (threads_ != nullptr) OnRanks([&](int r) { ranks_[r].reset(); });
}

Backend& TpDecoder::rank_backend(int r) const { return *ranks_[r]->backend; }
kernels::Communicator& TpDecoder::rank_communicator(int r) const { return *ranks_[r]->comm; }
void TpDecoder::OnRanks(const std::function<void(int)>& fn) { threads_->Run(fn); }

absl::StatusOr<std::unique_ptr<TpDecoder>> TpDecoder::Create(
    Backend* backend, const DecoderConfig& config, int image_token_id,
    const SafetensorsCheckpoint& weights, std::shared_ptr<const void> owner,
    const CacheOptions& cache, const TensorParallelOptions& tp) {
  if (config.sliding_window.has_value()) {
    return absl::UnimplementedError("sliding-window attention is not supported");
  }
  const int size = tp.size;
  if (size < 1) return absl::InvalidArgumentError(absl::StrCat("--tp must be >= 1, not ", size));
  if (size > 1 && !tp.make_backend) {
    return absl::InvalidArgumentError("tensor parallelism needs a backend factory");
  }
  if (!tp.make_communicators) return absl::InvalidArgumentError("no communicator factory");
  std::unique_ptr<TpDecoder> d(new TpDecoder(backend, config, image_token_id));
  for (int r = 0; r < size; ++r) {
    auto rank = std::make_unique<Rank>();
    PIXTRAL_ASSIGN_OR_RETURN(rank->shard, ShardFor(config, r, size));
    d->ranks_.push_back(std::move(rank));
  }
  d->ranks_[0]->backend = backend;
  d->threads_ = std::make_unique<Threads>(size);

  // Backends, on their ranks' threads.
  std::vector<absl::Status> status(size);
  d->OnRanks([&](int r) {
    if (r == 0) return;
    absl::StatusOr<std::unique_ptr<Backend>> b = tp.make_backend(r);
    if (!b.ok()) {
      status[r] = b.status();
      return;
    }
    d->ranks_[r]->owned_backend = *std::move(b);
    d->ranks_[r]->backend = d->ranks_[r]->owned_backend.get();
  });
  for (const absl::Status& s : status) PIXTRAL_RETURN_IF_ERROR(s);
  std::vector<Backend*> backends;
  for (const auto& rank : d->ranks_) backends.push_back(rank->backend);
  PIXTRAL_ASSIGN_OR_RETURN(std::vector<std::unique_ptr<kernels::Communicator>> comms,
                           tp.make_communicators(backends));
  if (std::ssize(comms) != size) return absl::InternalError("communicator group of wrong size");
  for (int r = 0; r < size; ++r) d->ranks_[r]->comm = std::move(comms[r]);

  // Weights, every rank at once; then the cache, sized for the rank with the least room.
  d->OnRanks([&](int r) { status[r] = d->LoadRank(r, weights, owner); });
  for (const absl::Status& s : status) PIXTRAL_RETURN_IF_ERROR(s);
  const TpShard& s0 = d->ranks_[0]->shard;
  const int64_t block_bytes = int64_t{2} * config.n_layers * cache.block_size * s0.kv_heads *
                              config.head_dim * DTypeSize(backend->KvCacheDType());
  int num_blocks = cache.num_blocks;
  if (num_blocks == 0) {
    std::vector<int64_t> free(size, 0);
    d->OnRanks([&](int r) {
      absl::StatusOr<int64_t> f = d->ranks_[r]->backend->FreeMemoryBytes();
      status[r] = f.status();
      if (f.ok()) free[r] = *f;
    });
    for (const absl::Status& s : status) PIXTRAL_RETURN_IF_ERROR(s);
    const int64_t least = *std::min_element(free.begin(), free.end());
    const int64_t blocks =
        static_cast<int64_t>(static_cast<double>(least) * cache.free_memory_fraction) / block_bytes;
    if (blocks < 1) {
      return absl::ResourceExhaustedError(absl::StrCat("no room for a KV cache: ", least,
                                                       " bytes free, a block takes ", block_bytes));
    }
    num_blocks = static_cast<int>(std::min<int64_t>(blocks, std::numeric_limits<int>::max()));
    LOG(INFO) << "KV cache sized from free device memory: " << num_blocks << " blocks of "
              << block_bytes << " bytes on each of " << size << " ranks";
  }
  const KvCacheLayout layout{.num_layers = config.n_layers,
                             .num_kv_heads = static_cast<int>(s0.kv_heads),
                             .head_dim = config.head_dim,
                             .block_size = cache.block_size,
                             .num_blocks = num_blocks};
  d->OnRanks([&](int r) {
    Rank& rank = *d->ranks_[r];
    absl::StatusOr<std::unique_ptr<PagedKvCache>> c = PagedKvCache::Create(*rank.backend, layout);
    status[r] = c.status();
    if (!c.ok()) return;
    if (r == 0) {
      d->cache_ = *std::move(c);  // the bookkeeping every rank's block ids follow
      rank.cache = d->cache_.get();
    } else {
      rank.own_cache = *std::move(c);
      rank.cache = rank.own_cache.get();
    }
  });
  for (const absl::Status& s : status) PIXTRAL_RETURN_IF_ERROR(s);
  d->graph_mode_ = DefaultDecodeGraphMode(*backend);
  LOG(INFO) << "tensor-parallel decoder: " << size << " ranks on " << backend->name() << ", "
            << s0.heads << " heads and " << s0.kv_heads << " KV heads a rank, " << num_blocks
            << " cache blocks";
  return d;
}

absl::Status TpDecoder::LoadRank(int r, const SafetensorsCheckpoint& weights,
                                 const std::shared_ptr<const void>& owner) {
  Rank& rank = *ranks_[r];
  const TpShard& s = rank.shard;
  const int64_t hd = config_.head_dim;
  auto load = [&](std::vector<MatrixSlice> slices) {
    return kernels::LoadSlices(*rank.backend, weights, owner, slices);
  };
  PIXTRAL_ASSIGN_OR_RETURN(rank.tok_embeddings, load({{.name = "tok_embeddings.weight"}}));
  PIXTRAL_ASSIGN_OR_RETURN(rank.norm, load({{.name = "norm.weight"}}));
  PIXTRAL_ASSIGN_OR_RETURN(
      rank.output, load({{.name = "output.weight", .row_begin = s.vocab_begin, .rows = s.vocab}}));
  for (int l = 0; l < config_.n_layers; ++l) {
    const std::string p = absl::StrCat("layers.", l, ".");
    Rank::Layer layer;
    PIXTRAL_ASSIGN_OR_RETURN(layer.attention_norm, load({{.name = p + "attention_norm.weight"}}));
    PIXTRAL_ASSIGN_OR_RETURN(layer.ffn_norm, load({{.name = p + "ffn_norm.weight"}}));
    PIXTRAL_ASSIGN_OR_RETURN(layer.wqkv, load({{.name = p + "attention.wq.weight",
                                                .row_begin = s.head_begin * hd,
                                                .rows = s.heads * hd},
                                               {.name = p + "attention.wk.weight",
                                                .row_begin = s.kv_head_begin * hd,
                                                .rows = s.kv_heads * hd},
                                               {.name = p + "attention.wv.weight",
                                                .row_begin = s.kv_head_begin * hd,
                                                .rows = s.kv_heads * hd}}));
    PIXTRAL_ASSIGN_OR_RETURN(layer.wo, load({{.name = p + "attention.wo.weight",
                                              .col_begin = s.head_begin * hd,
                                              .cols = s.heads * hd}}));
    PIXTRAL_ASSIGN_OR_RETURN(
        layer.w13,
        load({{.name = p + "feed_forward.w1.weight", .row_begin = s.hidden_begin, .rows = s.hidden},
              {.name = p + "feed_forward.w3.weight",
               .row_begin = s.hidden_begin,
               .rows = s.hidden}}));
    PIXTRAL_ASSIGN_OR_RETURN(layer.w2, load({{.name = p + "feed_forward.w2.weight",
                                              .col_begin = s.hidden_begin,
                                              .cols = s.hidden}}));
    rank.layers.push_back(std::move(layer));
  }
  return absl::OkStatus();
}

absl::StatusOr<TpDecoder::Plan> TpDecoder::Prepare(absl::Span<const StepInput> batch) {
  PIXTRAL_RETURN_IF_ERROR(Validate(batch));
  Plan plan;
  for (const StepInput& in : batch) {
    Sequence& s = sequences_[in.sequence];
    const int32_t begin = static_cast<int32_t>(plan.ids.size()), n = std::ssize(in.tokens);
    PIXTRAL_RETURN_IF_ERROR(cache_->Reserve(s.length + n, s.blocks));  // Validate counted them
    plan.attention.push_back({begin, n, static_cast<int32_t>(s.length), s.blocks});
    for (int32_t i = 0; i < n; ++i) {
      plan.ids.push_back(in.tokens[i]);
      plan.positions.push_back(static_cast<int32_t>(s.length) + i);
      if (in.all_logits || i == n - 1) plan.logit_rows.push_back(begin + i);
    }
  }
  if (graph_mode_ == DecodeGraphMode::kOff) return plan;
  // Decode steps only (one token each, no image features) within the buckets, as Decoder's.
  int64_t positions = 0;
  std::vector<int64_t> lengths;
  std::vector<absl::Span<const int32_t>> blocks;
  for (const StepInput& in : batch) {
    const bool image = in.image_features.defined() && in.image_features.dim(0) > 0;
    if (in.tokens.size() != 1 || in.all_logits || image) return plan;
    const Sequence& s = sequences_.at(in.sequence);
    positions = std::max(positions, s.length + 1);
    lengths.push_back(s.length);
    blocks.push_back(s.blocks);
  }
  const int rows = DecodeRowBucket(static_cast<int>(batch.size()));
  const int64_t context = DecodeContextBucket(positions);
  if (rows == 0 || context == 0) return plan;
  plan.decode = PadDecodeStep(rows, context, cache_->layout().block_size, config_.head_dim,
                              config_.rope_theta, plan.ids, lengths, blocks);
  return plan;
}

void TpDecoder::SetDecodeGraphs(DecodeGraphMode mode) {
  Decoder::SetDecodeGraphs(mode);
  OnRanks([&](int r) { ranks_[r]->graphs.clear(); });  // on the thread of each rank's device
}

int64_t TpDecoder::decode_recordings() const { return std::ssize(ranks_[0]->graphs); }

// Decoder::Layers on one rank's slices, with the two all-reduces of the row-parallel products.
void TpDecoder::RankLayers(Rank& rank, const LayerTensors& t) const {
  Backend& b = *rank.backend;
  kernels::Communicator& comm = *rank.comm;
  const DecoderConfig& c = config_;
  const int64_t rows = t.x.dim(0);
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  const std::vector<Rank::Layer>& layers = rank.layers;
  if (!layers.empty()) b.RmsNorm(t.x, layers[0].attention_norm, c.norm_eps, t.hn);
  for (size_t l = 0; l < layers.size(); ++l) {
    const Rank::Layer& lw = layers[l];
    b.MatMul(t.hn, lw.wqkv, nullptr, t.qkv);
    b.PagedAttention(t.qkv, &t.rope, t.paged, scale, rank.cache->keys(l), rank.cache->values(l),
                     t.attn);
    // This rank's heads' share of wo, then the sum over the ranks.
    b.MatMul(t.attn.Reshape({rows, rank.shard.heads * c.head_dim}), lw.wo, nullptr, t.h);
    comm.AllReduceSum(t.h);
    b.AddRmsNorm(t.x, t.h, lw.ffn_norm, c.norm_eps, t.hn);
    b.MatMul(t.hn, lw.w13, nullptr, t.gate_up);
    b.SwiGlu(t.gate_up, t.gate);
    b.MatMul(t.gate, lw.w2, nullptr, t.h);  // this rank's hidden units' share
    comm.AllReduceSum(t.h);
    if (l + 1 < layers.size()) {
      b.AddRmsNorm(t.x, t.h, layers[l + 1].attention_norm, c.norm_eps, t.hn);
    } else {
      b.Add(t.x, t.h, t.x);
    }
  }
}

// Decoder::RunOnDecodeBuffers on one rank: the inputs uploaded, then the step's ops (the
// embedding, the layers with their all-reduces, the output projection's shard) run directly on
// a key's first step and recorded, replayed on later ones. Collectives inside a recording are
// recorded too (NCCL's on the capturing stream; the CPU communicator's are called again by the
// replayed closure), so every rank replays its own recording in step with the others.
bool TpDecoder::RunRankOnDecodeBuffers(int r, const Plan& plan, Tensor& logits) {
  const DecodeStepInputs& in = *plan.decode;
  Rank& rank = *ranks_[r];
  Backend& b = *rank.backend;
  if (rank.decode_buffers == nullptr || rank.decode_buffers->rows() < in.rows) {
    // Every rank grows its buffers on the same step; they agree on the outcome before any of
    // them issues a collective of the step.
    rank.graphs.clear();  // recorded on the old buffers
    rank.decode_buffers.reset();
    absl::StatusOr<std::unique_ptr<DecodeStepBuffers>> buffers = DecodeStepBuffers::Create(
        b, RankShape(rank.shard), rank.cache->layout().block_size, in.rows);
    int32_t ok = buffers.ok() ? 1 : 0;
    std::vector<int32_t> all_ok(rank.comm->size());
    rank.comm->AllGather(&ok, sizeof(ok), all_ok.data());
    if (std::count(all_ok.begin(), all_ok.end(), 0) > 0) {
      if (!buffers.ok()) {
        LOG(WARNING) << "rank " << r << ": no decode buffers: " << buffers.status();
      }
      rank.ran = Rank::Ran::kNoBuffers;
      return false;
    }
    rank.decode_buffers = *std::move(buffers);
  }
  const DecodeStepTensors s = rank.decode_buffers->For(b, in.rows, in.context);
  UploadDecodeStep(b, in, s);
  const LayerTensors t = s;  // the layers' share of the step's tensors
  // Captures by value: a recording replays these ops on these tensors.
  Rank* const rp = &rank;
  const std::function<absl::Status()> ops = [this, rp, t, ids = s.ids, out = s.logits] {
    Backend& rb = *rp->backend;
    rb.Gather(rp->tok_embeddings, ids, t.x);
    RankLayers(*rp, t);
    rb.RmsNorm(t.x, rp->norm, config_.norm_eps, t.hn);
    rb.MatMul(t.hn, rp->output, nullptr, out);  // this rank's vocabulary range
    return absl::OkStatus();
  };
  const DecodeGraphKey key{in.rows, in.context};
  auto it = rank.graphs.find(key);
  if (it != rank.graphs.end() && it->second != nullptr) {
    it->second->Replay();
    rank.ran = Rank::Ran::kReplayed;
  } else {
    const absl::Status direct = ops();  // the first step of a key also tunes its products
    CHECK(direct.ok()) << direct;       // (its ops cannot fail: they allocate nothing)
    rank.ran = Rank::Ran::kBuffers;
    if (graph_mode_ == DecodeGraphMode::kRecorded && it == rank.graphs.end()) {
      // A rank whose recording fails issues its ops directly from then on; the others still
      // replay theirs, which issue the same collectives in the same order.
      absl::StatusOr<std::unique_ptr<kernels::RecordedOps>> recorded = b.Record(ops);
      if (!recorded.ok()) {
        LOG(WARNING) << "rank " << r << ": decode steps of " << in.rows << " rows and "
                     << in.context << " positions are not recorded: " << recorded.status();
      }
      rank.graphs[key] = recorded.ok() ? *std::move(recorded) : nullptr;
    }
  }
  logits = s.logits.Rows(0, std::ssize(plan.logit_rows));  // the padding rows left out
  return true;
}

// Decoder::Run's layer loop on one rank's slices, with the two all-reduces of the row-parallel
// products. Everything that can fail (allocations) happens before the first collective, and the
// ranks agree on the outcome, so that no rank waits in a collective for one that gave up.
absl::Status TpDecoder::ReserveRankScratch(Rank& rank, const Plan& plan) {
  int64_t longest = 0;
  for (const kernels::PagedSequence& s : plan.attention) {
    longest = std::max<int64_t>(longest, s.start_pos + s.q_len);
  }
  const int64_t bytes = StepScratchBytes(RankShape(rank.shard), std::ssize(plan.ids),
                                         std::ssize(plan.attention), longest);
  if (bytes <= rank.reserved_scratch) return absl::OkStatus();
  // Every rank computes the same size and grows on the same step: they agree on a failure here,
  // before any collective of the step, so that none waits for a rank that gave up.
  const absl::Status reserved = rank.backend->ReserveScratch(bytes);
  int32_t ok = reserved.ok() ? 1 : 0;
  std::vector<int32_t> all_ok(rank.comm->size());
  rank.comm->AllGather(&ok, sizeof(ok), all_ok.data());
  if (!reserved.ok()) return reserved;
  if (std::count(all_ok.begin(), all_ok.end(), 0) > 0) {
    return absl::ResourceExhaustedError(
        "another tensor-parallel rank could not reserve its ops' scratch for the step");
  }
  rank.reserved_scratch = bytes;
  return absl::OkStatus();
}

absl::Status TpDecoder::RunRank(int r, const Plan& plan, absl::Span<const StepInput> batch,
                                Tensor& logits) {
  Rank& rank = *ranks_[r];
  PIXTRAL_RETURN_IF_ERROR(ReserveRankScratch(rank, plan));
  if (plan.decode.has_value() && RunRankOnDecodeBuffers(r, plan, logits)) {
    return absl::OkStatus();
  }
  Backend& b = *rank.backend;
  kernels::Communicator& comm = *rank.comm;
  const DecoderConfig& c = config_;
  const TpShard& s = rank.shard;
  const int64_t t = std::ssize(plan.ids), rows = std::ssize(plan.logit_rows);
  const int64_t hd = c.head_dim;

  struct Buffers : LayerTensors {
    Tensor ids, rows, last, logits;
    std::vector<Tensor> features;  // per input with image rows: rank 0's own, else a copy
    std::vector<Tensor> image_rows;
  } w;
  auto allocate = [&]() -> absl::Status {
    PIXTRAL_ASSIGN_OR_RETURN(w.ids, kernels::ToBackend(b, plan.ids, {t}));
    PIXTRAL_ASSIGN_OR_RETURN(w.rows, kernels::ToBackend(b, plan.logit_rows, {rows}));
    PIXTRAL_ASSIGN_OR_RETURN(
        w.rope, kernels::ToBackend(b, kernels::RopeTable1D(plan.positions, hd, c.rope_theta),
                                   {t, hd / 2, 2}));
    PIXTRAL_ASSIGN_OR_RETURN(w.paged, kernels::MakePagedBatch(b, plan.attention));
    PIXTRAL_RETURN_IF_ERROR(AllocLayerActivations(b, RankShape(s), t, w));
    PIXTRAL_ASSIGN_OR_RETURN(w.last, b.Alloc(DType::kF32, {rows, c.dim}));
    PIXTRAL_ASSIGN_OR_RETURN(w.logits, b.Alloc(DType::kF32, {rows, s.vocab}));
    int64_t offset = 0;
    for (const StepInput& in : batch) {
      std::vector<int32_t> image_rows;
      const absl::Span<const int32_t> prompt = PromptPart(in);
      for (size_t i = 0; i < prompt.size(); ++i) {
        if (prompt[i] == image_token_id_) image_rows.push_back(static_cast<int32_t>(offset + i));
      }
      offset += std::ssize(in.tokens);
      if (image_rows.empty()) continue;
      PIXTRAL_ASSIGN_OR_RETURN(Tensor ri,
                               kernels::ToBackend(b, image_rows, {std::ssize(image_rows)}));
      w.image_rows.push_back(ri);
      if (r == 0) {
        w.features.push_back(in.image_features);
      } else {
        PIXTRAL_ASSIGN_OR_RETURN(Tensor f, b.Alloc(DType::kF32, in.image_features.shape()));
        w.features.push_back(f);
      }
    }
    return absl::OkStatus();
  };
  const absl::Status allocated = allocate();
  int32_t ok = allocated.ok() ? 1 : 0;
  std::vector<int32_t> all_ok(comm.size());
  comm.AllGather(&ok, sizeof(ok), all_ok.data());
  if (!allocated.ok()) return allocated;
  if (std::count(all_ok.begin(), all_ok.end(), 0) > 0) {
    return absl::ResourceExhaustedError("another tensor-parallel rank could not run the step");
  }

  // The multimodal merge: rank 0's image features, broadcast, over the [IMG] rows.
  b.Gather(rank.tok_embeddings, w.ids, w.x);
  for (size_t i = 0; i < w.features.size(); ++i) {
    comm.Broadcast(w.features[i], /*root=*/0);
    b.Scatter(w.features[i], w.image_rows[i], w.x);
  }
  RankLayers(rank, w);
  b.Gather(w.x, w.rows, w.last);
  b.RmsNorm(w.last, rank.norm, c.norm_eps, w.last);
  b.MatMul(w.last, rank.output, nullptr, w.logits);  // this rank's vocabulary range
  logits = w.logits;
  return absl::OkStatus();
}

absl::Status TpDecoder::Step(absl::Span<const StepInput> batch,
                             const std::function<void(int, const Tensor&)>& after) {
  PIXTRAL_ASSIGN_OR_RETURN(const Plan plan, Prepare(batch));
  std::vector<absl::Status> status(ranks_.size());
  OnRanks([&](int r) {
    ranks_[r]->ran = Rank::Ran::kOrdinary;
    Tensor logits;
    status[r] = RunRank(r, plan, batch, logits);
    if (status[r].ok()) after(r, logits);
  });
  const auto ran = [&](Rank::Ran how) {
    return std::all_of(ranks_.begin(), ranks_.end(),
                       [&](const std::unique_ptr<Rank>& rank) { return rank->ran == how; });
  };
  if (ran(Rank::Ran::kReplayed)) ++decode_replays_;
  if (ran(Rank::Ran::kNoBuffers)) {  // as Decoder: decode steps go back to the ordinary path
    LOG(WARNING) << "decode steps go back to the ordinary path: a rank has no decode buffers";
    graph_mode_ = DecodeGraphMode::kOff;
  }
  for (const absl::Status& s : status) PIXTRAL_RETURN_IF_ERROR(s);
  for (const StepInput& in : batch) sequences_[in.sequence].length += std::ssize(in.tokens);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::vector<float>>> TpDecoder::Forward(
    absl::Span<const StepInput> batch) {
  std::vector<std::vector<float>> shards(ranks_.size());
  PIXTRAL_RETURN_IF_ERROR(Step(batch, [&](int r, const Tensor& logits) {
    shards[r] = kernels::ToHost(*ranks_[r]->backend, logits);
  }));
  // Whole rows from the ranks' vocabulary ranges: Forward is for prompt logprobs and tests;
  // sampling (ForwardSampled) never assembles them.
  const int64_t vocab = config_.vocab_size;
  std::vector<std::vector<float>> out;
  int64_t row = 0;
  for (const StepInput& in : batch) {
    const int64_t rows = in.all_logits ? std::ssize(in.tokens) : 1;
    std::vector<float>& logits = out.emplace_back(rows * vocab);
    for (int64_t i = 0; i < rows; ++i, ++row) {
      for (size_t r = 0; r < ranks_.size(); ++r) {
        const TpShard& s = ranks_[r]->shard;
        std::copy_n(shards[r].begin() + row * s.vocab, s.vocab,
                    logits.begin() + i * vocab + s.vocab_begin);
      }
    }
  }
  return out;
}

absl::StatusOr<std::vector<absl::StatusOr<SampledToken>>> TpDecoder::ForwardSampled(
    absl::Span<const StepInput> batch, absl::Span<const kernels::RowSampling> draws) {
  PIXTRAL_RETURN_IF_ERROR(ValidateSampledBatch(batch, draws));
  const bool greedy = std::all_of(draws.begin(), draws.end(), [](const kernels::RowSampling& d) {
    return d.temperature == 0.0f;
  });
  std::vector<kernels::SampledRow> sampled;
  PIXTRAL_RETURN_IF_ERROR(Step(batch, [&](int r, const Tensor& logits) {
    Rank& rank = *ranks_[r];
    std::optional<std::vector<kernels::SampledRow>> rows;
    if (greedy) rows = GreedyOverShards(*rank.backend, *rank.comm, logits, draws, rank.shard);
    if (!rows.has_value()) {  // the whole reference rule over the shards, on the host
      const std::vector<float> shard = kernels::ToHost(*rank.backend, logits);
      rows = kernels::SampleShardedRows(*rank.comm, shard, logits.dim(0), rank.shard.vocab_begin,
                                        config_.vocab_size, draws);
    }
    if (r == 0) sampled = *std::move(rows);
  }));
  std::vector<absl::StatusOr<SampledToken>> out;
  for (size_t i = 0; i < sampled.size(); ++i) {
    out.push_back(SampledResult(batch[i].sequence, sampled[i].id, sampled[i].logprob));
  }
  return out;
}

}  // namespace pixtral
