# Structured sparse-pattern builders (window, strided, PowerAttention, document, block mask):
# tests/test_patterns.c; included by tests/CMakeLists.txt. One CTest entry per group (mask, hand,
# power, exec, invalid). Sanitizer builds run fewer random cases (AK_PATTERNS_QUICK=1).
add_executable(test_patterns test_patterns.c)
target_include_directories(test_patterns PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_patterns PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_PATTERNS_ENV "AK_PATTERNS_QUICK=1")
else()
  set(AK_PATTERNS_ENV "AK_PATTERNS_QUICK=0")
endif()

foreach(group mask hand power exec invalid)
  add_test(NAME patterns_${group} COMMAND test_patterns ${group})
  set_tests_properties(patterns_${group} PROPERTIES ENVIRONMENT "${AK_PATTERNS_ENV}")
  list(APPEND AK_TESTS patterns_${group})
endforeach()
