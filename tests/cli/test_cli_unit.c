/* test_cli_unit.c: sgdr's parts that need no daemon: where the address and token come
 * from (flags over environment over config file over defaults), options turned into
 * request fields, and the ETA's format. */
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

#include "args.h"
#include "config.h"
#include "progress.h"

static char dir[] = "/tmp/sgdr-unit-XXXXXX";
static char err[1024];

/* The environment the resolver sees: pairs of name and value, NULL-terminated. */
static const char *env_pairs[16];

static const char *fake_env(const char *name)
{
    for (int i = 0; env_pairs[i]; i += 2)
        if (strcmp(env_pairs[i], name) == 0)
            return env_pairs[i + 1];
    return NULL;
}

static void set_env(int n, ...)
{
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < 2 * n; i++)
        env_pairs[i] = va_arg(ap, const char *);
    env_pairs[2 * n] = NULL;
    va_end(ap);
}

/* Writes text to dir/name and returns the path (a static buffer per slot). */
static const char *put(int slot, const char *name, const char *text)
{
    static char paths[4][512];
    snprintf(paths[slot], sizeof paths[slot], "%s/%s", dir, name);
    FILE *f = fopen(paths[slot], "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return paths[slot];
}

static int resolve(const cfg_flags *fl, cfg *c)
{
    err[0] = '\0';
    return cfg_resolve(fl, fake_env, c, err, sizeof err);
}

static void defaults_without_any_source(void **state)
{
    cfg_flags fl = {0};
    cfg c;
    set_env(1, "HOME", dir); /* no .config/sgdr/config there: fine */
    assert_int_equal(resolve(&fl, &c), 0);
    assert_string_equal(c.url, CFG_DEFAULT_URL);
    assert_null(c.token);
    cfg_clear(&c);
    cfg_clear(&c);
}

static void flags_beat_env_beat_config(void **state)
{
    const char *flag_tok = put(0, "flag.tok", "from-flag\n");
    const char *env_tok = put(1, "env.tok", "  from-env-file \n");
    put(2, "conf.tok", "from-config-file\n");
    const char *conf = put(3, "config", "# sgdr\n\nurl = http://conf:1/\n"
                                        "token_file = \"conf.tok\"\n");
    cfg_flags fl = {.config = conf};
    cfg c;
    set_env(0);
    assert_int_equal(resolve(&fl, &c), 0);
    assert_string_equal(c.url, "http://conf:1");
    assert_string_equal(c.token, "from-config-file"); /* relative to the config's folder */
    cfg_clear(&c);

    set_env(2, "SGDR_URL", "http://env:2/api/v1", "SGDR_TOKEN_FILE", env_tok);
    assert_int_equal(resolve(&fl, &c), 0);
    assert_string_equal(c.url, "http://env:2");
    assert_string_equal(c.token, "from-env-file");
    cfg_clear(&c);

    set_env(3, "SGDR_URL", "http://env:2", "SGDR_TOKEN_FILE", env_tok, "SGDR_TOKEN", "env-tok");
    assert_int_equal(resolve(&fl, &c), 0);
    assert_string_equal(c.token, "env-tok"); /* the token itself before its file */
    cfg_clear(&c);

    fl.url = "https://flag:3";
    fl.token_file = flag_tok;
    assert_int_equal(resolve(&fl, &c), 0);
    assert_string_equal(c.url, "https://flag:3");
    assert_string_equal(c.token, "from-flag");
    cfg_clear(&c);
}

static void config_from_env_and_xdg(void **state)
{
    char xdg[512];
    snprintf(xdg, sizeof xdg, "%s/xdg", dir);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sgdr", xdg);
    assert_int_equal(mkdir(xdg, 0700) == 0 || errno == EEXIST, 1);
    assert_int_equal(mkdir(sub, 0700) == 0 || errno == EEXIST, 1);
    put(0, "xdg/sgdr/config", "url=http://xdg:4\ntoken = t-xdg\n");
    const char *other = put(1, "other", "url = http://other:5\n");
    cfg_flags fl = {0};
    cfg c;
    set_env(2, "XDG_CONFIG_HOME", xdg, "HOME", "/nonexistent");
    assert_int_equal(resolve(&fl, &c), 0);
    assert_string_equal(c.url, "http://xdg:4");
    assert_string_equal(c.token, "t-xdg");
    cfg_clear(&c);
    set_env(2, "XDG_CONFIG_HOME", xdg, "SGDR_CONFIG", other);
    assert_int_equal(resolve(&fl, &c), 0);
    assert_string_equal(c.url, "http://other:5");
    assert_null(c.token);
    cfg_clear(&c);
}

static void bad_sources_are_named(void **state)
{
    cfg_flags fl = {0};
    cfg c;
    char missing[600];
    snprintf(missing, sizeof missing, "%s/missing", dir);
    set_env(1, "SGDR_CONFIG", missing);
    assert_int_equal(resolve(&fl, &c), -ENOENT);
    assert_non_null(strstr(err, missing));
    assert_null(c.url);

    fl.config = put(0, "bad", "url = http://x:1\njust words\n");
    assert_int_equal(resolve(&fl, &c), -EINVAL);
    assert_non_null(strstr(err, ":2: expected key = value"));
    fl.config = put(0, "bad", "uri = http://x:1\n");
    assert_int_equal(resolve(&fl, &c), -EINVAL);
    assert_non_null(strstr(err, "unknown key 'uri'"));
    fl.config = put(0, "bad", "url = ftp://x:1\n");
    assert_int_equal(resolve(&fl, &c), -EINVAL);
    assert_non_null(strstr(err, "ftp://x:1"));

    fl.config = NULL;
    fl.url = "127.0.0.1:8080";
    set_env(0);
    assert_int_equal(resolve(&fl, &c), -EINVAL);
    assert_non_null(strstr(err, "--url"));
    fl.url = NULL;
    fl.token_file = put(1, "empty.tok", "\n");
    assert_int_equal(resolve(&fl, &c), -EINVAL);
    assert_non_null(strstr(err, "is empty"));
    fl.token_file = NULL;
    set_env(1, "SGDR_TOKEN", "tok\r\nX-Evil: 1");
    assert_int_equal(resolve(&fl, &c), -EINVAL);
    assert_non_null(strstr(err, "control character"));
    set_env(0);
    fl.token_file = missing;
    assert_int_equal(resolve(&fl, &c), -ENOENT);
    assert_non_null(strstr(err, "token file"));
}

static const args_opt opts[] = {
    {"--lrs", NULL, ARGS_NUMS, "lrs", NULL},
    {"--cycles", "--n-cycle", ARGS_INT, "n_cycle", NULL},
    {"--early-stop", NULL, ARGS_INT, "early_stop.patience", NULL},
    {"--dataset", NULL, ARGS_NAME_OR_ID, "dataset", NULL},
    {"--xtra-fc", NULL, ARGS_INTS, "xtra_fc", NULL},
    {"--on", NULL, ARGS_BOOL, "on", NULL},
    {"--wait", NULL, ARGS_SWITCH, NULL, NULL},
    {"--output", "-o", ARGS_STR, NULL, NULL},
    {NULL, NULL, 0, NULL, NULL},
};

/* Parses the words of line (space-separated) and returns the body as compact JSON. */
static char *body_of(const char *line, int *rc)
{
    char buf[512], *argv[32];
    int argc = 0;
    args a;
    snprintf(buf, sizeof buf, "%s", line);
    for (char *t = strtok(buf, " "); t; t = strtok(NULL, " "))
        argv[argc++] = t;
    json_t *body = json_object();
    *rc = args_parse(&a, opts, argc, argv, 0, 1, err, sizeof err);
    if (!*rc)
        *rc = args_body(&a, body, err, sizeof err);
    char *s = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(body);
    return s;
}

static void options_become_fields(void **state)
{
    int rc;
    char *s = body_of("7 --lrs 0.5 --n-cycle=3 --early-stop 2 --dataset flow --wait -o x", &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s, "{\"dataset\":\"flow\",\"early_stop\":{\"patience\":2},"
                           "\"lrs\":0.5,\"n_cycle\":3}");
    free(s);
    s = body_of("--lrs 0.5,0.25,0.125 --dataset 12 --xtra-fc 512 --on off", &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s, "{\"dataset\":12,\"lrs\":[0.5,0.25,0.125],\"on\":false,"
                           "\"xtra_fc\":[512]}");
    free(s);
    static const char *bad[][2] = {
        {"--cycles 1.5", "--cycles: '1.5' is not an integer"},
        {"--lrs 0.1,,0.2", "--lrs: '0.1,,0.2' is not a number"},
        {"--on maybe", "--on: 'maybe' is not true or false"},
        {"--bogus 1", "unknown option '--bogus'"},
        {"--wait=1", "--wait takes no value"},
        {"1 2", "unexpected argument '2'"},
        {"--lrs", "--lrs needs a value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        free(body_of(bad[i][0], &rc));
        assert_int_equal(rc, -EINVAL);
        if (!strstr(err, bad[i][1]))
            fail_msg("%s: got '%s'", bad[i][0], err);
    }
}

static void eta_and_progress_line(void **state)
{
    char b[128];
    progress_eta(b, sizeof b, 42.4);
    assert_string_equal(b, "42s");
    progress_eta(b, sizeof b, 185);
    assert_string_equal(b, "3m05s");
    progress_eta(b, sizeof b, 7620);
    assert_string_equal(b, "2h07m");
    progress_eta(b, sizeof b, -1);
    assert_string_equal(b, "?");
    progress_line(b, sizeof b, 3, "fit", "running", 0.5, 12, 10);
    assert_string_equal(b, "job 3 fit [#####-----]  50%  running  ETA 12s");
    progress_line(b, sizeof b, 3, "fit", "succeeded", 1, -1, 0);
    assert_string_equal(b, "job 3 fit 100%  succeeded");
    progress_bytes(b, sizeof b, "upload", 12500000, 25000000, 10);
    assert_string_equal(b, "upload [#####-----]  50%  12.5 of 25.0 MB");
    progress_bytes(b, sizeof b, "upload", 0, 0, 0);
    assert_string_equal(b, "upload   0%  0.0 of 0.0 MB");
}

static int setup(void **state)
{
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_without_any_source),
        cmocka_unit_test(flags_beat_env_beat_config),
        cmocka_unit_test(config_from_env_and_xdg),
        cmocka_unit_test(bad_sources_are_named),
        cmocka_unit_test(options_become_fields),
        cmocka_unit_test(eta_and_progress_line),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
