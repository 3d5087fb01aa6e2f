# MInference 1.0 planner (src/dynamic/minference.c): tests/test_dyn_minference.c; included by tests/CMakeLists.txt.
# One CTest entry per group (dyn_minference_<group>). Sanitizer builds run fewer and smaller cases (AK_MINF_QUICK=1).
add_executable(test_dyn_minference test_dyn_minference.c)
target_include_directories(test_dyn_minference PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_dyn_minference PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_MINF_ENV "AK_MINF_QUICK=1")
else()
  set(AK_MINF_ENV "AK_MINF_QUICK=0")
endif()

foreach(group dense planted brute exec threads invalid spec config search)
  add_test(NAME dyn_minference_${group} COMMAND test_dyn_minference ${group})
  set_tests_properties(dyn_minference_${group} PROPERTIES ENVIRONMENT "${AK_MINF_ENV}")
  list(APPEND AK_TESTS dyn_minference_${group})
endforeach()
