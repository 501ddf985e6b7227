/* test_api_server.c: the API server built and run without the daemon: a real store, a
 * backend of the test's own (api_backend.h), and requests over a real HTTP connection.
 * It proves the API needs nothing of daemon/ and that routes reach the backend they are
 * handed: /health reads its queue, a cancel reaches it and its error becomes a problem. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>

#include "api_backend.h"
#include "server.h"
#include "store.h"

typedef struct fake {
    int64_t cancelled;   /* the last job id cancel was asked for */
} fake;

static int fake_cancel(void *ctx, int64_t job_id)
{
    ((fake *)ctx)->cancelled = job_id;
    return -EALREADY;
}

static int fake_queue_length(void *ctx)
{
    (void)ctx;
    return 7;
}

static int64_t fake_running(void *ctx)
{
    (void)ctx;
    return 3;
}

static int fake_submit(void *ctx, int64_t run_id, const job_params *params, int64_t *job_id)
{
    (void)ctx, (void)run_id, (void)params, (void)job_id;
    return -ENOENT;
}

typedef struct world {
    char dir[64];
    store *st;
    api_server *srv;
    fake f;
    api_backend be;
} world;

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    char db[128], err[256];
    snprintf(w->dir, sizeof w->dir, "/tmp/sgdrd_api_server_XXXXXX");
    if (!mkdtemp(w->dir))
        return -1;
    snprintf(db, sizeof db, "%s/sgdrd.db", w->dir);
    if (store_open(&w->st, db, NULL, err, sizeof err)) {
        fprintf(stderr, "store_open: %s\n", err);
        return -1;
    }
    w->be = (api_backend){.ctx = &w->f, .submit = fake_submit, .cancel = fake_cancel,
                          .queue_length = fake_queue_length, .running = fake_running};
    api_config cfg = {.listen = "127.0.0.1:0", .data_dir = w->dir, .store = w->st,
                      .backend = &w->be};
    if (api_server_start(&w->srv, &cfg, err, sizeof err)) {
        fprintf(stderr, "api_server_start: %s\n", err);
        return -1;
    }
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    char cmd[128];
    api_server_stop(w->srv);
    store_close(w->st);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", w->dir);
    int rc = system(cmd);
    free(w);
    return rc == 0 ? 0 : -1;
}

/* Sends one request (Connection: close) and returns the status; *body gets the parsed
 * JSON body (NULL when it is none). */
static int http(world *w, const char *method, const char *path, json_t **body)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)api_server_port(w->srv))};
    char req[256], resp[8192];
    size_t got = 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Connection: close\r\nContent-Length: 0\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    for (ssize_t r; got < sizeof resp - 1; got += (size_t)r) {
        r = read(fd, resp + got, sizeof resp - 1 - got);
        if (r <= 0)
            break;
    }
    close(fd);
    resp[got] = '\0';
    int status = 0;
    assert_int_equal(sscanf(resp, "HTTP/1.1 %d", &status), 1);
    const char *start = strstr(resp, "\r\n\r\n");
    *body = start ? json_loads(start + 4, 0, NULL) : NULL;
    return status;
}

static void health_reads_the_backend_queue(void **state)
{
    world *w = *state;
    json_t *body = NULL;
    assert_int_equal(http(w, "GET", "/api/v1/health", &body), 200);
    assert_non_null(body);
    assert_int_equal(json_integer_value(json_object_get(body, "queue_length")), 7);
    assert_int_equal(json_integer_value(json_object_get(body, "running_job")), 3);
    json_decref(body);
}

static void cancel_reaches_the_backend_and_its_error_is_a_problem(void **state)
{
    world *w = *state;
    json_t *body = NULL;
    assert_int_equal(http(w, "POST", "/api/v1/jobs/5/cancel", &body), 409);
    assert_int_equal(w->f.cancelled, 5);
    assert_non_null(body);
    assert_string_equal(json_string_value(json_object_get(body, "error_code")),
                        "RESOURCE_CONFLICT");
    json_decref(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(health_reads_the_backend_queue),
        cmocka_unit_test(cancel_reaches_the_backend_and_its_error_is_a_problem),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
