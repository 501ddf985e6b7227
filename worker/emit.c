/* emit.c: the worker's event lines (emit.h). */
#include "emit.h"

#include <mpi.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ops/precision.h"

void emit(emitter *e, const char *ev, json_t *o)
{
    if (!o)
        return;
    if (e->out) {
        json_object_set_new(o, "ev", json_string(ev));
        char *s = json_dumps(o, JSON_COMPACT);
        if (s) {
            fprintf(e->out, "%s\n", s);
            fflush(e->out);
            free(s);
        }
    }
    json_decref(o);
}

/* A float that JSON can hold (NaN and infinities become null). */
static json_t *num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

static int on_batch(void *ctx, const ev_batch *b)
{
    emitter *e = ctx;
    json_t *lrs = json_array();
    for (int g = 0; g < b->n_groups && g < NET_MAX_GROUPS; g++)
        json_array_append_new(lrs, json_real(b->lrs[g]));
    /* Ranks step together, each on its shard: the world's rate is the sum. */
    emit(e, "batch",
         json_pack("{sI si si si so so so so so}", "step", (json_int_t)b->step, "epoch",
                   b->epoch, "batch", b->batch, "n_batches", b->n_batches, "loss",
                   num(b->loss), "smooth_loss", num(b->smooth_loss), "lrs", lrs,
                   "img_per_s", num(b->img_per_s * dist_size(e->d)), "momentum",
                   num(b->momentum)));
    return 0;
}

static int on_sweep_point(void *ctx, const ev_sweep_point *p)
{
    emit(ctx, "sweep_point",
         json_pack("{si so so so so so si}", "iter", p->iter, "lr", num(p->lr), "loss",
                   num(p->loss), "smooth_loss", num(p->smooth_loss), "start_lr",
                   num(p->start_lr), "end_lr", num(p->end_lr), "num_it", p->num_it));
    return 0;
}

static json_t *suggestion(const ev_suggestion *s)
{
    return json_pack("{so ss}", "lr", num(s->lr), "reason", s->reason ? s->reason : "");
}

static void on_sweep_end(void *ctx, const ev_sweep_end *s)
{
    emit(ctx, "sweep_end",
         json_pack("{si sb so so so so}", "n_points", s->n_points, "stopped_early",
                   s->stopped_early, "min_div10", suggestion(&s->min_div10), "steep",
                   suggestion(&s->steep), "valley", suggestion(&s->valley), "slide",
                   suggestion(&s->slide)));
}

static int on_epoch(void *ctx, const ev_epoch *p)
{
    emitter *e = ctx;
    emit_world(e, p->img_per_s);
    emit(e, "epoch",
         json_pack("{si sI si so so so so so so}", "epoch", p->epoch, "step",
                   (json_int_t)p->step, "cycle", p->cycle, "train_loss", num(p->train_loss),
                   "valid_loss", num(p->valid_loss), "accuracy", num(p->accuracy), "f2",
                   num(p->f2), "seconds", num(p->seconds), "img_per_s",
                   num(p->img_per_s * dist_size(e->d))));
    return 0;
}

static int on_cycle_end(void *ctx, int cycle, int epoch)
{
    emit(ctx, "cycle_end", json_pack("{si si}", "cycle", cycle, "epoch", epoch));
    return 0;
}

static void on_note(void *ctx, const char *what, const char *why)
{
    emit(ctx, "note", json_pack("{ss ss}", "what", what, "why", why));
}

static void on_progress(void *ctx, double fraction, double eta_s)
{
    emit(ctx, "progress", json_pack("{so so}", "fraction", num(fraction), "eta_s", num(eta_s)));
}

ev_hooks emit_hooks(emitter *e)
{
    return (ev_hooks){.ctx = e, .on_batch = on_batch, .on_sweep_point = on_sweep_point,
                      .on_epoch = on_epoch, .on_cycle_end = on_cycle_end,
                      .on_note = on_note, .on_progress = on_progress,
                      .on_sweep_end = on_sweep_end};
}

/* Each rank's figures as the world event's ranks gather them. */
enum { W_IMG_S, W_SUM_S, W_WAIT_S, W_STEPS, W_PID, W_PRECISION, W_KERNELS, W_N };

/* One rank's entry of the world event from its gathered figures and host. */
static json_t *rank_json(int r, const double *a, const char *host)
{
    double steps = a[W_STEPS];
    json_t *o = json_pack("{si ss si so so so}", "rank", r, "host", host, "pid", (int)a[W_PID],
                          "img_per_s", num(a[W_IMG_S]), "allreduce_s_per_step",
                          num(steps > 0 ? a[W_SUM_S] / steps : 0), "wait_s_per_step",
                          num(steps > 0 ? a[W_WAIT_S] / steps : 0));
    if (o && a[W_PRECISION] >= 0) {
        precision p = (precision)a[W_PRECISION];
        json_object_set_new(o, "precision", json_string(precision_name(p)));
        if (p == PRECISION_BF16)
            json_object_set_new(o, "bf16_kernels",
                                json_string(bf16_kernels_name((bf16_kernels)a[W_KERNELS])));
    }
    return o;
}

void emit_world(emitter *e, double img_s)
{
    int size = dist_size(e->d), rank = dist_rank(e->d);
    char host[MPI_MAX_PROCESSOR_NAME] = "";
    int len = 0;
    MPI_Get_processor_name(host, &len);
    const dist_stats *st = e->d ? &e->d->stats : NULL;
    double mine[W_N] = {
        [W_IMG_S] = img_s, [W_SUM_S] = st ? st->sum_s : 0, [W_WAIT_S] = st ? st->wait_s : 0,
        [W_STEPS] = st ? (double)st->steps : 0, [W_PID] = (double)getpid(),
        [W_PRECISION] = e->n ? (double)e->n->precision : -1,
        [W_KERNELS] = e->n ? (double)e->n->bf16_kernels : -1};
    double *all = rank == 0 ? calloc((size_t)size * W_N, sizeof(double)) : NULL;
    char *hosts = rank == 0 ? calloc((size_t)size, MPI_MAX_PROCESSOR_NAME) : NULL;
    MPI_Gather(mine, W_N, MPI_DOUBLE, all, W_N, MPI_DOUBLE, 0, MPI_COMM_WORLD);
    MPI_Gather(host, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, hosts, MPI_MAX_PROCESSOR_NAME,
               MPI_CHAR, 0, MPI_COMM_WORLD);
    if (rank == 0 && all && hosts) {
        json_t *ranks = json_array();
        for (int r = 0; r < size; r++)
            json_array_append_new(ranks, rank_json(r, all + (size_t)r * W_N,
                                                   hosts + (size_t)r * MPI_MAX_PROCESSOR_NAME));
        emit(e, "world",
             json_pack("{si so sI sI}", "size", size, "ranks", ranks, "allreduce_bytes",
                       (json_int_t)(st ? st->bytes : 0), "steps",
                       (json_int_t)(st ? st->steps : 0)));
    }
    free(all);
    free(hosts);
}
