# FlexPrefill planner (src/dynamic/flexprefill.c): tests/test_dyn_flexprefill.c; included by tests/CMakeLists.txt.
# One CTest entry per group (dense, planted, brute, exec, threads, invalid, unit). Sanitizer builds run fewer
# cases (AK_DYN_FLEXPREFILL_QUICK=1).
add_executable(test_dyn_flexprefill test_dyn_flexprefill.c)
target_include_directories(test_dyn_flexprefill PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_dyn_flexprefill PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_DYN_FLEXPREFILL_ENV "AK_DYN_FLEXPREFILL_QUICK=1")
else()
  set(AK_DYN_FLEXPREFILL_ENV "AK_DYN_FLEXPREFILL_QUICK=0")
endif()

foreach(group dense planted brute exec threads invalid unit)
  add_test(NAME dyn_flexprefill_${group} COMMAND test_dyn_flexprefill ${group})
  set_tests_properties(dyn_flexprefill_${group} PROPERTIES ENVIRONMENT "${AK_DYN_FLEXPREFILL_ENV}")
  list(APPEND AK_TESTS dyn_flexprefill_${group})
endforeach()
