# Routing attention planner (ak_routing_plan, ak_routing_fit, ak_routing_kmeans_update): tests/test_dyn_routing.c;
# included by tests/CMakeLists.txt. One CTest entry per group (dense, planted, brute, mean, causal, exec, kmeans,
# threads, invalid). Sanitizer builds run fewer and smaller cases (AK_DYN_ROUTING_QUICK=1).
add_executable(test_dyn_routing test_dyn_routing.c)
target_include_directories(test_dyn_routing PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_dyn_routing PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_DYN_ROUTING_ENV "AK_DYN_ROUTING_QUICK=1")
else()
  set(AK_DYN_ROUTING_ENV "AK_DYN_ROUTING_QUICK=0")
endif()

foreach(group dense planted brute mean causal exec kmeans threads invalid)
  add_test(NAME dyn_routing_${group} COMMAND test_dyn_routing ${group})
  set_tests_properties(dyn_routing_${group} PROPERTIES ENVIRONMENT "${AK_DYN_ROUTING_ENV}")
  list(APPEND AK_TESTS dyn_routing_${group})
endforeach()
