#include "kernels/cpu/cpu_communicator.h"

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <utility>

#include "glog/logging.h"

namespace pixtral::kernels {
namespace {

// What the ranks of one group share: a reusable barrier and one pointer slot per rank.
class Rendezvous {
 public:
  explicit Rendezvous(int size) : size_(size), slots_(size) {}

  int size() const { return size_; }

  // Publishes this rank's pointer, then waits until every rank has published its own.
  void Publish(int rank, void* pointer) {
    slots_[rank] = pointer;
    Wait();
  }
  void* slot(int rank) const { return slots_[rank]; }

  // Returns once all `size` ranks have called it (for the same time). The mutex orders each
  // rank's writes before the barrier with every rank's reads after it.
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    const int64_t generation = generation_;
    if (++arrived_ == size_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != generation; });
  }

 private:
  const int size_;
  std::vector<void*> slots_;
  std::mutex mu_;
  std::condition_variable cv_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

class CpuCommunicator : public Communicator {
 public:
  CpuCommunicator(std::shared_ptr<Rendezvous> group, int rank)
      : group_(std::move(group)), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return group_->size(); }

  void AllReduceSum(const Tensor& t) override {
    CHECK(t.dtype() == DType::kF32) << "AllReduceSum: " << t.DebugString();
    const int n = size();
    if (n == 1) return;
    group_->Publish(rank_, t.data<float>());
    // Rank r owns elements [begin, end): it adds them over the ranks in rank order and writes the
    // sum back to every rank's tensor. No element has two owners, so no locks; the order of the
    // additions never depends on which rank runs them.
    const int64_t numel = t.numel();
    const int64_t begin = numel * rank_ / n, end = numel * (rank_ + 1) / n;
    for (int64_t i = begin; i < end; ++i) {
      float sum = static_cast<const float*>(group_->slot(0))[i];
      for (int r = 1; r < n; ++r) sum += static_cast<const float*>(group_->slot(r))[i];
      for (int r = 0; r < n; ++r) static_cast<float*>(group_->slot(r))[i] = sum;
    }
    group_->Wait();  // nobody returns while another rank still writes into its tensor
  }

  void Broadcast(const Tensor& t, int root) override {
    CHECK(root >= 0 && root < size()) << "Broadcast: root " << root << " of " << size();
    if (size() == 1) return;
    group_->Publish(rank_, t.data<void>());
    if (rank_ != root) std::memcpy(t.data<void>(), group_->slot(root), t.bytes());
    group_->Wait();
  }

  void AllGather(const void* send, size_t bytes, void* recv) override {
    group_->Publish(rank_, const_cast<void*>(send));
    for (int r = 0; r < size(); ++r) {
      std::memcpy(static_cast<char*>(recv) + r * bytes, group_->slot(r), bytes);
    }
    group_->Wait();
  }

  void Barrier() override { group_->Wait(); }

 private:
  std::shared_ptr<Rendezvous> group_;
  const int rank_;
};

}  // namespace

std::vector<std::unique_ptr<Communicator>> NewCpuCommunicators(int size) {
  CHECK_GE(size, 1);
  auto group = std::make_shared<Rendezvous>(size);
  std::vector<std::unique_ptr<Communicator>> comms;
  for (int r = 0; r < size; ++r) comms.push_back(std::make_unique<CpuCommunicator>(group, r));
  return comms;
}

}  // namespace pixtral::kernels
