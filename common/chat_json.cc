#include "common/chat_json.h"

#include "absl/strings/str_format.h"

namespace pixtral {
namespace {

using ordered_json = nlohmann::ordered_json;

// json.dumps' string escaping with ensure_ascii=False: quotes, backslashes and control characters
// only; everything else, non-ASCII included, is written as it is.
void AppendString(const std::string& text, std::string* out) {
  out->push_back('"');
  for (const char c : text) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      case '\b':
        *out += "\\b";
        break;
      case '\f':
        *out += "\\f";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", static_cast<unsigned char>(c));
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

void Append(const ordered_json& value, std::string* out) {
  switch (value.type()) {
    case ordered_json::value_t::object: {
      out->push_back('{');
      bool first = true;
      for (const auto& [key, item] : value.items()) {
        if (!first) *out += ", ";
        first = false;
        AppendString(key, out);
        *out += ": ";
        Append(item, out);
      }
      out->push_back('}');
      break;
    }
    case ordered_json::value_t::array: {
      out->push_back('[');
      for (size_t i = 0; i < value.size(); ++i) {
        if (i > 0) *out += ", ";
        Append(value[i], out);
      }
      out->push_back(']');
      break;
    }
    case ordered_json::value_t::string:
      AppendString(value.get_ref<const std::string&>(), out);
      break;
    case ordered_json::value_t::boolean:
      *out += value.get<bool>() ? "true" : "false";
      break;
    case ordered_json::value_t::null:
    case ordered_json::value_t::discarded:
      *out += "null";
      break;
    default:  // numbers: nlohmann writes integers exactly and floats in shortest round-trip form
      *out += value.dump();
  }
}

}  // namespace

std::string PythonJsonDumps(const ordered_json& value) {
  std::string out;
  Append(value, &out);
  return out;
}

ordered_json JsonOrString(absl::string_view text) {
  bool too_deep = false;
  ordered_json::parser_callback_t bound_depth = [&too_deep](int depth, ordered_json::parse_event_t,
                                                            ordered_json&) {
    if (depth > kMaxChatJsonDepth) too_deep = true;
    return !too_deep;
  };
  ordered_json parsed =
      ordered_json::parse(text.begin(), text.end(), bound_depth, /*allow_exceptions=*/false);
  if (too_deep || parsed.is_discarded()) return ordered_json(std::string(text));
  return parsed;
}

}  // namespace pixtral
