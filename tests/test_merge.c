#include "common.h"
int main(void) { return tc_finish("test_merge"); }
