/* test_resume.c: checkpoints. An interrupted fit, resumed, gives the weights of an
 * uninterrupted one (SGD; AdamW, whose checkpoints an SGD learner refuses; a resize inside
 * the schedule; early stops that go back to earlier weights), and checkpoints written by
 * older versions still load. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "fixture.h"
#include "safetensors.h"

static void resume_equals_uninterrupted(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    char dir_a[512], dir_b[512], err[256] = "";
    snprintf(dir_a, sizeof dir_a, "%s/ck_a", fx_root);
    snprintf(dir_b, sizeof dir_b, "%s/ck_b", fx_root);
    mkdir(dir_a, 0755);
    mkdir(dir_b, 0755);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 2, .cycle_len = 1, .cycle_mult = 1,
                  .wd = 1e-4, .schedule = SCHED_SGDR, .snapshots = 1};

    c->checkpoint_dir = dir_a;
    learner *a = fx_make(c, ds);
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), 0);

    c->checkpoint_dir = dir_b;
    learner_destroy(fx_fit_cut(c, ds, &o, 0));

    learner *b2 = fx_make(c, ds);
    fit_opts ro = o;
    ro.resume = 1;
    fx_rec r2 = {0};
    ev_hooks h2 = fx_hooks_for(&r2);
    int rc = learner_fit(b2, &ro, &h2, err, sizeof err);
    if (rc)
        print_error("resume: %s\n", err);
    assert_int_equal(rc, 0);
    assert_int_equal(r2.n_epoch, 1); /* epoch 1 only */
    assert_int_equal(learner_n_snapshots(b2), 2); /* cycle 0's reloaded from its file */
    fx_assert_same_weights(a, b2);
    learner_state sa, sb;
    learner_get_state(a, &sa);
    learner_get_state(b2, &sb);
    assert_int_equal(sa.step, sb.step);

    /* The checkpointed fit has finished: resuming it again does nothing. Without a
     * checkpoint folder there is nothing to resume. */
    assert_int_equal(learner_fit(b2, &ro, NULL, err, sizeof err), 0);
    assert_memory_equal(learner_net(a)->params, learner_net(b2)->params,
                        learner_net(a)->n_params * sizeof(float));
    learner_destroy(a);
    learner_destroy(b2);
    c->checkpoint_dir = NULL;
    learner *n = fx_make(c, ds);
    assert_int_equal(learner_fit(n, &ro, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "resume"));
    learner_destroy(n);
}

/* An AdamW learner (opt = OPTIM_ADAM) learns the shapes, and its checkpoints (twice the
 * optimizer state: m and v) resume bit for bit; an SGD learner refuses them. */
static void adamw_learns_and_resumes(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->bs = 16;
    c->opt = OPTIM_ADAM;
    char dir_a[512], dir_b[512], err[256] = "";
    snprintf(dir_a, sizeof dir_a, "%s/adam_a", fx_root);
    snprintf(dir_b, sizeof dir_b, "%s/adam_b", fx_root);
    mkdir(dir_a, 0755);
    mkdir(dir_b, 0755);
    fit_opts o = {.n_lrs = 1, .lrs = {3e-3}, .n_cycle = 1, .cycle_len = 3, .cycle_mult = 1,
                  .wd = 1e-2, .schedule = SCHED_1CYCLE};
    c->checkpoint_dir = dir_a;
    learner *a = fx_make(c, ds);
    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    int rc = learner_fit(a, &o, &h, err, sizeof err);
    if (rc)
        print_error("fit: %s\n", err);
    assert_int_equal(rc, 0);
    print_message("adamw: validation accuracy %.3f after 3 epochs\n", r.last_acc);
    assert_true(r.last_acc >= 0.9f);

    c->checkpoint_dir = dir_b;
    learner_destroy(fx_fit_cut(c, ds, &o, 0));
    fit_opts ro = o;
    ro.resume = 1;
    learner *b2 = fx_make(c, ds);
    assert_int_equal(learner_fit(b2, &ro, NULL, err, sizeof err), 0);
    fx_assert_same_weights(a, b2);
    learner_destroy(b2);

    c->opt = OPTIM_SGD;
    learner *s = fx_make(c, ds);
    assert_int_equal(learner_fit(s, &ro, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "optim.state"));
    learner_destroy(s);
    c->opt = (optim_kind)7;
    learner *bad;
    assert_int_equal(learner_create(&bad, c, ds, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "opt"));
    learner_destroy(a);
}

/* Progressive resizing inside one schedule: epoch 0 at 8 pixels, epoch 1 at SZ on the same
 * 1cycle; the learner keeps the new size, and a fit cut at the old size resumes to the same
 * weights. */
static void fit_resizes_inside_one_schedule(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->sz = 8;
    char dir_a[512], dir_b[512], err[256] = "";
    snprintf(dir_a, sizeof dir_a, "%s/rs_a", fx_root);
    snprintf(dir_b, sizeof dir_b, "%s/rs_b", fx_root);
    mkdir(dir_a, 0755);
    mkdir(dir_b, 0755);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .cycle_len = 2,
                  .schedule = SCHED_1CYCLE, .resize_epoch = 1, .resize_sz = SZ};
    c->checkpoint_dir = dir_a;
    learner *a = fx_make(c, ds);
    fx_rec r = {0};
    ev_hooks h = fx_hooks_for(&r);
    sched_plan plan;
    fx_expect_schedule(&r, &plan, SCHED_1CYCLE, N_SMALL / BS, 2, 0.05);
    assert_int_equal(learner_fit(a, &o, &h, err, sizeof err), 0);
    assert_int_equal(r.n_epoch, 2);
    assert_int_equal(r.lr_mismatch, 0);
    assert_string_equal(r.last_note, "resize");
    learner_state st;
    learner_get_state(a, &st);
    assert_int_equal(st.sz, SZ);

    c->checkpoint_dir = dir_b;
    learner *b = fx_fit_cut(c, ds, &o, 0);
    learner_get_state(b, &st);
    assert_int_equal(st.sz, 8);
    learner_destroy(b);
    learner *b2 = fx_make(c, ds);
    fit_opts ro = o;
    ro.resume = 1;
    ro.resize_sz = 12; /* another resize plan is another fit */
    assert_int_equal(learner_fit(b2, &ro, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "other settings"));
    ro.resize_sz = SZ;
    int rc = learner_fit(b2, &ro, NULL, err, sizeof err);
    if (rc)
        print_error("resume: %s\n", err);
    assert_int_equal(rc, 0);
    learner_get_state(b2, &st);
    assert_int_equal(st.sz, SZ);
    fx_assert_same_weights(a, b2);
    learner_destroy(b2);

    o.resize_sz = 4;
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "resize_sz"));
    o.resize_sz = SZ;
    o.resize_epoch = -1;
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "resize_epoch"));
    o.resize_epoch = 1;
    assert_int_equal(learner_freeze_to(a, 2, err, sizeof err), 0);
    assert_int_equal(learner_set_precompute(a, 1, err, sizeof err), 0);
    assert_int_equal(learner_fit(a, &o, NULL, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "precompute"));
    learner_destroy(a);
}

static int count_best_files(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -c '^best_' > /dev/null", dir);
    return system(cmd) == 0; /* grep -c exits 0 when it counted at least one */
}

/* An early stop that goes back to earlier weights, interrupted after the best epoch and
 * before the stop: the resumed fit stops at the same epoch with the same weights as the
 * uninterrupted one (the kept weights and the counters are in the checkpoint folder). */
static void early_stop_survives_resume(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->sz = 8; /* a quarter of the pixels: the many short fits stay cheap under ASan */
    char err[256] = "";
    /* patience 2 at a constant rate; the recipe's stop at a worse cycle end over SGDR
     * cycles of one epoch. */
    fit_opts modes[2] = {
        {.n_lrs = 1, .lrs = {0.3}, .n_cycle = 12, .wd = 1e-4, .schedule = SCHED_CONSTANT,
         .early_stop_patience = 2},
        {.n_lrs = 1, .lrs = {0.3}, .n_cycle = 12, .cycle_len = 1, .cycle_mult = 1,
         .wd = 1e-4, .schedule = SCHED_SGDR, .stop_at_worse_cycle = 1},
    };
    const char *note[2] = {"early_stop", "stop"};
    for (int m = 0; m < 2; m++) {
        char dir_a[512], dir_b[512];
        snprintf(dir_a, sizeof dir_a, "%s/es_a%d", fx_root, m);
        snprintf(dir_b, sizeof dir_b, "%s/es_b%d", fx_root, m);
        assert_int_equal(mkdir(dir_a, 0755), 0);
        assert_int_equal(mkdir(dir_b, 0755), 0);

        c->checkpoint_dir = dir_a;
        learner *a = fx_make(c, ds);
        fx_rec ra = {0};
        ev_hooks ha = fx_hooks_for(&ra);
        int rc = learner_fit(a, &modes[m], &ha, err, sizeof err);
        if (rc)
            print_error("fit: %s\n", err);
        assert_int_equal(rc, 0);
        int stop_epoch = ra.n_epoch - 1;
        print_message("%s: the uninterrupted fit stopped after epoch %d of 12\n", note[m],
                      stop_epoch);
        assert_string_equal(ra.last_note, note[m]);
        /* Interrupted after the epoch before the stop: the kept weights are older. */
        int cut = stop_epoch - 1;
        assert_true(cut >= 1);
        assert_false(count_best_files(dir_a)); /* a finished fit leaves no best file */

        c->checkpoint_dir = dir_b;
        learner *b = fx_fit_cut(c, ds, &modes[m], cut);
        assert_true(count_best_files(dir_b));
        size_t np = learner_net(b)->n_params * sizeof(float);
        float *at_cut = malloc(np);
        assert_non_null(at_cut);
        memcpy(at_cut, learner_net(b)->params, np);
        learner_destroy(b);

        learner *b2 = fx_make(c, ds);
        fit_opts ro = modes[m];
        ro.resume = 1;
        fx_rec r2 = {0};
        ev_hooks h2 = fx_hooks_for(&r2);
        rc = learner_fit(b2, &ro, &h2, err, sizeof err);
        if (rc)
            print_error("resume: %s\n", err);
        assert_int_equal(rc, 0);
        assert_int_equal(r2.n_epoch, 1); /* the stop epoch only */
        assert_string_equal(r2.last_note, note[m]);
        fx_assert_same_weights(a, b2);
        assert_false(count_best_files(dir_b));
        /* Patience went back to the epoch before the cut, older than the checkpoint the
         * resume started from; the cycle rule to the previous cycle end, the cut itself. */
        if (m == 0)
            assert_memory_not_equal(learner_net(a)->params, at_cut, np);
        else
            assert_memory_equal(learner_net(a)->params, at_cut, np);
        free(at_cut);
        learner_destroy(a);
        learner_destroy(b2);
    }
}

/* Writes src's checkpoint again with learner.meta cut to n_meta entries and version v: a
 * checkpoint as an older release wrote it. */
static void rewrite_meta(const char *src, const char *dst, int n_meta, int64_t v)
{
    st_file f;
    char err[256];
    assert_int_equal(st_read_file(&f, src, err, sizeof err), 0);
    st_tensor *ts = calloc((size_t)f.n, sizeof *ts);
    int64_t *meta = calloc((size_t)n_meta, sizeof *meta);
    assert_non_null(ts);
    assert_non_null(meta);
    for (int i = 0; i < f.n; i++) {
        ts[i] = f.tensors[i];
        if (strcmp(ts[i].name, "learner.meta") == 0) {
            memcpy(meta, ts[i].data, (size_t)n_meta * sizeof *meta);
            meta[0] = v;
            ts[i].data = meta;
            ts[i].shape[0] = n_meta;
            ts[i].nbytes = (size_t)n_meta * sizeof *meta;
        }
    }
    assert_int_equal(st_write_file(dst, ts, f.n, err, sizeof err), 0);
    free(meta);
    free(ts);
    st_free(&f);
}

/* Checkpoints of versions 1 (no early-stop state), 2 (no cycle-end accuracy) and 3 (no
 * resize inside a fit) still load; a meta of any other length is refused. */
static void older_checkpoints_load(void **state)
{
    fx_case *fx = *state;
    dataset *ds = fx->ds;
    learner_config *c = &fx->c;
    c->sz = 8;
    char err[256] = "", p4[512], p3[512], p2[512], p1[512], pbad[512];
    learner *l = fx_make(c, ds);
    fit_opts o = {.n_lrs = 1, .lrs = {0.05}, .n_cycle = 1, .schedule = SCHED_CONSTANT};
    assert_int_equal(learner_fit(l, &o, NULL, err, sizeof err), 0);
    snprintf(p4, sizeof p4, "%s/v4.safetensors", fx_root);
    snprintf(p3, sizeof p3, "%s/v3.safetensors", fx_root);
    snprintf(p2, sizeof p2, "%s/v2.safetensors", fx_root);
    snprintf(p1, sizeof p1, "%s/v1.safetensors", fx_root);
    snprintf(pbad, sizeof pbad, "%s/vbad.safetensors", fx_root);
    assert_int_equal(learner_save(l, p4, err, sizeof err), 0);
    st_file f;
    assert_int_equal(st_read_file(&f, p4, err, sizeof err), 0);
    int n4 = (int)(st_find(&f, "learner.meta")->nbytes / sizeof(int64_t));
    st_free(&f);
    /* Version 3 lacked the last two entries (the resize plan); version 2 also the one
     * before them (the cycle end's accuracy); version 1 also the five before that (the
     * early stops' state). */
    rewrite_meta(p4, p3, n4 - 2, 3);
    rewrite_meta(p4, p2, n4 - 3, 2);
    rewrite_meta(p4, p1, n4 - 8, 1);
    rewrite_meta(p4, pbad, n4 - 4, 2);
    learner *m = fx_make(c, ds);
    assert_int_equal(learner_load(m, p4, err, sizeof err), 0);
    assert_int_equal(learner_load(m, p3, err, sizeof err), 0);
    assert_int_equal(learner_load(m, p2, err, sizeof err), 0);
    assert_int_equal(learner_load(m, p1, err, sizeof err), 0);
    assert_memory_equal(learner_net(m)->params, learner_net(l)->params,
                        learner_net(l)->n_params * sizeof(float));
    assert_int_equal(learner_load(m, pbad, err, sizeof err), -EINVAL);
    assert_non_null(strstr(err, "learner.meta"));
    learner_destroy(m);
    learner_destroy(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        fx_test_small(resume_equals_uninterrupted),
        fx_test_big(adamw_learns_and_resumes),
        fx_test_small(fit_resizes_inside_one_schedule),
        fx_test_small(early_stop_survives_resume),
        fx_test_small(older_checkpoints_load),
    };
    return cmocka_run_group_tests(tests, fx_group_setup, fx_group_teardown);
}
