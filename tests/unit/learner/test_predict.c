/* test_predict.c: predictions. predict_test writes one CSV row per unlabelled test image
 * (also with 1025 classes and a 255-byte class name), predict_image's probabilities sum to
 * 1 with and without TTA, and TTA skips the passes that would repeat the centre crop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <png.h>

#include "fixture.h"

static void write_png(const char *path, const uint8_t *px)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    assert_false(setjmp(png_jmpbuf(p)));
    png_init_io(p, f);
    png_set_IHDR(p, info, SZ, SZ, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < SZ; y++)
        png_write_row(p, (png_bytep)(px + y * SZ));
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    fclose(f);
}

/* More classes than fixed buffers hold: 1025 class folders, one of them with a 255-byte
 * name. predict_image's probabilities still sum to 1, with and without TTA, and every row
 * of predict_test's CSV is whole: a file name and one probability per class. */
static void predict_with_many_classes(void **state)
{
    (void)state;
    enum { NC = 1025 };
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/many", fx_root);
    uint64_t r = 9;
    uint8_t px[SZ * SZ];
    const char *top[] = {"", "/train", "/valid", "/test"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s%s", dir, top[i]);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    char longname[251];
    memset(longname, 'n', 250);
    longname[250] = '\0';
    for (int k = 0; k < NC; k++) {
        for (int v = 0; v < (k < 2 ? 2 : 1); v++) {
            char cls[310];
            snprintf(cls, sizeof cls, "c%04d%s", k, k == 7 ? longname : "");
            char d[700], f[720];
            snprintf(d, sizeof d, "%s/%s/%s", dir, v ? "valid" : "train", cls);
            assert_int_equal(mkdir(d, 0755), 0);
            fx_draw(px, k % 3, &r);
            snprintf(f, sizeof f, "%s/0.png", d);
            write_png(f, px);
        }
    }
    for (int i = 0; i < 3; i++) {
        fx_draw(px, i, &r);
        snprintf(p, sizeof p, "%s/test/t,%d.png", dir, i);
        write_png(p, px);
    }
    ds_options o = {.format = DS_FOLDERS, .path = dir, .valid_pct = -1, .seed = 1};
    dataset *ds;
    char err[256] = "";
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    assert_int_equal(dataset_info(ds)->n_classes, NC);
    learner_config c;
    fx_base_config(&c);
    learner *l = fx_make(&c, ds);
    float *probs = malloc(NC * sizeof *probs);
    image im = {.w = SZ, .h = SZ, .c = 1, .px = px};
    for (int tta = 0; tta <= 1; tta++) {
        assert_int_equal(learner_predict_image(l, &im, tta, probs, err, sizeof err), 0);
        double sum = 0;
        for (int k = 0; k < NC; k++)
            sum += probs[k];
        assert_true(fabs(sum - 1.0) < 1e-3);
    }
    free(probs);

    snprintf(p, sizeof p, "%s/preds.csv", fx_root);
    assert_int_equal(learner_predict_test(l, 0, p, NULL, err, sizeof err), 0);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    int rows = 0, ch, commas = 0, saw_long = 0;
    char cell[400];
    size_t k = 0;
    while ((ch = fgetc(f)) != EOF) {
        if (ch == '\n') {
            assert_int_equal(commas, NC + (rows > 0)); /* "t,0.png" is quoted: one more */
            rows++;
            commas = 0;
        } else {
            commas += ch == ',';
        }
        if (ch == ',' || ch == '\n') {
            cell[k < sizeof cell ? k : sizeof cell - 1] = '\0';
            saw_long |= strlen(cell) == 255 && strncmp(cell, "c0007n", 6) == 0;
            k = 0;
        } else if (k < sizeof cell) {
            cell[k++] = (char)ch;
        }
    }
    fclose(f);
    assert_int_equal(rows, 1 + 3);
    assert_true(saw_long);
    learner_destroy(l);
    dataset_destroy(ds);
}

static void predict_test_writes_csv(void **state)
{
    (void)state;
    char dir[300], p[400];
    snprintf(dir, sizeof dir, "%s/folders", fx_root);
    const char *sub[] = {"", "/train", "/train/bar", "/train/box", "/valid", "/valid/bar",
                         "/valid/box", "/test"};
    for (int i = 0; i < 8; i++) {
        snprintf(p, sizeof p, "%s%s", dir, sub[i]);
        assert_int_equal(mkdir(p, 0755), 0);
    }
    uint64_t r = 3;
    uint8_t px[SZ * SZ];
    for (int i = 0; i < 24; i++) {
        int cls = i % 2 ? 2 : 0;
        fx_draw(px, cls, &r);
        snprintf(p, sizeof p, "%s/%s/%s/%d.png", dir, i < 16 ? "train" : "valid",
                 cls ? "box" : "bar", i);
        write_png(p, px);
    }
    for (int i = 0; i < 3; i++) {
        fx_draw(px, 0, &r);
        snprintf(p, sizeof p, "%s/test/t%d.png", dir, i);
        write_png(p, px);
    }
    ds_options o = {.format = DS_FOLDERS, .path = dir, .valid_pct = -1, .seed = 1};
    dataset *ds;
    char err[256] = "";
    assert_int_equal(dataset_open(&ds, &o, err, sizeof err), 0);
    learner_config c;
    fx_base_config(&c);
    learner *l = fx_make(&c, ds);
    for (int tta = 0; tta < 2; tta++) {
        snprintf(p, sizeof p, "%s/pred%d.csv", fx_root, tta);
        int rc = learner_predict_test(l, tta, p, NULL, err, sizeof err);
        if (rc)
            print_error("predict_test: %s\n", err);
        assert_int_equal(rc, 0);
        FILE *f = fopen(p, "r");
        assert_non_null(f);
        char line[512];
        assert_non_null(fgets(line, sizeof line, f));
        assert_string_equal(line, "file,bar,box\n");
        int rows = 0;
        while (fgets(line, sizeof line, f)) {
            char name[128];
            float a, b;
            assert_int_equal(sscanf(line, "%127[^,],%f,%f", name, &a, &b), 3);
            assert_non_null(strstr(name, "test/t"));
            assert_true(fabsf(a + b - 1.0f) < 1e-4f);
            rows++;
        }
        fclose(f);
        assert_int_equal(rows, 3);
        snprintf(p, sizeof p, "%s/pred%d.csv.tmp", fx_root, tta);
        assert_int_equal(access(p, F_OK), -1); /* renamed into place */
    }
    learner_destroy(l);
    dataset_destroy(ds);
}

static void count_progress(void *ctx, double fraction, double eta_s)
{
    (*(int *)ctx)++;
}

/* TTA's augmented passes run when they can differ from the centre crop (a zoom here), and
 * are skipped when they cannot: no transforms, no zoom, every image the same square. */
static void tta_skips_passes_that_repeat_the_centre(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    char err[256] = "";
    for (int zoom = 0; zoom <= 1; zoom++) {
        learner_config c;
        fx_base_config(&c);
        c.max_zoom = zoom ? 1.3f : 1.0f;
        learner *l = fx_make(&c, ds);
        int passes = 0;
        ev_hooks h = {.ctx = &passes, .on_progress = count_progress};
        tta_result t;
        assert_int_equal(learner_tta(l, 3, &h, &t, err, sizeof err), 0);
        assert_int_equal(t.n_aug, 3);
        assert_int_equal(passes, zoom ? 4 : 1);
        if (!zoom) {
            assert_true(t.tta_accuracy == t.accuracy);
            for (int k = 0; k < 3; k++)
                assert_true(t.pass_accuracy[k] == t.accuracy);
        }
        learner_destroy(l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(predict_test_writes_csv),
        cmocka_unit_test(predict_with_many_classes),
        fx_test_small(tta_skips_passes_that_repeat_the_centre),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
