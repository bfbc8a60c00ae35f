#pragma once
// A source file's code: its text with the comments blanked, so that two
// versions that differ only in comments the compiler cannot see name the
// same code (the compile cache's code key, docs/architecture.md "Compile
// cache").
//
// The rule: every byte of a comment becomes a space, but for its newlines
// and tabs, so every token keeps its line and column (debug information and
// diagnostics record both). A line whose end is a comment, or blank after
// one, loses those trailing blanks (a comment at the end of a line may
// change freely), unless the line then ends in a backslash (that would make
// a line splice the file does not have). Blank lines at the end of the file
// go, the final newline stays.
//
// No code text (nullopt) when comments may matter to the compiler or this
// scan cannot be sure to read the file as the compiler does; the file is
// then named by its bytes. That is when a comment
//   - contains "fall" in any case (GCC's -Wimplicit-fallthrough reads
//     "falls through" and its kin),
//   - is a documentation comment (/**, /*!, ///, //!: Clang's
//     -Wdocumentation reads them),
//   - contains "/*" or a byte outside ASCII (-Wcomment, -Wbidi-chars), or
//   - is a // comment continued by a backslash at its end (-Wcomment);
// and when the file has a carriage return, a "??/" trigraph, a raw string
// (R"), a quote after a digit (a digit separator or u8'x'), an unterminated
// block comment, a line splice inside a comment's opening or closing pair,
// or a comment inside an #include's <...> name.

#include <optional>
#include <string>
#include <string_view>

namespace kiln::cc {

std::optional<std::string> CodeText(std::string_view text);

}  // namespace kiln::cc
