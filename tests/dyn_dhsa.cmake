# DHSA planner (src/dynamic/dhsa.c): tests/test_dyn_dhsa.c; included by tests/CMakeLists.txt. One CTest
# entry per group (dense, identity, select, boundary, recall, exec, threads, invalid). Sanitizer builds
# run fewer random cases (AK_DHSA_QUICK=1).
add_executable(test_dyn_dhsa test_dyn_dhsa.c)
target_include_directories(test_dyn_dhsa PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_dyn_dhsa PRIVATE ak_testutil attnkit)
if(NOT AK_DYN_ONLY)  # ak_dyn_plan_named exists only when every method is compiled
  target_compile_definitions(test_dyn_dhsa PRIVATE AK_TEST_NAMED=1)
endif()

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_DHSA_ENV "AK_DHSA_QUICK=1")
else()
  set(AK_DHSA_ENV "AK_DHSA_QUICK=0")
endif()

foreach(group dense identity select boundary recall exec threads invalid)
  add_test(NAME dyn_dhsa_${group} COMMAND test_dyn_dhsa ${group})
  set_tests_properties(dyn_dhsa_${group} PROPERTIES ENVIRONMENT "${AK_DHSA_ENV}")
  list(APPEND AK_TESTS dyn_dhsa_${group})
endforeach()
