#pragma once
// Building blocks of kiln's canonical encodings (action digests, compile
// cache keys): every value is length-prefixed, so no value can be mistaken
// for the next field whatever bytes it holds.

#include <string>

namespace kiln::cas {

// Appends "<name> <length>:<value>\n".
inline void EncodeField(std::string& out, const char* name, const std::string& value) {
  out += name;
  out += ' ';
  out += std::to_string(value.size());
  out += ':';
  out += value;
  out += '\n';
}

// Appends "<name> <n>\n", the count of the fields that follow.
inline void EncodeCount(std::string& out, const char* name, size_t n) {
  out += name;
  out += ' ';
  out += std::to_string(n);
  out += '\n';
}

}  // namespace kiln::cas
