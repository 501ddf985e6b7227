/* registrar.h: extracts uploaded archives and scans registered datasets on a thread of its
 * own, so that a big archive, folder or labels file never holds a request thread; a stop
 * ends the scan within DS_SCAN_EVERY files and leaves the row "scanning", to be scanned
 * again at the next start, and ends an extraction at its next entry, the row "failed" (the
 * archive does not outlive the daemon: tmp/ is cleaned at start). */
#ifndef SGDRD_DAEMON_REGISTRAR_H
#define SGDRD_DAEMON_REGISTRAR_H

#include <stdint.h>

#include "store.h"

typedef struct registrar registrar;

/* Starts the thread and queues every row left "scanning" (by a daemon that was stopped or
 * killed mid-scan). st is borrowed. */
int registrar_create(registrar **out, store *st, char *err, size_t errlen);
/* Queues dataset id (a row stored as "scanning") for its scan. -ESHUTDOWN once stopping. */
int registrar_add(registrar *rg, int64_t id);
/* Queues an uploaded dataset: archive (a tar under tmp/; the path is copied, the file is
 * the registrar's from now on and removed once used) is extracted into the row's empty
 * folder, at most max_bytes written, before the scan. An extraction refused or stopped
 * ends the row "failed", naming the entry or the stop. archive NULL: registrar_add. */
int registrar_add_upload(registrar *rg, int64_t id, const char *archive, int64_t max_bytes);
/* Waits at most timeout_s for dataset id's scan to end: 0 when it has (or is not queued),
 * -ETIMEDOUT when it still runs. */
int registrar_wait(registrar *rg, int64_t id, double timeout_s);
/* Asks the scan to end, and joins the thread. Safe to call twice. */
void registrar_stop(registrar *rg);
/* Stops and frees; registrar_destroy(NULL) is safe. */
void registrar_destroy(registrar *rg);

#endif
