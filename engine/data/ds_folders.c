/* ds_folders.c: the folders layout (fast.ai's from_paths): one folder per class under
 * train/ and, optionally, valid/; the classes are the union of both. */
#include "ds_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ds_open_folders(dataset *ds, int *gray, char *err, size_t errlen)
{
    char *train = ds_asprintf("%s/train", ds->root), *valid = ds_asprintf("%s/valid", ds->root);
    char **tc = NULL, **vc = NULL, **all = NULL;
    int ntc = 0, nvc = 0, rc = -ENOMEM;
    if (!train || !valid)
        goto out_free;
    rc = ds_list_dir(ds, "train", ENTRY_DIR, &tc, &ntc, err, errlen);
    if (rc)
        goto out_free;
    if (ds_is_dir(valid) && (rc = ds_list_dir(ds, "valid", ENTRY_DIR, &vc, &nvc, err, errlen)))
        goto out_free;
    if (ntc == 0) {
        err_set(err, errlen, "%s has no class folders", train);
        rc = -EINVAL;
        goto out_free;
    }
    /* Classes: the sorted union of train's and valid's class folders. */
    rc = -ENOMEM;
    all = malloc(sizeof(char *) * (ntc + nvc));
    if (!all)
        goto out_free;
    int n = 0;
    for (int i = 0; i < ntc; i++)
        all[n++] = tc[i];
    for (int i = 0; i < nvc; i++)
        if (!bsearch(&vc[i], tc, ntc, sizeof(char *), ds_cmp_str))
            all[n++] = vc[i];
    qsort(all, n, sizeof(char *), ds_cmp_str);
    ds->info.classes = calloc(n, sizeof(char *));
    if (!ds->info.classes)
        goto out_free;
    for (int i = 0; i < n; i++)
        if (!(ds->info.classes[ds->info.n_classes++] = strdup(all[i])))
            goto out_free;

    for (int i = 0; i < ntc; i++) {
        char *sub = ds_asprintf("train/%s", tc[i]);
        if (!sub)
            goto out_free;
        rc = ds_add_folder(ds, &ds->split[SPLIT_TRAIN], sub,
                           ds_class_index(ds->info.classes, n, tc[i]), gray, err, errlen);
        free(sub);
        if (rc)
            goto out_free;
    }
    for (int i = 0; i < nvc; i++) {
        char *sub = ds_asprintf("valid/%s", vc[i]);
        rc = -ENOMEM;
        if (!sub)
            goto out_free;
        rc = ds_add_folder(ds, &ds->split[SPLIT_VALID], sub,
                           ds_class_index(ds->info.classes, n, vc[i]), gray, err, errlen);
        free(sub);
        if (rc)
            goto out_free;
    }
    rc = 0;
out_free:
    free(all);
    ds_free_names(tc, ntc);
    ds_free_names(vc, nvc);
    free(train);
    free(valid);
    return rc;
}
