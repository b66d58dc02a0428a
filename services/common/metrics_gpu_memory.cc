#include "services/common/metrics_gpu_memory.h"

#include <cuda_runtime_api.h>

#include <string>

namespace pixtral::metrics {

int ExportGpuMemory(Registry& registry) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices <= 0) {
    cudaGetLastError();  // clear the sticky error for the backend
    return 0;
  }
  registry.AddCollector([&registry, devices] {
    // The current device is per thread: setting it here leaves the backend's threads alone.
    for (int device = 0; device < devices; ++device) {
      size_t free_bytes = 0, total_bytes = 0;
      if (cudaSetDevice(device) != cudaSuccess ||
          cudaMemGetInfo(&free_bytes, &total_bytes) != cudaSuccess) {
        cudaGetLastError();
        continue;
      }
      const Labels labels = {{"device", std::to_string(device)}};
      registry
          .GetGauge("pixtral_gpu_memory_used_bytes", "Device memory in use, all processes.", labels)
          .Set(static_cast<double>(total_bytes - free_bytes));
      registry.GetGauge("pixtral_gpu_memory_total_bytes", "Device memory in all.", labels)
          .Set(static_cast<double>(total_bytes));
    }
  });
  return devices;
}

}  // namespace pixtral::metrics
