/* test_safetensors.c: safetensors round trips and the refusal of every kind of bad file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

static char tmpdir[64];

static int setup_dir(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/sgdrd-st-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_dir(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* A file: 8-byte length, header text as given (not padded), then data. */
static unsigned char *make_file(const char *header, const void *data, size_t dlen,
                                size_t *len)
{
    size_t hlen = strlen(header);
    *len = 8 + hlen + dlen;
    unsigned char *b = malloc(*len);
    assert_non_null(b);
    uint64_t h = hlen;
    memcpy(b, &h, 8);
    memcpy(b + 8, header, hlen);
    if (dlen)
        memcpy(b + 8 + hlen, data, dlen);
    return b;
}

/* Asserts that buf is refused, that out stays empty, and that the message contains
 * every given fragment (the tensor's name first of all). */
static void expect_refusal(const void *buf, size_t len, const char *frag1, const char *frag2)
{
    st_file f;
    char err[512] = "";
    memset(&f, 0x5a, sizeof(f));
    int rc = st_read_mem(&f, buf, len, err, sizeof(err));
    if (rc >= 0)
        fail_msg("accepted a bad file (expected an error naming \"%s\")",
                 frag1 ? frag1 : "?");
    assert_int_equal(f.n, 0);
    assert_null(f.tensors);
    assert_null(f.blob);
    assert_true(strlen(err) > 0);
    print_message("  refused: %s\n", err);
    if (frag1 && !strstr(err, frag1))
        fail_msg("error \"%s\" does not mention \"%s\"", err, frag1);
    if (frag2 && !strstr(err, frag2))
        fail_msg("error \"%s\" does not mention \"%s\"", err, frag2);
    st_free(&f);
}

static void expect_refusal_json(const char *header, size_t dlen, const char *frag1,
                                const char *frag2)
{
    unsigned char *data = calloc(dlen ? dlen : 1, 1);
    size_t len;
    unsigned char *b = make_file(header, data, dlen, &len);
    expect_refusal(b, len, frag1, frag2);
    free(b);
    free(data);
}

/* Three tensors covering F32 and I64, a scalar and an empty one. */
static float w_data[2 * 3 * 2 * 2];
static float b_data[3];
static int64_t nbt = 42;

static int sample_tensors(st_tensor *ts)
{
    for (size_t i = 0; i < sizeof(w_data) / sizeof(w_data[0]); i++)
        w_data[i] = 0.25f * (float)i - 1.0f;
    for (int i = 0; i < 3; i++)
        b_data[i] = -(float)i;
    memset(ts, 0, 4 * sizeof(*ts));
    ts[0] = (st_tensor){.name = "layer1.0.conv1.weight", .dtype = ST_F32, .ndim = 4,
                        .shape = {2, 3, 2, 2}, .nbytes = sizeof(w_data), .data = w_data};
    ts[1] = (st_tensor){.name = "bn1.bias", .dtype = ST_F32, .ndim = 1, .shape = {3},
                        .nbytes = sizeof(b_data), .data = b_data};
    ts[2] = (st_tensor){.name = "bn1.num_batches_tracked", .dtype = ST_I64, .ndim = 0,
                        .nbytes = 8, .data = &nbt};
    ts[3] = (st_tensor){.name = "empty", .dtype = ST_F32, .ndim = 2, .shape = {0, 5},
                        .nbytes = 0, .data = NULL};
    return 4;
}

static void check_sample(const st_file *f)
{
    st_tensor ts[4];
    int n = sample_tensors(ts);
    assert_int_equal(f->n, n);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = &f->tensors[i];
        assert_string_equal(t->name, ts[i].name); /* header order kept */
        assert_int_equal(t->dtype, ts[i].dtype);
        assert_int_equal(t->ndim, ts[i].ndim);
        for (int d = 0; d < t->ndim; d++)
            assert_int_equal(t->shape[d], ts[i].shape[d]);
        assert_int_equal(t->nbytes, ts[i].nbytes);
        if (t->nbytes)
            assert_memory_equal(t->data, ts[i].data, t->nbytes);
        assert_ptr_equal(st_find(f, ts[i].name), t);
    }
    assert_null(st_find(f, "missing"));
}

static void round_trip(void **state)
{
    (void)state;
    st_tensor ts[4];
    int n = sample_tensors(ts);
    char path[128], err[256] = "";
    snprintf(path, sizeof(path), "%s/rt.safetensors", tmpdir);
    assert_int_equal(st_write_file(path, ts, n, err, sizeof(err)), 0);

    char tmp[160];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_not_equal(access(tmp, F_OK), 0); /* renamed away */

    st_file f;
    assert_int_equal(st_read_file(&f, path, err, sizeof(err)), 0);
    check_sample(&f);

    /* The header is padded with spaces so the data starts on an 8-byte boundary. */
    uint64_t hlen;
    memcpy(&hlen, f.blob, 8);
    assert_int_equal(hlen % 8, 0);
    const char *hdr = (const char *)f.blob + 8;
    assert_int_equal(hdr[0], '{');
    assert_true(hdr[hlen - 1] == '}' || hdr[hlen - 1] == ' ');

    /* The in-memory writer produces the same bytes. */
    void *mem;
    size_t mlen;
    assert_int_equal(st_write_mem(&mem, &mlen, ts, n, err, sizeof(err)), 0);
    assert_int_equal(mlen, f.blob_len);
    assert_memory_equal(mem, f.blob, mlen);
    st_file g;
    assert_int_equal(st_read_mem(&g, mem, mlen, err, sizeof(err)), 0);
    check_sample(&g);
    st_free(&g);
    free(mem);
    st_free(&f);
    st_free(&f); /* idempotent */
    st_free(NULL);
}

static void metadata_is_ignored(void **state)
{
    (void)state;
    float v[2] = {1.5f, -2.0f};
    size_t len;
    unsigned char *b = make_file("{\"__metadata__\":{\"format\":\"pt\"},"
                                 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],"
                                 "\"data_offsets\":[0,8]}}",
                                 v, sizeof(v), &len);
    st_file f;
    char err[256];
    assert_int_equal(st_read_mem(&f, b, len, err, sizeof(err)), 0);
    assert_int_equal(f.n, 1);
    assert_string_equal(f.tensors[0].name, "a");
    assert_memory_equal(f.tensors[0].data, v, sizeof(v));
    assert_null(st_find(&f, "__metadata__"));
    st_free(&f);
    free(b);

    /* Offsets given out of header order are fine as long as they tile the data. */
    b = make_file("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]},"
                  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                  v, sizeof(v), &len);
    assert_int_equal(st_read_mem(&f, b, len, err, sizeof(err)), 0);
    assert_int_equal(f.n, 2);
    assert_float_equal(*(const float *)st_find(&f, "a")->data, 1.5f, 0);
    assert_float_equal(*(const float *)st_find(&f, "b")->data, -2.0f, 0);
    st_free(&f);
    free(b);
}

static void truncated_files(void **state)
{
    (void)state;
    st_tensor ts[4];
    int n = sample_tensors(ts);
    void *mem;
    size_t len;
    char err[256];
    assert_int_equal(st_write_mem(&mem, &len, ts, n, err, sizeof(err)), 0);
    uint64_t hlen;
    memcpy(&hlen, mem, 8);
    size_t cuts[] = {0, 1, 7, 8, 9, 8 + hlen / 2, 8 + hlen - 1, 8 + hlen, 8 + hlen + 1,
                     8 + hlen + 47, len - 9, len - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        size_t cut = cuts[i];
        if (cut < 8)
            expect_refusal(mem, cut, "too short", NULL);
        else if (cut < 8 + hlen)
            expect_refusal(mem, cut, "header length", "beyond the file size");
        else if (cut < 8 + hlen + sizeof(w_data))
            /* the first tensor's range runs past the end */
            expect_refusal(mem, cut, "'layer1.0.conv1.weight'", "outside the data section");
        else if (cut < 8 + hlen + sizeof(w_data) + sizeof(b_data))
            expect_refusal(mem, cut, "'bn1.bias'", "outside the data section");
        else
            expect_refusal(mem, cut, "'bn1.num_batches_tracked'", "outside");
    }
    /* One byte too many is refused as well: the data must be covered exactly. */
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, mem, len);
    longer[len] = 0;
    expect_refusal(longer, len + 1, "unreferenced bytes after tensor", NULL);
    free(longer);
    free(mem);
}

static void lying_headers(void **state)
{
    (void)state;
    /* Header length beyond the file. */
    {
        size_t len;
        unsigned char *b = make_file("{}", NULL, 0, &len);
        uint64_t big = 1000;
        memcpy(b, &big, 8);
        expect_refusal(b, len, "header length 1000", "beyond");
        big = UINT64_MAX;
        memcpy(b, &big, 8);
        expect_refusal(b, len, "header length", "beyond");
        free(b);
    }
    expect_refusal_json("{\"a\": {\"dtype\": \"F32\",", 0, "not valid JSON", NULL);
    expect_refusal_json("not json at all", 0, "not valid JSON", NULL);
    expect_refusal_json("[1, 2]", 0, "not a JSON object", NULL);
    expect_refusal_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                        "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                        8, "not valid JSON", "duplicate");
    expect_refusal_json("{\"w\": 3}", 0, "'w'", "not a JSON object");

    /* Offsets out of range. */
    expect_refusal_json("{\"conv.w\":{\"dtype\":\"F32\",\"shape\":[4],"
                        "\"data_offsets\":[0,16]}}",
                        8, "'conv.w'", "outside the data section");
    expect_refusal_json("{\"conv.w\":{\"dtype\":\"F32\",\"shape\":[1],"
                        "\"data_offsets\":[-4,0]}}",
                        8, "'conv.w'", "outside");
    expect_refusal_json("{\"conv.w\":{\"dtype\":\"F32\",\"shape\":[0],"
                        "\"data_offsets\":[8,4]}}",
                        8, "'conv.w'", "outside");
    expect_refusal_json("{\"conv.w\":{\"dtype\":\"F32\",\"shape\":[2],"
                        "\"data_offsets\":[0]}}",
                        8, "'conv.w'", "data_offsets");
    expect_refusal_json("{\"conv.w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "'conv.w'",
                        "data_offsets");
    expect_refusal_json("{\"conv.w\":{\"dtype\":\"F32\",\"shape\":[2],"
                        "\"data_offsets\":[0,\"8\"]}}",
                        8, "'conv.w'", "data_offsets");

    /* Overlapping, gapped, and uncovered data. */
    expect_refusal_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                        12, "'b'", "overlap tensor 'a'");
    expect_refusal_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                        8, "overlap", "'a'");
    expect_refusal_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                        20, "'b'", "gap");
    expect_refusal_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                        12, "'a'", "gap");
    expect_refusal_json("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                        12, "after tensor 'a'", NULL);
    expect_refusal_json("{}", 4, "no tensors", NULL);
}

static void bad_dtypes_and_shapes(void **state)
{
    (void)state;
    const char *dtypes[] = {"F16", "BF16", "F64", "I32", "U8", "BOOL", "f32"};
    for (size_t i = 0; i < sizeof(dtypes) / sizeof(dtypes[0]); i++) {
        char hdr[256];
        snprintf(hdr, sizeof(hdr),
                 "{\"fc.weight\":{\"dtype\":\"%s\",\"shape\":[2],\"data_offsets\":[0,4]}}",
                 dtypes[i]);
        expect_refusal_json(hdr, 4, "'fc.weight'", dtypes[i]);
    }
    expect_refusal_json("{\"fc.weight\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}",
                        4, "'fc.weight'", "dtype");
    /* Shape and byte count disagree. */
    expect_refusal_json("{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[3],"
                        "\"data_offsets\":[0,8]}}",
                        8, "'fc.weight'", "span 8 bytes");
    expect_refusal_json("{\"n\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                        "'n'", "bytes");
    /* Negative, fractional, non-numeric and huge shapes. */
    expect_refusal_json("{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[-2,-2],"
                        "\"data_offsets\":[0,16]}}",
                        16, "'fc.weight'", "shape[0]");
    expect_refusal_json("{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[2,2.5],"
                        "\"data_offsets\":[0,16]}}",
                        16, "'fc.weight'", "shape[1]");
    expect_refusal_json("{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[\"2\"],"
                        "\"data_offsets\":[0,8]}}",
                        8, "'fc.weight'", "shape[0]");
    expect_refusal_json("{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":2,"
                        "\"data_offsets\":[0,8]}}",
                        8, "'fc.weight'", "shape");
    expect_refusal_json("{\"fc.weight\":{\"dtype\":\"F32\","
                        "\"shape\":[4611686018427387904,4],\"data_offsets\":[0,16]}}",
                        16, "'fc.weight'", "too many bytes");
    expect_refusal_json("{\"fc.weight\":{\"dtype\":\"F32\","
                        "\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}",
                        0, "'fc.weight'", "too many"); /* an overflowing product, as in the
                                                         * reference implementation */
    expect_refusal_json("{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
                        "\"data_offsets\":[0,4]}}",
                        4, "'fc.weight'", "dimensions");
    expect_refusal_json("{\"fc.weight\":{\"dtype\":\"F32\","
                        "\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}",
                        4, "not valid JSON", NULL);
}

static void file_errors(void **state)
{
    (void)state;
    st_file f;
    char err[256] = "";
    char path[128];
    snprintf(path, sizeof(path), "%s/absent.safetensors", tmpdir);
    assert_true(st_read_file(&f, path, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "absent.safetensors"));
    assert_int_equal(f.n, 0);
    assert_true(st_read_file(&f, tmpdir, err, sizeof(err)) < 0); /* a directory */

    /* A refused file names the file and the tensor. */
    size_t len;
    unsigned char *b = make_file("{\"x\":{\"dtype\":\"F16\",\"shape\":[1],"
                                 "\"data_offsets\":[0,2]}}",
                                 "\0\0", 2, &len);
    snprintf(path, sizeof(path), "%s/f16.safetensors", tmpdir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, len, fp), len);
    fclose(fp);
    free(b);
    assert_true(st_read_file(&f, path, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "f16.safetensors"));
    assert_non_null(strstr(err, "'x'"));
    assert_null(f.blob);
}

static void write_refusals_keep_old_file(void **state)
{
    (void)state;
    st_tensor ts[4];
    int n = sample_tensors(ts);
    char path[128], err[256] = "";
    snprintf(path, sizeof(path), "%s/keep.safetensors", tmpdir);
    assert_int_equal(st_write_file(path, ts, n, err, sizeof(err)), 0);

    st_tensor bad[4];
    memcpy(bad, ts, sizeof(bad));
    bad[1].nbytes = 8; /* shape says 12 */
    assert_true(st_write_file(path, bad, n, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "'bn1.bias'"));
    memcpy(bad, ts, sizeof(bad));
    bad[2].name = "bn1.bias";
    assert_true(st_write_file(path, bad, n, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "'bn1.bias'"));
    memcpy(bad, ts, sizeof(bad));
    bad[0].shape[1] = -3;
    assert_true(st_write_file(path, bad, n, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "'layer1.0.conv1.weight'"));
    memcpy(bad, ts, sizeof(bad));
    bad[0].name = "__metadata__";
    void *mem = NULL;
    size_t mlen = 1;
    assert_true(st_write_mem(&mem, &mlen, bad, n, err, sizeof(err)) < 0);
    assert_null(mem);
    assert_int_equal(mlen, 0);

    st_file f;
    assert_int_equal(st_read_file(&f, path, err, sizeof(err)), 0);
    check_sample(&f);
    st_free(&f);

    /* A directory that does not exist: refused, nothing left behind. */
    snprintf(path, sizeof(path), "%s/no/such/dir.safetensors", tmpdir);
    assert_true(st_write_file(path, ts, n, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "dir.safetensors"));

    /* An empty file set is a valid file. */
    snprintf(path, sizeof(path), "%s/empty.safetensors", tmpdir);
    assert_int_equal(st_write_file(path, NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(st_read_file(&f, path, err, sizeof(err)), 0);
    assert_int_equal(f.n, 0);
    st_free(&f);
}

/* The header alone: -EAGAIN until it is complete, its tensors without data, the same
 * refusals as a whole file, and a file's header read without its data. */
static void header_only(void **state)
{
    (void)state;
    st_tensor ts[4];
    int n = sample_tensors(ts);
    char path[128], err[256] = "";
    void *mem;
    size_t mlen;
    uint64_t hlen;
    st_file f;
    assert_int_equal(st_write_mem(&mem, &mlen, ts, n, err, sizeof(err)), 0);
    memcpy(&hlen, mem, 8);
    assert_int_equal(st_parse_header(&f, mem, 5, mlen, err, sizeof(err)), -EAGAIN);
    assert_int_equal(st_parse_header(&f, mem, 8 + hlen - 1, mlen, err, sizeof(err)), -EAGAIN);
    assert_int_equal(st_parse_header(&f, mem, 8 + hlen, mlen, err, sizeof(err)), 0);
    assert_int_equal(f.n, n);
    for (int i = 0; i < n; i++) {
        const st_tensor *t = st_find(&f, ts[i].name);
        assert_non_null(t);
        assert_null(t->data);
        assert_int_equal(t->nbytes, ts[i].nbytes);
        assert_int_equal(t->ndim, ts[i].ndim);
    }
    st_free(&f);
    /* Offsets that do not tile the declared size are refused from the header alone. */
    assert_true(st_parse_header(&f, mem, 8 + hlen, mlen + 4, err, sizeof(err)) == -EINVAL);
    assert_non_null(strstr(err, "unreferenced bytes"));
    assert_int_equal(f.n, 0);
    /* A length beyond the declared size is refused from the first 8 bytes. */
    assert_true(st_parse_header(&f, mem, 8, 8 + hlen - 1, err, sizeof(err)) == -EINVAL);
    assert_non_null(strstr(err, "beyond the file size"));

    snprintf(path, sizeof(path), "%s/hdr.safetensors", tmpdir);
    assert_int_equal(st_write_file(path, ts, n, err, sizeof(err)), 0);
    assert_int_equal(st_read_header_file(&f, path, err, sizeof(err)), 0);
    assert_int_equal(f.n, n);
    assert_null(f.blob);
    st_free(&f);
    assert_int_equal(truncate(path, (off_t)mlen - 1), 0);
    assert_true(st_read_header_file(&f, path, err, sizeof(err)) == -EINVAL);
    assert_int_equal(truncate(path, 3), 0);
    assert_true(st_read_header_file(&f, path, err, sizeof(err)) == -EINVAL);
    assert_non_null(strstr(err, "too short"));
    free(mem);
}

/* A file whose header leaves the data unaligned is read with its data moved to an 8-byte
 * boundary, the values intact; a truncated one is still refused. */
static void unaligned_file_read(void **state)
{
    (void)state;
    const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}";
    float vals[3] = {1.5f, -2.0f, 3.25f};
    size_t len;
    unsigned char *b = make_file(hdr, vals, sizeof vals, &len);
    assert_int_not_equal((8 + strlen(hdr)) % 8, 0);
    char path[128], err[256] = "";
    snprintf(path, sizeof(path), "%s/unaligned.safetensors", tmpdir);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, len, fp), len);
    fclose(fp);
    st_file f;
    assert_int_equal(st_read_file(&f, path, err, sizeof(err)), 0);
    const st_tensor *t = st_find(&f, "a");
    assert_non_null(t);
    assert_int_equal((uintptr_t)t->data % 8, 0);
    assert_memory_equal(t->data, vals, sizeof vals);
    st_free(&f);
    assert_int_equal(truncate(path, (off_t)len - 2), 0);
    assert_true(st_read_file(&f, path, err, sizeof(err)) < 0);
    assert_int_equal(truncate(path, (off_t)(8 + strlen(hdr) - 3)), 0);
    assert_true(st_read_file(&f, path, err, sizeof(err)) < 0);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip),
        cmocka_unit_test(metadata_is_ignored),
        cmocka_unit_test(truncated_files),
        cmocka_unit_test(lying_headers),
        cmocka_unit_test(bad_dtypes_and_shapes),
        cmocka_unit_test(file_errors),
        cmocka_unit_test(header_only),
        cmocka_unit_test(unaligned_file_read),
        cmocka_unit_test(write_refusals_keep_old_file),
    };
    return cmocka_run_group_tests(tests, setup_dir, remove_dir);
}
