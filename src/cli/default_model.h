#pragma once
// The model a command runs when no --model is given: nano-R1, the reasoning model fathom
// trains from nothing (scripts/nano-r1.sh) and ships in the repository as models/nano-r1.
#include <string>

namespace fathom::cli {

// `given` when not empty; else the first nano-R1 directory found: beside the executable
// (../models/nano-r1 and ../../models/nano-r1, which covers build/<preset>/fathom, and
// ../share/fathom/nano-r1 for an install), then the source tree fathom was built from.
// An Error saying where it looked when there is none.
std::string resolve_model(const std::string& given);

}  // namespace fathom::cli
