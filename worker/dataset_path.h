/* dataset_path.h: which relative paths a rank that receives a dataset from rank 0 accepts
 * (dataset_sync.h): only paths that stay inside the folder being filled. */
#ifndef SGDRD_WORKER_DATASET_PATH_H
#define SGDRD_WORKER_DATASET_PATH_H

/* 1 when rel is a relative path below a folder: not NULL, empty or absolute, no empty, "."
 * or ".." component, no trailing '/', shorter than PATH_MAX / 2; else 0. */
int dpath_ok(const char *rel);

#endif
