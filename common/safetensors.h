// Reading and writing safetensors files: the weight format of Pixtral's consolidated.safetensors.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON naming each tensor's dtype,
// shape and [begin, end) byte range, then the tensor bytes. Reading memory-maps the file and hands
// out zero-copy views; a 25 GB checkpoint is never copied into host memory. Every header field is
// validated before a view is made, so a corrupt or truncated file is an error naming the file and
// the tensor, never an out-of-bounds read.
//
//   absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
//       SafetensorsFile::Open("/models/pixtral/consolidated.safetensors");
//   if (!file.ok()) return file.status();
//   const TensorView* norm = (*file)->Find("norm.weight");
//   if (norm == nullptr) return absl::NotFoundError("norm.weight");
//   absl::StatusOr<std::vector<float>> values = ToFloat32(*norm);
//
// Sharded checkpoints (model-00001-of-00002.safetensors, ...) open as one SafetensorsCheckpoint.
#ifndef PIXTRAL_COMMON_SAFETENSORS_H_
#define PIXTRAL_COMMON_SAFETENSORS_H_

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "common/dtype.h"

namespace pixtral {

// A tensor inside an open file. `bytes` stays valid while the file object lives.
struct TensorView {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  absl::Span<const uint8_t> bytes;

  int64_t num_elements() const;

  // The elements as T. Fails if sizeof(T) is not the dtype's size or the data is not aligned
  // for T (the format does not promise alignment; files written by this project and by
  // Hugging Face's writer are 8-byte aligned).
  template <typename T>
  absl::StatusOr<absl::Span<const T>> As() const {
    if (sizeof(T) != static_cast<size_t>(DTypeSize(dtype))) return WrongElementSize(sizeof(T));
    if (reinterpret_cast<uintptr_t>(bytes.data()) % alignof(T) != 0) return Misaligned(alignof(T));
    return absl::Span<const T>(reinterpret_cast<const T*>(bytes.data()), bytes.size() / sizeof(T));
  }

 private:
  absl::Status WrongElementSize(size_t size) const;
  absl::Status Misaligned(size_t alignment) const;
};

// Widening copies, for tests, small tensors and reference code.
absl::StatusOr<std::vector<float>> ToFloat32(const TensorView& tensor);  // BF16, F16, F32
absl::StatusOr<std::vector<int64_t>> ToInt64(const TensorView& tensor);  // I64, I32, U8

// One safetensors file, memory-mapped.
class SafetensorsFile {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);

  // Parses a whole file image held in memory (tests, fuzzing, data received over the network).
  // `label` names it in error messages.
  static absl::StatusOr<std::unique_ptr<SafetensorsFile>> FromBytes(std::string bytes,
                                                                     std::string label);

  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;
  ~SafetensorsFile();

  // nullptr if there is no tensor of that name.
  const TensorView* Find(absl::string_view name) const;

  // In the order of their data in the file.
  const std::vector<TensorView>& tensors() const { return tensors_; }

  // The optional "__metadata__" string map.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  const std::string& path() const { return path_; }

 private:
  SafetensorsFile() = default;
  absl::Status Parse(absl::Span<const uint8_t> file);

  std::string path_;
  void* mapping_ = nullptr;  // from mmap, or null for FromBytes
  size_t mapping_size_ = 0;
  std::string owned_bytes_;  // FromBytes storage
  std::vector<TensorView> tensors_;
  absl::flat_hash_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Several files read as one set of tensors. A name in two files is an error.
class SafetensorsCheckpoint {
 public:
  static absl::StatusOr<SafetensorsCheckpoint> Open(const std::vector<std::string>& paths);

  const TensorView* Find(absl::string_view name) const;
  // Every tensor of every file, file by file.
  std::vector<const TensorView*> tensors() const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  absl::flat_hash_map<std::string, const TensorView*> index_;
};

// The name, dtype and shape of a tensor to write.
struct TensorSpec {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
};

// Streams a safetensors file to disk: the header first (from every tensor's spec), then each
// tensor's bytes in spec order, in as many WriteData calls as the caller likes. Tensors are laid
// out 8-byte aligned. The file is written under a temporary name and renamed by Close(), so a
// crash never leaves a truncated file under the final name.
class SafetensorsWriter {
 public:
  static absl::StatusOr<std::unique_ptr<SafetensorsWriter>> Create(
      const std::string& path, std::vector<TensorSpec> specs,
      const std::map<std::string, std::string>& metadata = {});

  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;
  ~SafetensorsWriter();

  absl::Status WriteData(absl::Span<const uint8_t> bytes);
  // Fails unless every tensor's bytes were written exactly.
  absl::Status Close();

 private:
  SafetensorsWriter() = default;

  std::string path_;
  std::string temp_path_;
  std::FILE* out_ = nullptr;
  uint64_t expected_bytes_ = 0;
  uint64_t written_bytes_ = 0;
};

struct TensorToWrite {
  TensorSpec spec;
  absl::Span<const uint8_t> bytes;
};

// Writes a whole file at once.
absl::Status WriteSafetensors(const std::string& path, absl::Span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata = {});

// Views a vector's elements as bytes, for TensorToWrite.
template <typename T>
absl::Span<const uint8_t> AsBytes(const std::vector<T>& values) {
  return absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(values.data()),
                                   values.size() * sizeof(T));
}

}  // namespace pixtral

#endif  // PIXTRAL_COMMON_SAFETENSORS_H_
