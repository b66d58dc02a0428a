// SplitMix64 (Steele, Lea, Flood 2014), the project's one pseudo-random generator, for streams
// that must be the same on every machine and standard library: the sampler's draws (a seed
// reproduces a completion) and the random-weight model folders of tools/.
//
//   SplitMix64 rng(seed);
//   uint64_t bits = rng.Next();
//   double u = rng.Uniform();  // in [0, 1)
//
// The standard library's engines are specified but its distributions are not, so a uniform double
// is made here: the top 53 bits of one 64-bit output.
#ifndef PIXTRAL_COMMON_SPLITMIX64_H_
#define PIXTRAL_COMMON_SPLITMIX64_H_

#include <cstdint>

namespace pixtral {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next();
  // In [0, 1), a multiple of 2^-53.
  double Uniform();

 private:
  uint64_t state_;
};

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_SPLITMIX64_H_
