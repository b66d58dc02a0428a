#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "engine/block_hash.h"
#include "services/common/metrics_catalog.h"

namespace pixtral {
namespace {

absl::Status ValidateRequest(const GenerationRequest& request) {
  if (request.max_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be >= 0, got ", request.max_tokens));
  }
  if (request.prompt.tokens.empty()) return absl::InvalidArgumentError("empty prompt");
  if (static_cast<int64_t>(request.prompt.tokens.size()) + request.max_tokens >
      std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError("prompt plus max_tokens is too long");
  }
  return ValidateSamplingParams(request.sampling);
}

int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

struct Scheduler::Request {
  Ticket ticket;
  GenerationRequest request;
  Callbacks callbacks;
  Sampler sampler;
  Completion completion;
  // The sequence's tokens: the prompt, then each generated token once it is fed back. After a
  // preemption all of them are recomputed, the generated ones as ordinary tokens.
  std::vector<int32_t> tokens;
  std::vector<uint64_t> keys;        // the prefix-cache key of each position of `tokens`
  std::vector<BlockKey> block_keys;  // the chain over the full blocks computed so far
  int64_t prompt_length = 0;
  ModelRunner::SequenceId sequence = -1;  // -1 while waiting
  int64_t computed = 0;                   // positions in the sequence's cache
  int64_t last_token_step = -1;           // the step that sampled the last token while running
  bool finished = false;
  bool admitted_before = false;  // true once admitted (a preempted request comes back)
  std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();

  bool started() const { return sequence >= 0; }
  int64_t remaining() const { return std::ssize(tokens) - computed; }
  // One generated token to feed back, nothing else: a decode row.
  bool decoding() const {
    return started() && remaining() == 1 && std::ssize(tokens) > prompt_length;
  }
};

Scheduler::Scheduler(ModelRunner& runner, const Options& options)
    : runner_(runner), options_(options) {}

Scheduler::~Scheduler() { Stop(); }

absl::StatusOr<Scheduler::Ticket> Scheduler::Submit(GenerationRequest request,
                                                    Callbacks callbacks) {
  // A refused request gives its pin back: the caller has nothing left to hold it for.
  const int64_t pin = request.prefix_pin;
  auto refuse = [&](absl::Status status) {
    Unpin(pin);
    return status;
  };
  if (absl::Status status = ValidateRequest(request); !status.ok()) return refuse(status);
  absl::StatusOr<Sampler> sampler = Sampler::Create(request.sampling);
  if (!sampler.ok()) return refuse(sampler.status());
  const int64_t capacity = int64_t{runner_.num_blocks()} * runner_.block_size();
  const int64_t length = std::ssize(request.prompt.tokens) + request.max_tokens;
  if (length > capacity) {
    return refuse(absl::ResourceExhaustedError(
        absl::StrCat("the prompt plus max_tokens (", length,
                     " tokens) is longer than the whole KV cache (", capacity, " positions)")));
  }
  // Hashing the image content happens here, on the submitter's thread.
  absl::StatusOr<std::vector<uint64_t>> keys = runner_.PromptKeys(request.prompt);
  if (!keys.ok()) return refuse(keys.status());

  auto r = std::make_unique<Request>(Request{.request = std::move(request),
                                             .callbacks = std::move(callbacks),
                                             .sampler = *std::move(sampler)});
  r->tokens = r->request.prompt.tokens;
  r->prompt_length = std::ssize(r->tokens);
  r->keys = *std::move(keys);
  std::unique_lock<std::mutex> lock(mutex_);
  if (stopping_) {
    lock.unlock();
    return refuse(absl::UnavailableError("the scheduler is shutting down"));
  }
  if (static_cast<int>(waiting_.size()) >= options_.max_waiting) {
    const size_t waiting = waiting_.size();
    lock.unlock();
    return refuse(absl::ResourceExhaustedError(
        absl::StrCat(waiting, " requests are already waiting for the decoder")));
  }
  r->ticket = next_ticket_++;
  const Ticket ticket = r->ticket;
  waiting_.push_back(std::move(r));
  live_.insert(ticket);
  work_.notify_one();
  return ticket;
}

void Scheduler::Cancel(Ticket ticket) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (live_.contains(ticket)) cancelled_.insert(ticket);
  work_.notify_one();
}

absl::Status Scheduler::PinPrefix(const Prompt& prompt,
                                  std::function<void(absl::StatusOr<PrefixPin>)> done) {
  absl::StatusOr<std::vector<uint64_t>> keys = runner_.PromptKeys(prompt);
  if (!keys.ok()) return keys.status();
  PinJob job{.done = std::move(done)};
  // As StartSequence matches: at least the last token is computed.
  ExtendBlockKeys(absl::MakeConstSpan(*keys).first(keys->size() - 1), runner_.block_size(),
                  job.blocks);
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return absl::UnavailableError("the scheduler is shutting down");
  pin_jobs_.push_back(std::move(job));
  work_.notify_one();
  return absl::OkStatus();
}

void Scheduler::Unpin(int64_t pin) {
  if (pin == 0) return;
  std::lock_guard<std::mutex> lock(mutex_);
  unpins_.push_back(pin);
  work_.notify_one();
}

void Scheduler::ServePins() {
  std::vector<PinJob> jobs;
  std::vector<int64_t> unpins;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    jobs.swap(pin_jobs_);
    unpins.swap(unpins_);
  }
  for (int64_t pin : unpins) ReleasePin(pin);
  for (PinJob& job : jobs) {
    PrefixPin pin;
    // At most as many pins as requests can be in the scheduler at once (running and waiting):
    // pins beyond that are for requests that would be refused anyway, and unbounded pins could
    // keep the whole cache from being evicted. Past the cap the answer is "nothing held", and
    // the sender sends every feature.
    const bool room = std::ssize(pins_) < int64_t{options_.max_batch_size} + options_.max_waiting;
    if (options_.prefix_cache && room) {
      // A hidden sequence that shares the cached blocks keeps them from being evicted.
      const ModelRunner::SequenceId sequence = runner_.AddSequence();
      const int attached = runner_.AttachCachedPrefix(sequence, job.blocks);
      if (attached > 0) {
        pin = {.id = next_pin_++, .positions = int64_t{attached} * runner_.block_size()};
        pins_[pin.id] = sequence;
      } else {
        runner_.Release(sequence);
      }
    }
    job.done(pin);
  }
}

void Scheduler::ReleasePin(int64_t pin) {
  auto it = pins_.find(pin);
  if (it == pins_.end()) return;
  runner_.Release(it->second);
  pins_.erase(it);
}

bool Scheduler::HasWork() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return HasWorkLocked();
}

bool Scheduler::HasWorkLocked() const {
  return !waiting_.empty() || running_count_ > 0 || !pin_jobs_.empty() || !unpins_.empty();
}

EngineStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void Scheduler::Step() {
  ++step_;
  step_stats_ = StepStats();
  ServePins();
  DropCancelled();
  const std::vector<Planned> plan = Plan();
  step_stats_.rows = static_cast<int>(plan.size());
  if (!plan.empty()) Run(plan);
  Sweep();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    running_count_ = static_cast<int>(running_.size());
    step_stats_.waiting = static_cast<int>(waiting_.size());
  }
  step_stats_.running = static_cast<int>(running_.size());
  step_stats_.kv_blocks_used = runner_.num_used_blocks();
  if (options_.on_step) options_.on_step(step_stats_);
}

void Scheduler::DropCancelled() {
  std::vector<std::unique_ptr<Request>> dropped;
  absl::flat_hash_set<Ticket> cancelled;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cancelled_.empty()) return;
    cancelled = cancelled_;
    for (auto it = waiting_.begin(); it != waiting_.end();) {
      if (cancelled.contains((*it)->ticket)) {
        dropped.push_back(std::move(*it));
        it = waiting_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& r : dropped) running_.push_back(std::move(r));  // swept below with the others
  for (auto& r : running_) {
    if (!r->finished && cancelled.contains(r->ticket)) {
      r->completion.finish_reason = FinishReason::kCancelled;
      Finish(*r, r->completion);
    }
  }
  Sweep();
}

int64_t Scheduler::BlocksNeeded(const Request& request, int64_t tokens) const {
  const int64_t b = runner_.block_size();
  return CeilDiv(request.computed + tokens, b) - CeilDiv(request.computed, b);
}

int64_t Scheduler::FitChunk(const Request& request, int64_t budget, int64_t free_blocks) const {
  int64_t n = std::min(request.remaining(), budget);
  if (runner_.max_row_tokens() > 0) n = std::min(n, runner_.max_row_tokens());
  const int64_t b = runner_.block_size();
  const int64_t room =
      (CeilDiv(request.computed, b) + std::max<int64_t>(free_blocks, 0)) * b - request.computed;
  return std::max<int64_t>(0, std::min(n, room));
}

void Scheduler::StartSequence(Request& r) {
  r.sequence = runner_.AddSequence();
  r.computed = 0;
  r.block_keys.clear();
  if (options_.prefix_cache) {
    // At least the last token is computed: its logits give the next token.
    ExtendBlockKeys(absl::MakeConstSpan(r.keys).first(r.keys.size() - 1), runner_.block_size(),
                    r.block_keys);
    const int attached = runner_.AttachCachedPrefix(r.sequence, r.block_keys);
    metrics::PrefixCacheQueries().Increment(std::ssize(r.block_keys));
    metrics::PrefixCacheHits().Increment(attached);
    r.computed = int64_t{attached} * runner_.block_size();
    r.block_keys.resize(attached);
  }
}

void Scheduler::Preempt(std::unique_ptr<Request> r) {
  runner_.Release(r->sequence);
  r->sequence = -1;
  r->computed = 0;
  r->last_token_step = -1;
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.preemptions;
  auto at =
      std::lower_bound(waiting_.begin(), waiting_.end(), r->ticket,
                       [](const std::unique_ptr<Request>& w, Ticket t) { return w->ticket < t; });
  waiting_.insert(at, std::move(r));
}

std::vector<Scheduler::Planned> Scheduler::Plan() {
  // Decode rows first; if their new blocks are not free, the newest sequences give theirs up.
  while (!running_.empty()) {
    int64_t needed = 0;
    for (const auto& r : running_) {
      if (r->decoding()) needed += BlocksNeeded(*r, 1);
    }
    if (needed <= runner_.num_free_blocks()) break;
    std::unique_ptr<Request> newest = std::move(running_.back());
    running_.pop_back();
    Preempt(std::move(newest));
  }
  std::vector<Planned> plan;
  int64_t budget = options_.step_token_budget, planned_blocks = 0;
  auto free_blocks = [&] { return runner_.num_free_blocks() - planned_blocks; };
  for (const auto& r : running_) {
    if (!r->decoding()) continue;
    plan.push_back({r.get(), 1});
    planned_blocks += BlocksNeeded(*r, 1);
  }
  const int64_t decode_rows = std::ssize(plan);
  if (decode_rows > 0 && options_.mixed_step_token_budget > 0) {
    budget = std::min<int64_t>(budget, options_.mixed_step_token_budget);
  }
  budget -= decode_rows;
  // Then the chunks of prompts already being prefilled, oldest first.
  for (const auto& r : running_) {
    if (r->decoding() || budget <= 0) continue;
    const int64_t n = FitChunk(*r, budget, free_blocks());
    if (n == 0) continue;
    plan.push_back({r.get(), n});
    budget -= n;
    planned_blocks += BlocksNeeded(*r, n);
  }
  // Then new prompts, in arrival order: one that does not fit stops the others behind it.
  while (budget > 0 && std::ssize(running_) < options_.max_batch_size) {
    std::unique_ptr<Request> r;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (waiting_.empty()) break;
      r = std::move(waiting_.front());
      waiting_.pop_front();
      ++running_count_;  // in flight from here on, for HasWork() on other threads
    }
    if (r->request.max_tokens == 0) {  // nothing to generate: kLength with no tokens
      Finish(*r, r->completion);
      continue;
    }
    StartSequence(*r);
    // Admitted only when all of its known tokens fit the free blocks, not just the first chunk:
    // a prompt admitted on a sliver of cache would be preempted again before it decodes, and a
    // preempted request would thrash, recomputing itself on every step.
    const int64_t n =
        BlocksNeeded(*r, r->remaining()) <= free_blocks() ? FitChunk(*r, budget, free_blocks()) : 0;
    if (n == 0) {
      runner_.Release(r->sequence);
      r->sequence = -1;
      std::lock_guard<std::mutex> lock(mutex_);
      waiting_.push_front(std::move(r));  // still the oldest waiting request
      --running_count_;
      break;
    }
    // Only now its images are encoded: a request that waits for blocks does not re-encode.
    if (absl::Status status = runner_.PreparePrompt(r->sequence, r->request.prompt, r->computed);
        !status.ok()) {
      Finish(*r, status);
      continue;
    }
    plan.push_back({r.get(), n});
    budget -= n;
    planned_blocks += BlocksNeeded(*r, n);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.prompt_tokens += std::ssize(r->tokens);
      stats_.cached_prompt_tokens += r->computed;
      if (!r->admitted_before) {
        if (r->ticket < last_first_admission_) ++stats_.admissions_out_of_order;
        step_stats_.queue_seconds.push_back(
            std::chrono::duration<double>(std::chrono::steady_clock::now() - r->submitted).count());
        last_first_admission_ = std::max(last_first_admission_, r->ticket);
        r->admitted_before = true;
      }
    }
    // In ticket order, so that the newest is last (a preempted request comes back older).
    auto at =
        std::lower_bound(running_.begin(), running_.end(), r->ticket,
                         [](const std::unique_ptr<Request>& q, Ticket t) { return q->ticket < t; });
    running_.insert(at, std::move(r));
  }
  if (plan.empty() && !running_.empty()) {
    // Every running prompt waits for blocks that only a preemption can free.
    std::unique_ptr<Request> newest = std::move(running_.back());
    running_.pop_back();
    Preempt(std::move(newest));
  }
  return plan;
}

void Scheduler::Run(const std::vector<Planned>& plan) {
  auto row = [](const Planned& p) {
    Request& r = *p.request;
    const absl::Span<const int32_t> tokens =
        absl::MakeConstSpan(r.tokens).subspan(r.computed, p.tokens);
    const bool last = r.computed + p.tokens == std::ssize(r.tokens);
    return ModelRunner::Row{
        .sequence = r.sequence,
        .tokens = tokens,
        .prompt_tokens = std::clamp<int64_t>(r.prompt_length - r.computed, 0, p.tokens),
        .sampler = last ? &r.sampler : nullptr};
  };
  std::vector<ModelRunner::Row> rows;
  int64_t tokens = 0;
  for (const Planned& p : plan) {
    rows.push_back(row(p));
    tokens += p.tokens;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.steps;
    stats_.step_rows += std::ssize(rows);
    stats_.step_tokens += tokens;
  }
  absl::StatusOr<std::vector<ModelRunner::RowOutput>> out = runner_.Step(rows);
  if (out.ok() && out->size() != rows.size()) {
    out = absl::InternalError("the model returned the wrong number of rows");
  }
  if (out.ok()) {
    for (size_t i = 0; i < plan.size(); ++i) Apply(*plan[i].request, plan[i].tokens, (*out)[i]);
    return;
  }
  if (plan.size() == 1) {
    Finish(*plan[0].request, out.status());
    return;
  }
  // The batch failed and changed nothing: each row alone, so only the bad one fails.
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++stats_.isolated_retries;
  }
  for (const Planned& p : plan) {
    absl::StatusOr<std::vector<ModelRunner::RowOutput>> one = runner_.Step({row(p)});
    if (one.ok() && one->size() != 1) one = absl::InternalError("the model returned no row");
    if (one.ok()) {
      Apply(*p.request, p.tokens, (*one)[0]);
    } else {
      Finish(*p.request, one.status());
    }
  }
}

void Scheduler::Apply(Request& r, int64_t tokens, const ModelRunner::RowOutput& output) {
  r.computed += tokens;
  if (options_.prefix_cache) {
    ExtendBlockKeys(absl::MakeConstSpan(r.keys).first(r.computed), runner_.block_size(),
                    r.block_keys);
    runner_.PublishBlocks(r.sequence, r.block_keys);
  }
  if (!output.status.ok()) {
    Finish(r, output.status);
    return;
  }
  if (!output.sampled) return;
  if (r.last_token_step >= 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.max_decode_gap_steps = std::max(stats_.max_decode_gap_steps, step_ - r.last_token_step);
  }
  r.last_token_step = step_;
  const SampledToken& token = output.token;
  Completion& completion = r.completion;
  const std::vector<int32_t>& stops = r.request.stop_token_ids;
  if (!r.request.ignore_eos && options_.eos_id >= 0 && token.id == options_.eos_id) {
    completion.finish_reason = FinishReason::kEos;
  } else if (std::find(stops.begin(), stops.end(), token.id) != stops.end()) {
    completion.finish_reason = FinishReason::kStopToken;
  } else {
    completion.tokens.push_back(token.id);
    if (r.request.logprobs) completion.logprobs.push_back(token.logprob);
    if (r.callbacks.on_token && !r.callbacks.on_token(token)) {
      completion.finish_reason = FinishReason::kCancelled;
    } else if (static_cast<int>(completion.tokens.size()) == r.request.max_tokens) {
      completion.finish_reason = FinishReason::kLength;
    } else {
      r.tokens.push_back(token.id);
      r.keys.push_back(TokenKey(token.id));
      return;
    }
  }
  Finish(r, completion);
}

void Scheduler::Finish(Request& r, absl::StatusOr<Completion> result) {
  if (r.finished) return;
  if (r.started()) runner_.Release(r.sequence);
  ReleasePin(r.request.prefix_pin);
  r.sequence = -1;
  r.finished = true;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.erase(r.ticket);
    cancelled_.erase(r.ticket);
  }
  if (r.callbacks.on_done) r.callbacks.on_done(std::move(result));
}

void Scheduler::Sweep() {
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [](const std::unique_ptr<Request>& r) { return r->finished; }),
                 running_.end());
}

void Scheduler::Start() {
  thread_ = std::thread([this] {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_.wait(lock, [this] { return stopping_ || HasWorkLocked(); });
        if (stopping_) return;
      }
      Step();
    }
  });
}

void Scheduler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
    work_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  // What is left ends as cancelled, its cache freed.
  std::deque<std::unique_ptr<Request>> waiting;
  std::vector<PinJob> jobs;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting.swap(waiting_);
    jobs.swap(pin_jobs_);
    unpins_.clear();  // every pin is released below
  }
  for (PinJob& job : jobs) job.done(absl::UnavailableError("the scheduler is shutting down"));
  for (auto& request : waiting) running_.push_back(std::move(request));
  for (auto& request : running_) {
    request->completion.finish_reason = FinishReason::kCancelled;
    Finish(*request, request->completion);
  }
  running_.clear();
  // Pins whose requests never came are given back with the rest.
  for (const auto& [pin, sequence] : pins_) runner_.Release(sequence);
  pins_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  running_count_ = 0;
}

}  // namespace pixtral
