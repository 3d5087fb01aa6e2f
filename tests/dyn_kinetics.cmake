# Kinetics block top-k sparse decoding (tests/test_dyn_kinetics.c); included by tests/CMakeLists.txt.
# One CTest entry per group; exec also runs with the lanes formulation forced (AK_DECODE_QK=lanes), on the
# scalar kernel table (AK_MAX_ISA=scalar) and on the AVX2 one (AK_MAX_ISA=avx2; capped to the CPU's best).
# Sanitizer builds run fewer random cases (AK_KINETICS_QUICK=1).
add_executable(test_dyn_kinetics test_dyn_kinetics.c)
target_include_directories(test_dyn_kinetics PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_dyn_kinetics PRIVATE ak_testutil attnkit)

# OMP_WAIT_POLICY=passive: the tests alternate short parallel library calls with serial checking code; with
# libgomp's default spinning the idle workers take the cores from the checking thread (20x slower on 2 busy cores).
if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_KINETICS_ENV "AK_KINETICS_QUICK=1;OMP_WAIT_POLICY=passive")
else()
  set(AK_KINETICS_ENV "AK_KINETICS_QUICK=0;OMP_WAIT_POLICY=passive")
endif()

foreach(group dense select linearity exec index planted threads invalid)
  add_test(NAME dyn_kinetics_${group} COMMAND test_dyn_kinetics ${group})
  set_tests_properties(dyn_kinetics_${group} PROPERTIES ENVIRONMENT "${AK_KINETICS_ENV}")
  list(APPEND AK_TESTS dyn_kinetics_${group})
endforeach()

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_KINETICS_EXEC_N 12)
else()
  set(AK_KINETICS_EXEC_N 40)
endif()
add_test(NAME dyn_kinetics_exec_lanes COMMAND test_dyn_kinetics exec ${AK_KINETICS_EXEC_N})
set_tests_properties(dyn_kinetics_exec_lanes PROPERTIES ENVIRONMENT "${AK_KINETICS_ENV};AK_DECODE_QK=lanes")
add_test(NAME dyn_kinetics_exec_scalar COMMAND test_dyn_kinetics exec ${AK_KINETICS_EXEC_N})
set_tests_properties(dyn_kinetics_exec_scalar PROPERTIES ENVIRONMENT "${AK_KINETICS_ENV};AK_MAX_ISA=scalar")
add_test(NAME dyn_kinetics_exec_avx2 COMMAND test_dyn_kinetics exec ${AK_KINETICS_EXEC_N})
set_tests_properties(dyn_kinetics_exec_avx2 PROPERTIES ENVIRONMENT "${AK_KINETICS_ENV};AK_MAX_ISA=avx2")
list(APPEND AK_TESTS dyn_kinetics_exec_lanes dyn_kinetics_exec_scalar dyn_kinetics_exec_avx2)
