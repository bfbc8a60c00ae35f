#pragma once
// A small C project for tests that build real code in the toolchain image:
// five translation units under a Makefile; leaf.h is included only through
// mid.h; every object carries debug information (so paths and flags are in
// it) unless make is given DEBUG=; make's own dependency files (-MMD) are
// outputs too, as PostgreSQL's build has them. `make -j2 app` builds
// out/*.o and ./app, which prints "hello 42 43 3 4 <MODE>".

#include <string>

#include "harness/harness.h"

namespace kiln::test {

inline constexpr const char* kCProjectMakefile =
    "CC = cc\n"
    "OPT ?= -O2\n"
    "EXTRA ?=\n"
    "DEBUG ?= -g\n"
    "MODE ?= $(KILN_TEST_MODE)\n"
    "CFLAGS = $(OPT) $(DEBUG) -Wall -Iinclude -DMODE='\"$(MODE)\"' $(EXTRA)\n"
    "SRCS = main.c a.c b.c c.c lib/d.c\n"
    "OBJS = $(SRCS:%.c=out/%.o)\n"
    "app: $(OBJS)\n"
    "\t$(CC) -o $@ $(OBJS)\n"
    "out/%.o: %.c\n"
    "\t@mkdir -p $(dir $@)\n"
    "\t$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<\n"
    "-include $(OBJS:.o=.d)\n";

inline void WriteCProject(const std::string& d) {
  test::WriteFile(d + "/Makefile", kCProjectMakefile);
  test::WriteFile(d + "/include/common.h",
                  "/* common.h: shared by every unit */\n#ifndef COMMON_H\n#define COMMON_H\n"
                  "#define GREETING \"hello\"\nint unit_a(void);\nint unit_b(void);\nint unit_c(void);\n"
                  "int unit_d(void);\n#endif\n");
  test::WriteFile(d + "/include/mid.h", "#ifndef MID_H\n#define MID_H\n#include \"leaf.h\"\n#define MID (LEAF * 2)\n#endif\n");
  test::WriteFile(d + "/include/leaf.h", "#define LEAF 21\n");
  test::WriteFile(d + "/main.c",
                  "#include <stdio.h>\n#include \"common.h\"\n"
                  "int main(void) {\n  printf(\"%s %d %d %d %d %s\\n\", GREETING, unit_a(), unit_b(), unit_c(), "
                  "unit_d(), MODE);\n  return 0;\n}\n");
  test::WriteFile(d + "/a.c", "#include \"common.h\"\n#include \"mid.h\"\nint unit_a(void) { return MID; }\n");
  test::WriteFile(d + "/b.c", "#include \"common.h\"\n#include \"mid.h\"\nint unit_b(void) { return MID + 1; }\n");
  test::WriteFile(d + "/c.c", "#include \"common.h\"\nint unit_c(void) { return 3; }\n");
  test::WriteFile(d + "/lib/d.c", "#include \"common.h\"\nint unit_d(void) { return 4; }\n");
}

}  // namespace kiln::test
