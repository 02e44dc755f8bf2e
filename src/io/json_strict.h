// Strict JSON parsing for files a user hands us (safetensors headers, config.json).
//
// nlohmann::json accepts duplicate object keys and silently keeps the last one; a checkpoint whose
// header names a tensor twice, or a config that sets "hidden_size" twice, must be refused instead.
// It also builds arbitrarily deep documents; a corrupt file of a million '[' must end in an error,
// not a stack overflow. json_parse_strict parses with both checks and reports every failure as an
// infini::Error naming `where` (the file) and the byte offset or key concerned.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace infini {

// Objects and arrays nested deeper than this are refused (real headers and configs use <= 4).
inline constexpr int kJsonMaxDepth = 64;

// Parses `text` as one JSON value. Throws infini::Error (where = `where`) on a syntax error,
// invalid UTF-8, nesting deeper than kJsonMaxDepth, or a key that appears twice in the same object.
nlohmann::json json_parse_strict(std::string_view text, const std::string& where);

// The JSON type of a value in words ("a string", "an integer", ...), for error messages.
std::string json_type_words(const nlohmann::json& value);

}  // namespace infini
