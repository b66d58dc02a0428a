#include "bench/load_runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <thread>

#include "common/splitmix64.h"

namespace pixtral {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// Runs one session's turns in order, appending the records.
void RunSession(const GatewayClient& client, const LoadSession& session, int index,
                const std::vector<std::string>& images, Clock::time_point run_start,
                std::vector<TurnRecord>& out) {
  ChatCompletionRequest conversation;
  for (int t = 0; t < std::ssize(session.turns); ++t) {
    const LoadTurn& turn = session.turns[t];
    std::vector<ContentChunk> chunks;
    if (turn.image >= 0) chunks.push_back(ImageChunk{images[turn.image]});
    chunks.push_back(TextChunk{turn.text});
    conversation.messages.push_back(UserMessage{std::move(chunks)});

    TurnRecord record{.session = index, .turn = t, .request = conversation};
    record.has_image = turn.image >= 0 || (t > 0 && session.turns[0].image >= 0);
    record.params = {.max_tokens = turn.max_tokens, .seed = 0, .ignore_eos = true};
    const Clock::time_point start = Clock::now();
    record.start_s = Seconds(run_start, start);
    Clock::time_point last = start;
    absl::StatusOr<ChatResult> result =
        client.Stream(conversation, record.params, [&](const ChatDelta& delta) {
          const Clock::time_point now = Clock::now();
          if (delta.token_ids.empty()) return true;
          if (record.tokens.empty()) {
            record.ttft_s = Seconds(start, now);
            record.itl_s.insert(record.itl_s.end(), delta.token_ids.size() - 1, 0.0);
          } else {
            // Tokens that arrive together share the gap since the last delta.
            const double gap = Seconds(last, now) / delta.token_ids.size();
            record.itl_s.insert(record.itl_s.end(), delta.token_ids.size(), gap);
          }
          last = now;
          record.tokens.insert(record.tokens.end(), delta.token_ids.begin(), delta.token_ids.end());
          return !(turn.cancel && std::ssize(record.tokens) >= turn.max_tokens / 2);
        });
    record.e2e_s = Seconds(start, Clock::now());
    record.cancelled = turn.cancel && absl::IsCancelled(result.status());
    record.status = result.status();
    std::string answer;
    if (result.ok()) {
      record.prompt_tokens = result->usage.prompt_tokens;
      answer = result->text;
    }
    out.push_back(std::move(record));
    if (!result.ok()) break;  // the conversation cannot go on
    conversation.messages.push_back(AssistantMessage{answer});
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * (v.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - lo);
}

nlohmann::json Latency(const std::vector<double>& seconds) {
  nlohmann::json j;
  for (double p : {50.0, 90.0, 99.0}) {
    j["p" + std::to_string(static_cast<int>(p))] = Percentile(seconds, p) * 1000.0;
  }
  double sum = 0;
  for (double s : seconds) sum += s;
  j["mean"] = seconds.empty() ? 0.0 : sum / seconds.size() * 1000.0;
  j["count"] = seconds.size();
  return j;
}

}  // namespace

LoadResult RunLoad(const GatewayClient& client, const std::vector<LoadSession>& sessions,
                   const LoadSpec& spec, const LoadRunOptions& options) {
  std::vector<std::string> images;
  for (int i = 0; i < spec.distinct_images; ++i) images.push_back(LoadImagePng(spec, i));
  std::vector<std::vector<TurnRecord>> per_session(sessions.size());
  const Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  if (options.rate > 0) {
    // Open loop: session i starts at the i-th arrival of a Poisson process.
    SplitMix64 rng(options.seed);
    double at = 0;
    for (size_t i = 0; i < sessions.size(); ++i) {
      at += -std::log(1.0 - rng.Uniform()) / options.rate;
      std::this_thread::sleep_until(
          start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(at)));
      threads.emplace_back([&, i] {
        RunSession(client, sessions[i], static_cast<int>(i), images, start, per_session[i]);
      });
    }
  } else {
    std::atomic<size_t> next = 0;
    for (int u = 0; u < std::max(options.concurrency, 1); ++u) {
      threads.emplace_back([&] {
        for (size_t i = next++; i < sessions.size(); i = next++) {
          RunSession(client, sessions[i], static_cast<int>(i), images, start, per_session[i]);
        }
      });
    }
  }
  for (std::thread& t : threads) t.join();
  LoadResult result;
  result.wall_s = Seconds(start, Clock::now());
  for (auto& records : per_session) {
    for (TurnRecord& r : records) result.turns.push_back(std::move(r));
  }
  return result;
}

nlohmann::json LoadReportJson(const LoadResult& result) {
  std::vector<double> ttft, itl, e2e, ttft_first_turn, ttft_later_turns;
  int64_t ok = 0, failed = 0, cancelled = 0, output_tokens = 0, prompt_tokens = 0;
  for (const TurnRecord& r : result.turns) {
    output_tokens += std::ssize(r.tokens);
    if (r.cancelled) {
      ++cancelled;
      continue;
    }
    if (!r.status.ok()) {
      ++failed;
      continue;
    }
    ++ok;
    prompt_tokens += r.prompt_tokens;
    if (!r.tokens.empty()) {
      ttft.push_back(r.ttft_s);
      (r.turn == 0 ? ttft_first_turn : ttft_later_turns).push_back(r.ttft_s);
    }
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    e2e.push_back(r.e2e_s);
  }
  nlohmann::json j;
  j["wall_s"] = result.wall_s;
  j["requests"] = {{"ok", ok}, {"failed", failed}, {"cancelled", cancelled}};
  j["requests_per_s"] = result.wall_s > 0 ? ok / result.wall_s : 0.0;
  j["output_tokens_per_s"] = result.wall_s > 0 ? output_tokens / result.wall_s : 0.0;
  j["prompt_tokens"] = prompt_tokens;
  j["output_tokens"] = output_tokens;
  j["ttft_ms"] = Latency(ttft);
  j["ttft_first_turn_ms"] = Latency(ttft_first_turn);
  j["ttft_later_turns_ms"] = Latency(ttft_later_turns);
  j["inter_token_ms"] = Latency(itl);
  j["e2e_ms"] = Latency(e2e);
  return j;
}

}  // namespace pixtral
