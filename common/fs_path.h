/* fs_path.h: creating folders on the way to a path. */
#ifndef SGDRD_FS_PATH_H
#define SGDRD_FS_PATH_H

/* Creates path and every missing folder above it (mode 0755); a folder that exists already
 * is fine. Returns 0, -ENAMETOOLONG when path is empty or does not fit in PATH_MAX (nothing
 * is created then), or the negative errno of the mkdir that failed. */
int fs_mkdir_p(const char *path);

#endif
