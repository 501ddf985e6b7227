/* net_plan.c: the liveness plan of a net's batch memory (see net_plan.h): lifetimes of
 * activations, recomputed copies, activation gradients and convolution scratch over one
 * forward and backward, their placement in one slab, and the plan cache. */
#include "net_plan.h"

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define PLAN_SLOTS 3
#define NO_OFF SIZE_MAX
#define PLAN_ALIGN_FLOATS 16 /* every buffer starts on a 64-byte boundary */
/* How deep a rebuild may go through residual adds whose other input is itself rebuilt. */
#define REBUILD_DEPTH 3
#define STEPS_PER_VALUE (REBUILD_DEPTH + 2)

struct net_plan {
    int valid;
    int training, freeze_to, start_node, keep, fuse; /* the key */
    int has_backward;
    int fused;                                 /* net_backward_fused may run */
    unsigned long long used;                   /* last use, for eviction */
    size_t floats;
    size_t *val_off, *grad_off;                /* per value; NO_OFF when absent */
    size_t *ws_fwd, *ws_bwd, *gs_off;          /* per node */
    int *zero_dv;                              /* two per node */
    /* Rebuild steps, in execution order; node i runs steps [first_step[i], +n_steps[i])
     * before its backward, each rebuilding step_value into step_off. */
    int *first_step, *n_steps;                 /* per node */
    int *step_value;
    size_t *step_off;
};

struct net_plans {
    struct net_plan slot[PLAN_SLOTS];
    unsigned long long clock;
    int current;
};

float *net_pages_alloc(size_t floats)
{
    void *p = mmap(NULL, (floats ? floats : 1) * sizeof(float), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void net_pages_free(float *p, size_t floats)
{
    if (p)
        munmap(p, (floats ? floats : 1) * sizeof(float));
}

static void plan_arrays_free(struct net_plan *p)
{
    free(p->val_off);
    free(p->grad_off);
    free(p->ws_fwd);
    free(p->ws_bwd);
    free(p->gs_off);
    free(p->zero_dv);
    free(p->first_step);
    free(p->n_steps);
    free(p->step_value);
    free(p->step_off);
    memset(p, 0, sizeof(*p));
}

void net_plan_free(net *n)
{
    if (!n->plans)
        return;
    for (int s = 0; s < PLAN_SLOTS; s++)
        plan_arrays_free(&n->plans->slot[s]);
    free(n->plans);
    n->plans = NULL;
}

void net_plan_reset(net *n)
{
    if (!n->plans)
        return;
    for (int s = 0; s < PLAN_SLOTS; s++)
        n->plans->slot[s].valid = 0;
    n->plans->current = -1;
}

/* ---- lifetimes and placement ---------------------------------------------------------- */

typedef struct item {
    size_t size, off;
    int t0, t1; /* live over steps [t0, t1] */
} item;

static int bwd_runs(const net *n, int i, int start, int freeze)
{
    return i > start && n->nodes[i].group >= freeze;
}

static int needs_grad_at(const net *n, int j, int start, int freeze)
{
    return j >= 0 && j > start && n->nodes[j].kind != NODE_INPUT &&
           n->nodes[j].group >= freeze;
}

static size_t round_up(size_t f)
{
    return (f + PLAN_ALIGN_FLOATS - 1) / PLAN_ALIGN_FLOATS * PLAN_ALIGN_FLOATS;
}

/* A tensor's gradient starts this many floats into its slot of the scratch: its offset
 * in n->grads modulo 64 bytes. */
static size_t grad_pad(const net *n, int t)
{
    return n->tensors[t].offset % PLAN_ALIGN_FLOATS;
}

size_t net_plan_grad_floats(const net *n, const node *d)
{
    size_t f = 0;
    if (d->p_w >= 0)
        f += round_up(grad_pad(n, d->p_w) + n->tensors[d->p_w].numel);
    if (d->p_b >= 0)
        f += round_up(grad_pad(n, d->p_b) + n->tensors[d->p_b].numel);
    return f;
}

void net_plan_grad_views(const net *n, const node *d, float *s, float **gw, float **gb)
{
    *gw = *gb = NULL;
    if (d->p_w >= 0) {
        *gw = s + grad_pad(n, d->p_w);
        s += round_up(grad_pad(n, d->p_w) + n->tensors[d->p_w].numel);
    }
    if (d->p_b >= 0)
        *gb = s + grad_pad(n, d->p_b);
}

/* Whether every trainable parameter's node runs its backward from start: the update
 * fused into the backward then reaches each of them, as a step after it would. */
static int fusable_start(const net *n, int freeze, int start)
{
    for (int i = 0; i <= start && i < n->n_nodes; i++) {
        const node *d = &n->nodes[i];
        if ((d->p_w >= 0 || d->p_b >= 0) && d->group >= freeze)
            return 0;
    }
    return 1;
}

/* Floats of a rebuild step of value v: the value, then, for a convolution's output, the
 * convolution's scratch. */
static size_t step_floats(const net *n, int v)
{
    const node *c = &n->nodes[n->value_creator[v]];
    size_t f = round_up(n->value_numel[v]);
    return c->kind == NODE_CONV ? f + round_up(conv2d_forward_workspace_floats(&c->conv)) : f;
}

static int find_root(const int *alias, int v)
{
    while (alias[v] != v)
        v = alias[v];
    return v;
}

/* Places items largest first, each into the smallest gap left by the already placed
 * items whose lifetimes meet its own (or on top of them). Returns the floats needed. */
static size_t place(item *it, int n_items, int *order, size_t *lo, size_t *hi)
{
    int n_order = 0;
    for (int a = 0; a < n_items; a++) {
        it[a].off = NO_OFF;
        if (it[a].size == 0)
            continue;
        int k = n_order++;
        while (k > 0 && (it[order[k - 1]].size < it[a].size ||
                         (it[order[k - 1]].size == it[a].size &&
                          it[order[k - 1]].t0 > it[a].t0))) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = a;
    }
    size_t total = 0;
    for (int q = 0; q < n_order; q++) {
        item *x = &it[order[q]];
        int m = 0;
        for (int r = 0; r < q; r++) {
            const item *y = &it[order[r]];
            if (y->t0 > x->t1 || x->t0 > y->t1)
                continue;
            int k = m++;
            while (k > 0 && lo[k - 1] > y->off) {
                lo[k] = lo[k - 1];
                hi[k] = hi[k - 1];
                k--;
            }
            lo[k] = y->off;
            hi[k] = y->off + y->size;
        }
        size_t cursor = 0, best = NO_OFF, best_gap = 0;
        for (int r = 0; r < m; r++) {
            if (lo[r] > cursor) {
                size_t gap = lo[r] - cursor;
                if (gap >= x->size && (best == NO_OFF || gap < best_gap)) {
                    best = cursor;
                    best_gap = gap;
                }
            }
            if (hi[r] > cursor)
                cursor = hi[r];
        }
        x->off = best != NO_OFF ? best : cursor;
        if (x->off + x->size > total)
            total = x->off + x->size;
    }
    return total;
}

static int plan_alloc_arrays(struct net_plan *p, int nv, int nn)
{
    if (p->val_off)
        return 0;
    p->val_off = malloc((size_t)nv * sizeof(size_t));
    p->grad_off = malloc((size_t)nv * sizeof(size_t));
    p->ws_fwd = malloc((size_t)nn * sizeof(size_t));
    p->ws_bwd = malloc((size_t)nn * sizeof(size_t));
    p->gs_off = malloc((size_t)nn * sizeof(size_t));
    p->zero_dv = malloc(2 * (size_t)nn * sizeof(int));
    p->first_step = malloc((size_t)nn * sizeof(int));
    p->n_steps = malloc((size_t)nn * sizeof(int));
    p->step_value = malloc(STEPS_PER_VALUE * (size_t)nv * sizeof(int));
    p->step_off = malloc(STEPS_PER_VALUE * (size_t)nv * sizeof(size_t));
    if (!p->val_off || !p->grad_off || !p->ws_fwd || !p->ws_bwd || !p->gs_off ||
        !p->zero_dv || !p->first_step || !p->n_steps || !p->step_value || !p->step_off) {
        plan_arrays_free(p);
        return -ENOMEM;
    }
    return 0;
}

/* What a rebuild of BatchNorm output v runs after the BatchNorm pass: the in-place nodes
 * of v in forward order. fused: they are nothing, a ReLU, an add, or an add then a ReLU,
 * and run in the BatchNorm pass (batchnorm_apply), which reads each element of the add's
 * other input before it writes that element; add: that add's node (-1 when none). */
typedef struct bn_chain {
    int fused, relu, add;
} bn_chain;

static bn_chain chain_of(const net *n, int v)
{
    int chain[4], len = 0;
    for (int k = n->value_creator[v] + 1; k < n->n_nodes; k++) {
        if (n->nodes[k].value != v)
            continue;
        if (len == 4)
            return (bn_chain){.fused = 0, .relu = 0, .add = -1};
        chain[len++] = k;
    }
    bn_chain ch = {.fused = len == 0, .relu = 0, .add = -1};
    if (len >= 1 && n->nodes[chain[0]].kind == NODE_ADD) {
        ch.relu = len == 2 && n->nodes[chain[1]].kind == NODE_RELU;
        ch.fused = len == 1 || ch.relu;
        ch.add = ch.fused ? chain[0] : -1;
    } else if (len == 1 && n->nodes[chain[0]].kind == NODE_RELU) {
        ch.relu = ch.fused = 1;
    }
    return ch;
}

/* What the rebuild decisions need: value lifetimes and which values are dropped. */
typedef struct rebuild_ctx {
    const net *n;
    int start, freeze;
    const item *val;
    int *dropped;         /* rebuilt for backward: then live over [rec_t0, rec_t1] too */
    int *rec_t0, *rec_t1;
    int *relied;          /* a decision counts on this value being kept */
    int *step_value;      /* steps of the decision under way */
    int *step_t1;
    int n_steps;
} rebuild_ctx;

static int held_at(const rebuild_ctx *c, int u, int t)
{
    if (c->dropped[u])
        return c->rec_t0[u] <= t && t <= c->rec_t1[u];
    return c->val[u].t0 <= t && t <= c->val[u].t1;
}

/* Whether value v, a convolution's output, can be rebuilt at step t: only a convolution of
 * the net's input (the stem, whose input the weight gradient keeps anyway, and which
 * costs little against the net) in float32, whose output no in-place node rewrites. */
static int conv_rebuildable(rebuild_ctx *c, int v, int t, int emit)
{
    const net *n = c->n;
    int cr = n->value_creator[v];
    const node *d = &n->nodes[cr];
    int x = n->nodes[d->in[0]].value;
    /* Rebuilt only where the forward is the fp32 kernels' (fp32, or bf16 on them), whose
     * same call on the same operands gives the same output bit for bit. */
    int fp32_kernels = d->conv.precision == PRECISION_FP32 ||
                       d->conv.bf16_kernels == BF16_KERNELS_FP32;
    if (c->start != 0 || n->nodes[d->in[0]].kind != NODE_INPUT || !fp32_kernels ||
        !held_at(c, x, t))
        return 0;
    for (int i = cr + 1; i < n->n_nodes; i++)
        if (n->nodes[i].value == v)
            return 0;
    if (emit)
        c->relied[x] = 1;
    return 1;
}

/* Whether value v can be rebuilt at step t: a BatchNorm output (whose statistics the
 * forward saved) from its input held at t, then its in-place ReLU and residual adds, the
 * add's other input held at t or rebuilt there too. With emit, appends the steps,
 * innermost first, and marks what they read as relied on. */
static int rebuildable(rebuild_ctx *c, int v, int t, int depth, int emit)
{
    const net *n = c->n;
    int cr = n->value_creator[v];
    if (depth >= 0 && n->nodes[cr].kind == NODE_CONV)
        return conv_rebuildable(c, v, t, emit);
    if (depth < 0 || n->nodes[cr].kind != NODE_BN || !bwd_runs(n, cr, c->start, c->freeze))
        return 0;
    int x = n->nodes[n->nodes[cr].in[0]].value;
    if (!held_at(c, x, t))
        return 0;
    if (emit)
        c->relied[x] = 1;
    for (int i = cr + 1; i < n->n_nodes; i++) {
        const node *d = &n->nodes[i];
        if (d->value != v || d->kind == NODE_RELU)
            continue;
        if (d->kind != NODE_ADD)
            return 0;
        int sc = n->nodes[d->in[1]].value;
        if (held_at(c, sc, t)) {
            if (emit)
                c->relied[sc] = 1;
        } else if (!rebuildable(c, sc, t, depth - 1, emit)) {
            return 0;
        } else if (emit) {
            c->step_value[c->n_steps] = sc;
            c->step_t1[c->n_steps++] = t; /* read by the step after, at t */
        }
    }
    return 1;
}

/* live[t] += sign * size over the item's steps. */
static void live_add(long long *live, const item *x, long long sign)
{
    for (int t = x->t0; x->size && t <= x->t1; t++)
        live[t] += sign * (long long)x->size;
}

static long long live_peak(const long long *live, int n_t)
{
    long long m = 0;
    for (int t = 0; t < n_t; t++)
        if (live[t] > m)
            m = live[t];
    return m;
}

/* Drops, in creation order, each value that can be rebuilt just before its first backward
 * reader (see rebuildable) when that lowers the peak of live floats (rebuilding costs a
 * pass over the value, so only where memory is won); one that an earlier drop relies on
 * stays. live holds every item's lifetime and is kept up to date. Fills the rebuild steps
 * of p (and step_node, rc->step_t1); returns their number. */
static int decide_rebuilds(rebuild_ctx *rc, struct net_plan *p, item *val, const int *fwd_end,
                           const int *bfirst, const int *blast, const int *reader,
                           int *step_node, int max_steps, int last, long long *live,
                           int n_t, int *relied_backup)
{
    const net *n = rc->n;
    const int nv = n->n_values;
    long long peak = live_peak(live, n_t);
    int n_steps = 0;
    for (int v = 0; v < nv; v++) {
        if (blast[v] < 0 || v == last || rc->relied[v] ||
            n_steps + STEPS_PER_VALUE > max_steps)
            continue;
        int t = bfirst[v];
        if (!rebuildable(rc, v, t, REBUILD_DEPTH, 0))
            continue;
        memcpy(relied_backup, rc->relied, (size_t)nv * sizeof(int));
        rc->n_steps = n_steps;
        rebuildable(rc, v, t, REBUILD_DEPTH, 1);
        rc->step_value[rc->n_steps] = v;
        rc->step_t1[rc->n_steps++] = blast[v];
        item kept_tail = {.size = val[v].size, .t0 = fwd_end[v] + 1, .t1 = val[v].t1};
        live_add(live, &kept_tail, -1);
        for (int k = n_steps; k < rc->n_steps; k++) {
            item st = {.size = step_floats(n, rc->step_value[k]), .t0 = t,
                       .t1 = rc->step_t1[k]};
            live_add(live, &st, 1);
        }
        long long now = live_peak(live, n_t);
        if (now >= peak) { /* no gain: undo */
            live_add(live, &kept_tail, 1);
            for (int k = n_steps; k < rc->n_steps; k++) {
                item st = {.size = step_floats(n, rc->step_value[k]), .t0 = t,
                           .t1 = rc->step_t1[k]};
                live_add(live, &st, -1);
            }
            memcpy(rc->relied, relied_backup, (size_t)nv * sizeof(int));
            continue;
        }
        peak = now;
        val[v].t1 = fwd_end[v];
        p->first_step[reader[v]] = n_steps;
        p->n_steps[reader[v]] = rc->n_steps - n_steps;
        for (int k = n_steps; k < rc->n_steps; k++)
            step_node[k] = reader[v];
        n_steps = rc->n_steps;
        rc->dropped[v] = 1;
        rc->rec_t0[v] = t;
        rc->rec_t1[v] = blast[v];
    }
    /* A later drop may have moved the peak away from an earlier one: keep again, latest
     * first, each value whose drop no longer lowers the peak (its steps stay in the arrays
     * but are no longer run). Rebuilds that read it still find it held. */
    for (int v = nv - 1; v >= 0; v--) {
        if (!rc->dropped[v])
            continue;
        int i = reader[v], k0 = p->first_step[i], k1 = k0 + p->n_steps[i];
        item kept_tail = {.size = val[v].size, .t0 = fwd_end[v] + 1, .t1 = blast[v]};
        live_add(live, &kept_tail, 1);
        for (int k = k0; k < k1; k++) {
            item st = {.size = step_floats(n, rc->step_value[k]), .t0 = bfirst[v],
                       .t1 = rc->step_t1[k]};
            live_add(live, &st, -1);
        }
        if (live_peak(live, n_t) > peak) {
            live_add(live, &kept_tail, -1);
            for (int k = k0; k < k1; k++) {
                item st = {.size = step_floats(n, rc->step_value[k]),
                           .t0 = bfirst[v], .t1 = rc->step_t1[k]};
                live_add(live, &st, 1);
            }
            continue;
        }
        val[v].t1 = blast[v];
        rc->dropped[v] = 0;
        p->first_step[i] = -1;
        p->n_steps[i] = 0;
        for (int k = k0; k < k1; k++)
            rc->step_t1[k] = -1; /* dead: no item */
    }
    return n_steps;
}

/* One plan_compute: its key, its items and the scratch arrays of the lifetimes (owned,
 * freed by plan_work_free). Items: values [0, nv), gradients [nv, 2nv), forward scratch
 * [2nv, 2nv+N), backward scratch [2nv+N, 2nv+2N), parameter-gradient scratch
 * [2nv+2N, 2nv+3N), rebuild steps after. */
typedef struct plan_work {
    const net *n;
    int training, freeze, start, keep, backward, fused;
    int nn, nv, inf, max_steps, n_items, last;
    item *it, *val, *grad, *wsf, *wsb, *gsc, *step;
    int *order;
    size_t *lo, *hi;
    int *ints;                      /* the per-value and per-step arrays below, in one block */
    int *bfirst, *blast, *reader, *alias, *gstart, *dropped, *rec_t0, *rec_t1, *fwd_end;
    int *galias;                    /* gradient placed in another's place (itself if not) */
    int *relied;                    /* and its backup after it */
    int *step_node, *step_t1;
    int *step_root;                 /* the step whose buffer a step writes (itself if own) */
    long long *live;
    int n_steps;
} plan_work;

static void plan_work_free(plan_work *w)
{
    free(w->it);
    free(w->order);
    free(w->lo);
    free(w->hi);
    free(w->ints);
    free(w->live);
}

static int plan_work_init(plan_work *w, const net *n, int training, int freeze, int start,
                          int keep, int fuse)
{
    const int nn = n->n_nodes, nv = n->n_values;
    *w = (plan_work){.n = n, .training = training, .freeze = freeze, .start = start,
                     .keep = keep, .backward = training || keep, .nn = nn, .nv = nv,
                     .inf = 2 * nn + 2, .max_steps = STEPS_PER_VALUE * nv,
                     .last = n->nodes[nn - 1].value};
    w->fused = w->backward && fuse && fusable_start(n, freeze, start);
    w->n_items = 2 * nv + 3 * nn + w->max_steps;
    w->it = calloc((size_t)w->n_items, sizeof(item));
    w->order = malloc((size_t)w->n_items * sizeof(int));
    w->lo = malloc((size_t)w->n_items * sizeof(size_t));
    w->hi = malloc((size_t)w->n_items * sizeof(size_t));
    w->ints = malloc((12 * (size_t)nv + 3 * (size_t)w->max_steps) * sizeof(int));
    w->live = calloc((size_t)w->inf + 1, sizeof(long long));
    if (!w->it || !w->order || !w->lo || !w->hi || !w->ints || !w->live) {
        plan_work_free(w);
        return -ENOMEM;
    }
    int *ints = w->ints;
    w->bfirst = ints;
    w->blast = ints + nv;
    w->reader = ints + 2 * nv;
    w->alias = ints + 3 * nv;
    w->gstart = ints + 4 * nv;
    w->dropped = ints + 5 * nv;
    w->rec_t0 = ints + 6 * nv;
    w->rec_t1 = ints + 7 * nv;
    w->fwd_end = ints + 8 * nv;
    w->relied = ints + 9 * nv;
    w->galias = ints + 11 * nv;
    w->step_node = ints + 12 * nv;
    w->step_t1 = w->step_node + w->max_steps;
    w->step_root = w->step_t1 + w->max_steps;
    w->val = w->it;
    w->grad = w->it + nv;
    w->wsf = w->it + 2 * nv;
    w->wsb = w->it + 2 * nv + nn;
    w->gsc = w->it + 2 * nv + 2 * nn;
    w->step = w->it + 2 * nv + 3 * nn;
    return 0;
}

/* Forward lifetimes: from the creator to the last node that reads or writes it. */
static void plan_forward_lifetimes(plan_work *w, struct net_plan *p)
{
    const net *n = w->n;
    item *val = w->val;
    for (int v = 0; v < w->nv; v++) {
        val[v].t0 = w->inf;
        val[v].t1 = -1;
        val[v].size = round_up(n->value_numel[v]);
        w->bfirst[v] = w->inf;
        w->blast[v] = w->reader[v] = w->gstart[v] = -1;
        w->alias[v] = w->galias[v] = v;
        w->dropped[v] = w->relied[v] = 0;
    }
    for (int i = 0; i < w->nn; i++) {
        const node *d = &n->nodes[i];
        int v = d->value;
        if (i < val[v].t0)
            val[v].t0 = i;
        if (i > val[v].t1)
            val[v].t1 = i;
        for (int k = 0; k < 2; k++) {
            int u = d->in[k] >= 0 ? n->nodes[d->in[k]].value : -1;
            if (u >= 0 && i > val[u].t1)
                val[u].t1 = i;
        }
        p->ws_fwd[i] = p->ws_bwd[i] = p->gs_off[i] = NO_OFF;
        p->zero_dv[2 * i] = p->zero_dv[2 * i + 1] = -1;
        p->first_step[i] = -1;
        p->n_steps[i] = 0;
    }
    val[w->last].t1 = w->inf; /* the caller reads the output after the forward */
}

/* Backward readers of activations: conv, BatchNorm, linear and SiLU read their input,
 * ReLU its output (a max pool that does its ReLU's backward reads its own output instead).
 * The backward of node i runs at step 2N - i. An activation is kept until its last
 * backward reader (unless a rebuild drops it later), or throughout with keep. */
static void plan_backward_readers(plan_work *w)
{
    const net *n = w->n;
    const int nn = w->nn;
    for (int i = nn - 1; w->backward && bwd_runs(n, i, w->start, w->freeze); i--) {
        const node *d = &n->nodes[i];
        int u = -1;
        if (d->kind == NODE_CONV || d->kind == NODE_BN || d->kind == NODE_LINEAR ||
            d->kind == NODE_SILU)
            u = n->nodes[d->in[0]].value;
        else if (d->kind == NODE_RELU && !(i + 1 < nn && n->nodes[i + 1].relu_in_pool))
            u = d->value;
        else if (d->kind == NODE_MAXPOOL && d->relu_in_pool)
            u = d->value;
        if (u < 0)
            continue;
        int t = 2 * nn - i;
        if (t > w->blast[u])
            w->blast[u] = t;
        if (t < w->bfirst[u]) {
            w->bfirst[u] = t;
            w->reader[u] = i;
        }
    }
    for (int v = 0; v < w->nv; v++) {
        w->fwd_end[v] = w->val[v].t1;
        if (w->keep) {
            w->val[v].t0 = 0;
            w->val[v].t1 = w->inf;
        } else if (w->blast[v] > w->val[v].t1) {
            w->val[v].t1 = w->blast[v];
        }
    }
}

/* Gradients: live from the first backward that writes one (the loss for the output)
 * to its creator's backward. */
static void plan_grad_lifetimes(plan_work *w, struct net_plan *p)
{
    const net *n = w->n;
    const int nn = w->nn;
    p->has_backward = w->backward;
    for (int v = 0; v < w->nv; v++)
        w->grad[v].size = 0;
    if (!w->backward)
        return;
    w->gstart[w->last] = nn;
    for (int i = nn - 1; bwd_runs(n, i, w->start, w->freeze); i--) {
        const node *d = &n->nodes[i];
        for (int k = 0; k < 2; k++) {
            if (!needs_grad_at(n, d->in[k], w->start, w->freeze))
                continue;
            int u = n->nodes[d->in[k]].value;
            if (w->gstart[u] < 0) {
                w->gstart[u] = 2 * nn - i;
                p->zero_dv[2 * i + k] = u;
            }
        }
    }
    for (int v = 0; v < w->nv; v++) {
        if (w->gstart[v] < 0)
            continue;
        int c = n->value_creator[v];
        w->grad[v].size = round_up(n->value_numel[v]);
        w->grad[v].t0 = w->gstart[v];
        w->grad[v].t1 = bwd_runs(n, c, w->start, w->freeze) ? 2 * nn - c : w->inf;
    }
}

/* A BatchNorm that writes its input's gradient first assigns it in place of its output's
 * gradient, whose life ends with that backward (net.c: batchnorm_backward_sync's assign):
 * the two share one buffer. Not with keep, which shares nothing. */
static void plan_bn_grad_in_place(plan_work *w, const struct net_plan *p)
{
    const net *n = w->n;
    for (int i = w->nn - 1; !w->keep && w->backward && bwd_runs(n, i, w->start, w->freeze);
         i--) {
        const node *d = &n->nodes[i];
        int u = p->zero_dv[2 * i], v = d->value;
        if (d->kind != NODE_BN || u < 0 || n->value_creator[v] != i ||
            w->grad[v].size == 0 || n->value_numel[u] != n->value_numel[v])
            continue;
        int r = find_root(w->galias, v);
        if (w->grad[u].t1 > w->grad[r].t1)
            w->grad[r].t1 = w->grad[u].t1;
        w->galias[u] = r;
        w->grad[u].size = 0;
    }
}

/* Convolution scratch, live during the one step that uses it, and in a fused plan the
 * parameter gradients of a trainable node, live during its backward step. */
static void plan_scratch(plan_work *w)
{
    const net *n = w->n;
    for (int i = 0; i < w->nn; i++) {
        const node *d = &n->nodes[i];
        int conv = d->kind == NODE_CONV ||
                   (d->kind == NODE_LINEAR && d->conv.precision != PRECISION_FP32);
        size_t ws = conv ? round_up(conv2d_workspace_floats(&d->conv)) : 0;
        size_t fws = conv ? round_up(conv2d_forward_workspace_floats(&d->conv)) : 0;
        w->wsf[i].size = i > w->start ? fws : 0;
        w->wsf[i].t0 = w->wsf[i].t1 = i;
        w->wsb[i].size = w->backward && bwd_runs(n, i, w->start, w->freeze) ? ws : 0;
        w->wsb[i].t0 = w->wsb[i].t1 = 2 * w->nn - i;
        w->gsc[i].size = w->fused && bwd_runs(n, i, w->start, w->freeze)
                             ? net_plan_grad_floats(n, d) : 0;
        w->gsc[i].t0 = w->gsc[i].t1 = 2 * w->nn - i;
    }
}

/* Whether rebuild step k + 1 may write over step k's buffer (step k's own, or the one it
 * writes over in turn): step k rebuilds the residual of step k + 1's one fused pass
 * (chain_of), both run before the same backward, and nothing else reads step k's value
 * (its life ends there), so a chain of residual blocks is rebuilt in one buffer instead
 * of one per block. */
static int step_over_previous(const plan_work *w, const struct net_plan *p, int k)
{
    const net *n = w->n;
    int u = p->step_value[k], v = p->step_value[k + 1], t = w->step[k + 1].t0;
    if (w->step[w->step_root[k]].size == 0 || w->step[k + 1].size == 0 ||
        w->step[k].t0 != t || w->step_t1[k] != t ||
        n->nodes[n->value_creator[u]].kind != NODE_BN ||
        n->nodes[n->value_creator[v]].kind != NODE_BN ||
        n->value_numel[u] != n->value_numel[v])
        return 0;
    bn_chain ch = chain_of(n, v);
    return ch.add >= 0 && n->nodes[n->nodes[ch.add].in[1]].value == u;
}

/* Merges each step that may write over the previous one into that one's item. */
static void plan_steps_in_place(plan_work *w, const struct net_plan *p)
{
    for (int k = 0; k + 1 < w->n_steps; k++) {
        if (!step_over_previous(w, p, k))
            continue;
        int r = w->step_root[k];
        w->step_root[k + 1] = r;
        if (w->step[k + 1].t1 > w->step[r].t1)
            w->step[r].t1 = w->step[k + 1].t1;
        w->step[k + 1].size = 0;
    }
}

/* In training, some BatchNorm outputs are rebuilt for backward instead of kept; their
 * rebuild steps become items. */
static void plan_rebuilds(plan_work *w, struct net_plan *p)
{
    const net *n = w->n;
    w->n_steps = 0;
    if (w->training && !w->keep) {
        for (int q = 0; q < 2 * w->nv + 3 * w->nn; q++)
            live_add(w->live, &w->it[q], 1);
        rebuild_ctx rc = {.n = n, .start = w->start, .freeze = w->freeze, .val = w->val,
                          .dropped = w->dropped, .rec_t0 = w->rec_t0, .rec_t1 = w->rec_t1,
                          .relied = w->relied, .step_value = p->step_value,
                          .step_t1 = w->step_t1};
        w->n_steps = decide_rebuilds(&rc, p, w->val, w->fwd_end, w->bfirst, w->blast,
                                     w->reader, w->step_node, w->max_steps, w->last, w->live,
                                     w->inf + 1, w->relied + w->nv);
    }
    for (int k = 0; k < w->max_steps; k++) {
        int used = k < w->n_steps;
        w->step[k].size = used && w->step_t1[k] >= 0
                              ? step_floats(n, p->step_value[k]) : 0;
        w->step[k].t0 = used ? 2 * w->nn - w->step_node[k] : 0;
        w->step[k].t1 = used ? w->step_t1[k] : 0;
        w->step_root[k] = k;
    }
    plan_steps_in_place(w, p);
}

/* BatchNorm in place on an input nothing reads afterwards (eval, frozen groups). */
static void plan_bn_in_place(plan_work *w)
{
    const net *n = w->n;
    item *val = w->val;
    for (int i = 0; i < w->nn && !w->keep; i++) {
        const node *d = &n->nodes[i];
        if (d->kind != NODE_BN || n->value_creator[d->value] != i)
            continue;
        int u = n->nodes[d->in[0]].value, v = d->value;
        if (u == w->last || val[u].t1 != i || w->blast[u] >= 0 ||
            n->value_numel[u] != n->value_numel[v])
            continue;
        int r = find_root(w->alias, u);
        w->alias[v] = r;
        if (val[v].t1 > val[r].t1)
            val[r].t1 = val[v].t1;
        val[v].size = 0;
    }
}

/* Places every item and copies the offsets into p. */
static void plan_place_items(plan_work *w, struct net_plan *p)
{
    p->floats = place(w->it, w->n_items, w->order, w->lo, w->hi);
    for (int v = 0; v < w->nv; v++) {
        p->val_off[v] = w->val[find_root(w->alias, v)].off;
        p->grad_off[v] = w->grad[find_root(w->galias, v)].off;
    }
    for (int i = 0; i < w->nn; i++) {
        p->ws_fwd[i] = w->wsf[i].off;
        p->ws_bwd[i] = w->wsb[i].off;
        p->gs_off[i] = w->gsc[i].off;
    }
    for (int k = 0; k < w->n_steps; k++)
        p->step_off[k] = w->step[w->step_root[k]].off;
}

/* Fills p for (training, freeze, start, keep). */
static int plan_compute(net *n, struct net_plan *p, int training, int freeze, int start,
                        int keep, int fuse)
{
    if (plan_alloc_arrays(p, n->n_values, n->n_nodes) < 0)
        return -ENOMEM;
    plan_work w;
    if (plan_work_init(&w, n, training, freeze, start, keep, fuse) < 0)
        return -ENOMEM;
    plan_forward_lifetimes(&w, p);
    plan_backward_readers(&w);
    plan_grad_lifetimes(&w, p);
    plan_bn_grad_in_place(&w, p);
    plan_scratch(&w);
    plan_rebuilds(&w, p);
    plan_bn_in_place(&w);
    plan_place_items(&w, p);
    p->training = training;
    p->freeze_to = freeze;
    p->start_node = start;
    p->keep = keep;
    p->fuse = fuse;
    p->fused = w.fused;
    p->valid = 1;
    plan_work_free(&w);
    return 0;
}

/* The cached plan for the key, computed into the least recently used slot if absent. */
static struct net_plan *get_plan(net *n, int training, int start, int *rc)
{
    *rc = 0;
    training = training != 0;
    const int fuse = n->fused_backward && !n->dist;
    if (!n->plans) {
        n->plans = calloc(1, sizeof(*n->plans));
        if (!n->plans) {
            *rc = -ENOMEM;
            return NULL;
        }
        n->plans->current = -1;
    }
    struct net_plans *ps = n->plans;
    struct net_plan *victim = NULL;
    for (int s = 0; s < PLAN_SLOTS; s++) {
        struct net_plan *p = &ps->slot[s];
        if (p->valid && p->training == training && p->freeze_to == n->freeze_to &&
            p->start_node == start && p->keep == n->keep_values && p->fuse == fuse) {
            p->used = ++ps->clock;
            return p;
        }
        if (!victim || (!p->valid && victim->valid) ||
            (p->valid == victim->valid && p->used < victim->used))
            victim = p;
    }
    if (victim - ps->slot == ps->current)
        ps->current = -1;
    victim->valid = 0;
    *rc = plan_compute(n, victim, training, n->freeze_to, start, n->keep_values, fuse);
    if (*rc < 0)
        return NULL;
    victim->used = ++ps->clock;
    return victim;
}

size_t net_plan_size(net *n, int training, int *rc)
{
    struct net_plan *p = get_plan(n, training, 0, rc);
    return p ? p->floats : 0;
}

int net_plan_use(net *n, int training)
{
    int rc;
    struct net_plan *p = get_plan(n, training, n->start_node, &rc);
    if (!p)
        return rc;
    if (p->floats > n->slab_floats) {
        float *s = net_pages_alloc(p->floats);
        if (!s)
            return -ENOMEM;
        net_pages_free(n->slab, n->slab_floats);
        n->slab = s;
        n->slab_floats = p->floats;
    }
    float *s = n->slab;
    for (int v = 0; v < n->n_values; v++) {
        n->values[v] = s + p->val_off[v];
        n->dvalues[v] = p->grad_off[v] == NO_OFF ? NULL : s + p->grad_off[v];
    }
    for (int i = 0; i < n->n_nodes; i++) {
        node *d = &n->nodes[i];
        d->scratch_fwd = p->ws_fwd[i] == NO_OFF ? NULL : s + p->ws_fwd[i];
        d->scratch_bwd = p->ws_bwd[i] == NO_OFF ? NULL : s + p->ws_bwd[i];
        d->scratch_grad = p->gs_off[i] == NO_OFF ? NULL : s + p->gs_off[i];
        d->zero_dv[0] = p->zero_dv[2 * i];
        d->zero_dv[1] = p->zero_dv[2 * i + 1];
    }
    n->plan_backward = p->has_backward;
    n->plan_fused = p->fused;
    n->plans->current = (int)(p - n->plans->slot);
    return 0;
}

/* Rebuilds value v into dst exactly as the forward computed it: a convolution again, or
 * the BatchNorm pass with the saved statistics, then the in-place nodes in forward order.
 * The usual chains (ReLU; add; add then ReLU) run fused in batchnorm_apply, others node
 * by node. */
static void rebuild(net *n, int v, float *dst)
{
    int c = n->value_creator[v];
    const node *b = &n->nodes[c];
    size_t m = (size_t)n->batch * b->h * b->w;
    if (b->kind == NODE_CONV) { /* scratch after the value, as step_floats counts it */
        conv2d_forward(dst, n->values[n->nodes[b->in[0]].value],
                       n->params + n->tensors[b->p_w].offset,
                       b->p_b >= 0 ? n->params + n->tensors[b->p_b].offset : NULL,
                       dst + round_up(n->value_numel[v]), &b->conv);
        n->values[v] = dst;
        return;
    }
    assert(b->kind == NODE_BN);
    bn_chain ch = chain_of(n, v);
    const float *res = ch.add >= 0 ? n->values[n->nodes[n->nodes[ch.add].in[1]].value] : NULL;
    const float *x = n->values[n->nodes[b->in[0]].value];
    const float *gamma = n->params + n->tensors[b->p_w].offset;
    const float *beta = n->params + n->tensors[b->p_b].offset;
    if (ch.fused) {
        batchnorm_apply(dst, x, b->save_mean, b->save_rstd, gamma, beta, res, ch.relu, (int)m,
                        b->c);
    } else {
        batchnorm_apply(dst, x, b->save_mean, b->save_rstd, gamma, beta, NULL, 0, (int)m,
                        b->c);
        for (int k = c + 1; k < n->n_nodes; k++) {
            const node *e = &n->nodes[k];
            if (e->value != v)
                continue;
            if (e->kind == NODE_RELU)
                relu_forward(dst, dst, m * b->c);
            else if (e->kind == NODE_ADD)
                add_forward(dst, dst, n->values[n->nodes[e->in[1]].value], m * b->c);
        }
    }
    n->values[v] = dst;
}

void net_plan_recompute(net *n, int i)
{
    const struct net_plan *p = &n->plans->slot[n->plans->current];
    for (int k = p->first_step[i]; k >= 0 && k < p->first_step[i] + p->n_steps[i]; k++)
        rebuild(n, p->step_value[k], n->slab + p->step_off[k]);
}
