/* test_api_core.c: the API's request validation (field specs), job parameters (defaults,
 * canonical JSON, refusals), problem bodies, upload names and tar extraction refusals,
 * without HTTP. Archives are written with libarchive. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "job_params.h"
#include "problem.h"
#include "spec.h"
#include "upload.h"

/* ---- field specs ------------------------------------------------------------------------- */

typedef struct body {
    int64_t n;
    double x;
    int b, e, has_x;
    const char *s;
    spec_numbers lrs;
    int64_t patience;
    spec_ref ref;
} body;

static const char *const kinds[] = {"a", "bb", NULL};
static const spec_field inner[] = {
    {.name = "patience", .type = SPEC_INT, .required = 1, .min = 1, .max = 10,
     .offset = offsetof(body, patience)},
    {0},
};
static const spec_field fields[] = {
    {.name = "n", .type = SPEC_INT, .required = 1, .min = 1, .max = 100,
     .offset = offsetof(body, n)},
    {.name = "x", .type = SPEC_NUMBER, .min = 0, .max = 1, .offset = offsetof(body, x),
     .present = SPEC_PRESENT(body, has_x)},
    {.name = "b", .type = SPEC_BOOL, .offset = offsetof(body, b)},
    {.name = "e", .type = SPEC_ENUM, .values = kinds, .offset = offsetof(body, e)},
    {.name = "s", .type = SPEC_STRING, .min = 1, .max = 5, .offset = offsetof(body, s)},
    {.name = "lrs", .type = SPEC_NUMBERS, .min = 1e-6, .max = 10, .min_n = 1, .max_n = 3,
     .offset = offsetof(body, lrs)},
    {.name = "stop", .type = SPEC_OBJECT, .fields = inner},
    {.name = "ref", .type = SPEC_REF, .offset = offsetof(body, ref)},
    {0},
};

/* The last parsed document: strings in a body are borrowed from it. */
static json_t *last_doc;

/* Parses text; returns spec_parse's code and leaves the blamed field in field. */
static int parse(const char *text, body *b, char *field)
{
    char detail[256];
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    int rc;
    assert_non_null(j);
    memset(b, 0, sizeof *b);
    b->x = 0.5;
    rc = spec_parse(fields, j, b, field, 64, detail, sizeof detail);
    if (rc)
        assert_true(detail[0] != '\0');
    json_decref(last_doc);
    last_doc = j;
    return rc;
}

static void spec_accepts_valid_body(void **state)
{
    body b;
    char field[64];
    assert_int_equal(parse("{\"n\": 3, \"x\": 0.25, \"b\": true, \"e\": \"bb\", \"s\": \"hi\", "
                           "\"lrs\": [0.001, 0.01, 0.1], \"stop\": {\"patience\": 2}, "
                           "\"ref\": \"fmnist\"}",
                           &b, field),
                     0);
    assert_int_equal(b.n, 3);
    assert_true(b.x == 0.25 && b.has_x == 1);
    assert_int_equal(b.b, 1);
    assert_int_equal(b.e, 1);
    assert_string_equal(b.s, "hi");
    assert_int_equal(b.lrs.n, 3);
    assert_true(b.lrs.v[2] == 0.1 && b.lrs.was_array);
    assert_int_equal(b.patience, 2);
    assert_string_equal(b.ref.name, "fmnist");
}

static void spec_keeps_defaults_and_takes_integral_reals(void **state)
{
    body b;
    char field[64];
    assert_int_equal(parse("{\"n\": 7.0, \"lrs\": 0.5, \"ref\": 12}", &b, field), 0);
    assert_int_equal(b.n, 7);
    assert_true(b.x == 0.5);
    assert_int_equal(b.has_x, 0);
    assert_int_equal(b.lrs.n, 1);
    assert_int_equal(b.lrs.was_array, 0);
    assert_null(b.ref.name);
    assert_int_equal(b.ref.id, 12);
    assert_int_equal(parse("{\"n\": 7, \"ref\": 12.0}", &b, field), 0);
    assert_int_equal(b.ref.id, 12);
}

static void spec_names_the_bad_field(void **state)
{
    static const struct {
        const char *text, *field;
    } cases[] = {
        {"{\"n\": 3, \"bogus\": 1}", "bogus"},
        {"{\"x\": 0.1}", "n"},
        {"{\"n\": \"3\"}", "n"},
        {"{\"n\": 3.5}", "n"},
        {"{\"n\": 0}", "n"},
        {"{\"n\": 101}", "n"},
        {"{\"n\": 1, \"x\": 1.5}", "x"},
        {"{\"n\": 1, \"x\": null}", "x"},
        {"{\"n\": 1, \"b\": 1}", "b"},
        {"{\"n\": 1, \"e\": \"c\"}", "e"},
        {"{\"n\": 1, \"s\": \"\"}", "s"},
        {"{\"n\": 1, \"s\": \"toolong\"}", "s"},
        {"{\"n\": 1, \"s\": 5}", "s"},
        {"{\"n\": 1, \"lrs\": [0.1, \"a\"]}", "lrs[1]"},
        {"{\"n\": 1, \"lrs\": [0.1, 20]}", "lrs[1]"},
        {"{\"n\": 1, \"lrs\": []}", "lrs"},
        {"{\"n\": 1, \"lrs\": [1, 1, 1, 1]}", "lrs"},
        {"{\"n\": 1, \"stop\": {}}", "stop.patience"},
        {"{\"n\": 1, \"stop\": {\"patience\": 2, \"x\": 1}}", "stop.x"},
        {"{\"n\": 1, \"stop\": 3}", "stop"},
        {"{\"n\": 1, \"ref\": 0}", "ref"},
        {"{\"n\": 1, \"ref\": true}", "ref"},
        {"{\"n\": 1, \"ref\": 2.5}", "ref"},
        {"{\"n\": 1, \"ref\": 1e20}", "ref"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        body b;
        char field[64];
        assert_int_equal(parse(cases[i].text, &b, field), -EINVAL);
        if (strcmp(field, cases[i].field) != 0)
            fail_msg("%s: blamed \"%s\", expected \"%s\"", cases[i].text, field,
                     cases[i].field);
    }
}

static void spec_refuses_non_objects(void **state)
{
    body b;
    char field[64];
    assert_int_equal(parse("[1]", &b, field), -EINVAL);
    assert_string_equal(field, "");
    assert_int_equal(parse("3", &b, field), -EINVAL);
}

/* ---- problems ---------------------------------------------------------------------------- */

/* ---- job parameters ----------------------------------------------------------------------- */

static int parse_job(job_kind kind, const char *text, job_params *p, char *field,
                     size_t fieldlen)
{
    char detail[256];
    json_t *body = json_loads(text, 0, NULL);
    assert_non_null(body);
    int rc = job_params_parse(kind, body, p, field, fieldlen, detail, sizeof detail);
    json_decref(body);
    return rc;
}

static void job_params_fill_every_default(void **state)
{
    job_params p;
    char field[64];
    (void)state;
    assert_int_equal(parse_job(JOB_FIT, "{\"lrs\":0.01,\"n_cycle\":2}", &p, field,
                               sizeof field), 0);
    json_t *j = job_params_json(&p);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "schedule")), "sgdr");
    assert_int_equal(json_integer_value(json_object_get(j, "cycle_len")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "cycle_mult")), 1);
    assert_true(json_is_false(json_object_get(j, "snapshots")));
    assert_true(json_is_number(json_object_get(j, "wd")));
    assert_true(json_is_number(json_object_get(j, "time_limit_minutes")));
    assert_null(json_object_get(j, "early_stop"));
    json_decref(j);

    assert_int_equal(parse_job(JOB_RECIPE, "{}", &p, field, sizeof field), 0);
    j = job_params_json(&p);
    assert_int_equal(json_integer_value(json_object_get(j, "max_epochs")), 7);
    assert_int_equal(json_integer_value(json_object_get(j, "n_aug")), 4);
    assert_string_equal(json_string_value(json_object_get(j, "schedule")), "sgdr");
    json_decref(j);

    assert_int_equal(parse_job(JOB_LR_FIND, "{}", &p, field, sizeof field), 0);
    assert_true(p.lr_find.start_lr == 1e-5 && p.lr_find.end_lr == 10);
    assert_int_equal(parse_job(JOB_TTA, "{}", &p, field, sizeof field), 0);
    assert_int_equal(p.tta_n_aug, 4);
}

/* The canonical JSON reads back to the same parameters: what the daemon runs after a
 * restart or on resume is what was submitted. */
static void job_params_round_trip(void **state)
{
    static const struct {
        job_kind kind;
        const char *body;
    } cases[] = {
        {JOB_LR_FIND, "{\"start_lr\":1e-4,\"end_lr\":1,\"num_it\":6}"},
        {JOB_FIT, "{\"lrs\":[0.001,0.003,0.01],\"n_cycle\":3,\"cycle_mult\":2,"
                  "\"schedule\":\"1cycle\",\"early_stop\":{\"patience\":2},\"wd\":0.0001}"},
        {JOB_FIT, "{\"lrs\":0.01,\"n_cycle\":4,\"schedule\":\"constant\"}"},
        {JOB_FREEZE, "{\"to\":1}"},
        {JOB_UNFREEZE, "{}"},
        {JOB_PRECOMPUTE, "{\"on\":true}"},
        {JOB_RESIZE, "{\"sz\":64}"},
        {JOB_TTA, "{\"n_aug\":2}"},
        {JOB_RECIPE, "{\"max_epochs\":3,\"schedule\":\"1cycle\",\"budget_minutes\":5}"},
        {JOB_PREDICT_TEST, "{\"tta\":true}"},
    };
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        job_params a, b;
        char field[64], detail[256];
        assert_int_equal(parse_job(cases[i].kind, cases[i].body, &a, field, sizeof field), 0);
        json_t *j = job_params_json(&a);
        assert_non_null(j);
        assert_int_equal(job_params_parse(cases[i].kind, j, &b, field, sizeof field, detail,
                                          sizeof detail), 0);
        json_t *k = job_params_json(&b);
        assert_true(json_equal(j, k));
        json_decref(j);
        json_decref(k);
    }
}

/* An unknown value is an error naming the field, never a default. */
static void job_params_refuse_unknown_values(void **state)
{
    job_params p;
    char field[64];
    (void)state;
    assert_int_equal(parse_job(JOB_FIT, "{\"lrs\":0.01,\"n_cycle\":1,\"schedule\":\"cosine\"}",
                               &p, field, sizeof field), -EINVAL);
    assert_string_equal(field, "schedule");
    assert_int_equal(parse_job(JOB_RECIPE, "{\"schedule\":\"constant\"}", &p, field,
                               sizeof field), -EINVAL);
    assert_string_equal(field, "schedule");
    assert_int_equal(parse_job(JOB_TTA, "{\"naug\":2}", &p, field, sizeof field), -EINVAL);
    assert_string_equal(field, "naug");
    assert_int_equal(parse_job(JOB_FIT, "{\"lrs\":[0.1,0.2],\"n_cycle\":1}", &p, field,
                               sizeof field), -EINVAL);
    assert_string_equal(field, "lrs");
    assert_int_equal(parse_job(JOB_LR_FIND, "{\"start_lr\":1,\"end_lr\":0.5}", &p, field,
                               sizeof field), -EINVAL);
    assert_string_equal(field, "end_lr");
    assert_int_equal(parse_job(JOB_FREEZE, "{}", &p, field, sizeof field), -EINVAL);
    assert_string_equal(field, "to");
}

static void problem_has_rfc9457_shape(void **state)
{
    json_t *p = problem_new(400, PROBLEM_INVALID, "lrs", "lrs must be positive");
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "title")), "Bad Request");
    assert_int_equal(json_integer_value(json_object_get(p, "status")), 400);
    assert_string_equal(json_string_value(json_object_get(p, "detail")), "lrs must be positive");
    assert_string_equal(json_string_value(json_object_get(p, "error_code")),
                        "INVALID_PARAMETER_VALUE");
    assert_string_equal(json_string_value(json_object_get(p, "field")), "lrs");
    assert_non_null(json_object_get(p, "type"));
    json_decref(p);
    p = problem_new(404, PROBLEM_NOT_FOUND, NULL, "run 9 does not exist");
    assert_null(json_object_get(p, "field"));
    assert_string_equal(json_string_value(json_object_get(p, "title")), "Not Found");
    json_decref(p);
}

/* A detail or field quoting the client's bytes (a URL, a query name, a file name) need not
 * be UTF-8, and vsnprintf may cut a character in two; the problem must still be built. */
static void problem_keeps_invalid_utf8_as_replacement(void **state)
{
    (void)state;
    json_t *p = problem_new(404, PROBLEM_NOT_FOUND, "a\xff", "no such resource: /api/\xff\xc3");
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "detail")),
                        "no such resource: /api/\xef\xbf\xbd\xef\xbf\xbd");
    assert_string_equal(json_string_value(json_object_get(p, "field")), "a\xef\xbf\xbd");
    json_decref(p);
    /* valid multi-byte text is kept; overlong forms and surrogates are not characters */
    p = problem_new(400, PROBLEM_INVALID, NULL,
                    "caf\xc3\xa9 \xc0\xaf \xed\xa0\x80 \xf0\x9f\x98\x80");
    assert_non_null(p);
    assert_string_equal(json_string_value(json_object_get(p, "detail")),
                        "caf\xc3\xa9 \xef\xbf\xbd\xef\xbf\xbd "
                        "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd \xf0\x9f\x98\x80");
    json_decref(p);
}

/* ---- upload names and tar extraction ----------------------------------------------------- */

static void upload_names(void **state)
{
    char err[128];
    assert_int_equal(upload_name_check("fmnist-2.small_v1", err, sizeof err), 0);
    assert_int_equal(upload_name_check(NULL, err, sizeof err), -EINVAL);
    assert_int_equal(upload_name_check("", err, sizeof err), -EINVAL);
    assert_int_equal(upload_name_check("..", err, sizeof err), -EINVAL);
    assert_int_equal(upload_name_check(".hidden", err, sizeof err), -EINVAL);
    assert_int_equal(upload_name_check("a/b", err, sizeof err), -EINVAL);
    assert_int_equal(upload_name_check("a b", err, sizeof err), -EINVAL);
}

typedef struct tar_entry {
    const char *name;
    mode_t type;
    const char *data;     /* files */
    const char *link;     /* symlinks / hard links */
    int hard;
} tar_entry;

static void write_tar(const char *path, const tar_entry *es, int n, int gzip)
{
    struct archive *a = archive_write_new();
    assert_non_null(a);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    if (gzip)
        assert_int_equal(archive_write_add_filter_gzip(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    for (int i = 0; i < n; i++) {
        struct archive_entry *e = archive_entry_new();
        size_t len = es[i].data ? strlen(es[i].data) : 0;
        archive_entry_set_pathname(e, es[i].name);
        archive_entry_set_filetype(e, es[i].type);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, (la_int64_t)len);
        if (es[i].link && es[i].hard) {
            archive_entry_set_hardlink(e, es[i].link);
            archive_entry_set_size(e, 0);
            len = 0;
        } else if (es[i].link) {
            archive_entry_set_symlink(e, es[i].link);
        }
        if (es[i].type == AE_IFCHR)
            archive_entry_set_rdev(e, makedev(1, 3));
        assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
        if (len)
            assert_int_equal(archive_write_data(a, es[i].data, len), (la_ssize_t)len);
        archive_entry_free(e);
    }
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st;
    (void)f;
    return flag == FTW_DP ? rmdir(p) : unlink(p);
}

typedef struct tmpdirs {
    char root[64];
    char tar[128];
    char dest[128];
} tmpdirs;

static int setup_dirs(void **state)
{
    tmpdirs *t = calloc(1, sizeof *t);
    snprintf(t->root, sizeof t->root, "/tmp/sgdrd-api-test-XXXXXX");
    if (!mkdtemp(t->root))
        return -1;
    snprintf(t->tar, sizeof t->tar, "%s/a.tar", t->root);
    snprintf(t->dest, sizeof t->dest, "%s/out", t->root);
    if (mkdir(t->dest, 0755) != 0)
        return -1;
    *state = t;
    return 0;
}

static int teardown_dirs(void **state)
{
    tmpdirs *t = *state;
    nftw(t->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(t);
    return 0;
}

static char *read_text(const char *path)
{
    static char buf[256];
    FILE *f = fopen(path, "r");
    size_t n;
    if (!f)
        return NULL;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

static void extract_good_plain_and_gzip(void **state)
{
    tmpdirs *t = *state;
    const tar_entry es[] = {
        {"./data/", AE_IFDIR, NULL, NULL, 0},
        {"data/train/cat/1.txt", AE_IFREG, "meow", NULL, 0},
        {"data/train/dog/1.txt", AE_IFREG, "woof", NULL, 0},
    };
    char err[256], p[256];
    for (int gz = 0; gz < 2; gz++) {
        char dest[160];
        snprintf(dest, sizeof dest, "%s/g%d", t->root, gz);
        assert_int_equal(mkdir(dest, 0755), 0);
        write_tar(t->tar, es, 3, gz);
        assert_int_equal(upload_extract_tar(t->tar, dest, 1 << 20, err, sizeof err), 0);
        snprintf(p, sizeof p, "%s/data/train/dog/1.txt", dest);
        assert_string_equal(read_text(p), "woof");
    }
}

/* A stop asked before the extraction ends it at the first entry, writing nothing. */
static void extract_ends_at_a_stop(void **state)
{
    tmpdirs *t = *state;
    const tar_entry es[] = {
        {"train/cat/1.txt", AE_IFREG, "meow", NULL, 0},
        {"train/dog/1.txt", AE_IFREG, "woof", NULL, 0},
    };
    char err[256] = "", p[256];
    volatile int stop = 1;
    write_tar(t->tar, es, 2, 1);
    assert_int_equal(upload_extract_tar_until(t->tar, t->dest, 1 << 20, &stop, err, sizeof err),
                     -ECANCELED);
    assert_non_null(strstr(err, "stopped"));
    snprintf(p, sizeof p, "%s/train", t->dest);
    assert_int_equal(access(p, F_OK), -1);
    stop = 0;
    assert_int_equal(upload_extract_tar_until(t->tar, t->dest, 1 << 20, &stop, err, sizeof err),
                     0);
}

static void expect_refused(tmpdirs *t, const tar_entry *es, int n, const char *why)
{
    char err[256] = "";
    write_tar(t->tar, es, n, 0);
    assert_int_not_equal(upload_extract_tar(t->tar, t->dest, 1 << 20, err, sizeof err), 0);
    if (!strstr(err, why))
        fail_msg("error \"%s\" does not say \"%s\"", err, why);
}

static void extract_refuses_absolute(void **state)
{
    tmpdirs *t = *state;
    char target[160];
    snprintf(target, sizeof target, "%s/abs.txt", t->root);
    tar_entry es[] = {{target, AE_IFREG, "x", NULL, 0}};
    expect_refused(t, es, 1, "absolute");
    assert_int_not_equal(access(target, F_OK), 0);
}

static void extract_refuses_dotdot(void **state)
{
    tmpdirs *t = *state;
    char escaped[160];
    const tar_entry es[] = {{"ok.txt", AE_IFREG, "fine", NULL, 0},
                            {"a/../../escaped.txt", AE_IFREG, "x", NULL, 0}};
    expect_refused(t, es, 2, "..");
    snprintf(escaped, sizeof escaped, "%s/escaped.txt", t->root);
    assert_int_not_equal(access(escaped, F_OK), 0);
}

static void extract_refuses_links_and_devices(void **state)
{
    tmpdirs *t = *state;
    const tar_entry sym[] = {{"evil", AE_IFLNK, NULL, "/etc", 0}};
    const tar_entry hard[] = {{"a.txt", AE_IFREG, "x", NULL, 0},
                              {"b.txt", AE_IFREG, NULL, "a.txt", 1}};
    const tar_entry dev[] = {{"null", AE_IFCHR, NULL, NULL, 0}};
    const tar_entry fifo[] = {{"pipe", AE_IFIFO, NULL, NULL, 0}};
    expect_refused(t, sym, 1, "link");
    assert_int_equal(upload_remove_tree(t->dest), 0);
    assert_int_equal(mkdir(t->dest, 0755), 0);
    expect_refused(t, hard, 2, "link");
    expect_refused(t, dev, 1, "device");
    expect_refused(t, fifo, 1, "device");
}

static void extract_refuses_duplicates_and_bombs(void **state)
{
    tmpdirs *t = *state;
    const tar_entry dup[] = {{"a.txt", AE_IFREG, "x", NULL, 0},
                             {"./a.txt", AE_IFREG, "y", NULL, 0}};
    char big[2048];
    char err[256];
    tar_entry bomb[1] = {{"big.bin", AE_IFREG, big, NULL, 0}};
    expect_refused(t, dup, 2, "twice");
    memset(big, 'z', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    write_tar(t->tar, bomb, 1, 1);
    assert_int_equal(upload_extract_tar(t->tar, t->dest, 1000, err, sizeof err), -EFBIG);
}

static void extract_refuses_overlong_names(void **state)
{
    tmpdirs *t = *state;
    char name[400];
    tar_entry es[] = {{name, AE_IFREG, "x", NULL, 0}};
    char err[256] = "";
    memset(name, 'a', sizeof name);
    memcpy(name, "train/cat/", 10);
    snprintf(name + 10 + 300, sizeof name - 10 - 300, ".png");
    write_tar(t->tar, es, 1, 0);
    /* The file system's own ENAMETOOLONG would read as the server's fault (500). */
    assert_int_equal(upload_extract_tar(t->tar, t->dest, 1 << 20, err, sizeof err), -EINVAL);
    if (!strstr(err, "too long a name") || !strstr(err, "train/cat/aaa"))
        fail_msg("error \"%s\" does not name the entry and say why", err);
}

static void extract_refuses_garbage_and_truncation(void **state)
{
    tmpdirs *t = *state;
    const tar_entry es[] = {{"a.txt", AE_IFREG, "hello world, a file of some length", NULL, 0}};
    char err[256];
    FILE *f = fopen(t->tar, "w");
    struct stat st;
    fputs("this is not a tar file at all, just text that goes on for a while", f);
    fclose(f);
    assert_int_not_equal(upload_extract_tar(t->tar, t->dest, 1 << 20, err, sizeof err), 0);
    write_tar(t->tar, es, 1, 0);
    assert_int_equal(stat(t->tar, &st), 0);
    assert_int_equal(truncate(t->tar, 600), 0);
    assert_int_not_equal(upload_extract_tar(t->tar, t->dest, 1 << 20, err, sizeof err), 0);
}

/* A tar of one sparse member, holes.bin: "abcd" at 0 and "efgh" at `far` (zeros when far
 * is large), so that its size as extracted is far + 4 bytes although the archive holds 8
 * bytes of data. */
static void write_sparse_tar(const char *path, la_int64_t far)
{
    struct archive *a = archive_write_new();
    struct archive_entry *e = archive_entry_new();
    assert_non_null(a);
    assert_non_null(e);
    assert_int_equal(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
    assert_int_equal(archive_write_open_filename(a, path), ARCHIVE_OK);
    archive_entry_set_pathname(e, "holes.bin");
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, far + 4);
    archive_entry_sparse_add_entry(e, 0, 4);
    archive_entry_sparse_add_entry(e, far, 4);
    assert_int_equal(archive_write_header(a, e), ARCHIVE_OK);
    if (far < 4096) {
        /* libarchive takes the whole file and stores only the sparse map's blocks. */
        char whole[4100] = "abcd";
        memcpy(whole + far, "efgh", 4);
        assert_int_equal(archive_write_data(a, whole, (size_t)far + 4), far + 4);
    } else {
        /* Too big to hand over whole: the blocks past these bytes are stored as zeros. */
        assert_int_equal(archive_write_data(a, "abcdefgh", 8), 8);
    }
    archive_entry_free(e);
    assert_int_equal(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
}

/* A sparse member counts by the size it has once extracted, holes included: 8 bytes of
 * data cannot make a file of a terabyte. One that fits keeps its holes as zeros. */
static void extract_counts_sparse_members_by_their_size(void **state)
{
    tmpdirs *t = *state;
    char err[256] = "", p[192];
    struct stat st;
    write_sparse_tar(t->tar, (la_int64_t)1 << 40);
    assert_int_equal(upload_extract_tar(t->tar, t->dest, 1 << 20, err, sizeof err), -EFBIG);
    if (!strstr(err, "more than 1048576 bytes"))
        fail_msg("error \"%s\" does not say the archive is too big", err);
    snprintf(p, sizeof p, "%s/holes.bin", t->dest);
    assert_true(stat(p, &st) != 0 || st.st_size <= 1 << 20);

    char dest[160];
    snprintf(dest, sizeof dest, "%s/small", t->root);
    assert_int_equal(mkdir(dest, 0755), 0);
    write_sparse_tar(t->tar, 100);
    assert_int_equal(upload_extract_tar(t->tar, dest, 1 << 20, err, sizeof err), 0);
    snprintf(p, sizeof p, "%s/holes.bin", dest);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 104);
    FILE *f = fopen(p, "rb");
    char got[104];
    assert_non_null(f);
    assert_int_equal(fread(got, 1, sizeof got, f), sizeof got);
    fclose(f);
    assert_memory_equal(got, "abcd", 4);
    assert_memory_equal(got + 100, "efgh", 4);
    for (int i = 4; i < 100; i++)
        assert_int_equal(got[i], 0);
}

/* A member the file system cannot place (an offset past the largest file it holds) is
 * refused with a reason that names it, never with whatever the error buffer held. */
static void extract_names_the_member_it_cannot_place(void **state)
{
    tmpdirs *t = *state;
    char err[256];
    strcpy(err, "SENTINEL");
    write_sparse_tar(t->tar, (la_int64_t)1 << 62);
    assert_true(upload_extract_tar(t->tar, t->dest, INT64_MAX, err, sizeof err) < 0);
    if (!strstr(err, "holes.bin"))
        fail_msg("error \"%s\" does not name the entry", err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(spec_accepts_valid_body),
        cmocka_unit_test(spec_keeps_defaults_and_takes_integral_reals),
        cmocka_unit_test(spec_names_the_bad_field),
        cmocka_unit_test(spec_refuses_non_objects),
        cmocka_unit_test(job_params_fill_every_default),
        cmocka_unit_test(job_params_round_trip),
        cmocka_unit_test(job_params_refuse_unknown_values),
        cmocka_unit_test(problem_has_rfc9457_shape),
        cmocka_unit_test(problem_keeps_invalid_utf8_as_replacement),
        cmocka_unit_test(upload_names),
        cmocka_unit_test_setup_teardown(extract_good_plain_and_gzip, setup_dirs, teardown_dirs),
        cmocka_unit_test_setup_teardown(extract_ends_at_a_stop, setup_dirs, teardown_dirs),
        cmocka_unit_test_setup_teardown(extract_refuses_absolute, setup_dirs, teardown_dirs),
        cmocka_unit_test_setup_teardown(extract_refuses_dotdot, setup_dirs, teardown_dirs),
        cmocka_unit_test_setup_teardown(extract_refuses_links_and_devices, setup_dirs,
                                        teardown_dirs),
        cmocka_unit_test_setup_teardown(extract_refuses_duplicates_and_bombs, setup_dirs,
                                        teardown_dirs),
        cmocka_unit_test_setup_teardown(extract_refuses_garbage_and_truncation, setup_dirs,
                                        teardown_dirs),
        cmocka_unit_test_setup_teardown(extract_refuses_overlong_names, setup_dirs,
                                        teardown_dirs),
        cmocka_unit_test_setup_teardown(extract_counts_sparse_members_by_their_size, setup_dirs,
                                        teardown_dirs),
        cmocka_unit_test_setup_teardown(extract_names_the_member_it_cannot_place, setup_dirs,
                                        teardown_dirs),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    json_decref(last_doc);
    return failed;
}
