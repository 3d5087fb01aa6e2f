# ak_qgemm (quantized weights x f32 activations): the sweep under each ISA cap, invalid arguments, edge cases;
# and bench/qgemm.c (not a test, not installed: `make qgemm_bench`, see docs/model/qgemm.md).
# Included from tests/CMakeLists.txt.
add_executable(test_model_qgemm test_model_qgemm.c)
target_include_directories(test_model_qgemm PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_model_qgemm PRIVATE ak_testutil attnkit)
foreach(g scalar avx2 avx512 args edge)
  add_test(NAME model_qgemm_${g} COMMAND test_model_qgemm ${g})
  list(APPEND AK_TESTS model_qgemm_${g})
endforeach()
if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set_tests_properties(model_qgemm_scalar model_qgemm_avx2 model_qgemm_avx512 PROPERTIES ENVIRONMENT "QUICK=1")
endif()

add_executable(qgemm_bench EXCLUDE_FROM_ALL ${PROJECT_SOURCE_DIR}/bench/qgemm.c)
target_include_directories(qgemm_bench PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(qgemm_bench PRIVATE attnkit)
