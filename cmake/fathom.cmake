# fathom_module(NAME DEPS...): a static library from every .cpp in src/NAME (recursively),
# so adding a source file never needs a CMake edit.
# file(CONFIGURE) rewrites the file only when its content changes: a fresh timestamp on every
# configure would recompile it in every module and relink everything.
file(CONFIGURE OUTPUT ${CMAKE_BINARY_DIR}/fathom_empty.cpp CONTENT "// keeps a module without sources linkable\n")
function(fathom_module name)
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/${name}/*.cpp)
  string(REPLACE "/" "_" tgt "fathom_${name}")
  add_library(${tgt} STATIC ${srcs} ${CMAKE_BINARY_DIR}/fathom_empty.cpp)
  target_include_directories(${tgt} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${tgt} PUBLIC ${ARGN})
endfunction()
