# Linear attention (Lightning Attention, TNL): tests/test_linear.c; included by tests/CMakeLists.txt.
# One CTest entry per group (see tests/README.md, "Linear attention"). Sanitizer builds run a smaller
# grid and sweep (AK_LINEAR_QUICK=1).
add_executable(test_linear test_linear.c)
target_include_directories(test_linear PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_linear PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  # allocator_may_return_null: an impossible allocation (a huge block) must come back as
  # AK_ERR_OUT_OF_MEMORY and fail one check, not abort the whole program.
  set(AK_LINEAR_ENV "AK_LINEAR_QUICK=1;ASAN_OPTIONS=allocator_may_return_null=1")
  set(AK_LINEAR_SWEEP_N 40)
else()
  set(AK_LINEAR_ENV "AK_LINEAR_QUICK=0")
  set(AK_LINEAR_SWEEP_N 100)
endif()

set(AK_LINEAR_TESTS)
foreach(group decay invalid grid split ragged long)
  add_test(NAME linear_${group} COMMAND test_linear ${group})
  set_tests_properties(linear_${group} PROPERTIES ENVIRONMENT "${AK_LINEAR_ENV}")
  list(APPEND AK_LINEAR_TESTS linear_${group})
endforeach()
# The random sweep; AK_SWEEP_N / AK_SWEEP_FIRST in the caller's environment override the count / start.
add_test(NAME linear_sweep COMMAND test_linear sweep ${AK_LINEAR_SWEEP_N})
set_tests_properties(linear_sweep PROPERTIES ENVIRONMENT "${AK_LINEAR_ENV}")
list(APPEND AK_LINEAR_TESTS linear_sweep)

# Output normalization and gate (TNL NormAttention): tests/test_linear_norm.c, one entry per group
# (fwd, bwd, invalid); AK_LINEAR_QUICK=1 (sanitizer builds) runs fewer random cases.
add_executable(test_linear_norm test_linear_norm.c)
target_include_directories(test_linear_norm PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_linear_norm PRIVATE ak_testutil attnkit)
foreach(group fwd bwd invalid)
  add_test(NAME linear_norm_${group} COMMAND test_linear_norm ${group})
  set_tests_properties(linear_norm_${group} PROPERTIES ENVIRONMENT "${AK_LINEAR_ENV}")
  list(APPEND AK_LINEAR_TESTS linear_norm_${group})
endforeach()

# Every ISA path: the sweep and the norm forward with the micro-kernels capped at scalar and AVX2.
foreach(isa scalar avx2)
  add_test(NAME linear_sweep_${isa} COMMAND test_linear sweep ${AK_LINEAR_SWEEP_N})
  set_tests_properties(linear_sweep_${isa} PROPERTIES ENVIRONMENT "${AK_LINEAR_ENV};AK_MAX_ISA=${isa}")
  add_test(NAME linear_norm_fwd_${isa} COMMAND test_linear_norm fwd)
  set_tests_properties(linear_norm_fwd_${isa} PROPERTIES ENVIRONMENT "${AK_LINEAR_ENV};AK_MAX_ISA=${isa}")
  list(APPEND AK_LINEAR_TESTS linear_sweep_${isa} linear_norm_fwd_${isa})
endforeach()

list(APPEND AK_TESTS ${AK_LINEAR_TESTS})
