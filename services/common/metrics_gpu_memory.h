// pixtral_gpu_memory_used_bytes{device} and pixtral_gpu_memory_total_bytes{device} for every
// GPU this process sees (CUDA_VISIBLE_DEVICES), read with cudaMemGetInfo at each scrape. For
// servers running the CUDA backend; the gateway and CPU workers do not call it.
#ifndef PIXTRAL_SERVICES_COMMON_METRICS_GPU_MEMORY_H_
#define PIXTRAL_SERVICES_COMMON_METRICS_GPU_MEMORY_H_

#include "services/common/metrics.h"

namespace pixtral::metrics {

// Adds the collector to `registry`. Returns the number of devices found; with none (no GPU, no
// driver) it adds nothing and returns 0.
int ExportGpuMemory(Registry& registry);

}  // namespace pixtral::metrics

#endif  // PIXTRAL_SERVICES_COMMON_METRICS_GPU_MEMORY_H_
