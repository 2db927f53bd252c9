# A no-change rebuild builds nothing. It builds in the build tree the other tests run from, so
# it runs alone.
add_test(NAME cli_noop_rebuild COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli/noop_build.sh ${CMAKE_BINARY_DIR})
set_tests_properties(cli_noop_rebuild PROPERTIES RUN_SERIAL TRUE SKIP_RETURN_CODE 77 TIMEOUT 600)
