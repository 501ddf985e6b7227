/* progress.h: the one line that shows a job's or an upload's progress: a bar on a terminal,
 * plain words elsewhere. */
#ifndef SGDR_PROGRESS_H
#define SGDR_PROGRESS_H

#include <stddef.h>

/* Writes secs as "42s", "3m05s" or "2h07m" into buf; "?" when negative or not finite. */
void progress_eta(char *buf, size_t len, double secs);

/* Writes "job ID KIND [#####-----]  50%  STATE  ETA 12s" into buf: the bar bar_width cells
 * wide (0: no bar), the ETA only when eta_s >= 0 and the job is running. */
void progress_line(char *buf, size_t len, long long id, const char *kind, const char *state,
                   double fraction, double eta_s, int bar_width);

/* Writes "upload [#####-----]  50%  12.5 of 25.0 MB" into buf, the bar bar_width cells
 * wide (0: none). */
void progress_bytes(char *buf, size_t len, const char *what, long long done, long long total,
                    int bar_width);

#endif
