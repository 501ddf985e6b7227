/* fixture.h: what the learner tests share. A test program writes two small datasets of
 * generated 16x16 gray shapes (four classes, IDX files) once (fx_group_setup), a test
 * opens one of them with the tests' learner configuration (fx_test_small, fx_test_big),
 * and fx_rec records the learner's events, checking every batch's LRs and momentum
 * against a schedule's plan. Helpers fail the running test through cmocka's asserts. */
#ifndef SGDRD_TEST_LEARNER_FIXTURE_H
#define SGDRD_TEST_LEARNER_FIXTURE_H

#include <stdint.h>

#include "learner.h"

#define SZ 16
#define N_CLASSES 4
#define N_TRAIN 256
#define N_VALID 48
#define BS 8
#define N_SMALL 64

/* The program's temporary folder and the two datasets in it: fx_big (N_TRAIN training
 * and N_VALID validation images) for the accuracy tests, fx_small (N_SMALL and a quarter
 * of that) for the tests that only compare runs. */
extern char fx_root[256];
extern char fx_big[300], fx_small[300];

/* cmocka group setup and teardown: write the datasets under a fresh fx_root; remove it. */
int fx_group_setup(void **state);
int fx_group_teardown(void **state);

/* One of the four shapes (cls) at a random place with random brightness over noise, into
 * px (SZ * SZ bytes), drawn from the generator state *r. */
void fx_draw(uint8_t *px, int cls, uint64_t *r);

/* The IDX dataset in dir (the caller destroys it); the tests' learner configuration
 * (resnet_small with one extra layer of 32, SZ pixels, batches of BS, no transforms); a
 * learner on them (the caller destroys it). */
dataset *fx_open_ds(const char *dir);
void fx_base_config(learner_config *c);
learner *fx_make(const learner_config *c, dataset *ds);

/* A test's case: an open dataset and a configuration the test may change before
 * fx_make. The fixture owns the dataset; the test destroys the learners it makes. */
typedef struct fx_case {
    dataset *ds;
    learner_config c;
} fx_case;
int fx_small_setup(void **state);
int fx_big_setup(void **state);
int fx_case_teardown(void **state);
#define fx_test_small(f) cmocka_unit_test_setup_teardown(f, fx_small_setup, fx_case_teardown)
#define fx_test_big(f) cmocka_unit_test_setup_teardown(f, fx_big_setup, fx_case_teardown)

/* What a learner's events said. */
typedef struct fx_rec {
    int n_batch, n_epoch, n_cycle_end, n_sweep, n_note;
    int cancel_after_epoch;   /* -1: never */
    int cancel_after_sweep;   /* -1: never */
    int64_t last_step;
    char last_note[32];
    int lr_mismatch, mom_mismatch;
    int step_mismatch;        /* epochs whose step is not their last batch's */
    float mom_min;
    const sched_plan *plan;
    double lr0[4];
    float last_acc, last_valid_loss;
    float min_loss;           /* lowest raw training loss of a batch */
    int epoch_batches[8];     /* batches seen per epoch of the fit */
} fx_rec;

/* Hooks that record into r (zero it first), cancelling nothing until the test sets
 * cancel_after_epoch or cancel_after_sweep. */
ev_hooks fx_hooks_for(fx_rec *r);
/* Makes r check every batch's LRs and momentum against a plan of one cycle of `kind`
 * (cycle_len epochs of bpe batches) at lr0 for every group; p must outlive the fit. */
void fx_expect_schedule(fx_rec *r, sched_plan *p, sched_kind kind, int64_t bpe, int cycle_len,
                        double lr0);
/* A learner on c (with its checkpoint folder) whose fit o is cancelled after `epoch`. */
learner *fx_fit_cut(const learner_config *c, dataset *ds, const fit_opts *o, int epoch);
/* Bit for bit: parameters and BatchNorm buffers. */
void fx_assert_same_weights(learner *a, learner *b);

#endif
