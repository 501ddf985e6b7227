/* cmd_predict.c: `sgdr predict RUN IMAGE [--tta]`: one image's class probabilities. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "out.h"

/* Bigger than any image the daemon takes: it answers for itself past its own limit. */
#define PREDICT_FILE_MAX (256L << 20)

/* Reads the file at p into a new buffer (*out, owned by the caller). */
static int read_file(const char *p, char **out, size_t *len)
{
    FILE *f = fopen(p, "rb");
    char *buf = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        n <= PREDICT_FILE_MAX && (buf = malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) == (size_t)n) {
        fclose(f);
        *out = buf;
        *len = (size_t)n;
        return CLI_OK;
    }
    int e = errno;
    free(buf);
    if (f)
        fclose(f);
    return cli_usage_error("cannot read %s: %s", p,
                           n > PREDICT_FILE_MAX ? "too big for an image" : strerror(e));
}

/* The image's type from its first bytes; the daemon tells a wrong one apart itself. */
static const char *image_type(const unsigned char *b, size_t n)
{
    if (n >= 8 && memcmp(b, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "image/png";
    if (n >= 3 && b[0] == 0xff && b[1] == 0xd8 && b[2] == 0xff)
        return "image/jpeg";
    return "application/octet-stream";
}

static void print_prediction(json_t *p)
{
    json_t *classes = json_object_get(p, "classes"), *probs = json_object_get(p, "probs");
    printf("%s %.4f%s\n", out_str(p, "top.class"), json_number_value(out_path(p, "top.prob")),
           json_is_true(json_object_get(p, "tta")) ? " (tta)" : "");
    for (size_t i = 0; i < json_array_size(classes); i++)
        printf("  %-20s %.4f\n", out_str(json_array_get(classes, i), ""),
               json_number_value(json_array_get(probs, i)));
}

int cmd_predict(cli_ctx *c, int argc, char **argv)
{
    static const args_opt opts[] = {
        {"--tta", NULL, ARGS_SWITCH, NULL, "average over test-time augmentations"},
        {NULL, NULL, 0, NULL, NULL},
    };
    args a;
    long long id;
    char path[128], *img = NULL;
    size_t len = 0;
    http_reply raw = {0};
    json_t *p = NULL;
    int st;
    if (cli_args(&a, "predict RUN IMAGE [--tta]", opts, argc, argv, 2, 2, &st) ||
        cli_pos_id(&a, 0, "run", &id, &st) || (st = read_file(a.pos[1], &img, &len)))
        return st;
    snprintf(path, sizeof path, HTTP_API_PREFIX "/runs/%lld/predict?tta=%d", id,
             args_get(&a, "--tta") ? 1 : 0);
    int rc = http_request(c->http, "POST", path, image_type((unsigned char *)img, len), img, len,
                          &raw);
    free(img);
    if ((st = cli_take_reply(c, rc, &raw, &p)))
        return st;
    if (c->json)
        cli_print_raw(&raw);
    else
        print_prediction(p);
    json_decref(p);
    http_reply_clear(&raw);
    return CLI_OK;
}
