/* onednn_aside.h: asks oneDNN a question in a child process, so that this one never maps it.
 *
 * Loading oneDNN costs a process megabytes of resident pages that it keeps to the end (see
 * onednn_lib.h); a question such as "which ISA does oneDNN dispatch to" or "is its bf16
 * matmul faster than sgemm here" needs the library only for the answer. A forked child
 * loads it, answers through a pipe and exits. */
#ifndef SGDRD_ONEDNN_ASIDE_H
#define SGDRD_ONEDNN_ASIDE_H

#include <stddef.h>

/* The most bytes an answer may have. */
#define ONEDNN_ASIDE_MAX 256

/* Runs fn(out, size) in a forked child and copies the size bytes it fills into out. fn runs
 * after fork in a copy of a possibly multithreaded process: it must start no OpenMP
 * parallel region (GNU OpenMP's thread pool does not survive fork), so it sets OpenMP and
 * OpenBLAS to one thread before computing anything. Returns 0, -EINVAL for a size over
 * ONEDNN_ASIDE_MAX, or another negative errno when the child cannot be started, dies, or
 * has not answered in ONEDNN_ASIDE_TIMEOUT_MS (it is then killed): the caller can then ask
 * in this process instead. Thread-safe. */
int onednn_aside_run(void (*fn)(void *out, size_t size), void *out, size_t size);

#endif
