# Dynamic Mask Attention planner (src/dynamic/dma.c): tests/test_dyn_dma.c; included by tests/CMakeLists.txt.
# One CTest entry per group (dense, select, thresh, relu, exec, skip, threads, invalid, planted).
# Sanitizer builds run fewer and smaller cases (AK_DMA_QUICK=1).
add_executable(test_dyn_dma test_dyn_dma.c)
target_include_directories(test_dyn_dma PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_dyn_dma PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_DMA_ENV "AK_DMA_QUICK=1")
else()
  set(AK_DMA_ENV "AK_DMA_QUICK=0")
endif()

foreach(group dense select thresh relu exec skip threads invalid planted)
  add_test(NAME dyn_dma_${group} COMMAND test_dyn_dma ${group})
  set_tests_properties(dyn_dma_${group} PROPERTIES ENVIRONMENT "${AK_DMA_ENV}")
  list(APPEND AK_TESTS dyn_dma_${group})
endforeach()
