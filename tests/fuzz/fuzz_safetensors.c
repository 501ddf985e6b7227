/* fuzz_safetensors.c: the safetensors reader (engine/safetensors.c) on arbitrary bytes. A
 * file it accepts must keep every tensor inside its blob with nbytes matching the shape,
 * find each tensor by name, and survive a round trip through the writer unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "safetensors.h"

static size_t elt_size(st_dtype d)
{
    return d == ST_I64 ? 8 : 4;
}

static void check_file(const st_file *f)
{
    const char *lo = f->blob, *hi = lo + f->blob_len;
    FUZZ_CHECK(f->n >= 0);
    for (int i = 0; i < f->n; i++) {
        const st_tensor *t = &f->tensors[i];
        size_t count = 1;
        FUZZ_CHECK(t->name != NULL);
        FUZZ_CHECK(t->dtype == ST_F32 || t->dtype == ST_I64);
        FUZZ_CHECK(t->ndim >= 0 && t->ndim <= ST_MAX_DIMS);
        for (int d = 0; d < t->ndim; d++) {
            FUZZ_CHECK(t->shape[d] >= 0);
            count *= (size_t)t->shape[d];
        }
        FUZZ_CHECK(t->nbytes == count * elt_size(t->dtype));
        FUZZ_CHECK(t->nbytes == 0 ||
                   ((const char *)t->data >= lo && (const char *)t->data + t->nbytes <= hi));
        const st_tensor *found = st_find(f, t->name);
        FUZZ_CHECK(found != NULL && strcmp(found->name, t->name) == 0);
    }
}

/* What the writer makes of f reads back as the same tensors, byte for byte. */
static void check_round_trip(const st_file *f)
{
    void *buf = NULL;
    size_t len = 0;
    char err[256];
    st_file g;
    FUZZ_CHECK(st_write_mem(&buf, &len, f->tensors, f->n, err, sizeof err) == 0);
    FUZZ_CHECK(st_read_mem(&g, buf, len, err, sizeof err) == 0);
    FUZZ_CHECK(g.n == f->n);
    for (int i = 0; i < f->n; i++) {
        const st_tensor *a = &f->tensors[i], *b = st_find(&g, a->name);
        FUZZ_CHECK(b != NULL && b->dtype == a->dtype && b->ndim == a->ndim &&
                   b->nbytes == a->nbytes);
        FUZZ_CHECK(memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) == 0);
        FUZZ_CHECK(a->nbytes == 0 || memcmp(a->data, b->data, a->nbytes) == 0);
    }
    st_free(&g);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    st_file f;
    char err[256];
    memset(err, 'x', sizeof err);
    int rc = st_read_mem(&f, data, size, err, sizeof err);
    if (rc != 0) {
        FUZZ_CHECK(rc < 0 && memchr(err, 0, sizeof err) != NULL && err[0] != '\0');
        FUZZ_CHECK(f.n == 0 && f.tensors == NULL && f.blob == NULL);
        return 0;
    }
    check_file(&f);
    check_round_trip(&f);
    st_free(&f);
    return 0;
}
