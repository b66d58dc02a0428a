#include "decoder/scheduler.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"

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

}  // namespace

struct Scheduler::Request {
  Ticket ticket;
  GenerationRequest request;
  Callbacks callbacks;
  Sampler sampler;
  Completion completion;
  SequenceModel::SequenceId sequence = -1;  // -1 until prefilled
  std::chrono::steady_clock::time_point submitted = std::chrono::steady_clock::now();
};

Scheduler::Scheduler(SequenceModel& model, const Options& options)
    : model_(model), options_(options) {}

Scheduler::~Scheduler() { Stop(); }

absl::StatusOr<Scheduler::Ticket> Scheduler::Submit(GenerationRequest request,
                                                    Callbacks callbacks) {
  if (absl::Status status = ValidateRequest(request); !status.ok()) return status;
  absl::StatusOr<Sampler> sampler = Sampler::Create(request.sampling);
  if (!sampler.ok()) return sampler.status();
  std::lock_guard<std::mutex> lock(mutex_);
  if (stopping_) return absl::UnavailableError("the scheduler is shutting down");
  if (static_cast<int>(waiting_.size()) >= options_.max_waiting) {
    return absl::ResourceExhaustedError(
        absl::StrCat(waiting_.size(), " requests are already waiting for the decoder"));
  }
  const Ticket ticket = next_ticket_++;
  waiting_.push_back(std::make_unique<Request>(
      Request{ticket, std::move(request), std::move(callbacks), *std::move(sampler)}));
  live_.insert(ticket);
  work_.notify_one();
  return ticket;
}

void Scheduler::Cancel(Ticket ticket) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (live_.contains(ticket)) cancelled_.insert(ticket);
  work_.notify_one();
}

bool Scheduler::HasWork() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return !waiting_.empty() || running_count_ > 0;
}

void Scheduler::Step() {
  step_stats_ = StepStats();
  Admit();
  SampleAndDecode();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    running_count_ = static_cast<int>(running_.size());
    step_stats_.waiting = static_cast<int>(waiting_.size());
  }
  step_stats_.running = static_cast<int>(running_.size());
  if (options_.on_step) options_.on_step(step_stats_);
}

void Scheduler::Finish(Request& request, absl::StatusOr<Completion> result) {
  if (request.sequence >= 0) model_.Release(request.sequence);
  request.sequence = -1;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    live_.erase(request.ticket);
    cancelled_.erase(request.ticket);
  }
  if (request.callbacks.on_done) request.callbacks.on_done(std::move(result));
}

void Scheduler::Fail(std::vector<std::unique_ptr<Request>>& requests, const absl::Status& status) {
  for (auto& request : requests) Finish(*request, status);
  requests.clear();
}

void Scheduler::Admit() {
  std::vector<std::unique_ptr<Request>> admitted;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    while (!waiting_.empty() &&
           static_cast<int>(running_.size() + admitted.size()) < options_.max_batch_size) {
      admitted.push_back(std::move(waiting_.front()));
      waiting_.pop_front();
    }
    running_count_ = static_cast<int>(running_.size() + admitted.size());
  }
  std::vector<std::unique_ptr<Request>> to_prefill;
  for (auto& request : admitted) {
    bool cancelled;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cancelled = cancelled_.contains(request->ticket);
    }
    if (cancelled) {
      request->completion.finish_reason = FinishReason::kCancelled;
      Finish(*request, request->completion);
    } else if (request->request.max_tokens == 0) {
      Finish(*request, request->completion);  // nothing to generate: kLength with no tokens
    } else {
      to_prefill.push_back(std::move(request));
    }
  }
  if (to_prefill.empty()) return;

  // One batched prefill; if it fails, each prompt alone, so one bad prompt fails only itself.
  auto prefill = [&](std::vector<std::unique_ptr<Request>>& batch) -> absl::Status {
    const auto started = std::chrono::steady_clock::now();
    std::vector<const Prompt*> prompts;
    std::vector<int> capacities;
    for (const auto& r : batch) {
      prompts.push_back(&r->request.prompt);
      capacities.push_back(static_cast<int>(r->request.prompt.tokens.size()) +
                           r->request.max_tokens);
    }
    absl::StatusOr<SequenceModel::PrefillResult> result = model_.Prefill(prompts, capacities);
    if (!result.ok()) return result.status();
    const size_t vocab = model_.vocab_size();
    if (result->ids.size() != batch.size() || result->logits.size() != batch.size() * vocab) {
      for (SequenceModel::SequenceId id : result->ids) model_.Release(id);
      return absl::InternalError("the model's prefill returned the wrong number of rows");
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      step_stats_.queue_seconds.push_back(
          std::chrono::duration<double>(started - batch[i]->submitted).count());
      batch[i]->sequence = result->ids[i];
      running_.push_back(std::move(batch[i]));
    }
    pending_logits_.insert(pending_logits_.end(), result->logits.begin(), result->logits.end());
    batch.clear();
    return absl::OkStatus();
  };
  if (prefill(to_prefill).ok()) return;
  for (auto& request : to_prefill) {
    std::vector<std::unique_ptr<Request>> single;
    single.push_back(std::move(request));
    absl::Status status = prefill(single);
    if (status.ok()) continue;
    // Out of cache while others run: wait for them to finish and free blocks.
    if (absl::IsResourceExhausted(status) && !running_.empty()) {
      std::lock_guard<std::mutex> lock(mutex_);
      waiting_.push_front(std::move(single.front()));
      continue;
    }
    Fail(single, status);
  }
}

void Scheduler::SampleAndDecode() {
  if (running_.empty()) return;
  const size_t vocab = model_.vocab_size();
  std::vector<std::unique_ptr<Request>> still_running;
  std::vector<SequenceModel::SequenceId> ids;
  std::vector<int32_t> tokens;
  for (size_t k = 0; k < running_.size(); ++k) {
    Request& r = *running_[k];
    Completion& completion = r.completion;
    bool cancelled;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cancelled = cancelled_.contains(r.ticket);
    }
    if (cancelled) {
      completion.finish_reason = FinishReason::kCancelled;
      Finish(r, completion);
      continue;
    }
    absl::StatusOr<SampledToken> token =
        r.sampler.Sample(absl::MakeConstSpan(pending_logits_.data() + k * vocab, vocab));
    if (!token.ok()) {
      Finish(r, token.status());
      continue;
    }
    const std::vector<int32_t>& stops = r.request.stop_token_ids;
    if (!r.request.ignore_eos && options_.eos_id >= 0 && token->id == options_.eos_id) {
      completion.finish_reason = FinishReason::kEos;
    } else if (std::find(stops.begin(), stops.end(), token->id) != stops.end()) {
      completion.finish_reason = FinishReason::kStopToken;
    } else {
      completion.tokens.push_back(token->id);
      if (r.request.logprobs) completion.logprobs.push_back(token->logprob);
      if (r.callbacks.on_token && !r.callbacks.on_token(*token)) {
        completion.finish_reason = FinishReason::kCancelled;
      } else if (static_cast<int>(completion.tokens.size()) == r.request.max_tokens) {
        completion.finish_reason = FinishReason::kLength;
      } else {
        ids.push_back(r.sequence);
        tokens.push_back(token->id);
        still_running.push_back(std::move(running_[k]));
        continue;
      }
    }
    Finish(r, completion);
  }
  running_ = std::move(still_running);
  pending_logits_.clear();
  if (running_.empty()) return;
  step_stats_.decoded = static_cast<int>(ids.size());
  absl::StatusOr<std::vector<float>> logits = model_.Decode(ids, tokens);
  if (logits.ok() && logits->size() != running_.size() * vocab) {
    logits = absl::InternalError("the model's decode returned the wrong number of rows");
  }
  if (!logits.ok()) {
    Fail(running_, logits.status());  // the batch's state is unknown: end every request in it
    return;
  }
  pending_logits_ = *std::move(logits);
}

void Scheduler::Start() {
  thread_ = std::thread([this] {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        work_.wait(lock, [this] { return stopping_ || !waiting_.empty() || running_count_ > 0; });
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
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting.swap(waiting_);
  }
  for (auto& request : waiting) running_.push_back(std::move(request));
  for (auto& request : running_) {
    request->completion.finish_reason = FinishReason::kCancelled;
    Finish(*request, request->completion);
  }
  running_.clear();
  pending_logits_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  running_count_ = 0;
}

}  // namespace pixtral
