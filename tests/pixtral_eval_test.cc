// pixtral_eval forward / generate run as a user runs them, checked against the pixtral-tiny
// goldens (Hugging Face transformers, float32).

#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "common/safetensors.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace pixtral {
namespace {

using ::testing::HasSubstr;

constexpr char kModelDir[] = "tests/data/pixtral-tiny";
constexpr char kEval[] = "tools/pixtral_eval";

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr
};

Result RunEval(const std::string& args) {
  const std::string command = std::string(kEval) + " " + args + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  Result result{-1, ""};
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

double RelativeError(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    diff += (double{got[i]} - want[i]) * (double{got[i]} - want[i]);
    norm += double{want[i]} * want[i];
  }
  return std::sqrt(diff / norm);
}

class PixtralEvalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> golden =
        SafetensorsFile::Open(std::string(kModelDir) + "/golden.safetensors");
    ASSERT_TRUE(golden.ok()) << golden.status();
    golden_ = *std::move(golden);
  }

  // An inputs file of the golden's `ids_name` and, if `with_images`, its two images.
  std::string WriteInputs(const std::string& file, const char* ids_name, bool with_images) {
    std::vector<TensorToWrite> tensors;
    const TensorView* ids = golden_->Find(ids_name);
    tensors.push_back({{"input_ids", DType::kI64, ids->shape}, ids->bytes});
    if (with_images) {
      for (const char* name : {"pixel_values_0", "pixel_values_1"}) {
        const TensorView* t = golden_->Find(name);
        tensors.push_back({{name, DType::kF32, t->shape}, t->bytes});
      }
    }
    const std::string path = testing::TempDir() + "/" + file;
    EXPECT_TRUE(WriteSafetensors(path, tensors).ok());
    return path;
  }

  std::vector<float> Golden(const char* name) { return *ToFloat32(*golden_->Find(name)); }
  std::vector<int64_t> GoldenIds(const char* name) { return *ToInt64(*golden_->Find(name)); }

  std::unique_ptr<SafetensorsFile> golden_;
};

TEST_F(PixtralEvalTest, ForwardMatchesGoldenLogitsAndImageFeatures) {
  const std::string in = WriteInputs("mm.safetensors", "input_ids", true);
  const std::string out = testing::TempDir() + "/mm_out.safetensors";
  Result r = RunEval("forward --model " + std::string(kModelDir) + " --inputs " + in + " --out " +
                     out + " --backend cpu");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(out);
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorView* logits = (*file)->Find("logits");
  const TensorView* features = (*file)->Find("image_features");
  ASSERT_NE(logits, nullptr);
  ASSERT_NE(features, nullptr);
  EXPECT_EQ(logits->shape, golden_->Find("logits")->shape);
  EXPECT_EQ(features->shape, golden_->Find("image_features")->shape);
  EXPECT_LE(RelativeError(*ToFloat32(*logits), Golden("logits")), 1e-4);
  EXPECT_LE(RelativeError(*ToFloat32(*features), Golden("image_features")), 1e-4);
}

TEST_F(PixtralEvalTest, TextForwardHasNoImageFeatures) {
  const std::string in = WriteInputs("text.safetensors", "text_input_ids", false);
  const std::string out = testing::TempDir() + "/text_out.safetensors";
  Result r =
      RunEval("forward --model " + std::string(kModelDir) + " --inputs " + in + " --out " + out);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(out);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->Find("image_features"), nullptr);
  EXPECT_LE(RelativeError(*ToFloat32(*(*file)->Find("logits")), Golden("text_logits")), 1e-4);
}

TEST_F(PixtralEvalTest, GenerateReproducesGreedyGoldens) {
  for (auto [ids, with_images, expected] : {std::tuple{"input_ids", true, "greedy_multimodal"},
                                            std::tuple{"text_input_ids", false, "greedy_text"}}) {
    const std::string in = WriteInputs(std::string(ids) + ".safetensors", ids, with_images);
    Result r = RunEval("generate --model " + std::string(kModelDir) + " --inputs " + in +
                       " --max-tokens 12 --ignore-eos");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    nlohmann::json json = nlohmann::json::parse(r.output, nullptr, false);
    ASSERT_FALSE(json.is_discarded()) << r.output;
    EXPECT_EQ(json["ids"].get<std::vector<int64_t>>(), GoldenIds(expected)) << expected;
  }
}

TEST_F(PixtralEvalTest, GenerateWithSeedIsReproducible) {
  const std::string in = WriteInputs("seeded.safetensors", "text_input_ids", false);
  const std::string args = "generate --model " + std::string(kModelDir) + " --inputs " + in +
                           " --max-tokens 8 --temperature 0.9 --top-p 0.95 --seed 5";
  Result a = RunEval(args), b = RunEval(args);
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output, b.output);
  EXPECT_EQ(nlohmann::json::parse(a.output)["ids"].size(), 8u);
}

TEST_F(PixtralEvalTest, BadInputsAreClearErrors) {
  const std::string model = std::string(" --model ") + kModelDir;
  // An image missing: the [IMG] count no longer matches.
  std::vector<TensorToWrite> tensors;
  const TensorView* ids = golden_->Find("input_ids");
  const TensorView* image = golden_->Find("pixel_values_0");
  tensors.push_back({{"input_ids", DType::kI64, ids->shape}, ids->bytes});
  tensors.push_back({{"pixel_values_0", DType::kF32, image->shape}, image->bytes});
  const std::string one_image = testing::TempDir() + "/one_image.safetensors";
  ASSERT_TRUE(WriteSafetensors(one_image, tensors).ok());
  Result r = RunEval("generate" + model + " --inputs " + one_image + " --max-tokens 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("[IMG]"));

  r = RunEval("forward" + model + " --inputs /nonexistent.safetensors --out /tmp/x");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("nonexistent"));

  r = RunEval("generate --model /nonexistent --inputs " + one_image + " --max-tokens 2");
  EXPECT_EQ(r.exit_code, 1);

  EXPECT_EQ(RunEval("generate" + model).exit_code, 2);  // no --inputs / --max-tokens
  EXPECT_EQ(RunEval("forward" + model + " --inputs a --out b --backend tpu").exit_code, 2);
  EXPECT_EQ(RunEval("nonsense").exit_code, 2);
}

}  // namespace
}  // namespace pixtral
