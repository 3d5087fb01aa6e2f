# KV caches: ak_kv_append round trips (contiguous / block table / CSR, NHD / HND, every dtype),
# ak_kv_block_table_to_csr, every invalid page-table field, and the owned ak_kv_cache.
# Included from tests/CMakeLists.txt.
add_executable(test_kv test_kv.c)
target_include_directories(test_kv PRIVATE ${PROJECT_SOURCE_DIR}/include)
target_link_libraries(test_kv PRIVATE ak_testutil attnkit)
add_test(NAME kv COMMAND test_kv)
list(APPEND AK_TESTS kv)
