#include "cc/code.h"

#include <algorithm>

namespace kiln::cc {
namespace {

// Stand-ins in the code text: the first byte of a line that starts in a
// comment, and a file's end without a newline. A file that has either is
// refused (Unreadable).
constexpr char kCommentMark = '\x01';
constexpr char kNoNewlineMark = '\x02';

// What GCC's lexer takes for horizontal space, also between a backslash and
// the newline of a line splice (NUL is refused before any of this).
bool Space(char c) { return c == ' ' || c == '\t' || c == '\f' || c == '\v'; }
// What a line may lose at its end after a comment (GCC warns of a form feed
// or vertical tab in a directive under -pedantic: those stay).
bool Blank(char c) { return c == ' ' || c == '\t'; }

bool IdentifierByte(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// The length of a line splice at `k` (a backslash, horizontal space, a
// newline), or 0 if there is none.
size_t SpliceAt(std::string_view s, size_t k) {
  if (k >= s.size() || s[k] != '\\') return 0;
  size_t j = k + 1;
  while (j < s.size() && Space(s[j])) ++j;
  return j < s.size() && s[j] == '\n' ? j + 1 - k : 0;
}

bool HasSplice(std::string_view s) {
  for (size_t b = s.find('\\'); b != std::string_view::npos; b = s.find('\\', b + 1))
    if (SpliceAt(s, b) > 0) return true;
  return false;
}

// `s` with its line splices removed: what the compiler lexes.
std::string Spliced(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (size_t n = SpliceAt(s, i)) {
      i += n;
    } else {
      out += s[i++];
    }
  }
  return out;
}

// ASCII letters only: (c | 0x20) is the lower case of a letter.
bool MentionsFall(std::string_view comment) {
  for (size_t i = 0; i + 4 <= comment.size(); ++i)
    if ((comment[i] | 0x20) == 'f' && (comment[i + 1] | 0x20) == 'a' && (comment[i + 2] | 0x20) == 'l' &&
        (comment[i + 3] | 0x20) == 'l')
      return true;
  return false;
}

bool AllAscii(std::string_view s) {
  unsigned char any = 0;
  for (char c : s) any |= static_cast<unsigned char>(c);
  return any < 0x80;
}

// The directive's name when `line` (a logical line so far, comments already
// blanked) starts one: "#", space, then the name; "" otherwise.
std::string DirectiveName(std::string_view line) {
  std::string s = Spliced(line);
  size_t k = 0;
  while (k < s.size() && (Space(s[k]) || s[k] == kCommentMark)) ++k;
  if (k >= s.size() || s[k] != '#') return "";
  ++k;
  while (k < s.size() && (Space(s[k]) || s[k] == kCommentMark)) ++k;
  size_t end = k;
  while (end < s.size() && IdentifierByte(s[end])) ++end;
  return s.substr(k, end - k);
}

// Text no scan here reads as the compiler may: carriage returns, NULs and
// the stand-ins above,
// trigraphs (??/ is a backslash, ??= a #), the digraph %: (a #),
// __has_include and __has_embed (their <...> names), and lines so long
// that GCC stops tracking columns.
bool Unreadable(std::string_view in) {
  if (in.find_first_of(std::string_view("\r\0\x01\x02", 4)) != std::string_view::npos) return true;
  for (size_t q = in.find("??"); q != std::string_view::npos; q = in.find("??", q + 1))
    if (q + 2 < in.size() && std::string_view("=/'()!<>-").find(in[q + 2]) != std::string_view::npos) return true;
  // A splice may hide these names: they are looked for with splices removed too.
  const std::string spliced = HasSplice(in) ? Spliced(in) : std::string();
  for (std::string_view text : {in, std::string_view(spliced)})
    for (std::string_view name : {"%:", "__has_include", "__has_embed", "__TIMESTAMP__"})
      if (text.find(name) != std::string_view::npos) return true;
  constexpr size_t kMaxLine = 4000;
  for (size_t from = 0; from < in.size();) {
    size_t nl = in.find('\n', from);
    if ((nl == std::string_view::npos ? in.size() : nl) - from > kMaxLine) return true;
    if (nl == std::string_view::npos) break;
    from = nl + 1;
  }
  return false;
}

class Scan {
 public:
  explicit Scan(std::string_view in) : in_(in) { out_.reserve(in.size() + 1); }

  std::optional<std::string> Run() {
    if (Unreadable(in_)) return std::nullopt;
    size_t i = 0;
    while (i < in_.size()) {
      const char c = in_[i];
      std::optional<size_t> next = i + 1;
      if (!Special(c)) {  // a run of plain code, copied at once
        size_t j = i + 1;
        while (j < in_.size() && !Special(in_[j])) ++j;
        out_.append(in_, i, j - i);
        size_t last = j;  // after the run's last byte that is not blank
        while (last > i && Blank(in_[last - 1])) --last;
        if (last > i) code_end_ = out_.size() - (j - last);
        next = j;
      } else if (c == '\n') {
        if (!EndLine(/*logical=*/true)) return std::nullopt;
      } else if (const size_t n = SpliceAt(in_, i); n > 0) {  // in code: kept, and the compiler's line goes on
        out_.append(in_, i, n - 1);
        code_end_ = out_.size() - (n - 2);  // after the backslash
        EndLine(/*logical=*/false);
        next = i + n;
      } else if (c == '"' || c == '\'') {
        next = Literal(i);
      } else if (c == '<') {
        next = HeaderName(i);
      } else if (c == '/' && SpliceAt(in_, i + 1) > 0) {
        return std::nullopt;  // a comment's opening pair may be split
      } else if (c == '/' && (At(i + 1) == '*' || At(i + 1) == '/')) {
        next = Comment(i);
      } else {
        Code(c);
      }
      if (!next) return std::nullopt;
      i = *next;
    }
    TrimLine();
    if (Directive() == "embed") return std::nullopt;
    return Finish();
  }

 private:
  char At(size_t k) const { return k < in_.size() ? in_[k] : '\0'; }
  static bool Special(char c) { return c == '\n' || c == '"' || c == '\'' || c == '/' || c == '\\' || c == '<'; }
  std::string_view LogicalLine() const { return std::string_view(out_).substr(logical_start_); }

  void Code(char c) {
    out_ += c;
    if (!Blank(c)) code_end_ = out_.size();
  }

  // Whether the compiler's current line is a directive: its first byte
  // that is not space (splices removed) is '#'.
  bool InDirective() const {
    for (char c : Spliced(LogicalLine()))
      if (!Space(c) && c != kCommentMark) return c == '#';
    return false;
  }

  // The current directive's name (DirectiveName), kept once the line has
  // gone past it.
  std::string Directive() {
    if (directive_) return *directive_;
    std::string name = DirectiveName(LogicalLine());
    if (!name.empty() || !InDirective()) directive_ = name;
    return name;
  }
  bool IncludeLine() {
    const std::string name = Directive();
    return name == "include" || name == "include_next" || name == "import";
  }

  // Where the byte before `i` that the compiler sees is (splices skipped),
  // or npos at the start.
  size_t LogicalBefore(size_t i) const {
    while (i > 0) {
      const size_t k = i - 1;
      if (in_[k] != '\n') return k;
      // A newline ends a splice if a backslash and only space come before it.
      size_t b = k;
      while (b > 0 && Space(in_[b - 1])) --b;
      if (b == 0 || in_[b - 1] != '\\') return k;
      i = b - 1;
    }
    return std::string_view::npos;
  }
  char ByteAt(size_t k) const { return k == std::string_view::npos ? '\0' : in_[k]; }

  // A string or character literal from its opening quote at `i` to its
  // closing one or the end of its line. Refused: a raw string (an R before
  // the quote), a quote after a digit or a name other than a literal's
  // prefix (a digit separator, say), a splice inside.
  std::optional<size_t> Literal(size_t i) {
    const char quote = in_[i];
    const size_t at = LogicalBefore(i);
    const char before = ByteAt(at);
    if (quote == '"' && before == 'R') return std::nullopt;
    // A quote inside a number (C++14 and C23 digit separators): anything
    // a number may hold before it, but for a character literal's prefix.
    auto in_number = [](char c) {
      return IdentifierByte(c) || c == '.' || c == '$' || static_cast<unsigned char>(c) >= 0x80;
    };
    const bool exponent_sign = (before == '+' || before == '-') && at != std::string_view::npos &&
                               std::string_view("eEpP").find(ByteAt(LogicalBefore(at))) != std::string_view::npos;
    if (quote == '\'' && (in_number(before) || exponent_sign)) {
      size_t b = i;
      while (b > 0 && IdentifierByte(in_[b - 1])) --b;
      const std::string_view prefix = in_.substr(b, i - b);
      if ((prefix != "L" && prefix != "u" && prefix != "U" && prefix != "u8") || (b > 0 && in_number(in_[b - 1])))
        return std::nullopt;
    }
    // GCC reads a quoted name in #include without escapes.
    const bool include = quote == '"' && IncludeLine();
    out_ += quote;
    ++i;
    while (i < in_.size() && in_[i] != '\n') {
      if (SpliceAt(in_, i) > 0 || (include && in_[i] == '\\')) return std::nullopt;
      const char d = in_[i++];
      out_ += d;
      if (d == quote) break;
      if (d == '\\' && i < in_.size() && in_[i] != '\n') {  // an escape: its second byte is no quote
        if (SpliceAt(in_, i) > 0) return std::nullopt;
        out_ += in_[i++];
      }
    }
    code_end_ = out_.size();
    return i;
  }

  // A '<' at `i`: the <...> name of an #include, #include_next or #import
  // is copied as it is (a "//" in it is no comment); anything else is code.
  std::optional<size_t> HeaderName(size_t i) {
    if (header_named_ || !IncludeLine()) {
      Code('<');
      return i + 1;
    }
    const size_t close = in_.find('>', i);
    if (close == std::string_view::npos || close > std::min(in_.find('\n', i), in_.size())) return std::nullopt;
    // Clang lexes no header name in a skipped #if branch: there "/*" opens a comment.
    const std::string_view name = in_.substr(i, close + 1 - i);
    if (name.find("/*") != std::string_view::npos || name.find("//") != std::string_view::npos) return std::nullopt;
    out_.append(in_, i, close + 1 - i);
    code_end_ = out_.size();
    header_named_ = true;
    return close + 1;
  }

  // Blanks the comment that starts at `i`; returns where scanning goes on,
  // or nullopt when its text may matter or cannot be read as the compiler
  // does (see code.h).
  std::optional<size_t> Comment(size_t i) {
    const bool block = in_[i + 1] == '*';
    const char third = At(i + 2);
    if (third == '!' || (block ? third == '*' && At(i + 3) != '/' : third == '/')) return std::nullopt;
    // After a backslash, its blanks would read as a splice's space.
    if (code_end_ > line_start_ && out_[code_end_ - 1] == '\\') return std::nullopt;
    // After a '<' not yet closed in #if and kin, it may be inside a <...>
    // name (__has_include behind a macro).
    if (InDirective()) {
      const std::string name = Directive();
      const std::string line = Spliced(LogicalLine());
      const size_t open = line.rfind('<');
      if (name != "define" && name != "undef" && open != std::string::npos &&
          (line.rfind('>') == std::string::npos || line.rfind('>') < open))
        return std::nullopt;
    }
    size_t end;  // after the comment's last byte
    if (block) {
      const size_t close = in_.find("*/", i + 2);
      if (close == std::string_view::npos) return std::nullopt;  // unterminated
      end = close + 2;
    } else {
      end = std::min(in_.find('\n', i), in_.size());
    }
    const std::string_view text = in_.substr(i, end - i);
    if (!AllAscii(text) || MentionsFall(text) || text.substr(2).find("/*") != std::string_view::npos) return std::nullopt;
    // A splice inside could end it sooner, join the next line to it, or
    // hide what the checks above look for.
    if (HasSplice(in_.substr(i, std::min(end + 1, in_.size()) - i))) return std::nullopt;
    if (text.find('\n') != std::string_view::npos) {
      // Over lines: not in a directive (the directive goes on past the
      // newline), and nothing after it on its last line (a directive could
      // start there).
      if (InDirective()) return std::nullopt;
      size_t k = end;
      while (k < in_.size() && Space(in_[k])) ++k;
      if (k < in_.size() && in_[k] != '\n') return std::nullopt;
    }
    comment_on_line_ = true;
    for (char d : text) {
      if (d == '\n') {
        EndLine(/*logical=*/false);
        comment_on_line_ = true;
      } else if (code_end_ == line_start_ && mark_ == std::string::npos && !Space(d)) {
        // The line's first byte that is not space stays marked: GCC's
        // -Wmisleading-indentation reads where each line starts.
        mark_ = out_.size();
        out_ += kCommentMark;
      } else {
        out_ += d == '\t' ? '\t' : ' ';
      }
    }
    return end;
  }

  // The current line loses its trailing blanks if a comment was on it,
  // unless that would leave it ending in a backslash.
  void TrimLine() {
    if (!comment_on_line_) return;
    size_t keep = std::max(code_end_, line_start_);
    if (mark_ != std::string::npos) keep = std::max(keep, mark_ + 1);
    if (keep > line_start_ && out_[keep - 1] == '\\') return;
    out_.resize(keep);
  }

  // At a newline: `logical` when it also ends the compiler's line (not a
  // splice's, not one inside a comment). False if the file is refused.
  bool EndLine(bool logical) {
    TrimLine();
    if (logical && Directive() == "embed") return false;  // #embed <...> names a file
    out_ += '\n';
    line_start_ = code_end_ = out_.size();
    mark_ = std::string::npos;
    comment_on_line_ = false;
    if (logical) {
      logical_start_ = out_.size();
      header_named_ = false;
      directive_.reset();
    }
    return true;
  }

  // Lines that are only comments or blank at the end of the file go (no
  // token follows them) unless the last line of code ends in a backslash;
  // whether the file ended in a newline stays.
  std::string Finish() {
    size_t cut = 0;  // after the last line that is not blank, with its newline
    std::string_view last;
    for (size_t pos = 0; pos < out_.size();) {
      const size_t nl = out_.find('\n', pos);
      const size_t end = nl == std::string::npos ? out_.size() : nl;
      const std::string_view line = std::string_view(out_).substr(pos, end - pos);
      if (!std::all_of(line.begin(), line.end(), [](char c) { return Blank(c) || c == kCommentMark; })) {
        cut = nl == std::string::npos ? out_.size() : nl + 1;
        last = line;
      }
      pos = end + 1;
    }
    const bool newline_at_end = !in_.empty() && in_.back() == '\n';
    while (!last.empty() && Blank(last.back())) last.remove_suffix(1);
    if (!last.empty() && last.back() == '\\') {  // GCC warns of a splice at the end: all stays
      if (!newline_at_end) out_ += kNoNewlineMark;
      return std::move(out_);
    }
    out_.resize(cut);
    while (!out_.empty() && out_.back() == '\n') out_.pop_back();
    if (!in_.empty()) out_ += newline_at_end ? '\n' : kNoNewlineMark;
    return std::move(out_);
  }

  std::string_view in_;
  std::string out_;
  size_t line_start_ = 0;     // in out_, where the current physical line starts
  size_t logical_start_ = 0;  // in out_, where the compiler's current line starts
  size_t code_end_ = 0;       // in out_, after the current line's last code byte that is not space
  size_t mark_ = std::string::npos;  // in out_, the current line's comment mark
  bool comment_on_line_ = false;
  bool header_named_ = false;  // this logical line's <...> name was read
  std::optional<std::string> directive_;  // this logical line's directive name, once known
};

}  // namespace

std::optional<std::string> CodeText(std::string_view text) { return Scan(text).Run(); }

}  // namespace kiln::cc
