# MMInference planner (src/dynamic/mminference.c): tests/test_dyn_mminference.c; included by
# tests/CMakeLists.txt. One CTest entry per group; sanitizer builds run fewer and smaller cases
# (AK_MMI_QUICK=1).
add_executable(test_dyn_mminference test_dyn_mminference.c)
target_include_directories(test_dyn_mminference PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_dyn_mminference PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_MMI_ENV "AK_MMI_QUICK=1")
else()
  set(AK_MMI_ENV "AK_MMI_QUICK=0")
endif()

foreach(group dense select grid perm boundary recall exec threads invalid named)
  add_test(NAME dyn_mminference_${group} COMMAND test_dyn_mminference ${group})
  set_tests_properties(dyn_mminference_${group} PROPERTIES ENVIRONMENT "${AK_MMI_ENV}")
  list(APPEND AK_TESTS dyn_mminference_${group})
endforeach()
