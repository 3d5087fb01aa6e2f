# Gemma 3 270M end to end (tests/test_model_forward.c): logits against the independent reference fixture,
# perplexity against llama.cpp's, chunking / decode / thread consistency, sparse methods at full budget, API errors.
# Needs the model (AK_MODEL_GGUF, see tests/CMakeLists.txt); without it every entry is skipped (exit 77).
# Sanitizer builds run shortened groups (AK_MODEL_QUICK=1).
add_executable(test_model_forward test_model_forward.c)
target_include_directories(test_model_forward PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_model_forward PRIVATE attnkit)
if(AK_TEST_LIBM)
  target_link_libraries(test_model_forward PRIVATE ${AK_TEST_LIBM})
endif()
foreach(g logits ppl consistency methods api)
  add_test(NAME model_forward_${g}
           COMMAND test_model_forward "${AK_MODEL_GGUF}" ${g} ${CMAKE_CURRENT_SOURCE_DIR}/fixtures)
  if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
    set_tests_properties(model_forward_${g} PROPERTIES ENVIRONMENT "AK_MODEL_QUICK=1")
  endif()
  list(APPEND AK_TESTS model_forward_${g})
endforeach()
