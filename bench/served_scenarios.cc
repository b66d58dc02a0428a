#include "bench/served_scenarios.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/splitmix64.h"
#include "services/common/request_timings.h"

namespace pixtral {
namespace {

using Clock = std::chrono::steady_clock;

double Ms(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

constexpr const char* kWords[] = {"the",   "image",  "shows", "a",     "river", "under", "old",
                                  "stone", "bridge", "with",  "light", "rain",  "and",   "two",
                                  "cats",  "near",   "green", "trees", "why",   "what"};

// One streamed completion as the client saw it.
struct StreamRecord {
  absl::Status status = absl::OkStatus();
  Clock::time_point start;
  std::vector<Clock::time_point> arrivals;  // one per delta that carried tokens
  int tokens = 0;
  int prompt_tokens = 0;
  std::string answer;
  std::map<std::string, double> timing;  // the x-pixtral-timing trailer

  double ttft_ms() const { return arrivals.empty() ? 0 : Ms(start, arrivals.front()); }
  double e2e_ms = 0;
};

// Streams `request`; `progress` (may be null) counts the tokens as they arrive.
StreamRecord RunStream(const GatewayClient& client, const ChatCompletionRequest& request,
                       int max_tokens, std::atomic<int>* progress = nullptr) {
  StreamRecord record;
  record.start = Clock::now();
  std::string header;
  absl::StatusOr<ChatResult> result = client.Stream(
      request, {.max_tokens = max_tokens, .seed = 0, .ignore_eos = true},
      [&](const ChatDelta& delta) {
        if (delta.token_ids.empty()) return true;
        record.arrivals.push_back(Clock::now());
        record.tokens += std::ssize(delta.token_ids);
        if (progress != nullptr) *progress += std::ssize(delta.token_ids);
        return true;
      },
      &header);
  record.e2e_ms = Ms(record.start, Clock::now());
  record.status = result.status();
  if (result.ok()) {
    record.prompt_tokens = result->usage.prompt_tokens;
    record.answer = result->text;
  }
  record.timing = ParseTimingHeader(header);
  return record;
}

ChatCompletionRequest TextChat(const std::string& text) {
  ChatCompletionRequest request;
  request.messages.push_back(UserMessage{text});
  return request;
}

ChatCompletionRequest ImageChat(const std::string& image, const std::string& text) {
  ChatCompletionRequest request;
  request.messages.push_back(
      UserMessage{std::vector<ContentChunk>{ImageChunk{image}, TextChunk{text}}});
  return request;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

// Runs `count` streams at once, one thread each; `make(i)` gives stream i's request.
std::vector<StreamRecord> RunConcurrent(const GatewayClient& client, int count, int max_tokens,
                                        const std::function<ChatCompletionRequest(int)>& make,
                                        std::atomic<int>* progress = nullptr) {
  std::vector<ChatCompletionRequest> requests;
  for (int i = 0; i < count; ++i) requests.push_back(make(i));
  std::vector<StreamRecord> records(count);
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i) {
    threads.emplace_back([&, i] {
      records[i] = RunStream(client, requests[i], max_tokens, progress ? &progress[i] : nullptr);
    });
  }
  for (std::thread& t : threads) t.join();
  return records;
}

absl::Status FirstError(const std::vector<StreamRecord>& records) {
  for (const StreamRecord& r : records) {
    if (!r.status.ok()) return r.status;
  }
  return absl::OkStatus();
}

// The trailer's names in milliseconds (counts and bytes as they are), with the wire times
// derived: what the gateway waited for a worker minus what the worker says it spent.
nlohmann::json Breakdown(const std::map<std::string, double>& timing) {
  nlohmann::json j;
  for (const auto& [name, value] : timing) {
    const bool count = name == "vision_bytes" || name == "vision.images" ||
                       name == "vision.cache_hits" || name == "images_skipped";
    j[name] = count ? value : value * 1000.0;
  }
  auto get = [&](const char* name) {
    auto it = timing.find(name);
    return it == timing.end() ? 0.0 : it->second * 1000.0;
  };
  if (timing.count("vision_call") && timing.count("vision.handler")) {
    j["wire_vision"] = get("vision_call") - get("vision.handler");
  }
  if (timing.count("decoder_first_token") && timing.count("decoder.first_token")) {
    // With features on request the vision call runs inside the decoder call, which waits for it:
    // that part is not the wire's.
    const double vision_inside = timing.count("decoder_feature_request") ? get("vision_call") : 0;
    j["wire_decoder"] = get("decoder_first_token") - get("decoder.first_token") - vision_inside;
  }
  return j;
}

// Medians over several requests' breakdowns, name by name.
nlohmann::json MedianBreakdown(const std::vector<nlohmann::json>& breakdowns) {
  std::map<std::string, std::vector<double>> values;
  for (const nlohmann::json& b : breakdowns) {
    for (const auto& [name, value] : b.items()) values[name].push_back(value.get<double>());
  }
  nlohmann::json j;
  for (const auto& [name, v] : values) j[name] = Median(v);
  return j;
}

}  // namespace

absl::StatusOr<std::string> TextOfPromptTokens(const GatewayClient& client, int tokens,
                                               uint64_t seed) {
  SplitMix64 rng(seed * 7919 + 17);
  std::vector<std::string> words = {absl::StrCat("request", seed)};
  auto grow = [&](int n) {
    for (int i = 0; i < n; ++i) words.push_back(kWords[static_cast<int>(rng.Uniform() * 20) % 20]);
  };
  grow(std::max(tokens - 8, 1));
  std::string text;
  for (int round = 0; round < 8; ++round) {
    text.clear();
    for (const std::string& w : words) absl::StrAppend(&text, text.empty() ? "" : " ", w);
    absl::StatusOr<std::vector<int>> ids = client.Tokenize(TextChat(text));
    if (!ids.ok()) return ids.status();
    const int have = std::ssize(*ids);
    if (have == tokens) break;
    if (have < tokens) {
      grow(tokens - have);
    } else {
      words.resize(std::max<int>(1, std::ssize(words) - (have - tokens)));
    }
  }
  return text;
}

std::string VariantJpeg(const std::string& photo, int side, int variant) {
  cv::Mat image;
  if (!photo.empty()) {
    image = cv::imdecode(std::vector<uchar>(photo.begin(), photo.end()), cv::IMREAD_COLOR);
  }
  if (image.empty()) {
    image = cv::Mat(side, side, CV_8UC3);
    for (int y = 0; y < side; ++y) {
      for (int x = 0; x < side; ++x) {
        image.at<cv::Vec3b>(y, x) = cv::Vec3b((3 * x) % 256, (5 * y) % 256, (x ^ y) % 256);
      }
    }
  }
  cv::resize(image, image, cv::Size(side, side), 0, 0, cv::INTER_AREA);
  // The variant's 16 bits as black and white squares along the top, large enough to survive
  // JPEG: a different picture, a different content hash.
  const int cell = std::max(side / 32, 4);
  for (int bit = 0; bit < 16; ++bit) {
    const int v = (variant >> bit) & 1 ? 255 : 0;
    cv::rectangle(image, cv::Rect(bit * cell, 0, cell, cell), cv::Scalar(v, v, v), cv::FILLED);
  }
  std::vector<uchar> jpeg;
  cv::imencode(".jpg", image, jpeg, {cv::IMWRITE_JPEG_QUALITY, 90});
  return std::string(jpeg.begin(), jpeg.end());
}

// Output tokens per second of the deltas that arrived in (from, to] (a delta of several tokens
// counts its share of the stream's tokens: good enough for a rate).
double TokensPerSecondIn(const std::vector<StreamRecord>& records, Clock::time_point from,
                         Clock::time_point to) {
  if (to <= from) return 0.0;
  int64_t in_window = 0;
  for (const StreamRecord& r : records) {
    for (const Clock::time_point arrival : r.arrivals) {
      if (arrival > from && arrival <= to) {
        in_window += std::max<int64_t>(1, r.tokens / std::max<int64_t>(1, r.arrivals.size()));
      }
    }
  }
  return in_window / (Ms(from, to) / 1000.0);
}

// The steady state of `rounds` closed-loop requests a stream (records[stream * rounds + round]):
// from the moment every stream has finished its first request to the first moment one has
// finished its last.
nlohmann::json SteadyState(const std::vector<StreamRecord>& records, int streams, int rounds) {
  Clock::time_point from = Clock::time_point::min(), to = Clock::time_point::max();
  for (int i = 0; i < streams; ++i) {
    const StreamRecord& first = records[i * rounds];
    const StreamRecord& last = records[i * rounds + rounds - 1];
    if (first.arrivals.empty() || last.arrivals.empty()) return nullptr;
    from = std::max(from, first.arrivals.back());
    to = std::min(to, last.arrivals.back());
  }
  return nlohmann::json{{"window_ms", to > from ? Ms(from, to) : 0.0},
                        {"tokens_per_s", TokensPerSecondIn(records, from, to)}};
}

absl::StatusOr<nlohmann::json> RunTextScenario(const GatewayClient& client,
                                               const ServedOptions& o) {
  const int rounds = std::max(o.text_rounds, 1);
  std::vector<ChatCompletionRequest> chats;  // chats[stream * rounds + round]
  for (int i = 0; i < o.text_streams * rounds; ++i) {
    absl::StatusOr<std::string> text = TextOfPromptTokens(client, o.text_prompt_tokens, 1000 + i);
    if (!text.ok()) return text.status();
    chats.push_back(TextChat(*text));
  }
  const Clock::time_point start = Clock::now();
  std::vector<StreamRecord> records(chats.size());
  std::vector<std::thread> threads;
  for (int i = 0; i < o.text_streams; ++i) {
    threads.emplace_back([&, i] {
      for (int round = 0; round < rounds; ++round) {
        const int at = i * rounds + round;
        records[at] = RunStream(client, chats[at], o.text_output_tokens);
        if (!records[at].status.ok()) break;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  const double wall_ms = Ms(start, Clock::now());
  if (absl::Status s = FirstError(records); !s.ok()) return s;
  // The window in which every stream's first request decodes: from the last first token to the
  // first last token.
  Clock::time_point from = start, to = Clock::time_point::max();
  int64_t total = 0;
  std::vector<double> ttft, gaps, prompt;
  for (size_t at = 0; at < records.size(); ++at) {
    const StreamRecord& r = records[at];
    total += r.tokens;
    if (r.arrivals.empty()) continue;
    if (at % rounds == 0) {
      from = std::max(from, r.arrivals.front());
      to = std::min(to, r.arrivals.back());
    }
    ttft.push_back(r.ttft_ms());
    prompt.push_back(r.prompt_tokens);
    for (size_t k = 1; k < r.arrivals.size(); ++k)
      gaps.push_back(Ms(r.arrivals[k - 1], r.arrivals[k]));
  }
  nlohmann::json report{{"streams", o.text_streams},
                        {"rounds", rounds},
                        {"prompt_tokens_median", Median(prompt)},
                        {"output_tokens", total},
                        {"wall_ms", wall_ms},
                        {"output_tokens_per_s", total / (wall_ms / 1000.0)},
                        {"all_decoding_window_ms", to > from ? Ms(from, to) : 0.0},
                        {"all_decoding_tokens_per_s", TokensPerSecondIn(records, from, to)},
                        {"ttft_median_ms", Median(ttft)},
                        {"inter_token_median_ms", Median(gaps)}};
  if (rounds >= 2) report["steady"] = SteadyState(records, o.text_streams, rounds);
  return report;
}

absl::StatusOr<nlohmann::json> RunAdmitScenario(const GatewayClient& client,
                                                const ServedOptions& o) {
  std::vector<std::string> texts;
  for (int i = 0; i < o.admit_streams; ++i) {
    absl::StatusOr<std::string> text = TextOfPromptTokens(client, o.admit_prompt_tokens, 2000 + i);
    if (!text.ok()) return text.status();
    texts.push_back(*std::move(text));
  }
  const std::string image = VariantJpeg(o.photo, o.image_side, 2000);
  std::vector<std::atomic<int>> progress(o.admit_streams);
  std::vector<StreamRecord> records;
  StreamRecord image_record;
  Clock::time_point sent;
  bool admitted_while_running = false;
  std::thread streams([&] {
    records = RunConcurrent(
        client, o.admit_streams, o.admit_output_tokens, [&](int i) { return TextChat(texts[i]); },
        progress.data());
  });
  // Send the image once every stream is decoding (or give up waiting after 120 s).
  const Clock::time_point wait_start = Clock::now();
  while (Ms(wait_start, Clock::now()) < 120000) {
    bool all = true;
    for (const std::atomic<int>& p : progress) all = all && p.load() >= o.admit_after_tokens;
    if (all) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  sent = Clock::now();
  int unfinished = 0;
  for (const std::atomic<int>& p : progress) unfinished += p.load() < o.admit_output_tokens;
  admitted_while_running = unfinished == o.admit_streams;
  image_record = RunStream(client, ImageChat(image, "Describe the image."), o.image_output_tokens);
  streams.join();
  if (absl::Status s = FirstError(records); !s.ok()) return s;
  if (!image_record.status.ok()) return image_record.status;
  const Clock::time_point first =
      image_record.arrivals.empty() ? Clock::now() : image_record.arrivals.front();
  // Usual gap: the streams' gaps before the image was sent; during: gaps overlapping the time from
  // sending the image to its first token (its encode and prefill).
  std::vector<double> before, during;
  bool all_running_at_first_token = true;
  for (const StreamRecord& r : records) {
    all_running_at_first_token =
        all_running_at_first_token && !r.arrivals.empty() && r.arrivals.back() > first;
    for (size_t k = 1; k < r.arrivals.size(); ++k) {
      const double gap = Ms(r.arrivals[k - 1], r.arrivals[k]);
      if (r.arrivals[k] <= sent) before.push_back(gap);
      if (r.arrivals[k] > sent && r.arrivals[k - 1] < first) during.push_back(gap);
    }
  }
  const double usual = Median(before);
  const double max_during = during.empty() ? 0 : *std::max_element(during.begin(), during.end());
  // Issue 8's bound: twice the usual step plus one chunk's prefill, the chunk's time estimated as
  // the decoder's time to the image's first token over the chunks its prompt takes (each step's
  // budget less the running streams' decode rows).
  const int chunk_tokens = std::max(o.step_token_budget - o.admit_streams, 1);
  const int chunks = (image_record.prompt_tokens + chunk_tokens - 1) / chunk_tokens;
  const auto decoder = image_record.timing.find("decoder.first_token");
  const double chunk_ms =
      decoder == image_record.timing.end() || chunks == 0 ? 0 : decoder->second * 1000.0 / chunks;
  return nlohmann::json{{"streams", o.admit_streams},
                        {"image_side", o.image_side},
                        {"image_prompt_tokens", image_record.prompt_tokens},
                        {"image_ttft_ms", image_record.ttft_ms()},
                        {"usual_gap_ms", usual},
                        {"max_gap_during_image_ms", max_during},
                        {"max_gap_over_usual", usual > 0 ? max_during / usual : 0.0},
                        {"image_prefill_chunks", chunks},
                        {"chunk_prefill_estimate_ms", chunk_ms},
                        {"bound_ms", 2 * usual + chunk_ms},
                        {"gaps_during_image", during.size()},
                        {"streams_running_when_sent", admitted_while_running},
                        {"streams_running_at_image_first_token", all_running_at_first_token},
                        {"image_breakdown_ms", Breakdown(image_record.timing)}};
}

absl::StatusOr<nlohmann::json> RunMultiTurnScenario(const GatewayClient& client,
                                                    const ServedOptions& o) {
  std::vector<double> first, second, again, ratio;
  double cache_hits_first = 0, cache_hits_again = 0;
  nlohmann::json chats = nlohmann::json::array();
  for (int c = 0; c < o.repeats; ++c) {
    const std::string image = VariantJpeg(o.photo, o.image_side, 3000 + c);
    ChatCompletionRequest chat =
        ImageChat(image, absl::StrCat("Chat ", c, ": describe the image in detail."));
    StreamRecord t1 = RunStream(client, chat, o.image_output_tokens);
    if (!t1.status.ok()) return t1.status;
    chat.messages.push_back(AssistantMessage{t1.answer});
    chat.messages.push_back(UserMessage{std::string("And which colours does it have?")});
    StreamRecord t2 = RunStream(client, chat, o.image_output_tokens);
    if (!t2.status.ok()) return t2.status;
    StreamRecord t3 =
        RunStream(client, ImageChat(image, "What is in this picture?"), o.image_output_tokens);
    if (!t3.status.ok()) return t3.status;
    first.push_back(t1.ttft_ms());
    second.push_back(t2.ttft_ms());
    again.push_back(t3.ttft_ms());
    ratio.push_back(t1.ttft_ms() > 0 ? t2.ttft_ms() / t1.ttft_ms() : 0);
    cache_hits_first += t1.timing["vision.cache_hits"];
    cache_hits_again += t3.timing["vision.cache_hits"];
    chats.push_back({{"turn1_ttft_ms", t1.ttft_ms()},
                     {"turn1_prompt_tokens", t1.prompt_tokens},
                     {"turn2_ttft_ms", t2.ttft_ms()},
                     {"turn2_prompt_tokens", t2.prompt_tokens},
                     {"new_chat_ttft_ms", t3.ttft_ms()},
                     {"turn1_breakdown_ms", Breakdown(t1.timing)},
                     {"turn2_breakdown_ms", Breakdown(t2.timing)},
                     {"new_chat_breakdown_ms", Breakdown(t3.timing)}});
  }
  return nlohmann::json{{"chats", chats},
                        {"turn1_ttft_median_ms", Median(first)},
                        {"turn2_ttft_median_ms", Median(second)},
                        {"turn2_over_turn1_median", Median(ratio)},
                        {"new_chat_same_image_ttft_median_ms", Median(again)},
                        {"vision_cache_hits_first_turns", cache_hits_first},
                        {"vision_cache_hits_new_chats", cache_hits_again}};
}

absl::StatusOr<nlohmann::json> RunImageScenario(const GatewayClient& client,
                                                const ServedOptions& o) {
  std::vector<double> ttft, e2e;
  std::vector<nlohmann::json> breakdowns;
  nlohmann::json runs = nlohmann::json::array();
  int64_t jpeg_bytes = 0, prompt_tokens = 0;
  for (int r = 0; r < o.repeats; ++r) {
    const std::string jpeg = VariantJpeg(o.photo, o.image_side, o.image_variant + r);
    jpeg_bytes = std::ssize(jpeg);
    StreamRecord record =
        RunStream(client, ImageChat(jpeg, absl::StrCat("Request ", r, ": describe the image.")),
                  o.image_output_tokens);
    if (!record.status.ok()) return record.status;
    prompt_tokens = record.prompt_tokens;
    ttft.push_back(record.ttft_ms());
    e2e.push_back(record.e2e_ms);
    breakdowns.push_back(Breakdown(record.timing));
    runs.push_back({{"ttft_ms", record.ttft_ms()},
                    {"e2e_ms", record.e2e_ms},
                    {"breakdown_ms", breakdowns.back()}});
  }
  return nlohmann::json{{"image_side", o.image_side},
                        {"jpeg_bytes", jpeg_bytes},
                        {"prompt_tokens", prompt_tokens},
                        {"output_tokens", o.image_output_tokens},
                        {"ttft_median_ms", Median(ttft)},
                        {"e2e_median_ms", Median(e2e)},
                        {"breakdown_median_ms", MedianBreakdown(breakdowns)},
                        {"runs", runs}};
}

}  // namespace pixtral
