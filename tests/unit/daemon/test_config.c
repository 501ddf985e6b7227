/* test_config.c: the daemon's flags, config file, listen-address rule and token file. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"

static char err[1024];

static int parse(daemon_config *c, int n, ...)
{
    char *argv[32] = {"sgdrd"};
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        argv[i + 1] = va_arg(ap, char *);
    va_end(ap);
    err[0] = 0;
    return config_parse(c, n + 1, argv, err, sizeof err);
}

static void write_file(const char *path, const char *text, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
}

static void defaults(void **state)
{
    (void)state;
    daemon_config c;
    assert_int_equal(parse(&c, 0), 0);
    assert_string_equal(c.listen, "127.0.0.1:8080");
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 8080);
    assert_true(c.loopback);
    assert_string_equal(c.data_dir, "./var");
    assert_int_equal(c.n_roots, 2);
    assert_string_equal(c.roots[0], "./var");
    assert_string_equal(c.roots[1], "/usr/share/datasets");
    assert_null(c.token_file);
    assert_int_equal(c.threads, 0);
    assert_int_equal(c.max_upload, 2ll << 30);
    assert_int_equal(c.log_level, LOG_INFO);
    assert_false(c.resume);
    assert_false(c.demo);
    config_free(&c);
}

static void every_flag(void **state)
{
    (void)state;
    daemon_config c;
    assert_int_equal(parse(&c, 14, "--listen", "127.0.0.2:9000", "--data-dir=/tmp/d",
                           "--dataset-root", "/a", "--dataset-root=/b", "--threads", "2",
                           "--max-upload", "512M", "--log-level", "debug", "--resume",
                           "--demo"), 0);
    assert_int_equal(c.port, 9000);
    assert_string_equal(c.host, "127.0.0.2");
    assert_string_equal(c.data_dir, "/tmp/d");
    assert_int_equal(c.n_roots, 2);
    assert_string_equal(c.roots[0], "/a");
    assert_string_equal(c.roots[1], "/b");
    assert_int_equal(c.threads, 2);
    assert_int_equal(c.max_upload, 512ll << 20);
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_true(c.resume);
    assert_true(c.demo);
    config_free(&c);

    assert_int_equal(parse(&c, 2, "--listen", "[::1]:8081"), 0);
    assert_string_equal(c.host, "::1");
    assert_true(c.loopback);
    assert_int_equal(c.port, 8081);
    config_free(&c);
    assert_int_equal(parse(&c, 1, "--max-upload=1000"), 0);
    assert_int_equal(c.max_upload, 1000);
    config_free(&c);
    assert_int_equal(parse(&c, 1, "--help"), 0);
    assert_true(c.help);
    config_free(&c);
    assert_int_equal(parse(&c, 1, "--version"), 0);
    assert_true(c.version);
    config_free(&c);
}

static void bad_flags_name_the_flag(void **state)
{
    (void)state;
    static const struct {
        const char *a, *b, *needle;
    } cases[] = {
        {"--listen", "8080", "--listen"},
        {"--listen", "127.0.0.1:0", "--listen"},
        {"--listen", "127.0.0.1:70000", "--listen"},
        {"--listen", ":8080", "--listen"},
        {"--threads", "-1", "--threads"},
        {"--threads", "two", "--threads"},
        {"--max-upload", "0", "--max-upload"},
        {"--max-upload", "12T", "--max-upload"},
        {"--max-upload", "-5", "--max-upload"},
        {"--log-level", "loud", "--log-level"},
        {"--bogus", "1", "--bogus"},
        {"--data-dir", "", "--data-dir"},
        {"stray", NULL, "stray"},
        {"--resume=yes", NULL, "--resume"},
        {"--config", "/nonexistent/sgdrd.conf", "/nonexistent/sgdrd.conf"},
        {"--allowed-host", "", "--allowed-host"},
        {"--allowed-origin", "http://a b", "--allowed-origin"},
        {"--trusted-proxy", "", "--trusted-proxy"},
        {"--session-ttl", "10", "--session-ttl"},
        {"--session-ttl", "1h", "--session-ttl"},
        {"--behind-tls=yes", NULL, "--behind-tls"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        daemon_config c;
        int rc = cases[i].b ? parse(&c, 2, cases[i].a, cases[i].b) : parse(&c, 1, cases[i].a);
        assert_int_equal(rc, -EINVAL);
        if (!strstr(err, cases[i].needle))
            fail_msg("'%s %s' -> '%s' does not name %s", cases[i].a,
                     cases[i].b ? cases[i].b : "", err, cases[i].needle);
        config_free(&c);
    }
    daemon_config c;
    assert_int_equal(parse(&c, 1, "--listen"), -EINVAL);
    assert_non_null(strstr(err, "needs a value"));
    config_free(&c);
}

static void non_loopback_needs_a_token_file(void **state)
{
    (void)state;
    daemon_config c;
    assert_int_equal(parse(&c, 2, "--listen", "0.0.0.0:8080"), -EINVAL);
    assert_non_null(strstr(err, "--token-file"));
    assert_non_null(strstr(err, "0.0.0.0:8080"));
    config_free(&c);
    assert_int_equal(parse(&c, 2, "--listen", "[::]:8080"), -EINVAL);
    config_free(&c);
    assert_int_equal(parse(&c, 2, "--listen", "localhost:8080"), 0);
    config_free(&c);
    assert_int_equal(parse(&c, 4, "--listen", "0.0.0.0:8080", "--token-file", "/t"), 0);
    assert_false(c.loopback);
    assert_string_equal(c.token_file, "/t");
    config_free(&c);
}

static void web_safety_flags(void **state)
{
    (void)state;
    daemon_config c;
    assert_int_equal(parse(&c, 0), 0);
    assert_int_equal(c.allowed_hosts.n, 0);
    assert_int_equal(c.allowed_origins.n, 0);
    assert_int_equal(c.trusted_proxies.n, 0);
    assert_false(c.behind_tls);
    assert_int_equal(c.session_ttl_s, 43200);
    config_free(&c);
    assert_int_equal(parse(&c, 10, "--allowed-host", "a.lan", "--allowed-host=b.lan",
                           "--allowed-origin", "https://ui.example", "--trusted-proxy",
                           "127.0.0.1", "--behind-tls", "--session-ttl", "600"), 0);
    assert_int_equal(c.allowed_hosts.n, 2);
    assert_string_equal(c.allowed_hosts.v[0], "a.lan");
    assert_string_equal(c.allowed_hosts.v[1], "b.lan");
    assert_int_equal(c.allowed_origins.n, 1);
    assert_string_equal(c.allowed_origins.v[0], "https://ui.example");
    assert_string_equal(c.trusted_proxies.v[0], "127.0.0.1");
    assert_true(c.behind_tls);
    assert_int_equal(c.session_ttl_s, 600);
    config_free(&c);

    /* The same keys in a config file; a flag adds to the file's list. */
    char path[] = "/tmp/sgdrd-websafe-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_file(path, "allowed-host = c.lan\nbehind-tls = true\nsession-ttl = 120\n", 0600);
    assert_int_equal(parse(&c, 4, "--config", path, "--allowed-host", "d.lan"), 0);
    assert_int_equal(c.allowed_hosts.n, 2);
    assert_string_equal(c.allowed_hosts.v[0], "c.lan");
    assert_string_equal(c.allowed_hosts.v[1], "d.lan");
    assert_true(c.behind_tls);
    assert_int_equal(c.session_ttl_s, 120);
    config_free(&c);
    unlink(path);

    char *many[2 * CONFIG_MAX_LIST + 3] = {"sgdrd"};
    for (int i = 0; i <= CONFIG_MAX_LIST; i++) {
        many[1 + 2 * i] = "--allowed-host";
        many[2 + 2 * i] = "x.lan";
    }
    assert_int_equal(config_parse(&c, 2 * CONFIG_MAX_LIST + 3, many, err, sizeof err),
                     -EINVAL);
    assert_non_null(strstr(err, "more than"));
    config_free(&c);
}

static void config_file_and_flag_precedence(void **state)
{
    (void)state;
    char dir[] = "/tmp/sgdrd-config-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128], bad[128];
    snprintf(path, sizeof path, "%s/sgdrd.conf", dir);
    write_file(path, "# sgdrd settings\n"
                     "listen = 127.0.0.1:7000\n"
                     "\n"
                     "data-dir = /srv/sgdrd   # where the db goes\n"
                     "threads = 3\n"
                     "dataset-root = /data/a\n"
                     "demo = true\n", 0644);
    daemon_config c;
    assert_int_equal(parse(&c, 4, "--config", path, "--threads", "1"), 0);
    assert_int_equal(c.port, 7000);
    assert_string_equal(c.data_dir, "/srv/sgdrd");
    assert_int_equal(c.threads, 1); /* the command line wins */
    assert_int_equal(c.n_roots, 1);
    assert_string_equal(c.roots[0], "/data/a");
    assert_true(c.demo);
    config_free(&c);

    snprintf(bad, sizeof bad, "%s/bad.conf", dir);
    write_file(bad, "listen = 127.0.0.1:7000\nthreads 3\n", 0644);
    assert_int_equal(parse(&c, 2, "--config", bad), -EINVAL);
    assert_non_null(strstr(err, ":2:"));
    config_free(&c);
    write_file(bad, "colour = blue\n", 0644);
    assert_int_equal(parse(&c, 2, "--config", bad), -EINVAL);
    assert_non_null(strstr(err, "colour"));
    config_free(&c);
    write_file(bad, "listen = 0.0.0.0:80\n", 0644);
    assert_int_equal(parse(&c, 2, "--config", bad), -EINVAL);
    assert_non_null(strstr(err, "--token-file"));
    config_free(&c);

    char tok[128], *token = NULL;
    snprintf(tok, sizeof tok, "%s/token", dir);
    write_file(tok, "  s3cret-token-value \n", 0600);
    assert_int_equal(config_read_token(tok, &token, err, sizeof err), 0);
    assert_string_equal(token, "s3cret-token-value");
    free(token);
    write_file(tok, "s3cret-token-value\n", 0644);
    assert_int_equal(config_read_token(tok, &token, err, sizeof err), -EINVAL);
    assert_null(strstr(err, "s3cret")); /* never echo the secret */
    assert_non_null(strstr(err, "others"));
    write_file(tok, "short\n", 0600);
    assert_int_equal(config_read_token(tok, &token, err, sizeof err), -EINVAL);
    assert_null(token);

    char cmd[160];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void usage_lists_every_flag(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_usage(f, "sgdrd");
    fclose(f);
    const char *flags[] = {"--listen", "--data-dir", "--dataset-root", "--token-file",
                           "--threads", "--max-upload", "--log-level", "--resume", "--demo",
                           "--help", "--version", "--config", "--allowed-host",
                           "--allowed-origin", "--trusted-proxy", "--behind-tls",
                           "--session-ttl"};
    for (size_t i = 0; i < sizeof flags / sizeof *flags; i++)
        assert_non_null(strstr(buf, flags[i]));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(every_flag),
        cmocka_unit_test(bad_flags_name_the_flag),
        cmocka_unit_test(non_loopback_needs_a_token_file),
        cmocka_unit_test(web_safety_flags),
        cmocka_unit_test(config_file_and_flag_precedence),
        cmocka_unit_test(usage_lists_every_flag),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
