/* fuzz_util.h: what the harnesses share: a private scratch folder per process, writing an
 * input to a file, splitting one input into parts, and a check that aborts (so that
 * libFuzzer, or the replay driver under the sanitizers, reports the input that broke it). */
#ifndef SGDRD_FUZZ_UTIL_H
#define SGDRD_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* The harness entry points (libFuzzer's names). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with the condition and where it failed when cond is false: an invariant of the
 * code under test does not hold for this input. */
#define FUZZ_CHECK(cond) fuzz_check((cond), #cond, __FILE__, __LINE__)
void fuzz_check(int ok, const char *what, const char *file, int line);

/* The process's scratch folder (created on first use under $TMPDIR or /tmp, removed at
 * exit); aborts when it cannot be made. Owned by fuzz_util: do not free. */
const char *fuzz_scratch(void);

/* snprintf into out (a path buffer of n bytes), aborting if the result does not fit. */
void fuzz_path(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes n bytes to path (created or truncated). 0 or -errno. */
int fuzz_write_file(const char *path, const void *data, size_t n);

/* Removes path and everything below it without following links. 0 or -errno. */
int fuzz_rmtree(const char *path);

/* Splits data at every occurrence of sep into at most max parts: part i is
 * data[start[i], start[i] + len[i]). Returns the number of parts (at least 1). */
int fuzz_split(const uint8_t *data, size_t size, const char *sep, size_t *start, size_t *len,
               int max);

#endif
