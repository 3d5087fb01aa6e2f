# Sparse plans and the sparse executor (tests/test_sparse.c); included by tests/CMakeLists.txt.
# One program, every group (hand, builder, invalid, stats, masked, dtypes, threads, sweep), run once per ISA
# path: the default (best ISA of the machine), AK_MAX_ISA=scalar and avx2, and the bf16-pair kernel with
# vdpbf16ps emulated on AVX-512 (AK_EMULATE_BF16DOT=1). A path the CPU lacks exits 77 = skipped.
# Sanitizer builds run fewer sweep cases and AK_SPARSE_QUICK=1 (smaller dtypes / threads groups).
add_executable(test_sparse test_sparse.c)
target_include_directories(test_sparse PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_sparse PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_SPARSE_SWEEP_N 30)
  set(AK_SPARSE_ENV "AK_SPARSE_QUICK=1")
else()
  set(AK_SPARSE_SWEEP_N 150)
  set(AK_SPARSE_ENV "AK_SPARSE_QUICK=0")
endif()

set(AK_SPARSE_TESTS)
add_test(NAME sparse COMMAND test_sparse all ${AK_SPARSE_SWEEP_N})
set_tests_properties(sparse PROPERTIES ENVIRONMENT "${AK_SPARSE_ENV}")
list(APPEND AK_SPARSE_TESTS sparse)

set(AK_SPARSE_ISAS scalar)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64" AND AK_ENABLE_AVX2)
  list(APPEND AK_SPARSE_ISAS avx2)
endif()
foreach(isa ${AK_SPARSE_ISAS})
  add_test(NAME sparse_${isa} COMMAND test_sparse all ${AK_SPARSE_SWEEP_N})
  set_tests_properties(sparse_${isa} PROPERTIES ENVIRONMENT "${AK_SPARSE_ENV};AK_MAX_ISA=${isa}")
  list(APPEND AK_SPARSE_TESTS sparse_${isa})
endforeach()

# The bf16-pair (vdpbf16ps) kernel's code on bf16 q/k/v with the instruction emulated on plain AVX-512
# (as sweep_avx512bf16emu); skipped without AVX-512.
if(AK_ENABLE_AVX512 AND AK_ENABLE_AVX512BF16 AND CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  add_test(NAME sparse_avx512bf16emu COMMAND test_sparse all ${AK_SPARSE_SWEEP_N})
  set_tests_properties(sparse_avx512bf16emu PROPERTIES
                       ENVIRONMENT "${AK_SPARSE_ENV};AK_MAX_ISA=avx512;AK_EMULATE_BF16DOT=1")
  list(APPEND AK_SPARSE_TESTS sparse_avx512bf16emu)
endif()

list(APPEND AK_TESTS ${AK_SPARSE_TESTS})

# The plan's refinements for the content-aware methods (key bias, per-row cut, mean-combined rows):
# tests/test_sparse_refine.c, one entry per group.
add_executable(test_sparse_refine test_sparse_refine.c)
target_include_directories(test_sparse_refine PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_sparse_refine PRIVATE ak_testutil attnkit)
foreach(group exec json invalid)
  add_test(NAME sparse_refine_${group} COMMAND test_sparse_refine ${group})
  set_tests_properties(sparse_refine_${group} PROPERTIES ENVIRONMENT "${AK_SPARSE_ENV}")
  list(APPEND AK_TESTS sparse_refine_${group})
endforeach()
