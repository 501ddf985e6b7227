/* test_weights.c: nets to and from safetensors: round trip, and every refusal (wrong
 * shape, wrong dtype, missing and unexpected keys, truncated file) leaves the net
 * untouched and names what is wrong. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "models/models.h"
#include "net.h"
#include "safetensors.h"
#include "weights.h"

static net *small(uint64_t seed, model_head head)
{
    model_spec s;
    model_spec_defaults(&s);
    s.c_in = 1;
    s.n_classes = 10;
    s.head = head;
    s.seed = seed;
    char err[256];
    net *n = NULL;
    assert_int_equal(model_create(&n, &s, err, sizeof(err)), 0);
    return n;
}

static char tmpdir[] = "/tmp/sgdrd-weights-XXXXXX";

static const char *path_of(const char *name)
{
    static char p[256];
    snprintf(p, sizeof(p), "%s/%s", tmpdir, name);
    return p;
}

static void round_trip_copies_every_tensor(void **state)
{
    (void)state;
    net *a = small(1, HEAD_FASTAI), *b = small(2, HEAD_FASTAI);
    for (size_t i = 0; i < a->n_buffers; i++)
        a->buffers[i] = (float)i * 0.5f;
    char err[512];
    assert_int_equal(weights_save_file(a, path_of("a.st"), err, sizeof(err)), 0);
    assert_memory_not_equal(a->params, b->params, a->n_params * sizeof(float));
    assert_int_equal(weights_load_file(b, path_of("a.st"), WEIGHTS_ALL, err, sizeof(err)), 0);
    assert_memory_equal(a->params, b->params, a->n_params * sizeof(float));
    assert_memory_equal(a->buffers, b->buffers, a->n_buffers * sizeof(float));

    /* The file carries torch's num_batches_tracked (I64) so strict loading works. */
    st_file f;
    assert_int_equal(st_read_file(&f, path_of("a.st"), err, sizeof(err)), 0);
    const st_tensor *t = st_find(&f, "layer1.0.bn1.num_batches_tracked");
    assert_non_null(t);
    assert_int_equal(t->dtype, ST_I64);
    st_free(&f);

    void *mem = NULL;
    size_t len = 0;
    assert_int_equal(weights_save_mem(a, &mem, &len, err, sizeof(err)), 0);
    assert_true(len > a->n_params * sizeof(float));
    free(mem);
    net_destroy(a);
    net_destroy(b);
}

/* Writes the views of n, with one tensor changed by `edit`, to path. */
static void save_edited(net *n, const char *path, const char *target, int drop,
                        int64_t new_dim0, int add_extra)
{
    st_tensor ts[256];
    int k = weights_views(n, ts, 250);
    assert_true(k > 0);
    int out = 0;
    static float extra[4];
    for (int i = 0; i < k; i++) {
        if (strcmp(ts[i].name, target) == 0) {
            if (drop)
                continue;
            if (new_dim0) {
                ts[i].shape[0] = new_dim0;
                ts[i].nbytes = (ts[i].nbytes / (size_t)n->tensors[i].shape[0]) *
                               (size_t)new_dim0;
            }
        }
        ts[out++] = ts[i];
    }
    if (add_extra)
        ts[out++] = (st_tensor){.name = "layer9.0.conv1.weight", .dtype = ST_F32, .ndim = 1,
                                .shape = {4}, .nbytes = sizeof(extra), .data = extra};
    char err[256];
    assert_int_equal(st_write_file(path, ts, out, err, sizeof(err)), 0);
}

static void refusal_leaves_net_untouched(net *n, const char *path, weights_scope scope,
                                         const char *expect1, const char *expect2)
{
    float *before = malloc(n->n_params * sizeof(float));
    memcpy(before, n->params, n->n_params * sizeof(float));
    char err[2048];
    assert_true(weights_load_file(n, path, scope, err, sizeof(err)) < 0);
    if (!strstr(err, expect1) || (expect2 && !strstr(err, expect2)))
        fail_msg("error '%s' should name '%s' and '%s'", err, expect1, expect2 ? expect2 : "");
    assert_memory_equal(before, n->params, n->n_params * sizeof(float));
    free(before);
}

static void mismatches_are_refused_by_name(void **state)
{
    (void)state;
    net *src = small(3, HEAD_FASTAI), *dst = small(4, HEAD_FASTAI);

    save_edited(src, path_of("shape.st"), "layer2.0.conv1.weight", 0, 65, 0);
    refusal_leaves_net_untouched(dst, path_of("shape.st"), WEIGHTS_ALL,
                                 "first bad tensor layer2.0.conv1.weight", "[65, 32, 3, 3]");

    save_edited(src, path_of("missing.st"), "layer3.1.bn2.running_var", 1, 0, 0);
    refusal_leaves_net_untouched(dst, path_of("missing.st"), WEIGHTS_ALL,
                                 "1 missing keys: layer3.1.bn2.running_var", NULL);

    save_edited(src, path_of("extra.st"), "", 0, 0, 1);
    refusal_leaves_net_untouched(dst, path_of("extra.st"), WEIGHTS_ALL,
                                 "1 unexpected keys: layer9.0.conv1.weight", NULL);

    /* A torchvision-style file (plain head "fc") into a fastai-head net: as the whole
     * model it is refused; as a pretrained body it loads. */
    net *plain = small(5, HEAD_PLAIN);
    char err[2048];
    assert_int_equal(weights_save_file(plain, path_of("plain.st"), err, sizeof(err)), 0);
    refusal_leaves_net_untouched(dst, path_of("plain.st"), WEIGHTS_ALL, "unexpected keys: fc.",
                                 "missing keys: head.");
    assert_int_equal(weights_load_file(dst, path_of("plain.st"), WEIGHTS_BODY, err,
                                       sizeof(err)), 0);
    int c = net_find(dst, "layer1.0.conv1.weight");
    assert_memory_equal(net_tensor_data(dst, c), net_tensor_data(plain, c),
                        dst->tensors[c].numel * sizeof(float));

    /* A truncated file never reaches the net. */
    FILE *f = fopen(path_of("plain.st"), "r+");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 1000), 0);
    fclose(f);
    float *before = malloc(dst->n_params * sizeof(float));
    memcpy(before, dst->params, dst->n_params * sizeof(float));
    assert_true(weights_load_file(dst, path_of("plain.st"), WEIGHTS_BODY, err,
                                  sizeof(err)) < 0);
    assert_memory_equal(before, dst->params, dst->n_params * sizeof(float));
    free(before);
    net_destroy(plain);
    net_destroy(src);
    net_destroy(dst);
}

static void wrong_dtype_is_refused(void **state)
{
    (void)state;
    net *n = small(6, HEAD_FASTAI);
    st_tensor ts[256];
    int k = weights_views(n, ts, 256);
    int64_t *as_int = calloc(n->tensors[0].numel, sizeof(int64_t));
    ts[0].dtype = ST_I64; /* conv1.weight with the right byte size per element, wrong type */
    ts[0].nbytes = n->tensors[0].numel * sizeof(int64_t);
    ts[0].data = as_int;
    char err[2048];
    assert_int_equal(st_write_file(path_of("dtype.st"), ts, k, err, sizeof(err)), 0);
    refusal_leaves_net_untouched(n, path_of("dtype.st"), WEIGHTS_ALL, "conv1.weight",
                                 "dtype must be F32");
    free(as_int);
    net_destroy(n);
}

int main(void)
{
    if (!mkdtemp(tmpdir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_copies_every_tensor),
        cmocka_unit_test(mismatches_are_refused_by_name),
        cmocka_unit_test(wrong_dtype_is_refused),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        rc = 1;
    return rc;
}
