/* onednn_aside.c: a question run in a forked child, its answer read back through a pipe. */
#define _GNU_SOURCE
#include "onednn_aside.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Long enough for a dlopen and a probe on a loaded host or under a sanitizer. */
#define ONEDNN_ASIDE_TIMEOUT_MS 60000

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The child: answers and leaves without running this process's exit handlers. */
static void child(int fd, void (*fn)(void *, size_t), size_t size)
{
    unsigned char buf[ONEDNN_ASIDE_MAX];
    memset(buf, 0, sizeof(buf));
    fn(buf, size);
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, buf + done, size - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(1);
        done += (size_t)w;
    }
    _exit(0);
}

/* Reads size bytes from fd within the deadline: 0, -ETIMEDOUT, or -EPIPE when the child
 * closed its end short (it died). */
static int read_answer(int fd, unsigned char *out, size_t size)
{
    long long deadline = now_ms() + ONEDNN_ASIDE_TIMEOUT_MS;
    size_t done = 0;
    while (done < size) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ETIMEDOUT;
        ssize_t r = read(fd, out + done, size - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EPIPE;
        done += (size_t)r;
    }
    return 0;
}

int onednn_aside_run(void (*fn)(void *out, size_t size), void *out, size_t size)
{
    if (size > ONEDNN_ASIDE_MAX)
        return -EINVAL;
    int fd[2];
    if (pipe2(fd, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fd[0]);
        close(fd[1]);
        return -e;
    }
    if (pid == 0) {
        close(fd[0]);
        child(fd[1], fn, size);
    }
    close(fd[1]);
    unsigned char buf[ONEDNN_ASIDE_MAX];
    int rc = read_answer(fd[0], buf, size);
    close(fd[0]);
    if (rc < 0)
        kill(pid, SIGKILL);
    /* ECHILD (a SIGCHLD handler of the caller's reaped it) is no failure: the answer came. */
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (rc == 0)
        memcpy(out, buf, size);
    return rc;
}
