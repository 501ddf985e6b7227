/* tta_plans: the fixed augmented passes of test-time augmentation, chosen from what the run
 * was trained with so that each pass shows the network only views that training drew:
 *
 * - flips and dihedral turns exactly as the run's tfms drew them (side_on and flip: the
 *   left-right mirror; top_down: the eight turns; none: no flip);
 * - shifts only where training's random crop had room to move: at a zoom of half of
 *   training's range (the mean of the zooms it drew; none when that leaves less than a
 *   pixel of room), the crop at each corner of that room; with padding (pad), the crop
 *   halfway from the centre to each corner of the padded room (a shift of about half the
 *   pad each way); otherwise, the two ends of the longer side of images that are not
 *   square.
 *
 * No random zoom, rotation or lighting: a zoomed crop cuts content off, which on images
 * whose content fills the frame (digits, clothing) can change what the image shows. The
 * passes are the same for every run with the same settings, so two TTAs of the same
 * weights agree. */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The shorter side the corner crops are taken from: the image scaled by half of training's
 * zoom range, or sz (no zoom passes) when that is less than a whole pixel of room. */
static int pass_side(int sz, float max_zoom)
{
    if (!(max_zoom > 1))
        return sz;
    int side = (int)floor((1 + (max_zoom - 1) / 2) * sz);
    return side > sz ? side : sz;
}

/* The flips training drew, the identity first; returns how many. */
static int pass_dihedrals(tfm_set tfms, int *d)
{
    if (tfms == TFMS_TOP_DOWN) {
        for (int k = 0; k < 8; k++)
            d[k] = k;
        return 8;
    }
    d[0] = 0;
    if (tfms == TFMS_SIDE_ON || tfms == TFMS_FLIP) {
        d[1] = 4;
        return 2;
    }
    return 1;
}

/* The four crop positions halfway from the centre to the corners of a room of `room`
 * pixels (the padded crop's; at least 2): offsets centre -+ h, as fractions of the room. */
static void halfway_corners(int room, float corner[4][2])
{
    int c = room / 2, h = (room + 2) / 4;
    float lo = (float)((c - h + 0.5) / room), hi = (float)((c + h + 0.5) / room);
    const float pos[4][2] = {{lo, lo}, {hi, hi}, {hi, lo}, {lo, hi}};
    memcpy(corner, pos, sizeof pos);
}

/* The padding training drew at the learner's current size, in pixels. */
static int pass_pad(const learner *l)
{
    tfm_config tc;
    lrn_tfm_fill(l, &tc, 1);
    return transform_pad_at(&tc);
}

int learner_tta_plans(const learner *l, tfm_plan *plans, int max)
{
    const ds_info *in = l->info;
    int d[8];
    int nd = pass_dihedrals(l->cfg.tfms, d);
    int side = pass_side(l->sz, l->cfg.max_zoom);
    int square = in->min_w == in->max_w && in->min_h == in->max_h && in->min_w == in->min_h;
    int pad = pass_pad(l);
    /* Crop positions besides the centre: corners of the zoomed room (halfway to them when
     * padded), or the ends of the longer side at the plain scale. */
    float corner[4][2] = {{0, 0}, {1, 1}, {1, 0}, {0, 1}};
    if (pad > 0)
        halfway_corners(side - l->sz + 2 * pad, corner);
    int n_pos = side > l->sz || pad > 0 ? 4 : square ? 0 : 2;
    float zoom = 1;
    if (side > l->sz) {
        /* floor(zoom * sz) must give side: half a pixel over it, capped at max_zoom (whose
         * floor is at least side). */
        zoom = (float)((side + 0.5) / l->sz);
        if (zoom > l->cfg.max_zoom)
            zoom = l->cfg.max_zoom;
    }
    int n = 0;
    for (int pos = -1; pos < n_pos; pos++)
        for (int k = 0; k < nd && n < max; k++) {
            if (pos < 0 && d[k] == 0)
                continue; /* the centre crop itself */
            tfm_plan *p = &plans[n++];
            transform_plan_identity(p);
            p->dihedral = d[k];
            if (pos >= 0) {
                p->zoom = zoom;
                p->crop_x = corner[pos][0];
                p->crop_y = corner[pos][1];
            }
        }
    return n;
}

void lrn_tta_describe(const learner *l, const tfm_plan *plans, int n, char *buf, size_t cap)
{
    int flips = 0, shifts = 0, side = l->sz;
    for (int i = 0; i < n; i++) {
        flips += plans[i].dihedral != 0;
        if (plans[i].crop_x >= 0) {
            shifts++;
            side = (int)floor(plans[i].zoom * l->sz);
        }
    }
    if (n == 0) {
        snprintf(buf, cap, "none");
        return;
    }
    int len = snprintf(buf, cap, "%d with a flip or turn as trained", flips);
    if (len < 0 || (size_t)len >= cap)
        return;
    int pad = pass_pad(l);
    if (shifts && pad > 0)
        snprintf(buf + len, cap - (size_t)len, ", %d crops shifted halfway to the corners of "
                 "the image scaled to %d and padded by %d for a %d crop", shifts, side, pad,
                 l->sz);
    else if (side > l->sz)
        snprintf(buf + len, cap - (size_t)len, ", %d corner crops of the image scaled to %d "
                 "for a %d crop (max_zoom %.3g)", shifts, side, l->sz, l->cfg.max_zoom);
    else if (shifts)
        snprintf(buf + len, cap - (size_t)len, ", %d crops at the ends of the longer side",
                 shifts);
}
