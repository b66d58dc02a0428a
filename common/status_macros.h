// Early-return helpers for absl::Status / absl::StatusOr, as Abseil uses internally.
//
//   absl::StatusOr<Tensor> Load(...) {
//     PIXTRAL_RETURN_IF_ERROR(Validate(input));
//     PIXTRAL_ASSIGN_OR_RETURN(Tensor t, backend.Alloc(DType::kF32, {n, d}));
//     return t;
//   }
#ifndef PIXTRAL_COMMON_STATUS_MACROS_H_
#define PIXTRAL_COMMON_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PIXTRAL_RETURN_IF_ERROR(expr)                                                         \
  do {                                                                                        \
    if (absl::Status _pixtral_status = (expr); !_pixtral_status.ok()) return _pixtral_status; \
  } while (0)

#define PIXTRAL_STATUS_CONCAT_INNER(a, b) a##b
#define PIXTRAL_STATUS_CONCAT(a, b) PIXTRAL_STATUS_CONCAT_INNER(a, b)

// `lhs` may declare a variable ("Tensor t") or name an existing one.
#define PIXTRAL_ASSIGN_OR_RETURN(lhs, expr) \
  PIXTRAL_ASSIGN_OR_RETURN_IMPL(PIXTRAL_STATUS_CONCAT(_pixtral_statusor_, __LINE__), lhs, expr)

#define PIXTRAL_ASSIGN_OR_RETURN_IMPL(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return statusor.status();            \
  lhs = *std::move(statusor)

#endif  // PIXTRAL_COMMON_STATUS_MACROS_H_
