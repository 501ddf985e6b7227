/* registrar.h: scans registered datasets on a thread of its own, so that a big folder or
 * labels file never holds a request thread; a stop ends the scan within DS_SCAN_EVERY
 * files and leaves the row "scanning", to be scanned again at the next start. */
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
/* Waits at most timeout_s for dataset id's scan to end: 0 when it has (or is not queued),
 * -ETIMEDOUT when it still runs. */
int registrar_wait(registrar *rg, int64_t id, double timeout_s);
/* Asks the scan to end, and joins the thread. Safe to call twice. */
void registrar_stop(registrar *rg);
/* Stops and frees; registrar_destroy(NULL) is safe. */
void registrar_destroy(registrar *rg);

#endif
