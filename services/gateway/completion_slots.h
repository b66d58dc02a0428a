// How many completions the gateway runs at once, shared by its gRPC and HTTP fronts: beyond the
// limit a call is refused at once (RESOURCE_EXHAUSTED, HTTP 429) rather than queued without bound.
//
//   std::optional<CompletionSlots::Slot> slot = slots.TryAcquire();
//   if (!slot.has_value()) return TooBusy(slots.max());
//   ... run the completion; the slot is released when `slot` goes out of scope ...
#ifndef PIXTRAL_SERVICES_GATEWAY_COMPLETION_SLOTS_H_
#define PIXTRAL_SERVICES_GATEWAY_COMPLETION_SLOTS_H_

#include <atomic>
#include <optional>

namespace pixtral {

class CompletionSlots {
 public:
  // Holds one slot until destroyed.
  class Slot {
   public:
    explicit Slot(CompletionSlots* slots) : slots_(slots) {}
    Slot(Slot&& other) noexcept : slots_(other.slots_) { other.slots_ = nullptr; }
    Slot& operator=(Slot&&) = delete;
    ~Slot() {
      if (slots_ != nullptr) slots_->running_.fetch_sub(1);
    }

   private:
    CompletionSlots* slots_;
  };

  explicit CompletionSlots(int max) : max_(max) {}

  std::optional<Slot> TryAcquire() {
    if (running_.fetch_add(1) >= max_) {
      running_.fetch_sub(1);
      return std::nullopt;
    }
    return Slot(this);
  }

  int max() const { return max_; }

 private:
  const int max_;
  std::atomic<int> running_{0};
};

}  // namespace pixtral

#endif  // PIXTRAL_SERVICES_GATEWAY_COMPLETION_SLOTS_H_
