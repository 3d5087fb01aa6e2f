# Decode attention tests (tests/test_decode.c); included by tests/CMakeLists.txt.
# The random sweep runs once per ISA path, once per Q.K formulation of the executor, once through the
# reference (AK_FORCE_REF=1) and once with a non-deterministic context; the other groups run once.
# A path the CPU lacks exits 77 = skipped. Sanitizer builds run fewer sweep cases.
add_executable(test_decode test_decode.c)
target_include_directories(test_decode PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_decode PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_DECODE_SWEEP_N 40)
  set(AK_DECODE_SWEEP_REF_N 12)
  set(AK_DECODE_GROUP_ENV "AK_DECODE_QUICK=1")   # every other combination in lean / cascade / gqa
else()
  set(AK_DECODE_SWEEP_N 200)
  set(AK_DECODE_SWEEP_REF_N 60)
  set(AK_DECODE_GROUP_ENV "AK_DECODE_QUICK=0")
endif()

set(AK_DECODE_TESTS)
foreach(group determinism lean merge cascade gqa invalid masked int8)
  add_test(NAME decode_${group} COMMAND test_decode ${group})
  set_tests_properties(decode_${group} PROPERTIES ENVIRONMENT "${AK_DECODE_GROUP_ENV}")
  list(APPEND AK_DECODE_TESTS decode_${group})
endforeach()

add_test(NAME decode_sweep_ref COMMAND test_decode sweep ${AK_DECODE_SWEEP_REF_N})
set_tests_properties(decode_sweep_ref PROPERTIES ENVIRONMENT "AK_FORCE_REF=1")
list(APPEND AK_DECODE_TESTS decode_sweep_ref)

set(AK_DECODE_ISAS scalar)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  if(AK_ENABLE_AVX2)
    list(APPEND AK_DECODE_ISAS avx2)
  endif()
  if(AK_ENABLE_AVX512)
    list(APPEND AK_DECODE_ISAS avx512)
  endif()
  if(AK_ENABLE_AVX512BF16)
    list(APPEND AK_DECODE_ISAS avx512bf16)
  endif()
endif()
foreach(isa ${AK_DECODE_ISAS})
  add_test(NAME decode_sweep_${isa} COMMAND test_decode sweep ${AK_DECODE_SWEEP_N})
  set_tests_properties(decode_sweep_${isa} PROPERTIES ENVIRONMENT "AK_MAX_ISA=${isa}")
  list(APPEND AK_DECODE_TESTS decode_sweep_${isa})
endforeach()

# The two Q.K formulations of the executor, forced (best ISA of the machine).
foreach(qk keys lanes)
  add_test(NAME decode_sweep_qk_${qk} COMMAND test_decode sweep ${AK_DECODE_SWEEP_N})
  set_tests_properties(decode_sweep_qk_${qk} PROPERTIES ENVIRONMENT "AK_DECODE_QK=${qk}")
  list(APPEND AK_DECODE_TESTS decode_sweep_qk_${qk})
endforeach()

# ak_ctx_set_deterministic(ctx, 0): num_workers = thread count; bits compared only for a fixed num_workers.
add_test(NAME decode_sweep_nondet COMMAND test_decode sweep ${AK_DECODE_SWEEP_N})
set_tests_properties(decode_sweep_nondet PROPERTIES ENVIRONMENT "AK_TEST_NONDET=1")
list(APPEND AK_DECODE_TESTS decode_sweep_nondet)

list(APPEND AK_TESTS ${AK_DECODE_TESTS})
