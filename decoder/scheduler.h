// Continuous batching: requests join the running batch between decode steps and leave it the
// moment they finish or are cancelled, freeing their KV cache at once. This is the loop a decoder
// worker runs; Generate() runs the same loop for a fixed set of requests.
//
//   Scheduler scheduler(model, {.eos_id = 2, .max_batch_size = 32});
//   absl::StatusOr<Scheduler::Ticket> ticket = scheduler.Submit(std::move(request), {
//       .on_token = [&](const SampledToken& t) { return stream.Write(t); },  // false: cancel
//       .on_done = [&](absl::StatusOr<Completion> c) { ... }});               // exactly once
//   scheduler.Start();                 // a thread calls Step() while there is work
//   scheduler.Cancel(*ticket);         // from any thread, e.g. when the client goes away
//
// Callbacks run on the thread that calls Step(), between model calls: keep them short (hand the
// token to the RPC's own queue rather than blocking on the network).
#ifndef PIXTRAL_DECODER_SCHEDULER_H_
#define PIXTRAL_DECODER_SCHEDULER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "decoder/generate.h"
#include "decoder/sampler.h"

namespace pixtral {

class Scheduler {
 public:
  // What one Step() saw, for metrics.
  struct StepStats {
    int waiting = 0;                    // requests still queued after the step
    int running = 0;                    // sequences in the batch after the step
    int decoded = 0;                    // sequences in the step's decode call (0: none)
    std::vector<double> queue_seconds;  // each request prefilled in the step: submit to prefill
  };

  struct Options {
    // The tokenizer's EOS id; negative if the model has none.
    int32_t eos_id = -1;
    // Sequences decoded together in one step.
    int max_batch_size = 64;
    // Requests waiting to join the batch; beyond this Submit() is RESOURCE_EXHAUSTED rather
    // than letting a queue grow without bound.
    int max_waiting = 256;
    // Optional: called on the stepping thread after each Step() (keep it short).
    std::function<void(const StepStats&)> on_step;
  };

  struct Callbacks {
    // Each token appended to the completion, in order. Returning false cancels the request.
    std::function<bool(const SampledToken& token)> on_token;
    // Called exactly once: the completion (also when cancelled: FinishReason::kCancelled), or
    // the error that ended the request.
    std::function<void(absl::StatusOr<Completion> result)> on_done;
  };

  using Ticket = int64_t;

  Scheduler(SequenceModel& model, const Options& options);
  ~Scheduler();  // stops the thread; unfinished requests end as cancelled

  // Thread-safe. Invalid requests are INVALID_ARGUMENT here, before any callback; a full queue is
  // RESOURCE_EXHAUSTED.
  absl::StatusOr<Ticket> Submit(GenerationRequest request, Callbacks callbacks);

  // Thread-safe. The request ends as kCancelled at the next step; unknown or finished tickets
  // are ignored.
  void Cancel(Ticket ticket);

  // One iteration: admits waiting requests (one batched prefill), samples a token for every
  // running request, then decodes them all in one batched step. Not to be called concurrently.
  void Step();

  // Whether a request is waiting or running.
  bool HasWork() const;

  // A thread that calls Step() while there is work and sleeps otherwise; Stop() joins it and
  // cancels what is left.
  void Start();
  void Stop();

 private:
  struct Request;

  void Admit();
  void SampleAndDecode();
  // Ends a request: frees its cache and calls on_done.
  void Finish(Request& request, absl::StatusOr<Completion> result);
  void Fail(std::vector<std::unique_ptr<Request>>& requests, const absl::Status& status);

  SequenceModel& model_;
  const Options options_;

  mutable std::mutex mutex_;
  std::condition_variable work_;
  std::deque<std::unique_ptr<Request>> waiting_;  // guarded by mutex_
  absl::flat_hash_set<Ticket> live_;              // guarded by mutex_: submitted, not finished
  absl::flat_hash_set<Ticket> cancelled_;         // guarded by mutex_
  int running_count_ = 0;                         // guarded by mutex_
  Ticket next_ticket_ = 1;                        // guarded by mutex_
  bool stopping_ = false;                         // guarded by mutex_

  // Owned by the stepping thread.
  std::vector<std::unique_ptr<Request>> running_;
  std::vector<float> pending_logits_;  // one row per running request, from the last model call
  StepStats step_stats_;               // of the step in progress

  std::thread thread_;
};

}  // namespace pixtral

#endif  // PIXTRAL_DECODER_SCHEDULER_H_
