# The server's integration tests: `fathom serve` on 127.0.0.1 driven by the official OpenAI
# npm client (installed by setup.sh into tests/server/node_modules), under node's test runner.
# They share one tiny random DeepSeek-V3 with the full vocabulary, built by a fixture test.
set(FATHOM_SERVER_TEST_DIR ${CMAKE_CURRENT_SOURCE_DIR}/server)
set(FATHOM_SERVER_TEST_ENV
  FATHOM_BINARY=$<TARGET_FILE:fathom>
  FATHOM_SERVER_MODEL=${CMAKE_CURRENT_BINARY_DIR}/server/tiny-v3-full)
find_program(FATHOM_NODE node)
if(NOT FATHOM_NODE)
  set(FATHOM_NODE node)  # the tests then fail, saying node is missing
endif()

add_test(NAME server_model COMMAND ${FATHOM_NODE} ${FATHOM_SERVER_TEST_DIR}/make_model.mjs)
set_tests_properties(server_model PROPERTIES ENVIRONMENT "${FATHOM_SERVER_TEST_ENV}"
  FIXTURES_SETUP fathom_server_model TIMEOUT 120)

foreach(t api concurrency bad_input hardening default_model)
  add_test(NAME server_${t} COMMAND ${FATHOM_NODE} --test ${FATHOM_SERVER_TEST_DIR}/${t}.test.mjs
    WORKING_DIRECTORY ${FATHOM_SERVER_TEST_DIR})
  # One server test at a time: the concurrency test measures the server's memory and the
  # CI box has two cores.
  set_tests_properties(server_${t} PROPERTIES ENVIRONMENT "${FATHOM_SERVER_TEST_ENV}"
    FIXTURES_REQUIRED fathom_server_model RESOURCE_LOCK fathom_server TIMEOUT 180)
endforeach()

# Tokenizers fathom writes, read by Hugging Face's tokenizers.js (needs no server).
add_test(NAME tokenizer_js COMMAND ${FATHOM_NODE} --test ${FATHOM_SERVER_TEST_DIR}/tokenizer_js.test.mjs
  WORKING_DIRECTORY ${FATHOM_SERVER_TEST_DIR})
set_tests_properties(tokenizer_js PROPERTIES ENVIRONMENT "${FATHOM_SERVER_TEST_ENV}" TIMEOUT 120)
