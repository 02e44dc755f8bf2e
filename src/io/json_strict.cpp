#include "io/json_strict.h"

#include <set>
#include <vector>

#include "core/error.h"

namespace infini {

namespace {

// Nesting depth of `text`, counting brackets outside strings; stops early past `limit`.
int nesting_depth(std::string_view text, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > deepest) deepest = depth;
      if (deepest > limit) return deepest;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

struct Level {
  bool is_object = false;
  std::set<std::string> keys;
  std::string last_key;
};

std::string key_path(const std::vector<Level>& levels) {
  std::string path;
  for (size_t i = 0; i + 1 < levels.size(); ++i)
    if (levels[i].is_object) path += (path.empty() ? "" : ".") + levels[i].last_key;
  return path;
}

}  // namespace

nlohmann::json json_parse_strict(std::string_view text, const std::string& where) {
  using json = nlohmann::json;
  if (nesting_depth(text, kJsonMaxDepth) > kJsonMaxDepth)
    throw Error(where, str("JSON nested deeper than ", kJsonMaxDepth, " levels"),
                "the file is corrupt or not the expected kind of file");

  std::vector<Level> levels;
  auto check = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        levels.push_back(Level{true, {}, {}});
        break;
      case json::parse_event_t::array_start:
        levels.push_back(Level{false, {}, {}});
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        if (!levels.empty()) levels.pop_back();
        break;
      case json::parse_event_t::key:
        if (!levels.empty() && levels.back().is_object) {
          std::string key = parsed.get<std::string>();
          if (!levels.back().keys.insert(key).second) {
            std::string in = key_path(levels);
            throw Error(where,
                        str("duplicate key \"", key, "\"", in.empty() ? "" : " in \"" + in + "\""),
                        "each key may appear only once per object; remove the repeated one");
          }
          levels.back().last_key = std::move(key);
        }
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };

  try {
    return json::parse(text.begin(), text.end(), check, /*allow_exceptions=*/true,
                       /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    // e.what() reads "[json.exception.parse_error.101] parse error at line 1, column 7: ...";
    // a number too large for a double ("1e999") is an out_of_range error instead.
    std::string message = e.what();
    auto pos = message.find("] ");
    if (pos != std::string::npos) message = message.substr(pos + 2);
    throw Error(where, str("invalid JSON: ", message),
                "the file is corrupt or not the expected kind of file");
  }
}

std::string json_type_words(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::null:
      return "null";
    case nlohmann::json::value_t::object:
      return "an object";
    case nlohmann::json::value_t::array:
      return "an array";
    case nlohmann::json::value_t::string:
      return "a string";
    case nlohmann::json::value_t::boolean:
      return "a boolean";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned:
      return "an integer";
    case nlohmann::json::value_t::number_float:
      return "a floating-point number";
    case nlohmann::json::value_t::binary:
      return "binary data";
    case nlohmann::json::value_t::discarded:
      return "a discarded value";
  }
  return "an unknown JSON value";
}

}  // namespace infini
