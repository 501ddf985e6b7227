/* progress.c: formats the progress line of a job and of an upload. */
#include "progress.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

void progress_eta(char *buf, size_t len, double secs)
{
    if (!isfinite(secs) || secs < 0) {
        snprintf(buf, len, "?");
        return;
    }
    long s = lround(secs);
    if (s < 60)
        snprintf(buf, len, "%lds", s);
    else if (s < 3600)
        snprintf(buf, len, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(buf, len, "%ldh%02ldm", s / 3600, s / 60 % 60);
}

/* "[####------] " for fraction, bar_width cells wide (0: ""), into bar (128 bytes). */
static void draw_bar(char *bar, double fraction, int bar_width)
{
    int w = bar_width > 124 ? 124 : bar_width;
    bar[0] = '\0';
    if (w <= 0)
        return;
    int full = (int)(fraction * w);
    bar[0] = '[';
    for (int i = 0; i < w; i++)
        bar[1 + i] = i < full ? '#' : '-';
    bar[1 + w] = ']';
    bar[2 + w] = ' ';
    bar[3 + w] = '\0';
}

static double clamp01(double x)
{
    return !isfinite(x) || x < 0 ? 0 : x > 1 ? 1 : x;
}

void progress_line(char *buf, size_t len, long long id, const char *kind, const char *state,
                   double fraction, double eta_s, int bar_width)
{
    char bar[128], eta[32] = "";
    fraction = clamp01(fraction);
    draw_bar(bar, fraction, bar_width);
    if (eta_s >= 0 && strcmp(state, "running") == 0) {
        char t[24];
        progress_eta(t, sizeof t, eta_s);
        snprintf(eta, sizeof eta, "  ETA %s", t);
    }
    snprintf(buf, len, "job %lld %s %s%3d%%  %s%s", id, kind, bar, (int)floor(fraction * 100),
             state, eta);
}

void progress_bytes(char *buf, size_t len, const char *what, long long done, long long total,
                    int bar_width)
{
    char bar[128];
    double f = clamp01(total > 0 ? (double)done / (double)total : 0);
    draw_bar(bar, f, bar_width);
    snprintf(buf, len, "%s %s%3d%%  %.1f of %.1f MB", what, bar, (int)floor(f * 100),
             (double)done / 1e6, (double)total / 1e6);
}
