#include "cli/default_model.h"

#include <filesystem>
#include <vector>

#include "core/error.h"

namespace fathom::cli {

std::string resolve_model(const std::string& given) {
  if (!given.empty()) return given;
  namespace fs = std::filesystem;
  std::vector<fs::path> tried;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const fs::path bin = exe.parent_path();
    tried = {bin / "../models/nano-r1", bin / "../../models/nano-r1", bin / "../share/fathom/nano-r1"};
  }
#ifdef FATHOM_DEFAULT_MODEL_DIR
  tried.emplace_back(FATHOM_DEFAULT_MODEL_DIR);
#endif
  std::string where;
  for (const fs::path& p : tried) {
    if (fs::exists(p / "config.json", ec)) return fs::weakly_canonical(p, ec).string();
    where += (where.empty() ? "" : ", ") + p.lexically_normal().string();
  }
  fail("no --model given, and the default model (nano-R1, models/nano-r1) is not in any of: {}", where);
}

}  // namespace fathom::cli
