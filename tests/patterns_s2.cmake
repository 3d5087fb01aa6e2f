# S2-Attention (DKernel), MoA and SF-Attn (SinkLoRA) plan builders: tests/test_patterns_s2.c; included by
# tests/CMakeLists.txt. One CTest entry per group: s2, moa, sfattn (masks against the spec's formulas, worked
# examples, the spec's unit tests), exec (the sparse executor against ak_attention_ref_sparse) and invalid
# (parameter validation). About 6 s in Release on 2 cores, most of it exec's double reference; sanitizer
# builds run each executor case with one dtype (AK_PATTERNS_QUICK=1).
add_executable(test_patterns_s2 test_patterns_s2.c)
target_include_directories(test_patterns_s2 PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_patterns_s2 PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_PATTERNS_S2_ENV "AK_PATTERNS_QUICK=1")
else()
  set(AK_PATTERNS_S2_ENV "AK_PATTERNS_QUICK=0")
endif()
foreach(group s2 moa sfattn exec invalid)
  add_test(NAME patterns_s2_${group} COMMAND test_patterns_s2 ${group})
  set_tests_properties(patterns_s2_${group} PROPERTIES ENVIRONMENT "${AK_PATTERNS_S2_ENV}")
  list(APPEND AK_TESTS patterns_s2_${group})
endforeach()
