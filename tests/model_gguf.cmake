# GGUF reader and dequantizer (tests/test_model_gguf.c, docs/model/gguf.md). Included from tests/CMakeLists.txt.
#   model_gguf_roundtrip   files from the test's own GGUF writer (every value type, alignments, tensors), read back
#   model_gguf_corrupt     one defect at a time: status, field and byte position in the message
#   model_gguf_truncate    every prefix of a small valid file is refused
#   model_gguf_mutate      random byte edits of valid files: no crash, accepted files are walked completely
#   model_gguf_api         argument checks, ak_gguf_open errors
#   model_gguf_dequant     ak_dequantize vs gguf-py on fixture blocks (tests/fixtures/dequant_*.bin), bit-exact
#   model_gguf_real        Gemma 3 270M vs gguf-py's dump (skipped, exit 77, without AK_MODEL_GGUF)
add_executable(test_model_gguf test_model_gguf.c)
target_include_directories(test_model_gguf PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_model_gguf PRIVATE ak_testutil attnkit)
foreach(group roundtrip corrupt truncate mutate api)
  add_test(NAME model_gguf_${group} COMMAND test_model_gguf ${group})
  list(APPEND AK_TESTS model_gguf_${group})
endforeach()
add_test(NAME model_gguf_dequant COMMAND test_model_gguf dequant ${CMAKE_CURRENT_SOURCE_DIR}/fixtures)
add_test(NAME model_gguf_real COMMAND test_model_gguf real "${AK_MODEL_GGUF}" ${CMAKE_CURRENT_SOURCE_DIR}/fixtures)
list(APPEND AK_TESTS model_gguf_dequant model_gguf_real)

# libFuzzer target (clang). The library's model sources get coverage instrumentation so that libFuzzer can
# steer into the parser; the sancov callbacks they call are provided by the sanitizer runtimes, hence the
# sanitizer requirement (see docs/model/gguf.md for the CI commands).
if(AK_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "AK_FUZZ=ON needs clang (libFuzzer); configure with CC=clang")
  endif()
  add_executable(fuzz_gguf fuzz/fuzz_gguf.c)
  target_include_directories(fuzz_gguf PRIVATE ${PROJECT_SOURCE_DIR}/include)
  target_compile_options(fuzz_gguf PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(fuzz_gguf PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(fuzz_gguf PRIVATE attnkit)
  if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
    set_property(SOURCE ${PROJECT_SOURCE_DIR}/src/model/gguf.c ${PROJECT_SOURCE_DIR}/src/model/quant.c
                 DIRECTORY ${PROJECT_SOURCE_DIR} APPEND PROPERTY COMPILE_OPTIONS -fsanitize=fuzzer-no-link)
  else()
    message(WARNING "fuzz_gguf: configure with -DAK_SANITIZE_ADDRESS=ON -DAK_SANITIZE_UNDEFINED=ON for memory "
                    "error detection and coverage inside the library; without them only the harness is instrumented")
  endif()
  # The seed corpus: the test writer's valid files.
  add_custom_target(fuzz_gguf_seeds
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/fuzz_gguf_seeds
    COMMAND test_model_gguf write-seeds ${CMAKE_CURRENT_BINARY_DIR}/fuzz_gguf_seeds
    DEPENDS test_model_gguf
    COMMENT "fuzz_gguf seed corpus in ${CMAKE_CURRENT_BINARY_DIR}/fuzz_gguf_seeds")
endif()
