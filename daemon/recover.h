/* recover.h: start-up clean-up of what a killed daemon left half-written in its data folder.
 *
 * Every file the daemon writes is made complete before it is published (written under a
 * temporary name and renamed, or extracted under tmp/ and moved into place), so what a
 * crash leaves behind is always unpublished: it is removed before the queue and the HTTP
 * server start, never read. */
#ifndef SGDRD_RECOVER_H
#define SGDRD_RECOVER_H

#include "store.h"

/* Removes, under data_dir: everything in tmp/ (uploads and extractions in flight), every
 * "*.tmp" file under runs/ (a checkpoint or weights file cut off before its rename), and
 * every folder under datasets/ that no dataset row names (an upload moved into place but
 * not yet registered). Logs each removal. Failures to remove are logged and skipped: the
 * daemon can still serve; returns how many entries it removed. */
int recover_leftovers(const char *data_dir, store *st);

#endif
