// CHECK and DCHECK: assertions for invariants of our own code.
//
// Abseil 20220623 (Debian 12) has no absl/log, so this header provides the two
// macros the codebase uses. CHECK holds in every build type; DCHECK compiles to
// nothing in NDEBUG builds and is for checks too costly for release.
//
// Never CHECK on input that comes from the network, a file or a user: bad
// input is an error value sent back to its source, not a crash (STYLE.md).
//
//   CHECK(queue.size() <= queue_bytes_max);
//   CHECK_EQ(state, State::kLeader) << is not supported: use CHECK_MSG.
//   CHECK_MSG(fd >= 0, "registered file table full");
#ifndef STANZAD_CORE_BASE_CHECK_H_
#define STANZAD_CORE_BASE_CHECK_H_

namespace stanzad::internal {

// Prints "file:line: CHECK failed: expr (message)" to stderr and aborts.
[[noreturn]] void CheckFailed(const char* file, int line, const char* expression,
                              const char* message);

}  // namespace stanzad::internal

#define STANZAD_PREDICT_FALSE(x) (__builtin_expect(static_cast<bool>(x), 0))

#define CHECK_MSG(condition, message)                                              \
  do {                                                                             \
    if (STANZAD_PREDICT_FALSE(!(condition))) {                                     \
      ::stanzad::internal::CheckFailed(__FILE__, __LINE__, #condition, (message)); \
    }                                                                              \
  } while (false)

#define CHECK(condition) CHECK_MSG(condition, "")
#define CHECK_EQ(a, b) CHECK_MSG((a) == (b), #a " == " #b)
#define CHECK_NE(a, b) CHECK_MSG((a) != (b), #a " != " #b)
#define CHECK_LT(a, b) CHECK_MSG((a) < (b), #a " < " #b)
#define CHECK_LE(a, b) CHECK_MSG((a) <= (b), #a " <= " #b)
#define CHECK_GT(a, b) CHECK_MSG((a) > (b), #a " > " #b)
#define CHECK_GE(a, b) CHECK_MSG((a) >= (b), #a " >= " #b)

#ifdef NDEBUG
// Keeps the expression type-checked without evaluating it.
#define DCHECK_MSG(condition, message) \
  do {                                 \
    if (false) {                       \
      (void)(condition);               \
      (void)(message);                 \
    }                                  \
  } while (false)
#else
#define DCHECK_MSG(condition, message) CHECK_MSG(condition, message)
#endif

#define DCHECK(condition) DCHECK_MSG(condition, "")
#define DCHECK_EQ(a, b) DCHECK_MSG((a) == (b), #a " == " #b)
#define DCHECK_LT(a, b) DCHECK_MSG((a) < (b), #a " < " #b)
#define DCHECK_LE(a, b) DCHECK_MSG((a) <= (b), #a " <= " #b)

#endif  // STANZAD_CORE_BASE_CHECK_H_
