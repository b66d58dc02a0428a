// The serving engine's loop: continuous batching under one token budget per step.
//
// Each Step() is one ModelRunner::Step (one batched forward): a decode row for every running
// sequence, then chunks of the prompts being prefilled, oldest first, until the step holds
// `step_token_budget` tokens (`mixed_step_token_budget` in a step with decode rows). Several
// prompts can prefill in one step, and a long prompt takes at most the budget left after the
// decode rows, so running streams never wait more than one step for it. KV blocks are taken as
// sequences grow; a prompt is admitted when the free blocks hold its whole prompt (its cached
// prefix aside), and when a step cannot get the blocks its decode rows need, the newest running
// sequence is preempted (its blocks freed; it is recomputed later, prompt and generated tokens,
// from the prefix cache as far as it still holds them). Requests are admitted in arrival order,
// preempted ones included.
//
// Full blocks are published to the prefix cache as they fill, so a prompt that starts with an
// earlier prompt (the next turn of a chat, the same system prompt or image) skips what is cached.
//
//   Scheduler scheduler(runner, {.eos_id = 2, .max_batch_size = 32, .step_token_budget = 2048});
//   absl::StatusOr<Scheduler::Ticket> ticket = scheduler.Submit(std::move(request), {
//       .on_token = [&](const SampledToken& t) { return stream.Write(t); },  // false: cancel
//       .on_done = [&](absl::StatusOr<Completion> c) { ... }});               // exactly once
//   scheduler.Start();                 // a thread calls Step() while there is work
//   scheduler.Cancel(*ticket);         // from any thread, e.g. when the client goes away
//
// Callbacks run on the thread that calls Step(), between model calls: keep them short (hand the
// token to the RPC's own queue rather than blocking on the network).
#ifndef PIXTRAL_ENGINE_SCHEDULER_H_
#define PIXTRAL_ENGINE_SCHEDULER_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "decoder/sampler.h"
#include "engine/model_runner.h"
#include "engine/request.h"

namespace pixtral {

// What the engine has done so far, for metrics and tests.
struct EngineStats {
  int64_t steps = 0;        // model steps (one batched forward each)
  int64_t step_rows = 0;    // rows over all steps
  int64_t step_tokens = 0;  // tokens over all steps
  int64_t preemptions = 0;
  int64_t isolated_retries = 0;      // failed batched steps retried row by row
  int64_t prompt_tokens = 0;         // prompt (and recomputed) tokens admitted
  int64_t cached_prompt_tokens = 0;  // of those, found in the prefix cache
  // The longest run of steps a decoding sequence went without a token (1: never skipped).
  int64_t max_decode_gap_steps = 0;
  // Requests admitted for the first time before an earlier arrival was (0: arrival order kept).
  int64_t admissions_out_of_order = 0;
};

class Scheduler {
 public:
  // What one Step() saw, for metrics.
  struct StepStats {
    int waiting = 0;                    // requests still queued after the step
    int running = 0;                    // sequences running (decoding or prefilling) after it
    int rows = 0;                       // sequences in the step's model call (0: none)
    int kv_blocks_used = 0;             // KV cache blocks held after the step
    std::vector<double> queue_seconds;  // each request first admitted in the step: submit to admit
  };

  struct Options {
    // The tokenizer's EOS id; negative if the model has none.
    int32_t eos_id = -1;
    // Sequences running (decoding or prefilling) at once.
    int max_batch_size = 64;
    // Requests waiting to join the batch; beyond this Submit() is RESOURCE_EXHAUSTED rather
    // than letting a queue grow without bound.
    int max_waiting = 256;
    // Tokens in one step: decode rows plus prompt chunks.
    int step_token_budget = 2048;
    // Tokens in a step that has decode rows, if smaller (0: step_token_budget). Prompt chunks
    // that ride along with the decode rows cost little while the step stays bound by reading
    // the weights; a full budget of prompt tokens turns the step compute-bound, and every running
    // stream waits for it. The price: prompts that arrive under load take more steps to their
    // first token. Must exceed max_batch_size, or prompts wait for streams to finish.
    int mixed_step_token_budget = 0;
    // Share full blocks across requests (off: every prompt computed from scratch).
    bool prefix_cache = true;
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

  // A hold on the cached prefix of a prompt: its blocks cannot be evicted until the hold ends,
  // so a decoder can tell a sender which image features it may leave out and still find the
  // rest cached when the request is admitted (even after a preemption).
  struct PrefixPin {
    int64_t id = 0;         // for GenerationRequest::prefix_pin and Unpin; 0: nothing held
    int64_t positions = 0;  // prompt positions the held blocks cover
  };

  Scheduler(ModelRunner& runner, const Options& options);
  ~Scheduler();  // stops the thread; unfinished requests end as cancelled

  // Thread-safe. Invalid requests are INVALID_ARGUMENT here, before any callback (a prompt plus
  // max_tokens larger than the whole KV cache is RESOURCE_EXHAUSTED); a full queue is
  // RESOURCE_EXHAUSTED.
  absl::StatusOr<Ticket> Submit(GenerationRequest request, Callbacks callbacks);

  // Thread-safe. The request ends as kCancelled at the next step; unknown or finished tickets
  // are ignored.
  void Cancel(Ticket ticket);

  // Thread-safe. Keys `prompt` on the caller's thread (a bad prompt is INVALID_ARGUMENT here, and
  // `done` is not called), then at the start of the next step pins the longest cached prefix of
  // all its positions but the last and calls `done` with the pin, on the stepping thread (keep it
  // short; UNAVAILABLE when the scheduler stops first). The pin lasts until Unpin or the end of
  // the request that carries it in prefix_pin. With max_batch_size + max_waiting pins held, a
  // new one holds nothing (id 0).
  absl::Status PinPrefix(const Prompt& prompt, std::function<void(absl::StatusOr<PrefixPin>)> done);
  // Thread-safe. Releases the pin at the next step; 0 and unknown ids are ignored.
  void Unpin(int64_t pin);

  // One step: ends cancelled requests, plans the rows (preempting if the cache is short),
  // admits waiting prompts, runs the model once and hands out the sampled tokens. Not to be
  // called concurrently.
  void Step();

  // Whether a request is waiting or running, or a pin is to be served or released.
  bool HasWork() const;

  // A thread that calls Step() while there is work and sleeps otherwise; Stop() joins it and
  // cancels what is left.
  void Start();
  void Stop();

  // Thread-safe.
  EngineStats stats() const;
  const Options& options() const { return options_; }

 private:
  struct Request;
  struct Planned {
    Request* request;
    int64_t tokens;
  };

  struct PinJob {
    std::vector<BlockKey> blocks;
    std::function<void(absl::StatusOr<PrefixPin>)> done;
  };

  // Takes the pins asked for and releases the pins given back since the last step.
  void ServePins();
  bool HasWorkLocked() const;  // HasWork with mutex_ held
  void ReleasePin(int64_t pin);
  // Ends cancelled requests, waiting or running.
  void DropCancelled();
  // Blocks `request` needs beyond those it holds to hold `tokens` more positions.
  int64_t BlocksNeeded(const Request& request, int64_t tokens) const;
  // The longest chunk of `request`'s remaining tokens that fits `budget` tokens and `free_blocks`.
  int64_t FitChunk(const Request& request, int64_t budget, int64_t free_blocks) const;
  // Starts the request's sequence on the longest cached prefix of its tokens.
  void StartSequence(Request& request);
  void Preempt(std::unique_ptr<Request> request);
  std::vector<Planned> Plan();
  // Runs the planned rows; on failure retries them one by one so that only the bad one fails.
  void Run(const std::vector<Planned>& plan);
  void Apply(Request& request, int64_t tokens, const ModelRunner::RowOutput& output);
  // Ends a request: frees its cache and calls on_done.
  void Finish(Request& request, absl::StatusOr<Completion> result);
  // Moves finished requests out of running_.
  void Sweep();

  ModelRunner& runner_;
  const Options options_;

  mutable std::mutex mutex_;
  std::condition_variable work_;
  std::deque<std::unique_ptr<Request>> waiting_;  // guarded by mutex_, in ticket order
  absl::flat_hash_set<Ticket> live_;              // guarded by mutex_: submitted, not finished
  absl::flat_hash_set<Ticket> cancelled_;         // guarded by mutex_
  int running_count_ = 0;                         // guarded by mutex_
  Ticket next_ticket_ = 1;                        // guarded by mutex_
  bool stopping_ = false;                         // guarded by mutex_
  EngineStats stats_;                             // guarded by mutex_
  std::vector<PinJob> pin_jobs_;                  // guarded by mutex_
  std::vector<int64_t> unpins_;                   // guarded by mutex_

  // Owned by the stepping thread: running requests in ticket order (the newest last).
  std::vector<std::unique_ptr<Request>> running_;
  int64_t step_ = 0;
  StepStats step_stats_;             // of the step in progress
  Ticket last_first_admission_ = 0;  // the newest ticket admitted so far
  // Each pin's hidden sequence, which holds the pinned blocks.
  absl::flat_hash_map<int64_t, ModelRunner::SequenceId> pins_;
  int64_t next_pin_ = 1;

  std::thread thread_;
};

}  // namespace pixtral

#endif  // PIXTRAL_ENGINE_SCHEDULER_H_
