/* model_upload.c: a POST /models body checked while it streams: its query (name, arch) on
 * the first bytes, and its safetensors header against the arch as soon as the header has
 * arrived, so a file that cannot be imported is refused without storing or reading the
 * rest of it. */
#include "api_internal.h"
#include "model_upload.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "learner.h"
#include "safetensors.h"
#include "buf.h"
#include "upload.h"

int model_upload_query(api_req *r)
{
    static const char *const archs[] = {"resnet18", "resnet34", "resnet_small",
                                        "resnet_small_silu"};
    const char *name = req_query(r, "name"), *arch = req_query(r, "arch");
    char err[256];
    int ok = 0;

    if (upload_name_check(name, err, sizeof err)) {
        reply_problem(r, 400, PROBLEM_INVALID, "name", "%s", err);
        return 1;
    }
    for (size_t i = 0; arch && i < sizeof archs / sizeof archs[0]; i++)
        ok |= strcmp(arch, archs[i]) == 0;
    if (!ok) {
        reply_problem(r, 400, PROBLEM_INVALID, "arch",
                      "arch must be resnet18, resnet34, resnet_small or resnet_small_silu");
        return 1;
    }
    return 0;
}

int model_upload_check(api_req *r, const st_file *f)
{
    char err[512];
    const char *arch = req_query(r, "arch");
    /* A file a run could not start from is refused now, not when its first job fails. */
    if (learner_check_pretrained(arch, f, err, sizeof err)) {
        reply_problem(r, 400, PROBLEM_INVALID, NULL, "the uploaded file is not a %s body: %s",
                      arch, err);
        return 1;
    }
    return 0;
}

/* Bytes of the header still to come: 8 for its length, then the header itself. */
static size_t head_needed(const api_req *r)
{
    uint64_t hlen;
    if (r->head_len < 8)
        return 8 - r->head_len;
    memcpy(&hlen, r->buf, 8);
    return 8 + (size_t)hlen - r->head_len;
}

int model_upload_feed(api_req *r, const char *data, size_t size)
{
    int64_t declared;
    st_file f;
    char err[512];

    if (r->head_done)
        return 0;
    if (r->head_len == 0 && model_upload_query(r))
        return 1;
    /* Without a declared length the offsets cannot be checked yet: the end does it all. */
    if (!body_announced(r, &declared) || declared < 0) {
        r->head_done = 1;
        return 0;
    }
    while (size > 0 && !r->head_done) {
        size_t take = head_needed(r);
        if (take > size)
            take = size;
        char *nb = buf_grow_bytes(r->buf, &r->cap, r->head_len + take, 4096,
                                  8 + API_MODEL_HEADER_MAX);
        if (!nb) {
            reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory for the header");
            return 1;
        }
        r->buf = nb;
        memcpy(r->buf + r->head_len, data, take);
        r->head_len += take;
        data += take;
        size -= take;
        int rc = st_parse_header(&f, r->buf, r->head_len, (uint64_t)declared, err,
                                 sizeof err);
        if (rc == -EAGAIN) {
            uint64_t hlen = 0;
            if (r->head_len >= 8)
                memcpy(&hlen, r->buf, 8);
            if (hlen <= API_MODEL_HEADER_MAX)
                continue;
            reply_problem(r, 400, PROBLEM_INVALID, NULL,
                          "not a usable safetensors file: header length %llu is over the "
                          "%d-byte limit for models", (unsigned long long)hlen,
                          API_MODEL_HEADER_MAX);
            return 1;
        }
        r->head_done = 1;
        free(r->buf);
        r->buf = NULL;
        r->cap = 0;
        if (rc) {
            reply_problem(r, 400, PROBLEM_INVALID, NULL, "not a usable safetensors file: %s",
                          err);
            return 1;
        }
        rc = model_upload_check(r, &f);
        st_free(&f);
        return rc;
    }
    return 0;
}
