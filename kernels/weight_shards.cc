#include "kernels/weight_shards.h"

#include <cstring>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace pixtral::kernels {
namespace {

// A slice resolved against its tensor: bounds checked, -1 expanded.
struct Resolved {
  const TensorView* view;
  int64_t row_begin, rows, col_begin, cols, width;  // width: the tensor's column count
};

absl::StatusOr<Resolved> Resolve(const SafetensorsCheckpoint& weights, const MatrixSlice& s) {
  const TensorView* view = weights.Find(s.name);
  if (view == nullptr) return absl::NotFoundError(absl::StrCat("no tensor named ", s.name));
  if (view->shape.empty() || view->shape.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(s.name, ": only 1-D and 2-D tensors are sliced, not rank ",
                     view->shape.size()));
  }
  if (view->dtype != DType::kBF16 && view->dtype != DType::kF32 && view->dtype != DType::kF16) {
    return absl::InvalidArgumentError(
        absl::StrCat(s.name, ": weights must be BF16, F16 or F32, not ", DTypeName(view->dtype)));
  }
  const int64_t height = view->shape[0], width = view->shape.size() == 2 ? view->shape[1] : 1;
  Resolved r{view, s.row_begin, s.rows < 0 ? height - s.row_begin : s.rows, s.col_begin,
             s.cols < 0 ? width - s.col_begin : s.cols, width};
  if (view->shape.size() == 1 && (s.col_begin != 0 || r.cols != 1)) {
    return absl::InvalidArgumentError(absl::StrCat(s.name, " is 1-D: no column slice"));
  }
  if (r.row_begin < 0 || r.rows < 0 || r.row_begin + r.rows > height || r.col_begin < 0 ||
      r.cols < 0 || r.col_begin + r.cols > width) {
    return absl::InvalidArgumentError(absl::StrCat(
        s.name, ": slice rows [", r.row_begin, ", +", r.rows, ") columns [", r.col_begin, ", +",
        r.cols, ") is outside its shape [", height, ", ", width, "]"));
  }
  return r;
}

}  // namespace

absl::StatusOr<Tensor> LoadSlices(Backend& backend, const SafetensorsCheckpoint& weights,
                                  std::shared_ptr<const void> owner,
                                  absl::Span<const MatrixSlice> slices) {
  if (slices.empty()) return absl::InvalidArgumentError("LoadSlices: no slices");
  std::vector<Resolved> parts;
  int64_t rows = 0;
  for (const MatrixSlice& s : slices) {
    absl::StatusOr<Resolved> r = Resolve(weights, s);
    if (!r.ok()) return r.status();
    if (!parts.empty() && (r->view->dtype != parts[0].view->dtype || r->cols != parts[0].cols ||
                           r->view->shape.size() != parts[0].view->shape.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot stack a slice of ", s.name, " under ", slices[0].name));
    }
    rows += r->rows;
    parts.push_back(*r);
  }
  const Resolved& first = parts[0];
  const bool one_dim = first.view->shape.size() == 1;
  std::vector<int64_t> shape = one_dim ? std::vector<int64_t>{rows}
                                       : std::vector<int64_t>{rows, first.cols};
  const DType source = first.view->dtype;
  const size_t element = DTypeSize(source);

  // One full-width row range: contiguous in the mapping, used in place.
  if (parts.size() == 1 && first.cols == first.width && source != DType::kF16) {
    const uint8_t* begin = first.view->bytes.data() + first.row_begin * first.width * element;
    return backend.LoadWeight(source, std::move(shape), begin, std::move(owner));
  }

  const DType target = source == DType::kF16 ? DType::kF32 : source;
  const size_t out_element = DTypeSize(target);
  auto host = std::make_shared<std::vector<uint8_t>>(rows * first.cols * out_element);
  uint8_t* out = host->data();
  for (const Resolved& p : parts) {
    std::vector<float> wide;
    const uint8_t* src = p.view->bytes.data();
    if (source == DType::kF16) {  // rare: widen the whole tensor, then slice the floats
      absl::StatusOr<std::vector<float>> f = ToFloat32(*p.view);
      if (!f.ok()) return f.status();
      wide = *std::move(f);
      src = reinterpret_cast<const uint8_t*>(wide.data());
    }
    const size_t row_bytes = p.cols * out_element;
    for (int64_t r = 0; r < p.rows; ++r) {
      std::memcpy(out, src + ((p.row_begin + r) * p.width + p.col_begin) * out_element,
                  row_bytes);
      out += row_bytes;
    }
  }
  const void* data = host->data();
  return backend.LoadWeight(target, std::move(shape), data, std::move(host));
}

}  // namespace pixtral::kernels
