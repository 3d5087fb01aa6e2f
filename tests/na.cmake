# Neighborhood Attention plans (ak_sparse_neighborhood) and their execution: tests/test_na.c; included
# by tests/CMakeLists.txt. One CTest entry per group (see the head of test_na.c and tests/README.md);
# the exec group also runs with the micro-kernels capped at AVX2. Sanitizer builds run fewer exec cases.
add_executable(test_na test_na.c)
target_include_directories(test_na PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_na PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_NA_EXEC_N 30)
  set(AK_NA_EXEC_ISA_N 10)
else()
  set(AK_NA_EXEC_N 120)
  set(AK_NA_EXEC_ISA_N 40)
endif()

set(AK_NA_TESTS)
foreach(group rules mask hand dense invalid)
  add_test(NAME na_${group} COMMAND test_na ${group})
  list(APPEND AK_NA_TESTS na_${group})
endforeach()
add_test(NAME na_exec COMMAND test_na exec ${AK_NA_EXEC_N})
list(APPEND AK_NA_TESTS na_exec)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64" AND AK_ENABLE_AVX2)
  add_test(NAME na_exec_avx2 COMMAND test_na exec ${AK_NA_EXEC_ISA_N})
  set_tests_properties(na_exec_avx2 PROPERTIES ENVIRONMENT "AK_MAX_ISA=avx2")
  list(APPEND AK_NA_TESTS na_exec_avx2)
endif()

list(APPEND AK_TESTS ${AK_NA_TESTS})
