#include "services/common/metrics_catalog.h"

namespace pixtral::metrics {
namespace {

Registry& R() { return Registry::Default(); }

}  // namespace

// Bucket choices: decode steps take ~10 ms on an H100 and up to seconds on the CPU backend;
// time to first token spans 0.1 s (text) to tens of seconds (several large images, a queue);
// whole completions run to minutes.

Histogram& TimeToFirstToken() {
  static Histogram& h = R().GetHistogram(
      "pixtral_time_to_first_token_seconds",
      "From a completion's arrival to its first generated token (images and prefill included).",
      ExponentialBuckets(0.01, 2, 14));  // 10 ms .. 82 s
  return h;
}

Histogram& InterTokenLatency() {
  static Histogram& h =
      R().GetHistogram("pixtral_inter_token_latency_seconds",
                       "Between successive generated tokens of a completion, as delivered.",
                       ExponentialBuckets(0.001, 2, 12));  // 1 ms .. 2 s
  return h;
}

Histogram& EndToEndLatency() {
  static Histogram& h = R().GetHistogram("pixtral_e2e_request_latency_seconds",
                                         "From a completion's arrival to its last token.",
                                         ExponentialBuckets(0.05, 2, 14));  // 50 ms .. 410 s
  return h;
}

Histogram& QueueTime() {
  static Histogram& h =
      R().GetHistogram("pixtral_request_queue_time_seconds",
                       "Time a request waited in the decoder's queue before it joined the batch.",
                       ExponentialBuckets(0.001, 2, 17));  // 1 ms .. 65 s
  return h;
}

Counter& PromptTokens() {
  static Counter& c = R().GetCounter("pixtral_prompt_tokens_total",
                                     "Prompt tokens of completions, image tokens included.");
  return c;
}

Counter& GenerationTokens() {
  static Counter& c =
      R().GetCounter("pixtral_generation_tokens_total", "Tokens generated for completions.");
  return c;
}

Gauge& RunningRequests() {
  static Gauge& g =
      R().GetGauge("pixtral_num_requests_running", "Requests in the decoder's running batch.");
  return g;
}

Gauge& WaitingRequests() {
  static Gauge& g =
      R().GetGauge("pixtral_num_requests_waiting", "Requests waiting to join the decoder's batch.");
  return g;
}

Histogram& BatchSize() {
  static Histogram& h =
      R().GetHistogram("pixtral_batch_size", "Sequences decoded together in one decode step.",
                       ExponentialBuckets(1, 2, 10));  // 1 .. 512
  return h;
}

Gauge& KvCacheBlocksUsed() {
  static Gauge& g = R().GetGauge("pixtral_kv_cache_blocks_used", "KV cache blocks in use.");
  return g;
}

Gauge& KvCacheBlocksTotal() {
  static Gauge& g = R().GetGauge("pixtral_kv_cache_blocks_total", "KV cache blocks in all.");
  return g;
}

Counter& PrefixCacheQueries() {
  static Counter& c = R().GetCounter("pixtral_prefix_cache_queries_total",
                                     "Prompt blocks looked up in the prefix cache.");
  return c;
}

Counter& PrefixCacheHits() {
  static Counter& c =
      R().GetCounter("pixtral_prefix_cache_hits_total", "Prompt blocks found in the prefix cache.");
  return c;
}

Counter& ImageCacheQueries() {
  static Counter& c = R().GetCounter("pixtral_image_cache_queries_total",
                                     "Images looked up in the image-feature cache.");
  return c;
}

Counter& ImageCacheHits() {
  static Counter& c =
      R().GetCounter("pixtral_image_cache_hits_total", "Images found in the image-feature cache.");
  return c;
}

Counter& ImagesEncoded() {
  static Counter& c =
      R().GetCounter("pixtral_images_encoded_total", "Images run through the vision encoder.");
  return c;
}

Histogram& ImageFetchLatency() {
  static Histogram& h =
      R().GetHistogram("pixtral_image_fetch_seconds", "Loading one image URL on the gateway.",
                       ExponentialBuckets(0.0005, 2, 16));  // 0.5 ms .. 16 s
  return h;
}

Histogram& ImageDecodeLatency() {
  static Histogram& h = R().GetHistogram("pixtral_image_decode_seconds",
                                         "Decoding one image to 8-bit RGB on the gateway.",
                                         ExponentialBuckets(0.0005, 2, 14));  // 0.5 ms .. 4 s
  return h;
}

Histogram& ImagePreprocessLatency() {
  static Histogram& h = R().GetHistogram(
      "pixtral_image_preprocess_seconds",
      "Resizing and normalizing one image on the gateway (zero when sent as 8-bit RGB).",
      ExponentialBuckets(0.0005, 2, 14));  // 0.5 ms .. 4 s
  return h;
}

Histogram& VisionNormalizeLatency() {
  static Histogram& h = R().GetHistogram(
      "pixtral_vision_normalize_seconds",
      "Resizing and normalizing the 8-bit RGB images of one Encode call on the vision worker.",
      ExponentialBuckets(0.0005, 2, 14));  // 0.5 ms .. 4 s
  return h;
}

Histogram& VisionLatency() {
  static Histogram& h =
      R().GetHistogram("pixtral_vision_encode_seconds",
                       "One vision-encoder call, all its images, batching wait included.",
                       ExponentialBuckets(0.005, 2, 12));  // 5 ms .. 10 s
  return h;
}

Gauge& ModelLoadSeconds() {
  static Gauge& g =
      R().GetGauge("pixtral_model_load_seconds", "How long loading the model took; 0 until done.");
  return g;
}

Gauge& ModelLoaded() {
  static Gauge& g = R().GetGauge("pixtral_model_loaded", "1 once the model is loaded.");
  return g;
}

Counter& WorkerFailures(const std::string& address) {
  return R().GetCounter("pixtral_worker_failures_total",
                        "Calls from this gateway to a worker that failed, by worker address.",
                        {{"address", address}});
}

}  // namespace pixtral::metrics
