#include "vision_encoder/vision_encoder.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/rope.h"

namespace pixtral {

using kernels::Backend;
using kernels::BlockWeights;
using kernels::DType;
using kernels::Tensor;

namespace {

constexpr float kNormEps = 1e-5f;

}  // namespace

absl::StatusOr<std::unique_ptr<VisionEncoder>> VisionEncoder::Create(
    Backend* backend, const VisionEncoderConfig& config, int decoder_dim,
    kernels::WeightLoader& loader, bool load_encoder) {
  std::unique_ptr<VisionEncoder> e(new VisionEncoder(backend, config));
  const int64_t p = config.patch_size;
  if (load_encoder) {
    PIXTRAL_ASSIGN_OR_RETURN(Tensor conv, loader.Get("vision_encoder.patch_conv.weight"));
    e->patch_conv_ = conv.Reshape({config.hidden_size, config.num_channels * p * p});
    PIXTRAL_ASSIGN_OR_RETURN(e->ln_pre_, loader.Get("vision_encoder.ln_pre.weight"));
  }
  for (int i = 0; load_encoder && i < config.num_hidden_layers; ++i) {
    PIXTRAL_ASSIGN_OR_RETURN(
        BlockWeights block,
        kernels::LoadBlock(loader, absl::StrCat("vision_encoder.transformer.layers.", i),
                           /*fused=*/true));
    e->blocks_.push_back(std::move(block));
  }
  PIXTRAL_ASSIGN_OR_RETURN(e->w_in_, loader.Get("vision_language_adapter.w_in.weight"));
  PIXTRAL_ASSIGN_OR_RETURN(e->w_out_, loader.Get("vision_language_adapter.w_out.weight"));
  if (config.adapter_bias) {
    PIXTRAL_ASSIGN_OR_RETURN(e->b_in_, loader.Get("vision_language_adapter.w_in.bias"));
    PIXTRAL_ASSIGN_OR_RETURN(e->b_out_, loader.Get("vision_language_adapter.w_out.bias"));
  }
  if (e->w_out_.dim(0) != decoder_dim) {
    return absl::InvalidArgumentError(absl::StrCat("vision_language_adapter.w_out.weight is ",
                                                   e->w_out_.DebugString(),
                                                   ", the decoder's dim is ", decoder_dim));
  }
  return e;
}

int64_t VisionEncoder::NumPatches(const Image& image) const {
  return (image.height / config_.patch_size) * (image.width / config_.patch_size);
}

absl::Status VisionEncoder::Validate(absl::Span<const Image> images) const {
  const int64_t p = config_.patch_size, max = config_.image_size;
  for (size_t i = 0; i < images.size(); ++i) {
    const Image& im = images[i];
    if (im.height <= 0 || im.width <= 0 || im.height % p != 0 || im.width % p != 0) {
      return absl::InvalidArgumentError(absl::StrCat("image ", i, " is ", im.height, "x", im.width,
                                                     ": sides must be positive multiples of ", p));
    }
    if (im.height > max || im.width > max) {
      return absl::InvalidArgumentError(absl::StrCat("image ", i, " is ", im.height, "x", im.width,
                                                     ": larger than the maximum ", max, "x", max));
    }
    if (static_cast<int64_t>(im.pixels.size()) != config_.num_channels * im.height * im.width) {
      return absl::InvalidArgumentError(absl::StrCat("image ", i, " has ", im.pixels.size(),
                                                     " values, expected ", config_.num_channels,
                                                     "x", im.height, "x", im.width));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> VisionEncoder::Encode(absl::Span<const Image> images) {
  if (!patch_conv_.defined()) {
    return absl::FailedPreconditionError("the vision encoder was loaded as the adapter only");
  }
  PIXTRAL_RETURN_IF_ERROR(Validate(images));
  Backend& b = *backend_;
  const int64_t p = config_.patch_size, c = config_.num_channels, d = config_.hidden_size;
  const int64_t heads = config_.num_attention_heads, hd = config_.head_dim();

  // Each patch's image (for the block-diagonal mask) and (row, column) (for the 2D RoPE).
  std::vector<int32_t> lengths, rows, cols;
  for (const Image& im : images) {
    lengths.push_back(static_cast<int32_t>(NumPatches(im)));
    for (int32_t r = 0; r < im.height / p; ++r) {
      for (int32_t col = 0; col < im.width / p; ++col) {
        rows.push_back(r);
        cols.push_back(col);
      }
    }
  }
  const int64_t t = static_cast<int64_t>(rows.size());
  // The ops' scratch now (a device backend's bf16 copies of k and v, input conversions), so that
  // no op fails to get it midway.
  PIXTRAL_RETURN_IF_ERROR(b.ReserveScratch(4 * t * std::max(d, c * p * p)));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor patches, b.Alloc(DType::kF32, {t, c * p * p}));
  // Tensors only products read (normed rows, the MLP's) are in the backend's input type (bf16
  // on the GPU: no conversion pass before each product); h is the f32 residual branch.
  const DType act = b.MatMulInputDType(t);
  const int64_t f = config_.intermediate_size;
  PIXTRAL_ASSIGN_OR_RETURN(Tensor x, b.Alloc(DType::kF32, {t, d}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor h, b.Alloc(DType::kF32, {t, d}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor hn, b.Alloc(act, {t, d}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor qkv, b.Alloc(DType::kF32, {t, 3 * d}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor q, b.Alloc(DType::kF32, {t, heads, hd}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor k, b.Alloc(DType::kF32, {t, heads, hd}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor v, b.Alloc(DType::kF32, {t, heads, hd}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor attn, b.Alloc(DType::kF32, {t, heads, hd}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor gate_up, b.Alloc(act, {t, 2 * f}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor gate, b.Alloc(act, {t, f}));
  PIXTRAL_ASSIGN_OR_RETURN(
      Tensor rope, kernels::ToBackend(b, kernels::RopeTable2D(rows, cols, hd, config_.rope_theta),
                                      {t, hd / 2, 2}));

  PIXTRAL_ASSIGN_OR_RETURN(Tensor segments, kernels::ToBackend(b, lengths, {std::ssize(lengths)}));

  int64_t offset = 0;  // patch convolution = im2col + one matmul
  for (const Image& im : images) {
    PIXTRAL_ASSIGN_OR_RETURN(Tensor pixels,
                             kernels::ToBackend(b, im.pixels, {c, im.height, im.width}));
    b.Patchify(pixels, static_cast<int>(p), patches.Rows(offset, NumPatches(im)));
    offset += NumPatches(im);
  }
  b.MatMul(patches, patch_conv_, nullptr, x);
  b.RmsNorm(x, ln_pre_, kNormEps, x);

  const Tensor parts[] = {q, k, v};
  // Each residual add is fused with the RmsNorm after it (the next block's, past the MLP).
  if (!blocks_.empty()) b.RmsNorm(x, blocks_[0].attention_norm, kNormEps, hn);
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const BlockWeights& w = blocks_[l];
    b.MatMul(hn, w.wqkv, nullptr, qkv);  // wq, wk, wv stacked
    b.SplitColumns(qkv, parts);
    b.Rope(q, rope);
    b.Rope(k, rope);
    b.SegmentAttention(q, k, v, segments, 1.0f / std::sqrt(static_cast<float>(hd)), attn);
    b.MatMul(attn.Reshape({t, d}), w.wo, nullptr, h);
    b.AddRmsNorm(x, h, w.ffn_norm, kNormEps, hn);
    b.MatMul(hn, w.w13, nullptr, gate_up);  // w1, w3 stacked
    b.SwiGlu(gate_up, gate);
    b.MatMul(gate, w.w2, nullptr, h);
    if (l + 1 < blocks_.size()) {
      b.AddRmsNorm(x, h, blocks_[l + 1].attention_norm, kNormEps, hn);
    } else {
      b.Add(x, h, x);
    }
  }
  return x;
}

absl::StatusOr<Tensor> VisionEncoder::Adapt(const Tensor& features) {
  Backend& b = *backend_;
  const int64_t n = features.dim(0);
  // The f32 features' bf16 copy for the first product (a device backend's), reserved up front.
  PIXTRAL_RETURN_IF_ERROR(b.ReserveScratch(2 * n * features.dim(1)));
  // h is only read by the second product: the backend's input type, GELU in the first's epilogue.
  PIXTRAL_ASSIGN_OR_RETURN(Tensor h, b.Alloc(b.MatMulInputDType(n), {n, w_in_.dim(0)}));
  PIXTRAL_ASSIGN_OR_RETURN(Tensor out, b.Alloc(DType::kF32, {n, w_out_.dim(0)}));
  b.MatMulGelu(features, w_in_, b_in_.defined() ? &b_in_ : nullptr, h);
  b.MatMul(h, w_out_, b_out_.defined() ? &b_out_ : nullptr, out);
  return out;
}

}  // namespace pixtral
