// Collectives between the ranks of a tensor-parallel group: the communication half of tensor
// parallelism (decoder/tp_decoder.h is the compute half).
//
// A group of `size` ranks runs one model split over `size` backends, one Communicator per rank,
// each used only by its rank's thread. Every rank must issue the same collectives in the same
// order with the same shapes; a collective returns on a rank once that rank's share is done
// (device implementations only enqueue it on the rank's stream, in order with its ops).
//
// Two implementations: kernels/cpu/cpu_communicator.h (ranks are threads of one process over
// host memory; the CPU backend's tensors) and kernels/cuda/nccl_communicator.h (one GPU a rank,
// NCCL on the backend's stream). Reductions are deterministic: the same inputs give the same sum
// on every rank and on every run.
//
//   // On rank r's thread, after a row-parallel product over its slice of the inputs:
//   backend.MatMul(attn_shard, wo_shard, nullptr, partial);  // partial sums, [T, dim]
//   comm.AllReduceSum(partial);                              // the full product, on every rank
//
// AllReduceSum and Broadcast may be issued inside Backend::Record's ops (decoder/tp_decoder.h
// records each rank's decode step with its all-reduces): they neither allocate nor wait, so the
// NCCL ones are captured into the rank's CUDA graph and the in-process ones run again when the
// CPU backend replays the closure. AllGather and Barrier reach the host and may not.
//
// A failure inside a collective (a broken device or link, mismatched calls) is fatal, as a CUDA
// failure inside a backend op is: the group cannot continue with some ranks out of step.
#ifndef PIXTRAL_KERNELS_COMMUNICATOR_H_
#define PIXTRAL_KERNELS_COMMUNICATOR_H_

#include <cstddef>

#include "kernels/tensor.h"

namespace pixtral::kernels {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // t (f32, on this rank's backend) = the sum of every rank's t, in place. Same shape on all.
  virtual void AllReduceSum(const Tensor& t) = 0;
  // t (any dtype, on this rank's backend) = root's t on every rank.
  virtual void Broadcast(const Tensor& t, int root) = 0;
  // Small host buffers: `bytes` bytes from each rank, in rank order, into recv [size() * bytes].
  // Waits for this rank's queued work first, so it also orders host reads after device ops.
  virtual void AllGather(const void* send, size_t bytes, void* recv) = 0;
  // Returns once every rank has reached it (and this rank's queued work is done).
  virtual void Barrier() = 0;
};

}  // namespace pixtral::kernels

#endif  // PIXTRAL_KERNELS_COMMUNICATOR_H_
