/* routes_runs.c: /runs: create, list, read, delete; the recipe's operations queued as jobs
 * (lr-find, fit, freeze, unfreeze, precompute, resize, tta, recipe, predict-test); the
 * synchronous single-image predict; curves (lr-finds, metrics, epochs), snapshots,
 * weights and the event stream. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api_backend.h"
#include "job_params.h"
#include "learner.h"
#include "learner_memory.h"
#include "models/models.h"
#include "routes.h"
#include "sse.h"
#include "store.h"

#define MAX_SEED 9007199254740991.0 /* 2^53 - 1: exact in every JSON reader */

static const char *const arch_names[] = {"resnet18", "resnet34", "resnet_small",
                                         "resnet_small_silu", NULL};
static const char *const tfms_names[] = {"side_on", "top_down", "none", "flip", NULL};
/* fastai: concat pooling, BatchNorm, dropout and xtra_fc layers (fast.ai's custom head for
 * a pretrained body); plain: the architecture's own average pool and linear layer. */
static const char *const head_names[] = {"fastai", "plain", NULL};
/* sgd: momentum 0.9 with L2 weight decay (fast.ai 0.7); adamw: Adam with decoupled weight
 * decay, betas 0.9 and 0.99 (learner_config.opt). */
static const char *const opt_names[] = {"sgd", "adamw", NULL};
/* "auto": bf16 where this CPU runs it natively, else fp32; the run's config keeps which. */
static const char *const precision_names[] = {"fp32", "bf16", "auto", NULL};

/* Answers 404 unless run r->ids[0] exists. */
static int run_exists(api_req *r)
{
    json_t *run = NULL;
    char what[48];
    int rc = store_run_get(r->srv->store, r->ids[0], &run);
    json_decref(run);
    if (rc) {
        snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
        reply_store_error(r, rc, what);
    }
    return rc;
}

/* ---- POST /runs ------------------------------------------------------------------------ */

typedef struct run_body {
    spec_ref dataset;
    int arch;
    int64_t pretrained;
    int64_t sz, bs;
    int tfms;
    double max_zoom;
    int64_t pad;
    int64_t width;   /* resnet_small(_silu) only; 0 until run_fit_dataset fills it */
    int precompute;
    spec_numbers ps, xtra_fc;
    int head, opt;
    int multi_label, has_multi_label, has_sz;
    double label_smoothing;
    int64_t seed;
    int precision;  /* index into precision_names */
    precision prec; /* what it resolves to on this CPU (run_fit_dataset) */
    int64_t workers; /* the default of its jobs that take workers */
    int has_workers;
} run_body;

static const spec_field run_spec[] = {
    {.name = "dataset", .type = SPEC_REF, .required = 1, .offset = offsetof(run_body, dataset)},
    {.name = "arch", .type = SPEC_ENUM, .required = 1, .values = arch_names,
     .offset = offsetof(run_body, arch)},
    {.name = "pretrained", .type = SPEC_INT, .min = 1, .max = MAX_SEED,
     .offset = offsetof(run_body, pretrained)},
    {.name = "sz", .type = SPEC_INT, .min = 8, .max = 1024, .offset = offsetof(run_body, sz),
     .present = SPEC_PRESENT(run_body, has_sz)},
    {.name = "bs", .type = SPEC_INT, .min = 1, .max = 4096, .offset = offsetof(run_body, bs)},
    {.name = "tfms", .type = SPEC_ENUM, .values = tfms_names,
     .offset = offsetof(run_body, tfms)},
    {.name = "max_zoom", .type = SPEC_NUMBER, .min = 1, .max = 4,
     .offset = offsetof(run_body, max_zoom)},
    {.name = "pad", .type = SPEC_INT, .min = 0, .max = 512, .offset = offsetof(run_body, pad)},
    {.name = "width", .type = SPEC_INT, .min = 8, .max = MODEL_SMALL_WIDTH_MAX,
     .offset = offsetof(run_body, width)},
    {.name = "precompute", .type = SPEC_BOOL, .offset = offsetof(run_body, precompute)},
    {.name = "head", .type = SPEC_ENUM, .values = head_names,
     .offset = offsetof(run_body, head)},
    {.name = "opt", .type = SPEC_ENUM, .values = opt_names, .offset = offsetof(run_body, opt)},
    {.name = "ps", .type = SPEC_NUMBERS, .min = 0, .max = 0.99, .min_n = 1, .max_n = 2,
     .offset = offsetof(run_body, ps)},
    {.name = "xtra_fc", .type = SPEC_NUMBERS, .min = 1, .max = 8192, .min_n = 0,
     .max_n = 4, .integral = 1, .offset = offsetof(run_body, xtra_fc)},
    {.name = "multi_label", .type = SPEC_BOOL, .offset = offsetof(run_body, multi_label),
     .present = SPEC_PRESENT(run_body, has_multi_label)},
    {.name = "label_smoothing", .type = SPEC_NUMBER, .min = 0, .max = 0.99,
     .offset = offsetof(run_body, label_smoothing)},
    {.name = "seed", .type = SPEC_INT, .min = 0, .max = MAX_SEED,
     .offset = offsetof(run_body, seed)},
    {.name = "precision", .type = SPEC_ENUM, .values = precision_names,
     .offset = offsetof(run_body, precision)},
    JOB_WORKERS_FIELD(run_body, workers, has_workers),
    {0},
};

/* The body's dataset (a name or an id) as its row in *ds; answers 404 (or the store's
 * error) and returns nonzero when there is none. */
static int run_dataset(api_req *r, const run_body *b, int64_t *ds_id, json_t **ds)
{
    int rc;
    *ds_id = b->dataset.id;
    if (b->dataset.name) {
        rc = store_dataset_find(r->srv->store, b->dataset.name, ds_id);
        if (rc == -ENOENT) {
            reply_problem(r, 404, PROBLEM_NOT_FOUND, "dataset", "dataset \"%s\" does not exist",
                          b->dataset.name);
            return rc;
        }
        if (rc) {
            reply_store_error(r, rc, "dataset");
            return rc;
        }
    }
    rc = store_dataset_get(r->srv->store, *ds_id, ds);
    if (rc == -ENOENT)
        reply_problem(r, 404, PROBLEM_NOT_FOUND, "dataset", "dataset %lld does not exist",
                      (long long)*ds_id);
    else if (rc)
        reply_store_error(r, rc, "dataset");
    if (rc == 0 && strcmp(json_string_value(json_object_get(*ds, "state")), "ready") != 0) {
        /* Its scan has not ended, or failed: nothing to train on yet. */
        reply_problem(r, 409, PROBLEM_CONFLICT, "dataset", "dataset %lld is %s, not ready",
                      (long long)*ds_id, json_string_value(json_object_get(*ds, "state")));
        return -EBUSY;
    }
    return rc;
}

/* The pretrained model, when the body names one: it must exist and hold weights of the
 * run's architecture, at its default width (POST /models takes bodies of that width
 * only). And what learner_create would refuse when the first job runs,
 * refused now: precompute without a pretrained body. Answers and returns nonzero. */
static int run_pretrained_ok(api_req *r, const run_body *b)
{
    json_t *model = NULL;
    const char *march;
    int rc = 0;
    if (b->precompute && !b->pretrained) {
        reply_problem(r, 400, PROBLEM_INVALID, "precompute",
                      "precompute needs a pretrained body: without one the body trains, and "
                      "there are no fixed activations to cache");
        return -EINVAL;
    }
    if (!b->pretrained)
        return 0;
    if (b->width && b->width != MODEL_SMALL_WIDTH) {
        reply_problem(r, 400, PROBLEM_INVALID, "width",
                      "a pretrained %s body has width %d; width %lld would not load it",
                      arch_names[b->arch], MODEL_SMALL_WIDTH, (long long)b->width);
        return -EINVAL;
    }
    rc = store_model_get(r->srv->store, b->pretrained, &model);
    if (rc == -ENOENT) {
        reply_problem(r, 404, PROBLEM_NOT_FOUND, "pretrained", "model %lld does not exist",
                      (long long)b->pretrained);
        return rc;
    }
    if (rc) {
        reply_store_error(r, rc, "model");
        return rc;
    }
    march = json_string_value(json_object_get(model, "arch"));
    if (!march || strcmp(march, arch_names[b->arch]) != 0) {
        reply_problem(r, 400, PROBLEM_INVALID, "pretrained",
                      "model %lld holds %s weights, not %s", (long long)b->pretrained,
                      march ? march : "unknown", arch_names[b->arch]);
        rc = -EINVAL;
    }
    json_decref(model);
    return rc;
}

/* The run's workers, capped by the daemon's --max-workers as a job's are. Answers 400
 * and returns nonzero above it. */
static int run_workers_ok(api_req *r, const run_body *b)
{
    if (b->workers <= 1 || !r->srv->backend.world)
        return 0;
    json_t *w = r->srv->backend.world(r->srv->backend.ctx);
    json_int_t max = json_integer_value(json_object_get(w, "max_workers"));
    json_decref(w);
    if (b->workers <= max)
        return 0;
    reply_problem(r, 400, PROBLEM_INVALID, "workers",
                  "workers (%lld) is above the daemon's --max-workers (%lld)",
                  (long long)b->workers, (long long)max);
    return -E2BIG;
}

/* Fills the defaults that depend on the architecture and the dataset (sz, multi_label,
 * both dropout values) and checks the body against the dataset. Answers and returns
 * nonzero when the run could not train. */
static int run_fit_dataset(api_req *r, run_body *b, int64_t ds_id, json_t *ds)
{
    json_t *info = json_object_get(ds, "info");
    json_t *ncl = json_object_get(info, "n_classes");
    if (json_is_integer(ncl) && json_integer_value(ncl) < 2 &&
        !json_is_true(json_object_get(info, "multi_label"))) {
        reply_problem(r, 400, PROBLEM_INVALID, "dataset",
                      "dataset %lld has %lld class%s; a classifier needs at least 2",
                      (long long)ds_id, (long long)json_integer_value(ncl),
                      json_integer_value(ncl) == 1 ? "" : "es");
        return -EINVAL;
    }
    int small = model_arch_small(arch_names[b->arch]);
    if (!b->has_sz)
        b->sz = small ? 28 : 224;
    if (b->width && !small) {
        reply_problem(r, 400, PROBLEM_INVALID, "width",
                      "width is resnet_small's and resnet_small_silu's; %s has "
                      "torchvision's fixed widths",
                      arch_names[b->arch]);
        return -EINVAL;
    }
    if (small && !b->width)
        b->width = MODEL_SMALL_WIDTH;
    if (!b->has_multi_label)
        b->multi_label = json_is_true(json_object_get(info, "multi_label"));
    if (b->pad > b->sz / 2) {
        reply_problem(r, 400, PROBLEM_INVALID, "pad",
                      "pad (%lld) is more than half of sz (%lld): at most %lld",
                      (long long)b->pad, (long long)b->sz, (long long)(b->sz / 2));
        return -EINVAL;
    }
    if (b->label_smoothing > 0 && b->multi_label) {
        reply_problem(r, 400, PROBLEM_INVALID, "label_smoothing",
                      "label_smoothing is for single-label data; this run is multi-label");
        return -EINVAL;
    }
    if (precision_parse(precision_names[b->precision], &b->prec) == -ENOTSUP) {
        reply_problem(r, 400, PROBLEM_INVALID, "precision",
                      "precision bf16 needs a CPU with AVX512_BF16; oneDNN runs %s here "
                      "(use fp32, or auto to take bf16 only where it is native)",
                      precision_onednn_isa());
        return -ENOTSUP;
    }
    if (b->ps.n == 1) {
        b->ps.v[1] = b->ps.v[0];
        b->ps.n = 2;
    }
    return 0;
}

/* An integer of the dataset row's info, at path a.b ("counts.train"); def when absent. */
static int info_int(json_t *info, const char *a, const char *b, int def)
{
    json_t *v = json_object_get(info, a);
    if (b)
        v = json_object_get(v, b);
    return json_is_integer(v) ? (int)json_integer_value(v) : def;
}

/* Refuses a run whose learner would not fit in the memory there is now, before anything
 * of it is allocated (learner_memory.h): 422 naming bs (or sz) with what it needs, what
 * is available and what fits. Answers and returns nonzero. */
static int run_memory_ok(api_req *r, const run_body *b, json_t *ds)
{
    json_t *info = json_object_get(ds, "info");
    json_t *median = json_object_get(json_object_get(info, "image_size"), "median");
    const char *source = "MemAvailable", *field = NULL;
    char err[1024];
    lmem_run m;
    double avail;
    int rc;

    if (!r->srv->backend.memory_available)
        return 0;
    avail = r->srv->backend.memory_available(r->srv->backend.ctx, &source);
    memset(&m, 0, sizeof m);
    model_spec_defaults(&m.model);
    m.model.arch = arch_names[b->arch];
    m.model.c_in = info_int(info, "channels", NULL, 3) == 1 ? 1 : 3;
    m.model.n_classes = info_int(info, "n_classes", NULL, 2);
    if (m.model.n_classes < 2)
        m.model.n_classes = 2;
    m.model.head = b->head == 1 ? HEAD_PLAIN : HEAD_FASTAI;
    m.model.width = (int)b->width;
    m.model.multi_label = b->multi_label;
    m.model.ps[0] = (float)b->ps.v[0];
    m.model.ps[1] = (float)b->ps.v[1];
    m.model.n_xtra_fc = b->xtra_fc.n;
    for (int i = 0; i < b->xtra_fc.n && i < MODEL_MAX_XTRA_FC; i++)
        m.model.xtra_fc[i] = (int)b->xtra_fc.v[i];
    m.sz = (int)b->sz;
    m.bs = (int)b->bs;
    m.opt = b->opt == 1 ? OPTIM_ADAM : OPTIM_SGD;
    m.pretrained = b->pretrained != 0;
    m.n_train = info_int(info, "counts", "train", 0);
    m.n_valid = info_int(info, "counts", "valid", 0);
    if (json_is_array(median))
        m.image_bytes = (int64_t)json_integer_value(json_array_get(median, 0)) *
                        json_integer_value(json_array_get(median, 1)) * m.model.c_in;
    rc = lmem_admit(&m, avail, source, &field, err, sizeof err);
    /* A model that cannot be built is the first job's error to report, as before. */
    if (rc == -EINVAL)
        return 0;
    if (rc == -ENOMEM && field)
        reply_problem(r, 422, PROBLEM_INVALID, field, "%s", err);
    else if (rc)
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "%s", err);
    return rc;
}

/* The run's config with every default filled in, so that it says exactly what the run
 * trains with. A new object, NULL when out of memory. */
static json_t *run_config_json(const run_body *b, int64_t ds_id)
{
    json_t *ps = json_pack("[f, f]", b->ps.v[0], b->ps.v[1]);
    json_t *xtra = json_array();
    json_t *config = NULL;
    for (int i = 0; xtra && i < b->xtra_fc.n; i++)
        json_array_append_new(xtra, json_integer((json_int_t)b->xtra_fc.v[i]));
    /* The bf16 kernels are recorded so that the run keeps them wherever it resumes. */
    const char *kernels =
        b->prec == PRECISION_BF16 ? bf16_kernels_name(bf16_kernels_choice()) : NULL;
    if (ps && xtra)
        config = json_pack("{s:I, s:s, s:I, s:I, s:s, s:f, s:b, s:O, s:O, s:b, s:I}",
                           "dataset", (json_int_t)ds_id, "arch", arch_names[b->arch], "sz",
                           (json_int_t)b->sz, "bs", (json_int_t)b->bs, "tfms",
                           tfms_names[b->tfms], "max_zoom", b->max_zoom, "precompute",
                           b->precompute, "ps", ps, "xtra_fc", xtra, "multi_label",
                           b->multi_label, "seed", (json_int_t)b->seed);
    if (config && ((b->pretrained && json_object_set_new(config, "pretrained",
                                                         json_integer(b->pretrained))) ||
                   json_object_set_new(config, "head", json_string(head_names[b->head])) ||
                   json_object_set_new(config, "opt", json_string(opt_names[b->opt])) ||
                   json_object_set_new(config, "label_smoothing",
                                       json_real(b->label_smoothing)) ||
                   json_object_set_new(config, "pad", json_integer(b->pad)) ||
                   (b->width && json_object_set_new(config, "width", json_integer(b->width))) ||
                   json_object_set_new(config, "precision",
                                       json_string(precision_name(b->prec))) ||
                   json_object_set_new(config, "workers", json_integer(b->workers)) ||
                   (kernels &&
                    json_object_set_new(config, "bf16_kernels", json_string(kernels))))) {
        json_decref(config);
        config = NULL;
    }
    json_decref(ps);
    json_decref(xtra);
    return config;
}

void route_run_create(api_req *r)
{
    run_body b = {.bs = 64, .tfms = 0, .max_zoom = 1.1, .ps = {.n = 2, .v = {0.25, 0.5}},
                  .xtra_fc = {.n = 1, .v = {512}}, .seed = 42, .workers = 1};
    json_t *ds = NULL, *config = NULL, *run = NULL;
    int64_t ds_id, run_id;
    char loc[96];
    int rc;

    if (req_need_backend(r) || req_parse(r, run_spec, &b))
        return;
    if (run_workers_ok(r, &b) || run_dataset(r, &b, &ds_id, &ds) ||
        run_pretrained_ok(r, &b) ||
        run_fit_dataset(r, &b, ds_id, ds) || run_memory_ok(r, &b, ds))
        goto out;
    config = run_config_json(&b, ds_id);
    if (!config) {
        reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "out of memory");
        goto out;
    }
    rc = store_run_create(r->srv->store, ds_id, b.pretrained, arch_names[b.arch], config,
                          &run_id);
    if (rc == 0)
        rc = store_run_get(r->srv->store, run_id, &run);
    if (rc) {
        reply_store_error(r, rc, "run");
        goto out;
    }
    snprintf(loc, sizeof loc, API_PREFIX "/runs/%lld", (long long)run_id);
    reply_created(r, 201, loc, run);
    run = NULL;
out:
    json_decref(run);
    json_decref(config);
    json_decref(ds);
}

void route_run_list(api_req *r)
{
    reply_store_page(r, store_run_list, "runs");
}

void route_run_get(api_req *r)
{
    reply_store_row(r, store_run_get, "run");
}

void route_run_delete(api_req *r)
{
    char what[48];
    int rc;
    if (req_need_backend(r))
        return;
    rc = r->srv->backend.delete_run(r->srv->backend.ctx, r->ids[0]);
    if (rc == -EBUSY) {
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL,
                      "run %lld has a queued or running job; cancel it first",
                      (long long)r->ids[0]);
        return;
    }
    if (rc) {
        snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
        reply_store_error(r, rc, what);
        return;
    }
    sse_hub_wake(r->srv->hub);
    reply_response(r, 204, MHD_create_response_from_buffer(0, (void *)"",
                                                            MHD_RESPMEM_PERSISTENT));
}

/* ---- operations queued as jobs --------------------------------------------------------- */

/* The run's default workers (its config's), or 0 when it has none or is not there (submit
 * then answers 404). */
static int64_t run_default_workers(api_req *r)
{
    json_t *run = NULL;
    if (store_run_get(r->srv->store, r->ids[0], &run))
        return 0;
    json_t *w = json_object_get(json_object_get(run, "config"), "workers");
    int64_t n = json_is_integer(w) ? (int64_t)json_integer_value(w) : 0;
    json_decref(run);
    return n;
}

/* Parses the body as kind's parameters into p, workers defaulting to the run's; answers
 * 400 naming the field (or 503 with no backend) and returns nonzero on failure. */
static int parse_job(api_req *r, job_kind kind, job_params *p)
{
    char field[128], detail[512];
    if (req_need_backend(r))
        return -ENODEV;
    if (job_params_parse(kind, r->json, p, field, sizeof field, detail, sizeof detail) == 0) {
        job_params_run_workers(p, run_default_workers(r));
        return 0;
    }
    reply_problem(r, 400, PROBLEM_INVALID, field[0] ? field : NULL, "%s", detail);
    return -EINVAL;
}

/* Queues p on the run and answers 202 with the job's row. */
static void submit(api_req *r, const job_params *p)
{
    int64_t job_id;
    json_t *job = NULL;
    char loc[96], what[48];
    int rc;

    snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
    rc = r->srv->backend.submit(r->srv->backend.ctx, r->ids[0], p, &job_id);
    if (rc) {
        reply_store_error(r, rc, what);
        return;
    }
    rc = store_job_get(r->srv->store, job_id, &job);
    if (rc) {
        reply_store_error(r, rc, "job");
        return;
    }
    snprintf(loc, sizeof loc, API_PREFIX "/jobs/%lld", (long long)job_id);
    reply_created(r, 202, loc, job);
}

static void submit_body(api_req *r, job_kind kind)
{
    job_params p;
    if (parse_job(r, kind, &p) == 0)
        submit(r, &p);
}

void route_run_lr_find(api_req *r)
{
    submit_body(r, JOB_LR_FIND);
}

void route_run_fit(api_req *r)
{
    submit_body(r, JOB_FIT);
}

void route_run_freeze(api_req *r)
{
    submit_body(r, JOB_FREEZE);
}

void route_run_unfreeze(api_req *r)
{
    submit_body(r, JOB_UNFREEZE);
}

/* Answers 409 when the body is not frozen, which precompute needs. The run's saved state
 * is the learner's only while no job of the run is queued or running (a queued freeze or
 * unfreeze would change it, a recipe in ways known only when it runs); then the job judges
 * for itself. A run no job has finished yet has the state learner_create gives it: the
 * body frozen only when pretrained. */
static int precompute_conflict(api_req *r)
{
    json_t *run = NULL, *st;
    char what[48];
    int rc = store_run_get(r->srv->store, r->ids[0], &run);
    if (rc) {
        snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
        reply_store_error(r, rc, what);
        return rc;
    }
    st = json_object_get(run, "state");
    if (json_is_null(json_object_get(run, "current_job"))) {
        json_t *ft = json_object_get(st, "freeze_to"), *ng = json_object_get(st, "n_groups");
        int head = (json_is_integer(ng) ? (int)json_integer_value(ng) : MODEL_N_GROUPS) - 1;
        int frozen = json_is_integer(ft) ? json_integer_value(ft) == head
                                         : json_is_integer(json_object_get(run, "model"));
        if (!frozen) {
            reply_problem(r, 409, PROBLEM_CONFLICT, "on",
                          "precompute needs the body frozen (freeze_to %d); run %lld has "
                          "freeze_to %lld: freeze it first", head, (long long)r->ids[0],
                          json_is_integer(ft) ? (long long)json_integer_value(ft) : 0ll);
            rc = -EBUSY;
        }
    }
    json_decref(run);
    return rc;
}

void route_run_precompute(api_req *r)
{
    job_params p;
    if (parse_job(r, JOB_PRECOMPUTE, &p))
        return;
    if (p.precompute_on && precompute_conflict(r))
        return;
    submit(r, &p);
}

void route_run_resize(api_req *r)
{
    submit_body(r, JOB_RESIZE);
}

void route_run_tta(api_req *r)
{
    submit_body(r, JOB_TTA);
}

void route_run_recipe(api_req *r)
{
    submit_body(r, JOB_RECIPE);
}

void route_run_predict_test(api_req *r)
{
    submit_body(r, JOB_PREDICT_TEST);
}

/* ---- POST /runs/{id}/predict ----------------------------------------------------------- */

void route_run_predict(api_req *r)
{
    int64_t tta;
    json_t *out = NULL;
    char err[256] = "", what[48];
    int rc;

    if (req_need_backend(r) || req_query_int(r, "tta", 0, 1, 0, &tta))
        return;
    if (r->len == 0) {
        reply_problem(r, 400, PROBLEM_INVALID, NULL, "the body must hold a PNG or JPEG image");
        return;
    }
    rc = r->srv->backend.predict_image(r->srv->backend.ctx, r->ids[0], r->buf, r->len,
                                       (int)tta, &out, err, sizeof err);
    if (rc == -EINVAL) {
        reply_problem(r, 400, PROBLEM_INVALID, NULL, "the image cannot be used: %s", err);
        return;
    }
    if (rc == -EAGAIN) {
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL,
                      "run %lld has no trained weights yet; run a job first",
                      (long long)r->ids[0]);
        return;
    }
    if (rc == -ESTALE) {
        reply_problem(r, 409, PROBLEM_CONFLICT, NULL, "run %lld: %s", (long long)r->ids[0],
                      err);
        return;
    }
    if (rc) {
        snprintf(what, sizeof what, "run %lld", (long long)r->ids[0]);
        if (rc == -ENOENT || !err[0])
            reply_store_error(r, rc, what);
        else
            reply_problem(r, 500, PROBLEM_INTERNAL, NULL, "predict failed: %s", err);
        return;
    }
    reply_json(r, 200, out);
}

/* ---- curves and files -------------------------------------------------------------------- */

void route_run_lr_finds(api_req *r)
{
    int limit;
    const char *token;
    store_page pg;
    json_t *out = NULL;
    int rc;
    if (req_need_backend(r) || req_page(r, &limit, &token) || run_exists(r))
        return;
    pg.limit = limit;
    pg.page_token = token;
    rc = store_lr_find_list(r->srv->store, r->ids[0], &pg, &out);
    if (rc == -EINVAL) {
        reply_problem(r, 400, PROBLEM_INVALID, "page_token", "page_token is not valid");
        return;
    }
    if (rc) {
        reply_store_error(r, rc, "lr-finds");
        return;
    }
    reply_json(r, 200, out);
}

void route_run_metrics(api_req *r)
{
    int64_t after, before, limit, max_points;
    const char *key = req_query(r, "key");
    json_t *out = NULL;
    int rc;
    if (req_need_backend(r) ||
        req_query_int(r, "after_step", -1, INT64_MAX / 2, -1, &after) ||
        req_query_int(r, "before_step", 0, INT64_MAX / 2, -1, &before) ||
        req_query_int(r, "limit", 1, STORE_METRICS_MAX, 1000, &limit) ||
        req_query_int(r, "max_points", 2, STORE_METRICS_MAX, 0, &max_points))
        return;
    if (key && (!key[0] || strlen(key) > 64)) {
        reply_problem(r, 400, PROBLEM_INVALID, "key", "key must be 1 to 64 characters");
        return;
    }
    if (max_points && req_query(r, "limit")) {
        reply_problem(r, 400, PROBLEM_INVALID, "max_points",
                      "max_points answers the whole window; it does not take limit");
        return;
    }
    /* Pages are cached per store generation: while a fit runs, every client polling
     * the same page between two commits gets one serialisation. A hit also proves the
     * run exists (deleting it is a commit). */
    char ckey[192];
    uint64_t gen = store_generation(r->srv->store);
    snprintf(ckey, sizeof ckey, "metrics %lld %lld %lld %lld %lld %s", (long long)r->ids[0],
             (long long)after, (long long)before, (long long)limit, (long long)max_points,
             key ? key : "");
    if (reply_cached(r, ckey, gen) || run_exists(r))
        return;
    rc = max_points ? store_metrics_downsample(r->srv->store, r->ids[0], key, after, before,
                                               (int)max_points, &out)
                    : store_metrics_range(r->srv->store, r->ids[0], key, after, before,
                                          (int)limit, &out);
    if (rc) {
        reply_store_error(r, rc, "metrics");
        return;
    }
    reply_json_caching(r, ckey, gen, out);
}

void route_run_epochs(api_req *r)
{
    json_t *out = NULL;
    int rc;
    if (req_need_backend(r) || run_exists(r))
        return;
    rc = store_epochs_get(r->srv->store, r->ids[0], &out);
    if (rc) {
        reply_store_error(r, rc, "epochs");
        return;
    }
    reply_json(r, 200, json_pack("{s:o}", "items", out));
}

void route_run_snapshots(api_req *r)
{
    json_t *out = NULL;
    int rc;
    if (req_need_backend(r) || run_exists(r))
        return;
    rc = store_snapshots_get(r->srv->store, r->ids[0], &out);
    if (rc) {
        reply_store_error(r, rc, "snapshots");
        return;
    }
    reply_json(r, 200, json_pack("{s:o}", "items", out));
}

void route_run_weights(api_req *r)
{
    char *path = NULL, disp[96];
    int rc;
    if (req_need_backend(r) || run_exists(r))
        return;
    rc = r->srv->backend.weights_path(r->srv->backend.ctx, r->ids[0], &path);
    if (rc == -ENOENT) {
        reply_problem(r, 404, PROBLEM_NOT_FOUND, NULL, "run %lld has no weights yet",
                      (long long)r->ids[0]);
        return;
    }
    if (rc) {
        reply_store_error(r, rc, "weights");
        return;
    }
    snprintf(disp, sizeof disp, "attachment; filename=\"run-%lld.safetensors\"",
             (long long)r->ids[0]);
    reply_file(r, path, "application/octet-stream", disp);
    free(path);
}

void route_run_events(api_req *r)
{
    const char *h = req_header(r, "Last-Event-ID");
    long long last = 0;
    if (req_need_backend(r))
        return;
    if (h && *h) {
        char *end;
        errno = 0;
        last = strtoll(h, &end, 10);
        if (*end || errno || last < 0) {
            reply_problem(r, 400, PROBLEM_INVALID, "Last-Event-ID",
                          "Last-Event-ID must be a non-negative integer");
            return;
        }
    } else {
        int64_t q;
        if (req_query_int(r, "last_event_id", 0, INT64_MAX / 2, 0, &q))
            return;
        last = q;
    }
    if (run_exists(r))
        return;
    sse_start(r, r->srv->hub, r->ids[0], last);
}
