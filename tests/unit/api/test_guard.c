/* test_guard.c: the web-safety checks without HTTP: the Host allow-list, the Origin /
 * Sec-Fetch-Site rule, the Content-Type rule (guard.c), sessions, cookies and the
 * constant-time token comparison (session.c), and the failed sign-in table (throttle.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "guard.h"
#include "session.h"
#include "throttle.h"

static guard *make(const char *listen, const char *host, const char *origin,
                   const char *proxy)
{
    guard *g = NULL;
    char err[256];
    guard_config c = {.listen_host = listen,
                      .hosts = &host, .n_hosts = host ? 1 : 0,
                      .origins = &origin, .n_origins = origin ? 1 : 0,
                      .proxies = &proxy, .n_proxies = proxy ? 1 : 0};
    assert_int_equal(guard_create(&g, &c, err, sizeof err), 0);
    return g;
}

static void host_allow_list(void **state)
{
    (void)state;
    guard *g = make("127.0.0.1", "sgdrd.lan", NULL, NULL);
    const char *ok[] = {"127.0.0.1:8080", "127.0.0.1", "localhost:8080", "LOCALHOST",
                        "[::1]:8080", "127.0.0.2:9", "app.localhost:1", "sgdrd.lan:8080",
                        "SGDRD.lan.", NULL};
    const char *bad[] = {"rebind.evil.example:8080", "rebind.evil.example", "evil.lan",
                         "10.0.0.1:8080", "", "localhost:80x", "[::1", "a b", "localhost.evil",
                         "127.0.0.1.evil.example", "sgdrd.lan:8080:1", NULL};
    for (int i = 0; ok[i]; i++)
        assert_int_equal(guard_host_ok(g, ok[i]), 0);
    for (int i = 0; bad[i]; i++)
        assert_int_equal(guard_host_ok(g, bad[i]), -EPERM);
    assert_int_equal(guard_host_ok(g, NULL), -EPERM);
    guard_destroy(g);

    /* A wildcard listen serves every address of the machine, never a name. */
    g = make("0.0.0.0", NULL, NULL, NULL);
    assert_int_equal(guard_host_ok(g, "192.168.1.7:8080"), 0);
    assert_int_equal(guard_host_ok(g, "box.lan:8080"), -EPERM);
    guard_destroy(g);
    g = make("box.lan", "*", NULL, NULL);
    assert_int_equal(guard_host_ok(g, "box.lan:8080"), 0);
    assert_int_equal(guard_host_ok(g, "anything.example"), 0);
    guard_destroy(g);
}

static void bad_lists_are_refused(void **state)
{
    (void)state;
    guard *g = NULL;
    char err[256];
    const char *origin = "evil.example";
    const char *host = "a/b";
    const char *proxy = "proxy.lan";
    guard_config c = {.origins = &origin, .n_origins = 1};
    assert_int_equal(guard_create(&g, &c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "--allowed-origin 'evil.example'"));
    assert_null(g);
    c = (guard_config){.hosts = &host, .n_hosts = 1};
    assert_int_equal(guard_create(&g, &c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "--allowed-host"));
    c = (guard_config){.proxies = &proxy, .n_proxies = 1};
    assert_int_equal(guard_create(&g, &c, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "--trusted-proxy"));
    guard_destroy(NULL);
}

static void origin_rule(void **state)
{
    (void)state;
    guard *g = make("127.0.0.1", NULL, "https://ui.example:8443", "127.0.0.1");
    const char *h = "127.0.0.1:8080";

    assert_true(guard_method_changes("POST"));
    assert_true(guard_method_changes("DELETE"));
    assert_false(guard_method_changes("GET"));
    assert_false(guard_method_changes("HEAD"));
    assert_false(guard_method_changes("OPTIONS"));

    assert_int_equal(guard_origin_ok(g, "http://127.0.0.1:8080", NULL, h, 0), 0);
    assert_int_equal(guard_origin_ok(g, "http://127.0.0.1:8080", "same-origin", h, 0), 0);
    assert_int_equal(guard_origin_ok(g, "https://127.0.0.1:8080", NULL, h, 1), 0);
    assert_int_equal(guard_origin_ok(g, "http://127.0.0.1:8080", NULL, h, 1), -EPERM);
    assert_int_equal(guard_origin_ok(g, "http://127.0.0.1:9999", "same-site", h, 0), -EPERM);
    assert_int_equal(guard_origin_ok(g, "http://evil.example", "cross-site", h, 0), -EPERM);
    assert_int_equal(guard_origin_ok(g, "null", NULL, h, 0), -EPERM);
    assert_int_equal(guard_origin_ok(g, "http://127.0.0.1:8080.evil", NULL, h, 0), -EPERM);
    assert_int_equal(guard_origin_ok(g, "https://ui.example:8443", "cross-site", h, 0), 0);
    assert_true(guard_origin_listed(g, "HTTPS://UI.example:8443"));
    assert_false(guard_origin_listed(g, "https://ui.example"));
    assert_false(guard_origin_listed(g, NULL));
    /* No Origin: Sec-Fetch-Site decides; neither: not a browser page (curl). */
    assert_int_equal(guard_origin_ok(g, NULL, "cross-site", h, 0), -EPERM);
    assert_int_equal(guard_origin_ok(g, NULL, "same-site", h, 0), -EPERM);
    assert_int_equal(guard_origin_ok(g, NULL, "same-origin", h, 0), 0);
    assert_int_equal(guard_origin_ok(g, NULL, "none", h, 0), 0);
    assert_int_equal(guard_origin_ok(g, NULL, NULL, h, 0), 0);

    assert_true(guard_proxy_trusted(g, "127.0.0.1"));
    assert_false(guard_proxy_trusted(g, "127.0.0.2"));
    assert_false(guard_proxy_trusted(g, NULL));
    guard_destroy(g);
}

static void media_rule(void **state)
{
    (void)state;
    char d[256];
    assert_int_equal(guard_media_ok(GUARD_BODY_JSON, "application/json", 1, d, sizeof d), 0);
    assert_int_equal(guard_media_ok(GUARD_BODY_JSON, "Application/JSON; charset=utf-8", 1, d,
                                    sizeof d), 0);
    assert_int_equal(guard_media_ok(GUARD_BODY_JSON, NULL, 0, d, sizeof d), 0);
    /* What an HTML form or a no-preflight fetch sends, even with an empty body. */
    const char *forms[] = {"text/plain", "application/x-www-form-urlencoded",
                           "multipart/form-data; boundary=x", "", NULL};
    for (int i = 0; forms[i]; i++) {
        assert_int_equal(guard_media_ok(GUARD_BODY_JSON, forms[i], 0, d, sizeof d), -EPROTO);
        assert_int_equal(guard_media_ok(GUARD_BODY_NONE, forms[i], 0, d, sizeof d), -EPROTO);
        assert_int_equal(guard_media_ok(GUARD_BODY_DATASET, forms[i], 1, d, sizeof d),
                         -EPROTO);
        assert_int_equal(guard_media_ok(GUARD_BODY_IMAGE, forms[i], 1, d, sizeof d), -EPROTO);
        assert_int_equal(guard_media_ok(GUARD_BODY_FILE, forms[i], 1, d, sizeof d), -EPROTO);
    }
    guard_media_ok(GUARD_BODY_JSON, "text/plain", 0, d, sizeof d);
    assert_string_equal(d, "Content-Type text/plain is not accepted here; send "
                           "application/json");
    assert_int_equal(guard_media_ok(GUARD_BODY_NONE, "application/json", 0, d, sizeof d), 0);
    assert_int_equal(guard_media_ok(GUARD_BODY_DATASET, "application/x-tar", 1, d, sizeof d), 0);
    assert_int_equal(guard_media_ok(GUARD_BODY_DATASET, "application/gzip", 1, d, sizeof d), 0);
    assert_int_equal(guard_media_ok(GUARD_BODY_IMAGE, "image/png", 1, d, sizeof d), 0);
    assert_int_equal(guard_media_ok(GUARD_BODY_IMAGE, "image/jpeg", 1, d, sizeof d), 0);
    assert_int_equal(guard_media_ok(GUARD_BODY_FILE, "application/octet-stream", 1, d,
                                    sizeof d), 0);
    assert_int_equal(guard_media_ok(GUARD_BODY_FILE, "application/json", 1, d, sizeof d),
                     -EPROTO);
}

static void sessions_open_expire_close(void **state)
{
    (void)state;
    session_table *t = NULL;
    char a[SESSION_ID_CHARS + 1], b[SESSION_ID_CHARS + 1], c[SESSION_ID_CHARS + 1];

    assert_int_equal(session_table_create(&t, 0, 10), -EINVAL);
    assert_int_equal(session_table_create(&t, 2, 100), 0);
    assert_int_equal(session_ttl(t), 100);
    assert_int_equal(session_open(t, 1000.0, a), 0);
    assert_int_equal(strlen(a), SESSION_ID_CHARS);
    assert_int_equal(strspn(a, "0123456789abcdef"), SESSION_ID_CHARS);
    assert_int_equal(session_open(t, 1010.0, b), 0);
    assert_string_not_equal(a, b);
    assert_int_equal(session_check(t, a, 1099.0), 0);
    assert_int_equal(session_check(t, "abc", 1000.0), -ENOENT);
    b[5] ^= 1;
    assert_int_equal(session_check(t, b, 1020.0), -ENOENT);
    b[5] ^= 1;
    /* Full: the session closest to expiry (a) makes room. */
    assert_int_equal(session_open(t, 1050.0, c), 0);
    assert_int_equal(session_check(t, a, 1051.0), -ENOENT);
    assert_int_equal(session_check(t, c, 1051.0), 0);
    assert_int_equal(session_check(t, b, 1110.0), -ETIMEDOUT);
    assert_int_equal(session_check(t, b, 1000.0), -ENOENT);
    assert_int_equal(session_close(t, c), 0);
    assert_int_equal(session_check(t, c, 1051.0), -ENOENT);
    assert_int_equal(session_close(t, c), -ENOENT);
    session_table_destroy(t);
    session_table_destroy(NULL);
}

static void token_compare(void **state)
{
    (void)state;
    assert_true(session_token_equal("s3cret-token", "s3cret-token"));
    assert_false(session_token_equal("s3cret-token", "s3cret-tokeN"));
    assert_false(session_token_equal("s3cret-token", "s3cret-token2"));
    assert_false(session_token_equal("s3cret-token", "s3cret"));
    assert_false(session_token_equal("s3cret-token", ""));
    assert_false(session_token_equal("s3cret-token", NULL));
    assert_false(session_token_equal(NULL, "x"));
}

static void cookies(void **state)
{
    (void)state;
    char v[80], big[SESSION_COOKIE_MAX];
    assert_int_equal(session_cookie_find("a=1; sgdrd_session_8080=abc; b=2",
                                         "sgdrd_session_8080", v, sizeof v), 0);
    assert_string_equal(v, "abc");
    assert_int_equal(session_cookie_find("sgdrd_session_8080=\"q\"", "sgdrd_session_8080", v,
                                         sizeof v), 0);
    assert_string_equal(v, "q");
    assert_int_equal(session_cookie_find("xsgdrd_session_8080=abc; sgdrd_session_80=d",
                                         "sgdrd_session_8080", v, sizeof v), -ENOENT);
    assert_int_equal(session_cookie_find("", "s", v, sizeof v), -ENOENT);
    assert_int_equal(session_cookie_find("s=0123456789", "s", v, 4), -E2BIG);

    assert_int_equal(session_cookie(big, sizeof big, "sgdrd_session_8080", "abc", 600, 0), 0);
    assert_string_equal(big, "sgdrd_session_8080=abc; Path=/; Max-Age=600; HttpOnly; "
                             "SameSite=Strict");
    assert_int_equal(session_cookie(big, sizeof big, "s", "abc", 600, 1), 0);
    assert_non_null(strstr(big, "; Secure"));
    assert_int_equal(session_cookie(big, sizeof big, "s", NULL, 600, 0), 0);
    assert_string_equal(big, "s=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict");
    assert_int_equal(session_cookie(big, 8, "s", "abc", 600, 0), -E2BIG);
}

/* Five failures within the window refuse the address for the window from the last one,
 * others untouched; a success clears the count; the refusal ends. */
static void throttle_refuses_after_max_fails(void **state)
{
    throttle *t = NULL;
    (void)state;
    assert_int_equal(throttle_create(&t, 8, 5, 60), 0);
    assert_non_null(t);
    for (int i = 0; i < 4; i++)
        throttle_fail(t, "10.0.0.1", 100 + i);
    assert_int_equal(throttle_wait_s(t, "10.0.0.1", 104), 0);
    throttle_fail(t, "10.0.0.1", 110);
    assert_int_equal(throttle_wait_s(t, "10.0.0.1", 110), 60);
    assert_int_equal(throttle_wait_s(t, "10.0.0.1", 169.5), 1);
    assert_int_equal(throttle_wait_s(t, "10.0.0.2", 110), 0);
    assert_int_equal(throttle_wait_s(t, "10.0.0.1", 170), 0);
    /* After the refusal, one failure does not refuse again. */
    throttle_fail(t, "10.0.0.1", 171);
    assert_int_equal(throttle_wait_s(t, "10.0.0.1", 171), 0);
    /* Failures spread wider than the window never add up to a refusal. */
    for (int i = 0; i < 10; i++)
        throttle_fail(t, "10.0.0.3", 1000 + 30.0 * i);
    assert_int_equal(throttle_wait_s(t, "10.0.0.3", 1270), 0);
    /* A success clears the count. */
    for (int i = 0; i < 4; i++)
        throttle_fail(t, "10.0.0.4", 2000);
    throttle_clear(t, "10.0.0.4");
    throttle_fail(t, "10.0.0.4", 2001);
    assert_int_equal(throttle_wait_s(t, "10.0.0.4", 2001), 0);
    throttle_destroy(t);
    throttle_destroy(NULL);
    assert_int_equal(throttle_create(&t, 0, 5, 60), -EINVAL);
    assert_null(t);
}

/* A flood of made-up addresses stays within the table's capacity and does not free a
 * refused address by pushing it out. */
static void throttle_table_is_bounded(void **state)
{
    throttle *t = NULL;
    char addr[32];
    (void)state;
    assert_int_equal(throttle_create(&t, 16, 5, 60), 0);
    for (int i = 0; i < 5; i++)
        throttle_fail(t, "192.0.2.1", 10);
    for (int i = 0; i < 10000; i++) {
        snprintf(addr, sizeof addr, "198.51.%d.%d", i / 256, i % 256);
        throttle_fail(t, addr, 11 + i * 1e-3);
        assert_true(throttle_count(t) <= 16);
    }
    assert_int_equal(throttle_count(t), 16);
    assert_true(throttle_wait_s(t, "192.0.2.1", 30) > 0);
    /* An address cut at THROTTLE_ADDR_MAX is still one address. */
    char long_addr[200];
    memset(long_addr, 'a', sizeof long_addr - 1);
    long_addr[sizeof long_addr - 1] = '\0';
    for (int i = 0; i < 5; i++)
        throttle_fail(t, long_addr, 40);
    assert_true(throttle_wait_s(t, long_addr, 40) > 0);
    throttle_destroy(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(host_allow_list),
        cmocka_unit_test(bad_lists_are_refused),
        cmocka_unit_test(origin_rule),
        cmocka_unit_test(media_rule),
        cmocka_unit_test(sessions_open_expire_close),
        cmocka_unit_test(token_compare),
        cmocka_unit_test(cookies),
        cmocka_unit_test(throttle_refuses_after_max_fails),
        cmocka_unit_test(throttle_table_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
