#include "kernels/cuda/nccl_communicator.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <algorithm>
#include <cstdlib>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "glog/logging.h"

namespace pixtral::kernels {
namespace {

void CheckNccl(ncclResult_t result, const char* what) {
  CHECK(result == ncclSuccess) << "NCCL: " << what << ": " << ncclGetErrorString(result);
}

void CheckCuda(cudaError_t error, const char* what) {
  CHECK(error == cudaSuccess) << "NCCL communicator: " << what << ": " << cudaGetErrorString(error);
}

// Makes `device` current for the scope and restores the previous one after.
class ScopedDevice {
 public:
  explicit ScopedDevice(int device) {
    CheckCuda(cudaGetDevice(&previous_), "cudaGetDevice");
    CheckCuda(cudaSetDevice(device), "cudaSetDevice");
  }
  ~ScopedDevice() { cudaSetDevice(previous_); }

 private:
  int previous_ = 0;
};

class NcclCommunicator : public Communicator {
 public:
  NcclCommunicator(ncclComm_t comm, int rank, int size, cudaStream_t stream)
      : comm_(comm), rank_(rank), size_(size), stream_(stream) {}

  ~NcclCommunicator() override {
    ScopedDevice device(rank_);
    cudaStreamSynchronize(stream_);
    if (scratch_ != nullptr) cudaFree(scratch_);
    if (ncclResult_t r = ncclCommDestroy(comm_); r != ncclSuccess) {
      LOG(ERROR) << "ncclCommDestroy: " << ncclGetErrorString(r);
    }
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }

  // AllReduceSum and Broadcast only enqueue on the backend's stream (no allocation, no wait), so
  // a stream capture (Backend::Record) records them into the rank's CUDA graph.
  void AllReduceSum(const Tensor& t) override {
    CHECK(t.dtype() == DType::kF32) << "AllReduceSum: " << t.DebugString();
    CheckNccl(ncclAllReduce(t.data<float>(), t.data<float>(), t.numel(), ncclFloat, ncclSum, comm_,
                            stream_),
              "ncclAllReduce");
  }

  void Broadcast(const Tensor& t, int root) override {
    CHECK(root >= 0 && root < size_) << "Broadcast: root " << root << " of " << size_;
    CheckNccl(
        ncclBroadcast(t.data<void>(), t.data<void>(), t.bytes(), ncclUint8, root, comm_, stream_),
        "ncclBroadcast");
  }

  void AllGather(const void* send, size_t bytes, void* recv) override {
    char* slots = Scratch(bytes * size_);
    CheckCuda(cudaMemcpyAsync(slots + rank_ * bytes, send, bytes, cudaMemcpyHostToDevice, stream_),
              "copy to device");
    CheckNccl(ncclAllGather(slots + rank_ * bytes, slots, bytes, ncclUint8, comm_, stream_),
              "ncclAllGather");
    CheckCuda(cudaMemcpyAsync(recv, slots, bytes * size_, cudaMemcpyDeviceToHost, stream_),
              "copy to host");
    CheckCuda(cudaStreamSynchronize(stream_), "stream synchronize");
  }

  void Barrier() override {
    float* one = reinterpret_cast<float*>(Scratch(sizeof(float)));
    CheckNccl(ncclAllReduce(one, one, 1, ncclFloat, ncclSum, comm_, stream_), "barrier");
    CheckCuda(cudaStreamSynchronize(stream_), "stream synchronize");
  }

 private:
  // Device scratch of at least `bytes`, grown as needed (the old one freed after the stream).
  char* Scratch(size_t bytes) {
    if (bytes > scratch_bytes_) {
      if (scratch_ != nullptr) {
        CheckCuda(cudaStreamSynchronize(stream_), "stream synchronize");
        CheckCuda(cudaFree(scratch_), "cudaFree");
      }
      scratch_bytes_ = std::max<size_t>(bytes, 4096);
      CheckCuda(cudaMalloc(&scratch_, scratch_bytes_), "cudaMalloc");
    }
    return static_cast<char*>(scratch_);
  }

  ncclComm_t comm_;
  const int rank_, size_;
  cudaStream_t stream_;
  void* scratch_ = nullptr;
  size_t scratch_bytes_ = 0;
};

}  // namespace

absl::StatusOr<std::vector<std::unique_ptr<Communicator>>> NewNcclCommunicators(
    absl::Span<Backend* const> backends) {
  const int size = static_cast<int>(backends.size());
  if (size < 1) return absl::InvalidArgumentError("NCCL: no ranks");
  for (int r = 0; r < size; ++r) {
    if (backends[r] == nullptr || backends[r]->name() != "cuda" ||
        backends[r]->NativeStream() == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("NCCL: rank ", r, " is not a CUDA backend"));
    }
  }
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices < size) {
    cudaGetLastError();
    return absl::UnavailableError(
        absl::StrCat("NCCL: ", size, " ranks need ", size, " GPUs, ", devices, " visible"));
  }
  // Before the first init reads the environment; an explicit setting wins.
  setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
  std::vector<int> device_list(size);
  std::iota(device_list.begin(), device_list.end(), 0);
  std::vector<ncclComm_t> raw(size);
  if (ncclResult_t r = ncclCommInitAll(raw.data(), size, device_list.data()); r != ncclSuccess) {
    return absl::UnavailableError(
        absl::StrCat("NCCL: ncclCommInitAll over ", size, " GPUs failed: ", ncclGetErrorString(r)));
  }
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < size; ++r) {
    comms.push_back(std::make_unique<NcclCommunicator>(
        raw[r], r, size, static_cast<cudaStream_t>(backends[r]->NativeStream())));
  }
  return comms;
}

}  // namespace pixtral::kernels
