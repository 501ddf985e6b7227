/* progress.c: formats a job's progress line. */
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

void progress_line(char *buf, size_t len, long long id, const char *kind, const char *state,
                   double fraction, double eta_s, int bar_width)
{
    char bar[128] = "", eta[32] = "";
    if (!isfinite(fraction) || fraction < 0)
        fraction = 0;
    if (fraction > 1)
        fraction = 1;
    if (bar_width > 0) {
        int w = bar_width > (int)sizeof bar - 4 ? (int)sizeof bar - 4 : bar_width;
        int full = (int)(fraction * w);
        bar[0] = '[';
        for (int i = 0; i < w; i++)
            bar[1 + i] = i < full ? '#' : '-';
        bar[1 + w] = ']';
        bar[2 + w] = ' ';
        bar[3 + w] = '\0';
    }
    if (eta_s >= 0 && strcmp(state, "running") == 0) {
        char t[24];
        progress_eta(t, sizeof t, eta_s);
        snprintf(eta, sizeof eta, "  ETA %s", t);
    }
    snprintf(buf, len, "job %lld %s %s%3d%%  %s%s", id, kind, bar, (int)floor(fraction * 100),
             state, eta);
}
