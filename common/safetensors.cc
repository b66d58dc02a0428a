#include "common/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace pixtral {
namespace {

using Json = nlohmann::json;

// Real headers are a few hundred kB (Pixtral-12B: ~60 kB); anything this large is hostile.
constexpr uint64_t kMaxHeaderBytes = 100 << 20;
constexpr uint64_t kHeaderLengthBytes = 8;
constexpr uint64_t kDataAlignment = 8;

uint64_t ReadLittleEndian64(const uint8_t* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

void AppendLittleEndian64(uint64_t value, std::string* out) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// Non-negative integer that fits in int64 (JSON numbers may be negative, fractional or huge).
bool AsSize(const Json& value, uint64_t* out) {
  if (!value.is_number_unsigned()) return false;
  *out = value.get<uint64_t>();
  return *out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

struct ParsedEntry {
  TensorView view;
  uint64_t begin;
  uint64_t end;
};

// Validates one header entry; the data offsets are checked against the buffer by the caller.
absl::StatusOr<ParsedEntry> ParseEntry(const std::string& name, const Json& entry) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\": ", what));
  };
  if (!entry.is_object()) return error("header entry is not an object");
  auto dtype_it = entry.find("dtype");
  auto shape_it = entry.find("shape");
  auto offsets_it = entry.find("data_offsets");
  if (dtype_it == entry.end() || !dtype_it->is_string()) return error("missing string \"dtype\"");
  if (shape_it == entry.end() || !shape_it->is_array()) return error("missing array \"shape\"");
  if (offsets_it == entry.end() || !offsets_it->is_array() || offsets_it->size() != 2) {
    return error("\"data_offsets\" must be [begin, end]");
  }
  ParsedEntry parsed;
  parsed.view.name = name;
  absl::StatusOr<DType> dtype = ParseDType(dtype_it->get<std::string>());
  if (!dtype.ok()) return error(dtype.status().message());
  parsed.view.dtype = *dtype;

  // Element count with overflow checks: a hostile shape must not wrap around to a small size.
  uint64_t elements = 1;
  for (const Json& dim : *shape_it) {
    uint64_t size;
    if (!AsSize(dim, &size)) return error("shape dimensions must be non-negative integers");
    if (size != 0 && elements > std::numeric_limits<uint64_t>::max() / 8 / size) {
      return error("shape is too large");
    }
    elements *= size;
    parsed.view.shape.push_back(static_cast<int64_t>(size));
  }
  if (!AsSize((*offsets_it)[0], &parsed.begin) || !AsSize((*offsets_it)[1], &parsed.end)) {
    return error("data offsets must be non-negative integers");
  }
  if (parsed.begin > parsed.end) return error("data offsets are reversed");
  const uint64_t expected = elements * DTypeSize(*dtype);
  if (parsed.end - parsed.begin != expected) {
    return error(absl::StrCat("shape [", absl::StrJoin(parsed.view.shape, ","), "] of ",
                              DTypeName(*dtype), " needs ", expected, " bytes but data_offsets span ",
                              parsed.end - parsed.begin));
  }
  return parsed;
}

}  // namespace

int64_t TensorView::num_elements() const {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

absl::Status TensorView::WrongElementSize(size_t size) const {
  return absl::InvalidArgumentError(absl::StrCat("tensor \"", name, "\" is ", DTypeName(dtype),
                                                 ", not a ", size, "-byte type"));
}

absl::Status TensorView::Misaligned(size_t alignment) const {
  return absl::InvalidArgumentError(
      absl::StrCat("tensor \"", name, "\" data is not ", alignment, "-byte aligned"));
}

absl::StatusOr<std::vector<float>> ToFloat32(const TensorView& tensor) {
  std::vector<float> out(tensor.num_elements());
  const uint8_t* p = tensor.bytes.data();
  for (size_t i = 0; i < out.size(); ++i) {
    switch (tensor.dtype) {
      case DType::kBF16: {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        out[i] = Bf16ToFloat(bits);
        break;
      }
      case DType::kF16: {
        uint16_t bits;
        std::memcpy(&bits, p + 2 * i, 2);
        out[i] = F16ToFloat(bits);
        break;
      }
      case DType::kF32:
        std::memcpy(&out[i], p + 4 * i, 4);
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor \"", tensor.name, "\" is ", DTypeName(tensor.dtype), ", not floating point"));
    }
  }
  return out;
}

absl::StatusOr<std::vector<int64_t>> ToInt64(const TensorView& tensor) {
  std::vector<int64_t> out(tensor.num_elements());
  const uint8_t* p = tensor.bytes.data();
  for (size_t i = 0; i < out.size(); ++i) {
    switch (tensor.dtype) {
      case DType::kI64:
        std::memcpy(&out[i], p + 8 * i, 8);
        break;
      case DType::kI32: {
        int32_t value;
        std::memcpy(&value, p + 4 * i, 4);
        out[i] = value;
        break;
      }
      case DType::kU8:
        out[i] = p[i];
        break;
      default:
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor \"", tensor.name, "\" is ", DTypeName(tensor.dtype), ", not an integer type"));
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::NotFoundError(absl::StrCat(path, ": cannot open: ", std::strerror(errno)));
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  if (st.st_size > 0) {
    void* mapping = ::mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      ::close(fd);
      return absl::InternalError(absl::StrCat(path, ": mmap failed: ", std::strerror(errno)));
    }
    file->mapping_ = mapping;
    file->mapping_size_ = st.st_size;
  }
  ::close(fd);  // the mapping keeps the file alive
  absl::Status status = file->Parse(
      absl::Span<const uint8_t>(static_cast<const uint8_t*>(file->mapping_), file->mapping_size_));
  if (!status.ok()) return status;
  return file;
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::FromBytes(std::string bytes,
                                                                            std::string label) {
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = std::move(label);
  file->owned_bytes_ = std::move(bytes);
  absl::Status status = file->Parse(absl::Span<const uint8_t>(
      reinterpret_cast<const uint8_t*>(file->owned_bytes_.data()), file->owned_bytes_.size()));
  if (!status.ok()) return status;
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

absl::Status SafetensorsFile::Parse(absl::Span<const uint8_t> file) {
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ", what));
  };
  if (file.size() < kHeaderLengthBytes) {
    return error(absl::StrCat("file is ", file.size(), " bytes, too short for a safetensors header"));
  }
  const uint64_t header_length = ReadLittleEndian64(file.data());
  if (header_length > kMaxHeaderBytes) {
    return error(absl::StrCat("header length ", header_length, " exceeds the ", kMaxHeaderBytes,
                              "-byte limit"));
  }
  if (header_length > file.size() - kHeaderLengthBytes) {
    return error(absl::StrCat("header length ", header_length, " runs past the end of the ",
                              file.size(), "-byte file (truncated?)"));
  }
  const char* header_begin = reinterpret_cast<const char*>(file.data() + kHeaderLengthBytes);
  Json header = Json::parse(header_begin, header_begin + header_length, /*cb=*/nullptr,
                            /*allow_exceptions=*/false);
  if (header.is_discarded()) return error("header is not valid JSON");
  if (!header.is_object()) return error("header is not a JSON object");

  const absl::Span<const uint8_t> data = file.subspan(kHeaderLengthBytes + header_length);
  std::vector<ParsedEntry> entries;
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) return error("__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) return error(absl::StrCat("__metadata__[\"", key, "\"] is not a string"));
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    absl::StatusOr<ParsedEntry> parsed = ParseEntry(name, entry);
    if (!parsed.ok()) return error(parsed.status().message());
    if (parsed->end > data.size()) {
      return error(absl::StrCat("tensor \"", name, "\": data ends at byte ", parsed->end,
                                " but the data section has ", data.size(), " bytes (truncated?)"));
    }
    entries.push_back(*std::move(parsed));
  }

  // The data section must be exactly covered: no overlaps (two tensors aliasing the same bytes)
  // and no gaps, as the format requires.
  std::sort(entries.begin(), entries.end(), [](const ParsedEntry& a, const ParsedEntry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t covered = 0;
  for (const ParsedEntry& entry : entries) {
    if (entry.begin < covered) {
      return error(absl::StrCat("tensor \"", entry.view.name, "\" overlaps the tensor before it"));
    }
    if (entry.begin > covered) {
      return error(absl::StrCat("gap of ", entry.begin - covered, " bytes before tensor \"",
                                entry.view.name, "\""));
    }
    covered = entry.end;
  }
  if (covered != data.size()) {
    return error(absl::StrCat(data.size() - covered, " trailing bytes after the last tensor"));
  }

  tensors_.reserve(entries.size());
  for (ParsedEntry& entry : entries) {
    entry.view.bytes = data.subspan(entry.begin, entry.end - entry.begin);
    index_[entry.view.name] = tensors_.size();
    tensors_.push_back(std::move(entry.view));
  }
  return absl::OkStatus();
}

const TensorView* SafetensorsFile::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

absl::StatusOr<SafetensorsCheckpoint> SafetensorsCheckpoint::Open(
    const std::vector<std::string>& paths) {
  if (paths.empty()) return absl::InvalidArgumentError("no safetensors files given");
  SafetensorsCheckpoint checkpoint;
  for (const std::string& path : paths) {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
    if (!file.ok()) return file.status();
    for (const TensorView& tensor : (*file)->tensors()) {
      auto [it, inserted] = checkpoint.index_.emplace(tensor.name, &tensor);
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor \"", tensor.name, "\" is in two files; the second is ", path));
      }
    }
    checkpoint.files_.push_back(*std::move(file));
  }
  return checkpoint;
}

const TensorView* SafetensorsCheckpoint::Find(absl::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

std::vector<const TensorView*> SafetensorsCheckpoint::tensors() const {
  std::vector<const TensorView*> all;
  for (const auto& file : files_) {
    for (const TensorView& tensor : file->tensors()) all.push_back(&tensor);
  }
  return all;
}

absl::StatusOr<std::unique_ptr<SafetensorsWriter>> SafetensorsWriter::Create(
    const std::string& path, std::vector<TensorSpec> specs,
    const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorSpec& spec : specs) {
    if (spec.name.empty() || spec.name == "__metadata__" || header.contains(spec.name)) {
      return absl::InvalidArgumentError(absl::StrCat("bad or duplicate tensor name \"", spec.name, "\""));
    }
    uint64_t bytes = DTypeSize(spec.dtype);
    for (int64_t dim : spec.shape) {
      if (dim < 0) return absl::InvalidArgumentError(absl::StrCat("negative dimension in ", spec.name));
      bytes *= dim;
    }
    header[spec.name] = {{"dtype", DTypeName(spec.dtype)},
                         {"shape", spec.shape},
                         {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string header_text = header.dump();
  // Pad with spaces so the data section, and every tensor in it, starts 8-byte aligned.
  const size_t padded = (header_text.size() + kDataAlignment - 1) / kDataAlignment * kDataAlignment;
  header_text.resize(padded, ' ');
  // Tensors follow each other without padding; keep them aligned by warning callers via layout:
  // every Pixtral tensor is a multiple of 8 bytes, and a misaligned view is caught by As<T>().

  std::unique_ptr<SafetensorsWriter> writer(new SafetensorsWriter());
  writer->path_ = path;
  writer->temp_path_ = path + ".partial";
  writer->expected_bytes_ = offset;
  writer->out_ = std::fopen(writer->temp_path_.c_str(), "wb");
  if (writer->out_ == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(writer->temp_path_, ": cannot create: ", std::strerror(errno)));
  }
  std::string prefix;
  AppendLittleEndian64(header_text.size(), &prefix);
  prefix += header_text;
  if (std::fwrite(prefix.data(), 1, prefix.size(), writer->out_) != prefix.size()) {
    return absl::DataLossError(absl::StrCat(writer->temp_path_, ": write failed"));
  }
  return writer;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (out_ != nullptr) {  // never closed: drop the partial file
    std::fclose(out_);
    std::remove(temp_path_.c_str());
  }
}

absl::Status SafetensorsWriter::WriteData(absl::Span<const uint8_t> bytes) {
  if (out_ == nullptr) return absl::FailedPreconditionError("writer is closed");
  if (bytes.size() > expected_bytes_ - written_bytes_) {
    return absl::OutOfRangeError(absl::StrCat(path_, ": more tensor data than the specs declare"));
  }
  if (std::fwrite(bytes.data(), 1, bytes.size(), out_) != bytes.size()) {
    return absl::DataLossError(absl::StrCat(temp_path_, ": write failed: ", std::strerror(errno)));
  }
  written_bytes_ += bytes.size();
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Close() {
  if (out_ == nullptr) return absl::FailedPreconditionError("writer is closed");
  if (written_bytes_ != expected_bytes_) {
    return absl::FailedPreconditionError(absl::StrCat(path_, ": ", written_bytes_, " of ",
                                                      expected_bytes_, " data bytes written"));
  }
  const bool flushed = std::fclose(out_) == 0;
  out_ = nullptr;
  if (!flushed || std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    std::remove(temp_path_.c_str());
    return absl::DataLossError(absl::StrCat(path_, ": could not finish writing"));
  }
  return absl::OkStatus();
}

absl::Status WriteSafetensors(const std::string& path, absl::Span<const TensorToWrite> tensors,
                              const std::map<std::string, std::string>& metadata) {
  std::vector<TensorSpec> specs;
  for (const TensorToWrite& tensor : tensors) specs.push_back(tensor.spec);
  absl::StatusOr<std::unique_ptr<SafetensorsWriter>> writer =
      SafetensorsWriter::Create(path, std::move(specs), metadata);
  if (!writer.ok()) return writer.status();
  for (const TensorToWrite& tensor : tensors) {
    absl::Status status = (*writer)->WriteData(tensor.bytes);
    if (!status.ok()) return status;
  }
  return (*writer)->Close();
}

}  // namespace pixtral
