// Atomic file replacement: a file appears complete at its path, or the old one stays.
//
// The bytes go to `path`.tmp.<pid> in the same directory, which is fsynced, closed and renamed
// over `path` (rename is atomic within a file system); the directory is then fsynced so that the
// rename survives a power loss. On any failure (disk full, no permission, missing directory) the
// temporary file is removed, `path` is left as it was, and an infini::Error naming `path` is
// thrown.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace infini {

struct ByteRange {
  const void* data;
  size_t size;
};

// Writes the concatenation of `pieces` to `path`, atomically.
void write_file_atomic(const std::string& path, const std::vector<ByteRange>& pieces);
inline void write_file_atomic(const std::string& path, std::string_view text) {
  write_file_atomic(path, {ByteRange{text.data(), text.size()}});
}

}  // namespace infini
