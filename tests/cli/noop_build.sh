#!/bin/sh
# Usage: noop_build.sh BUILD_DIR. After a build, reconfiguring (as setup.sh once did on every
# run) and building again must do nothing: a second scripts/test.sh relinks no target.
# Exit 77 (skipped) when the tree was not built to begin with.
build=$1
out=$(cmake --build "$build" 2>&1) || { echo "$out"; exit 1; }
case $out in
  *"no work to do"*) ;;
  *) echo "the build was not up to date (it is now); run the test again"; exit 77 ;;
esac
cmake "$build" >/dev/null || exit 1
out=$(cmake --build "$build" 2>&1)
echo "$out"
case $out in
  *"no work to do"*) exit 0 ;;
  *) echo "FAIL: a reconfigure without changes rebuilt the above"; exit 1 ;;
esac
