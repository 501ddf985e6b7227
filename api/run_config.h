/* run_config.h: a run's config (the JSON object POST /runs stores in the run's row) as the
 * engine's learner_config. The daemon's in-process learners and every rank of a
 * data-parallel world read it through this one mapping, so both train the same model in
 * the same precision with the same bf16 kernels. */
#ifndef SGDRD_API_RUN_CONFIG_H
#define SGDRD_API_RUN_CONFIG_H

#include <jansson.h>

#include "learner.h"

/* Fills *lc from cfg (borrowed; NULL reads as an empty config): the model's settings
 * (width included), sz, bs, tfms, max_zoom, pad, precompute, seed, optimizer, precision and
 * bf16 kernels. A missing key takes the default POST /runs fills in (rows older than a key
 * read as they were trained: fp32, sgd, no pad; bf16 kernels not recorded take the
 * process's choice). multi_label is the dataset's, for a config without the key. The
 * model's arch stays model_spec_defaults' (a run keeps its arch in its row, beside the
 * config); the pretrained body, loader threads, checkpoint folder and world are zero: the
 * caller sets those. */
void runcfg_learner(json_t *cfg, int multi_label, learner_config *lc);

#endif
