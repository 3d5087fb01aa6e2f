# Linear attention backward tests (tests/test_linear_bwd.c); included by tests/CMakeLists.txt.
# One CTest entry runs every group (fd, chunked, threads, invalid, long, accuracy); `test_linear_bwd <group>` runs one.
# Sanitizer builds run every other chunked case and fewer finite-difference samples (AK_LB_QUICK=1).
add_executable(test_linear_bwd test_linear_bwd.c)
target_include_directories(test_linear_bwd PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_linear_bwd PRIVATE ak_testutil attnkit)

add_test(NAME linear_bwd COMMAND test_linear_bwd)
if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set_tests_properties(linear_bwd PROPERTIES ENVIRONMENT "AK_LB_QUICK=1")
endif()
# The backward's chunked and thread groups with the micro-kernels capped at scalar and AVX2.
foreach(isa scalar avx2)
  add_test(NAME linear_bwd_${isa} COMMAND test_linear_bwd chunked)
  add_test(NAME linear_bwd_threads_${isa} COMMAND test_linear_bwd threads)
  if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
    set_tests_properties(linear_bwd_${isa} linear_bwd_threads_${isa} PROPERTIES ENVIRONMENT "AK_LB_QUICK=1;AK_MAX_ISA=${isa}")
  else()
    set_tests_properties(linear_bwd_${isa} linear_bwd_threads_${isa} PROPERTIES ENVIRONMENT "AK_MAX_ISA=${isa}")
  endif()
  list(APPEND AK_TESTS linear_bwd_${isa} linear_bwd_threads_${isa})
endforeach()
list(APPEND AK_TESTS linear_bwd)
