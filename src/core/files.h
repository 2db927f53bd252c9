#pragma once
// Reading the small files of a checkpoint (config.json, tokenizer.json, tokenizer_config.json)
// safely: only regular files are opened, since a FIFO or device named like one would block or
// misbehave in open/read/mmap, and a directory fails obscurely.
#include <string>

namespace fathom {

// "a directory", "a FIFO", "a device", … for an st_mode.
const char* file_kind(unsigned st_mode);
// Throws an Error naming the path unless it is a regular file ("<path>: cannot open" when
// it does not exist).
void require_regular_file(const std::string& path);
// The whole file, after require_regular_file.
std::string read_file(const std::string& path);

}  // namespace fathom
