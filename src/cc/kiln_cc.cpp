// kiln-cc: the compile cache's compiler wrapper (see cc/wrapper.h).
#include "cc/wrapper.h"

int main(int argc, char** argv) { return kiln::cc::RunWrapper(argc, argv); }
