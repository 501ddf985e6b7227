/* ds_csv.c: the labels-csv layout (fast.ai's from_csv): a header line, then `file,labels`
 * rows naming images in one folder; more than one label on a row makes it multi-label. */
#include "ds_internal.h"
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Bounds on a labels file: its size, and one line (a file name and its labels). */
#define CSV_MAX_BYTES (256ll << 20)
#define CSV_MAX_LINE 65536

typedef struct csv_row {
    char *file;
    char **labels;
    int n_labels;
} csv_row;

static void csv_rows_free(csv_row *rows, int n)
{
    for (int i = 0; i < n; i++) {
        free(rows[i].file);
        ds_free_names(rows[i].labels, rows[i].n_labels);
    }
    free(rows);
}

/* One row's fields, parsed from line (modified in place) into *r: 0, 1 for a blank line
 * (r untouched), -EINVAL for a row without "file,", or -ENOMEM (r holds what it got). */
static int csv_parse_row(char *line, csv_row *r)
{
    char *comma = strchr(line, ',');
    char *file = ds_trim_field(comma ? (*comma = 0, line) : line);
    if (*file == 0 && !comma)
        return 1;
    if (!comma || *file == 0)
        return -EINVAL;
    memset(r, 0, sizeof *r);
    if (!(r->file = strdup(file)))
        return -ENOMEM;
    char *save = NULL;
    for (char *tok = strtok_r(ds_trim_field(comma + 1), " \t", &save); tok;
         tok = strtok_r(NULL, " \t", &save)) {
        char **nl = realloc(r->labels, sizeof(char *) * (r->n_labels + 1));
        if (!nl)
            return -ENOMEM;
        r->labels = nl;
        if (!(r->labels[r->n_labels] = strdup(tok)))
            return -ENOMEM;
        r->n_labels++;
    }
    return 0;
}

/* Room for row n: 0, or -ENOMEM. */
static int csv_rows_grow(csv_row **rows, int n, int *cap)
{
    if (n < *cap)
        return 0;
    int c = *cap ? *cap * 2 : 256;
    csv_row *nr = realloc(*rows, sizeof(csv_row) * c);
    if (!nr)
        return -ENOMEM;
    *rows = nr;
    *cap = c;
    return 0;
}

/* Reads `file,labels` rows (after a header line); labels are separated by spaces. The
 * file, each line and the number of rows are bounded (CSV_MAX_BYTES, CSV_MAX_LINE,
 * max_rows) so that what it costs to hold stays in proportion to a real labels file. */
static int csv_read(const char *path, int64_t max_rows, csv_row **out, int *n_out,
                    char *err, size_t errlen)
{
    FILE *fp;
    long long size = 0;
    int rc = data_fopen_regular(path, "r", &fp, &size, err, errlen);
    if (rc)
        return rc;
    if (size > CSV_MAX_BYTES) {
        err_set(err, errlen, "%s: %lld bytes, over the %lld a labels file may hold", path,
                size, (long long)CSV_MAX_BYTES);
        fclose(fp);
        return -EFBIG;
    }
    csv_row *rows = NULL;
    int n = 0, cap = 0, line_no = 0;
    char *line = malloc(CSV_MAX_LINE + 1);
    if (!line)
        rc = -ENOMEM;
    while (rc == 0 && fgets(line, CSV_MAX_LINE + 1, fp)) {
        line_no++;
        size_t len = strlen(line);
        if (len == CSV_MAX_LINE && line[len - 1] != '\n') {
            err_set(err, errlen, "%s line %d: longer than %d bytes", path, line_no,
                    CSV_MAX_LINE - 1);
            rc = -EINVAL;
        } else if (line_no == 1) {
            continue; /* header */
        } else if (n >= max_rows) {
            err_set(err, errlen, "%s line %d: more than %lld rows, the most a dataset may "
                    "hold", path, line_no, (long long)max_rows);
            rc = -EFBIG;
        } else if ((rc = csv_rows_grow(&rows, n, &cap)) == 0) {
            rc = csv_parse_row(line, &rows[n]);
            if (rc == 1) {
                rc = 0;
                continue;
            }
            if (rc == -EINVAL)
                err_set(err, errlen, "%s line %d: expected file,labels", path, line_no);
            else
                n++; /* parsed, or partly: freed with the rest on failure */
        }
    }
    free(line);
    fclose(fp);
    if (rc) {
        if (rc == -ENOMEM)
            err_set(err, errlen, "out of memory reading %s", path);
        csv_rows_free(rows, n);
        return rc;
    }
    *out = rows;
    *n_out = n;
    return 0;
}

/* The csv may name files without their extension (Kaggle's planet set does). */
static char *csv_resolve(const dataset *ds, const char *dir, const char *file)
{
    static const char *const exts[] = {"", ".jpg", ".png", ".jpeg", ".JPG", ".PNG"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        char *full = ds_asprintf("%s/%s/%s%s", ds->root, dir, file, exts[i]);
        if (!full)
            return NULL;
        struct stat st;
        int ok = stat(full, &st) == 0 && S_ISREG(st.st_mode);
        free(full);
        if (ok)
            return ds_asprintf("%s/%s%s", dir, file, exts[i]);
    }
    return ds_asprintf("%s/%s", dir, file);
}

/* The classes: the sorted distinct labels of every row, into ds->info; *multi is set
 * when a row has more than one label. */
static int csv_classes(dataset *ds, const csv_row *rows, int n, const char *csv_name,
                       int *multi, char *err, size_t errlen)
{
    int total = 0;
    *multi = 0;
    for (int i = 0; i < n; i++) {
        total += rows[i].n_labels;
        if (rows[i].n_labels > 1)
            *multi = 1;
    }
    int rc = -ENOMEM;
    char **uniq = malloc(sizeof(char *) * (total ? total : 1));
    if (!uniq)
        return rc;
    int nu = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < rows[i].n_labels; k++)
            uniq[nu++] = rows[i].labels[k];
    qsort(uniq, nu, sizeof(char *), ds_cmp_str);
    int nc = 0;
    for (int i = 0; i < nu; i++)
        if (nc == 0 || strcmp(uniq[nc - 1], uniq[i]) != 0)
            uniq[nc++] = uniq[i];
    if (nc == 0) {
        err_set(err, errlen, "%s: no labels", csv_name);
        rc = -EINVAL;
        goto out_free;
    }
    ds->info.classes = calloc(nc, sizeof(char *));
    if (!ds->info.classes)
        goto out_free;
    for (int i = 0; i < nc; i++)
        if (!(ds->info.classes[ds->info.n_classes++] = strdup(uniq[i])))
            goto out_free;
    ds->info.multi_label = *multi;
    rc = 0;
out_free:
    free(uniq);
    return rc;
}

/* Whether root/dir is plainly a folder of the root (not a link elsewhere): then a row
 * without a "/" needs no realpath. */
static int csv_dir_plain(const dataset *ds, const char *dir)
{
    char *dir_full = ds_asprintf("%s/%s", ds->root, dir);
    char *dir_want = ds_asprintf("%s/%s", ds->real_root, dir);
    char *dir_real = dir_full ? realpath(dir_full, NULL) : NULL;
    int plain = dir_real && dir_want && strcmp(dir_real, dir_want) == 0;
    free(dir_full);
    free(dir_want);
    free(dir_real);
    return plain;
}

/* One row: its file joins the training split with its label (and multi-hot targets), or
 * the unreadable list. 0 or -ENOMEM. */
static int csv_add_row(dataset *ds, const csv_row *r, const char *dir, int dir_plain,
                       int multi, int *gray)
{
    int nc = ds->info.n_classes;
    char *rel = csv_resolve(ds, dir, r->file);
    if (!rel)
        return -ENOMEM;
    const char *why = NULL;
    char reason[256];
    if (r->n_labels == 0 && !multi) {
        why = "no label in the csv";
    } else {
        /* A row can name any path; only one with a "/" (it may climb out with "..") or
         * below a folder that is not plainly root/dir (a link) needs a realpath. */
        int k = ds_entry_classify(ds, rel, !dir_plain || strchr(r->file, '/'), reason,
                                  sizeof reason);
        if (k < 0) {
            free(rel);
            return k;
        }
        if (k != ENTRY_FILE)
            why = k == ENTRY_BAD ? reason : "not a regular file";
    }
    if (why) {
        int rc = ds_add_unreadable_locked(ds, rel, why);
        free(rel);
        return rc;
    }
    item_vec *tr = &ds->split[SPLIT_TRAIN];
    int before = tr->n;
    int label = r->n_labels ? ds_class_index(ds->info.classes, nc, r->labels[0]) : -1;
    int rc = ds_add_file(ds, tr, rel, label, gray);
    if (rc || !multi || tr->n == before)
        return rc;
    uint8_t *t = calloc(nc, 1);
    if (!t)
        return -ENOMEM;
    for (int k = 0; k < r->n_labels; k++) {
        int ci = ds_class_index(ds->info.classes, nc, r->labels[k]);
        if (ci >= 0)
            t[ci] = 1;
    }
    tr->v[before].targets = t;
    return 0;
}

int ds_open_csv(dataset *ds, const ds_options *o, int *gray, char *err, size_t errlen)
{
    const char *csv_name = o->csv && *o->csv ? o->csv : "labels.csv";
    const char *dir = o->csv_dir && *o->csv_dir ? o->csv_dir : "train";
    char *csv_path = ds_asprintf("%s/%s", ds->root, csv_name);
    if (!csv_path)
        return -ENOMEM;
    csv_row *rows = NULL;
    int n = 0, multi = 0;
    int rc = csv_read(csv_path, ds->max_items, &rows, &n, err, errlen);
    free(csv_path);
    if (rc)
        return rc;
    if (n == 0) {
        err_set(err, errlen, "%s: no rows after the header", csv_name);
        rc = -EINVAL;
        goto out_free;
    }
    rc = csv_classes(ds, rows, n, csv_name, &multi, err, errlen);
    if (rc)
        goto out_free;
    int dir_plain = csv_dir_plain(ds, dir);
    for (int i = 0; i < n && rc == 0 && (rc = ds_scan_tick(ds)) == 0; i++)
        rc = csv_add_row(ds, &rows[i], dir, dir_plain, multi, gray);
    if (rc == -ECANCELED)
        err_set(err, errlen, "the scan of %s was stopped", csv_name);
out_free:
    csv_rows_free(rows, n);
    return rc;
}
