# AnchorAttention planner (ak_anchor_plan, ak_anchor_row_anchors): tests/test_dyn_anchor.c; included by
# tests/CMakeLists.txt. One CTest entry per group (anchor, rule, limits, quirks, recall, exec, threads,
# invalid). Sanitizer builds run fewer and smaller cases (AK_DYN_ANCHOR_QUICK=1).
add_executable(test_dyn_anchor test_dyn_anchor.c)
target_include_directories(test_dyn_anchor PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_dyn_anchor PRIVATE ak_testutil attnkit)
if(NOT AK_DYN_ONLY) # single-method builds (build-anchor*) have no ak_dyn_plan_named
  target_compile_definitions(test_dyn_anchor PRIVATE AK_TEST_HAVE_NAMED=1)
endif()

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_DYN_ANCHOR_ENV "AK_DYN_ANCHOR_QUICK=1")
else()
  set(AK_DYN_ANCHOR_ENV "AK_DYN_ANCHOR_QUICK=0")
endif()

foreach(group anchor rule limits quirks recall exec threads invalid)
  add_test(NAME dyn_anchor_${group} COMMAND test_dyn_anchor ${group})
  set_tests_properties(dyn_anchor_${group} PROPERTIES ENVIRONMENT "${AK_DYN_ANCHOR_ENV}")
  list(APPEND AK_TESTS dyn_anchor_${group})
endforeach()
