// pixtral_eval tokenize: raw tekken encoding of JSON lines, for comparison with mistral_common or
// the npm reference tokenizer.
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "common/tekken.h"
#include "nlohmann/json.hpp"
#include "tools/eval_commands.h"

namespace pixtral {

int RunTokenize(const std::vector<std::string>& args) {
  std::string path;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--tokenizer" && i + 1 < args.size()) {
      path = args[++i];
    } else if (args[i].rfind("--tokenizer=", 0) == 0) {
      path = args[i].substr(sizeof("--tokenizer=") - 1);
    } else {
      std::cerr << "tokenize: unexpected argument \"" << args[i] << "\"\n";
      return 2;
    }
  }
  if (path.empty()) {
    std::cerr << "usage: pixtral_eval tokenize --tokenizer PATH < lines\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<TekkenTokenizer>> tekken = TekkenTokenizer::FromFile(path);
  if (!tekken.ok()) {
    std::cerr << "tokenize: " << tekken.status() << "\n";
    return 1;
  }
  std::string line;
  for (int number = 1; std::getline(std::cin, line); ++number) {
    const nlohmann::json input = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    auto text = input.is_object() ? input.find("text") : input.end();
    if (input.is_discarded() || !input.is_object() || text == input.end() || !text->is_string()) {
      std::cerr << "tokenize: line " << number
                << ": expected a JSON object with a string \"text\"\n";
      return 1;
    }
    absl::StatusOr<std::vector<int>> ids =
        (*tekken)->Encode(text->get_ref<const std::string&>(), false, false);
    if (!ids.ok()) {
      std::cerr << "tokenize: line " << number << ": " << ids.status() << "\n";
      return 1;
    }
    std::cout << nlohmann::json{{"ids", *ids}}.dump() << "\n";
  }
  return 0;
}

}  // namespace pixtral
