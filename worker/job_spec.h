/* job_spec.h: a data-parallel job as the daemon hands it to every rank of sgdrd-worker: a
 * JSON file naming the dataset, the learner's settings and saved state, the job and where its
 * files go. Every rank reads the same spec. The format, with defaults as the daemon's (the
 * learner part is the run's config, read by runcfg_learner as the daemon reads it):
 *
 *   {"dataset": {"path", "format": "folders"|"csv"|"idx", "valid_pct"?, "csv"?, "seed"?},
 *    "learner": {"arch", "sz"?, "bs"?, "tfms"?, "max_zoom"?, "pad"?, "width"?, "precompute"?,
 *                "ps"?, "xtra_fc"?, "head"?, "multi_label"?, "label_smoothing"?, "seed"?,
 *                "opt"?, "precision"?: "fp32"|"bf16", "bf16_kernels"?: "onednn"|"fp32",
 *                "pretrained"?: path, "loader_threads"?},
 *    "state"?: {"load"?: checkpoint path, "sz"?, "freeze_to"?, "precompute"?},
 *    "checkpoint_dir"?: path,
 *    "job": {"kind": "fit"|"lr_find"|"recipe"|"tta"|"predict_test", "params"?,
 *            "resume"?: bool},
 *    "save"?: {"checkpoint"?: path, "weights"?: path},
 *    "predictions_csv"?: path}
 */
#ifndef SGDRD_WORKER_JOB_SPEC_H
#define SGDRD_WORKER_JOB_SPEC_H

#include <jansson.h>

#include "dist.h"
#include "learner.h"

/* Reads the spec file; NULL with err naming the file and the problem. */
json_t *jspec_read(const char *path, char *err, size_t errlen);

/* Opens the spec's dataset and builds its learner as one rank of world d (borrowed), with
 * the saved state applied. On failure returns a negative code with err saying why and
 * nothing allocated. */
int jspec_learner(json_t *spec, dist *d, dataset **ds, learner **l, char *err, size_t errlen);

/* A hash of a dataset's index (every split's item names and labels, the class names), to
 * check that each host sees the same dataset. */
uint64_t jspec_dataset_hash(const dataset *ds);

/* Small JSON helpers: a number or boolean member, or dflt. */
double jspec_num(json_t *o, const char *k, double dflt);
int jspec_bool(json_t *o, const char *k, int dflt);

#endif
