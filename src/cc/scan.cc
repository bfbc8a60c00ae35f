#include "cc/scan.h"

#include <sys/stat.h>

#include <array>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <set>
#include <unordered_map>

#include "cc/deps.h"

namespace kiln::cc {
namespace {

constexpr size_t kMaxFiles = 20'000;
constexpr size_t kMaxFileBytes = size_t{64} << 20;

// Character classes, one lookup per byte: the scan reads megabytes of
// headers per unit.
enum Class : uint8_t { kOther, kNewline, kBlank, kSlash, kQuote, kHash, kPercent, kDigit, kIdent, kDot };
constexpr std::array<uint8_t, 256> kClasses = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 'a'; c <= 'z'; ++c) t[c] = kIdent;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] = kIdent;
  for (int c = '0'; c <= '9'; ++c) t[c] = kDigit;
  t['_'] = t['$'] = kIdent;
  t['\n'] = kNewline;
  t[' '] = t['\t'] = t['\f'] = t['\v'] = kBlank;
  t['/'] = kSlash;
  t['"'] = t['\''] = kQuote;
  t['#'] = kHash;
  t['%'] = kPercent;
  t['.'] = kDot;
  return t;
}();
Class ClassOf(char c) { return static_cast<Class>(kClasses[static_cast<unsigned char>(c)]); }
bool IsIdent(char c) { return ClassOf(c) == kIdent || ClassOf(c) == kDigit; }
bool IsDigit(char c) { return ClassOf(c) == kDigit; }
bool IsBlank(char c) { return ClassOf(c) == kBlank; }

// The text with its line splices (a backslash, blanks, a newline) removed,
// as the compiler reads it before it looks for comments and directives.
std::string Spliced(std::string_view t) {
  std::string out;
  out.reserve(t.size());
  size_t from = 0;
  for (size_t i = t.find('\\'); i != std::string_view::npos; i = t.find('\\', i + 1)) {
    size_t j = i + 1;
    while (j < t.size() && IsBlank(t[j])) ++j;
    if (j < t.size() && t[j] == '\n') {
      out.append(t.substr(from, i - from));
      from = j + 1;
      i = j;
    }
  }
  out.append(t.substr(from));
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  Result<std::vector<IncludeName>> Run() {
    bool line_start = true;
    while (i_ < s_.size()) {
      const char c = s_[i_];
      switch (ClassOf(c)) {
        case kNewline:
          line_start = true;
          directive_ = {};
          ++i_;
          break;
        case kBlank:
          ++i_;
          break;
        case kSlash:
          if (At(i_ + 1) == '*') {
            KILN_RETURN_IF_ERROR(SkipBlockComment());  // a space: the line's start stays as it was
          } else if (At(i_ + 1) == '/') {
            i_ = std::min(s_.find('\n', i_), s_.size());
          } else {
            line_start = false;
            ++i_;
          }
          break;
        case kHash:
        case kPercent:
          if (line_start && (c == '#' || At(i_ + 1) == ':')) {
            line_start = false;
            i_ += c == '#' ? 1 : 2;
            KILN_RETURN_IF_ERROR(Directive());
            break;
          }
          line_start = false;
          ++i_;
          break;
        case kOther:
          line_start = false;
          ++i_;
          break;
        default:
          line_start = false;
          KILN_RETURN_IF_ERROR(Token());
      }
    }
    return std::move(names_);
  }

 private:
  char At(size_t i) const { return i < s_.size() ? s_[i] : '\0'; }

  Status SkipBlockComment() {
    size_t end = s_.find("*/", i_ + 2);
    if (end == std::string_view::npos) return FailedPrecondition("a comment is not closed");
    i_ = end + 2;
    return Status::Ok();
  }

  // Blanks and comments within the line.
  Status SkipBlanks() {
    while (i_ < s_.size()) {
      if (IsBlank(s_[i_])) ++i_;
      else if (s_[i_] == '/' && At(i_ + 1) == '*') KILN_RETURN_IF_ERROR(SkipBlockComment());
      else break;
    }
    return Status::Ok();
  }

  std::string_view Identifier() {
    size_t start = i_;
    while (i_ < s_.size() && IsIdent(s_[i_])) ++i_;
    return s_.substr(start, i_ - start);
  }

  // A "name" or <name> at i_, ended within the line; false if there is none.
  bool HeaderName() {
    const char open = At(i_);
    if (open != '"' && open != '<') return false;
    const char close = open == '"' ? '"' : '>';
    size_t end = s_.find_first_of(std::string{close, '\n'}, i_ + 1);
    if (end == std::string_view::npos || s_[end] != close) return false;
    std::string name(s_.substr(i_ + 1, end - i_ - 1));
    if (!name.empty()) names_.push_back({std::move(name)});
    i_ = end + 1;
    return true;
  }

  Status Directive() {
    KILN_RETURN_IF_ERROR(SkipBlanks());
    std::string_view word = Identifier();
    directive_ = word;
    if (word == "include" || word == "include_next" || word == "import") {
      KILN_RETURN_IF_ERROR(SkipBlanks());
      if (HeaderName() || i_ >= s_.size() || s_[i_] == '\n') return Status::Ok();  // none: the compiler says so
      if (At(i_) == '"' || At(i_) == '<') return Status::Ok();  // not closed on its line: an error there too
      return FailedPrecondition("an #include names a macro, not a file");
    }
    if (word == "embed") return FailedPrecondition("it uses #embed");
    if (word == "pragma") return CheckPragma(s_.substr(i_, std::min(s_.find('\n', i_), s_.size()) - i_));
    return Status::Ok();  // the rest of the line is read as tokens (#if __has_include(...))
  }

  // #pragma GCC dependency, or _Pragma("GCC dependency ..."): the file it
  // names is read.
  static Status CheckPragma(std::string_view rest) {
    for (size_t at = rest.find("GCC"); at != std::string_view::npos; at = rest.find("GCC", at + 3)) {
      size_t j = at + 3;
      while (j < rest.size() && IsBlank(rest[j])) ++j;
      if (rest.substr(j, 10) == "dependency") return FailedPrecondition("it uses #pragma GCC dependency");
    }
    return Status::Ok();
  }

  // Whether the identifier ending at `end` is preceded by "defined" (and
  // blanks or an opening parenthesis): defined(__has_include) asks whether
  // the feature exists, not about a file.
  bool AfterDefined(size_t start) const {
    size_t j = start;
    while (j > 0 && (IsBlank(s_[j - 1]) || s_[j - 1] == '(')) --j;
    return j >= 7 && s_.substr(j - 7, 7) == "defined" && (j == 7 || !IsIdent(s_[j - 8]));
  }

  Status Token() {
    const char c = s_[i_];
    if (c == '"' || c == '\'') return SkipLiteral();
    if (IsDigit(c) || (c == '.' && IsDigit(At(i_ + 1)))) return SkipNumber();
    if (!IsIdent(c)) {
      ++i_;
      return Status::Ok();
    }
    const size_t start = i_;
    std::string_view word = Identifier();
    if (At(i_) == '"' && !word.empty() && word.back() == 'R' &&
        (word == "R" || word == "u8R" || word == "uR" || word == "UR" || word == "LR"))
      return FailedPrecondition("it has a raw string");
    if (word == "_Pragma") return CheckPragma(s_.substr(i_, std::min(s_.find('\n', i_), s_.size()) - i_));
    if (word == "__has_embed") return FailedPrecondition("it uses __has_embed");
    if (word != "__has_include" && word != "__has_include_next") return Status::Ok();
    // In a macro's body the name may be a parameter, even between < and >.
    if (directive_ == "define") return FailedPrecondition("a macro uses __has_include");
    KILN_RETURN_IF_ERROR(SkipBlanks());
    if (At(i_) != '(') {
      // #ifdef __has_include, defined(__has_include); anything else may be
      // a macro that stands for it.
      if (directive_ == "ifdef" || directive_ == "ifndef" || directive_ == "elifdef" || directive_ == "elifndef" ||
          directive_ == "undef" || AfterDefined(start))
        return Status::Ok();
      return FailedPrecondition("__has_include is used without a file name after it");
    }
    ++i_;
    KILN_RETURN_IF_ERROR(SkipBlanks());
    if (HeaderName()) return Status::Ok();
    return FailedPrecondition("__has_include names a macro, not a file");
  }

  // A string or character literal, to its closing quote or the line's end.
  Status SkipLiteral() {
    const char quote = s_[i_];
    size_t j = i_ + 1;
    while (j < s_.size() && s_[j] != quote && s_[j] != '\n') j += s_[j] == '\\' ? 2 : 1;
    i_ = std::min(j + (j < s_.size() && s_[j] == quote ? 1 : 0), s_.size());
    return Status::Ok();
  }

  // A preprocessing number (1e+5, 0x1p-3, 1.0f). A quote inside one is a
  // digit separator in C++14 and C23 but opens a character literal in
  // older C, which ends at the next quote or the line's end; the readings
  // can differ only in what the rest of the line hides, so the scan reads
  // it as a separator unless that rest opens a comment or a string or
  // names a file (2's complement, 1'000'000).
  Status SkipNumber() {
    size_t j = i_ + 1;
    while (j < s_.size()) {
      const char c = s_[j];
      if (IsIdent(c) || c == '.') {
        ++j;
      } else if ((c == '+' || c == '-') && std::strchr("eEpP", s_[j - 1]) != nullptr) {
        ++j;
      } else if (c == '\'') {
        std::string_view rest = s_.substr(j + 1, std::min(s_.find('\n', j), s_.size()) - j - 1);
        if (rest.find("/*") != std::string_view::npos || rest.find('"') != std::string_view::npos ||
            rest.find("include") != std::string_view::npos)
          return FailedPrecondition("a quote follows a digit (a digit separator?) on a line that goes on with a "
                                    "comment, a string or an include");
        ++j;
      } else {
        break;
      }
    }
    i_ = j;
    return Status::Ok();
  }

  std::string_view s_;
  size_t i_ = 0;
  std::string_view directive_;  // the directive of the line being read, if any
  std::vector<IncludeName> names_;
};

std::string Parent(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

}  // namespace

Result<std::vector<IncludeName>> IncludeNames(std::string_view text) {
  if (text.substr(0, 3) == "\xEF\xBB\xBF") text.remove_prefix(3);  // a byte order mark, which compilers skip
  if (text.find('\r') != std::string_view::npos) return FailedPrecondition("it has a carriage return");
  if (text.find('\0') != std::string_view::npos) return FailedPrecondition("it has a NUL byte");
  // Every trigraph, as ISO modes read them all (??' is ^, not a quote).
  for (size_t at = text.find("?\?"); at != std::string_view::npos; at = text.find("?\?", at + 1))
    if (at + 2 < text.size() && std::strchr("=/'()!<>-", text[at + 2]) != nullptr && text[at + 2] != '\0')
      return FailedPrecondition("it has a trigraph");
  const std::string s = Spliced(text);
  return Lexer(s).Run();
}

Result<IncludeScan> ScanIncludes(const std::string& source, const std::vector<std::string>& search,
                                 std::string_view cwd) {
  IncludeScan out;
  std::set<std::string> files, stepped_dirs;
  std::vector<std::string> dirs;
  for (const auto& d : search) {
    if (d.rfind('=', 0) == 0 || d.rfind("$SYSROOT", 0) == 0)
      return FailedPrecondition("include directory " + d + " is relative to the sysroot");
    std::vector<std::string> stepped;
    dirs.push_back(AbsolutePath(d, cwd, &stepped));
    // The compiler drops a directory searched twice (by its inode); a
    // symbolic link would make two of one, which a copy of the files has not.
    char real[PATH_MAX];
    if (::realpath(dirs.back().c_str(), real) != nullptr && dirs.back() != real)
      return FailedPrecondition("include directory " + d + " is reached through a symbolic link");
    for (auto& s : stepped) {
      struct stat st {};
      if (::lstat(s.c_str(), &st) != 0) continue;  // the directory is not there: nothing is found in it
      if (S_ISLNK(st.st_mode)) return FailedPrecondition("include directory " + d + " steps out of a symbolic link");
      if (S_ISDIR(st.st_mode)) stepped_dirs.insert(std::move(s));
    }
  }
  std::deque<std::string> queue;
  // What a name written as `path` opens (lexically normalized), or "" when
  // nothing; refused when a ".." steps out of a symbolic link, where the
  // lexical path names another file than the compiler opens.
  std::unordered_map<std::string, std::string> found;
  auto open = [&](const std::string& path) -> Result<std::string> {
    auto it = found.find(path);
    if (it != found.end()) return it->second;
    std::vector<std::string> stepped;
    std::string p = AbsolutePath(path, cwd, &stepped);
    std::string answer = p;
    for (const auto& s : stepped) {
      struct stat st {};
      if (::lstat(s.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
        if (::stat(s.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
          return FailedPrecondition(path + " steps out of a symbolic link with \"..\"");
        answer.clear();  // no such directory: the compiler finds nothing there
      }
    }
    struct stat st {};
    if (!answer.empty() && (::stat(p.c_str(), &st) != 0 || S_ISDIR(st.st_mode))) answer.clear();
    if (!answer.empty() && !S_ISREG(st.st_mode)) return FailedPrecondition(path + " is not a regular file");
    if (!answer.empty())
      for (auto& s : stepped) stepped_dirs.insert(std::move(s));
    found.emplace(path, answer);
    return answer;
  };
  auto add = [&](const std::string& p) -> Status {
    if (!files.insert(p).second) return Status::Ok();
    if (files.size() > kMaxFiles) return FailedPrecondition("it may read more than 20,000 files");
    out.files.push_back(p);
    queue.push_back(p);
    return Status::Ok();
  };
  auto src = open(source);
  if (!src.ok()) return src.status();
  if (src->empty()) return FailedPrecondition("cannot find " + source);
  KILN_RETURN_IF_ERROR(add(*src));
  while (!queue.empty()) {
    const std::string file = std::move(queue.front());
    queue.pop_front();
    auto text = ReadFileUpTo(file, kMaxFileBytes);
    if (!text.ok()) return FailedPrecondition(text.status().message());
    auto names = IncludeNames(*text);
    if (!names.ok()) return FailedPrecondition(file + ": " + names.status().message());
    if (file == *src) names->insert(names->begin(), IncludeName{"stdc-predef.h"});  // GCC includes it first, unasked
    const std::string here = Parent(file);
    for (const auto& n : *names) {
      // An absolute name is itself; any other is looked up in the
      // including file's directory first, as for "name", for <name> too,
      // and in every directory for both: more than the compiler looks at,
      // so that every file it could find is there.
      const bool absolute = n.name[0] == '/';
      for (size_t k = 0; k <= (absolute ? 0 : dirs.size()); ++k) {
        auto f = open(absolute ? n.name : (k == 0 ? here : dirs[k - 1]) + "/" + n.name);
        if (!f.ok()) return f.status();
        if (!f->empty()) KILN_RETURN_IF_ERROR(add(*f));
      }
    }
  }
  out.dirs.assign(stepped_dirs.begin(), stepped_dirs.end());
  return out;
}

}  // namespace kiln::cc
