// Every metric the Pixtral servers export, in one place: one accessor per metric, named for what
// it measures, with its Prometheus name, help and buckets in metrics_catalog.cc. A series
// appears at /metrics once its accessor is first called, so a server lists what it measures.
//
//   metrics::TimeToFirstToken().Observe(seconds);
//   metrics::PrefixCacheQueries().Increment();
//   if (hit) metrics::PrefixCacheHits().Increment();
//
// Who records what: the gateway (and the embedded mode) the client-visible latencies and token
// counts; the decoder worker queue time, running/waiting requests, batch sizes and the KV cache;
// the vision worker images and encode latency; CUDA workers GPU memory. Request counts and
// durations by method come from the request-log interceptor (services/common/logging.h).
#ifndef PIXTRAL_SERVICES_COMMON_METRICS_CATALOG_H_
#define PIXTRAL_SERVICES_COMMON_METRICS_CATALOG_H_

#include <string>

#include "services/common/metrics.h"

namespace pixtral::metrics {

// ---- Latencies of a completion -------------------------------------------------------------
Histogram& TimeToFirstToken();   // pixtral_time_to_first_token_seconds
Histogram& InterTokenLatency();  // pixtral_inter_token_latency_seconds
Histogram& EndToEndLatency();    // pixtral_e2e_request_latency_seconds
Histogram& QueueTime();          // pixtral_request_queue_time_seconds

// ---- Tokens --------------------------------------------------------------------------------
Counter& PromptTokens();      // pixtral_prompt_tokens_total
Counter& GenerationTokens();  // pixtral_generation_tokens_total

// ---- The decoder's batch and cache ---------------------------------------------------------
Gauge& RunningRequests();       // pixtral_num_requests_running
Gauge& WaitingRequests();       // pixtral_num_requests_waiting
Histogram& BatchSize();         // pixtral_batch_size: sequences in one decode step
Gauge& KvCacheBlocksUsed();     // pixtral_kv_cache_blocks_used
Gauge& KvCacheBlocksTotal();    // pixtral_kv_cache_blocks_total
Counter& PrefixCacheQueries();  // pixtral_prefix_cache_queries_total (blocks looked up)
Counter& PrefixCacheHits();     // pixtral_prefix_cache_hits_total
Counter& ImageCacheQueries();   // pixtral_image_cache_queries_total (images looked up)
Counter& ImageCacheHits();      // pixtral_image_cache_hits_total

// ---- Images --------------------------------------------------------------------------------
Counter& ImagesEncoded();    // pixtral_images_encoded_total
Histogram& VisionLatency();  // pixtral_vision_encode_seconds: one Encode call, all its images
// The gateway's part of one image, each step per image: loading a URL (not inline bytes),
// decoding to 8-bit RGB, and resizing and normalizing (none when sent to a vision worker as
// 8-bit RGB, which then does it: pixtral_vision_normalize_seconds).
Histogram& ImageFetchLatency();       // pixtral_image_fetch_seconds
Histogram& ImageDecodeLatency();      // pixtral_image_decode_seconds
Histogram& ImagePreprocessLatency();  // pixtral_image_preprocess_seconds
Histogram& VisionNormalizeLatency();  // pixtral_vision_normalize_seconds: one call's RGB images

// ---- The process ---------------------------------------------------------------------------
Gauge& ModelLoadSeconds();  // pixtral_model_load_seconds (0 until loaded)
Gauge& ModelLoaded();       // pixtral_model_loaded: 1 once the model is loaded
// pixtral_worker_failures_total{address}: a gateway's calls to that worker that failed.
Counter& WorkerFailures(const std::string& address);

}  // namespace pixtral::metrics

#endif  // PIXTRAL_SERVICES_COMMON_METRICS_CATALOG_H_
