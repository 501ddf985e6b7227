/* run_config.c: a run's config as a learner_config (run_config.h). */
#include "run_config.h"

#include <string.h>

#include "models/models.h"
#include "ops/precision.h"

static double num_of(json_t *o, const char *k, double dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_number(v) ? json_number_value(v) : dflt;
}

static int bool_of(json_t *o, const char *k, int dflt)
{
    json_t *v = json_object_get(o, k);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int is(json_t *o, const char *k, const char *want)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s && strcmp(s, want) == 0;
}

static tfm_set tfms_of(json_t *cfg)
{
    if (is(cfg, "tfms", "side_on"))
        return TFMS_SIDE_ON;
    if (is(cfg, "tfms", "top_down"))
        return TFMS_TOP_DOWN;
    if (is(cfg, "tfms", "flip"))
        return TFMS_FLIP;
    return TFMS_NONE;
}

static void model_of(json_t *cfg, int multi_label, model_spec *m)
{
    model_spec_defaults(m);
    m->multi_label = bool_of(cfg, "multi_label", multi_label);
    m->seed = (uint64_t)num_of(cfg, "seed", 0);
    m->label_smoothing = (float)num_of(cfg, "label_smoothing", 0.0);
    m->width = (int)num_of(cfg, "width", 0); /* 0: the arch's own */
    if (is(cfg, "head", "plain"))
        m->head = HEAD_PLAIN;
    json_t *ps = json_object_get(cfg, "ps");
    if (json_is_number(ps)) {
        m->ps[0] = m->ps[1] = (float)json_number_value(ps);
    } else if (json_is_array(ps) && json_array_size(ps) == 2) {
        m->ps[0] = (float)json_number_value(json_array_get(ps, 0));
        m->ps[1] = (float)json_number_value(json_array_get(ps, 1));
    }
    json_t *xf = json_object_get(cfg, "xtra_fc");
    if (json_is_array(xf)) {
        m->n_xtra_fc = 0;
        for (size_t i = 0; i < json_array_size(xf) && i < MODEL_MAX_XTRA_FC; i++)
            m->xtra_fc[m->n_xtra_fc++] = (int)json_integer_value(json_array_get(xf, i));
    }
}

void runcfg_learner(json_t *cfg, int multi_label, learner_config *lc)
{
    *lc = (learner_config){0};
    model_of(cfg, multi_label, &lc->model);
    lc->sz = (int)num_of(cfg, "sz", 224);
    lc->bs = (int)num_of(cfg, "bs", 64);
    lc->tfms = tfms_of(cfg);
    lc->max_zoom = (float)num_of(cfg, "max_zoom", 1.1);
    lc->pad = (int)num_of(cfg, "pad", 0); /* runs before it: none */
    lc->precompute = bool_of(cfg, "precompute", 0);
    lc->seed = lc->model.seed;
    lc->opt = is(cfg, "opt", "adamw") ? OPTIM_ADAM : OPTIM_SGD; /* runs before it: sgd */
    lc->precision = is(cfg, "precision", "bf16") ? PRECISION_BF16 : PRECISION_FP32;
    if (bf16_kernels_parse(json_string_value(json_object_get(cfg, "bf16_kernels")),
                           &lc->bf16_kernels))
        lc->bf16_kernels = BF16_KERNELS_AUTO;
}
