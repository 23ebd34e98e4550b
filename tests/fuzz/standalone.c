/*
 * A main for the fuzz targets when they are built without libFuzzer: runs
 * LLVMFuzzerTestOneInput once on each file named on the command line, and on each file of each
 * directory named there (not recursively). An argument that does not exist is an error.
 * Exits 0 when every input ran (a failed property aborts).
 */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

/* Defined by the targets that have set-up to do. */
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define INPUT_MAX (16u << 20)

/* Runs the target on the file at path. Returns 0 or -errno. */
static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t len = 0, cap = 0;
    int r = 0;

    if (!f)
        return -errno;
    for (;;) {
        size_t n;

        if (len == cap) {
            uint8_t *grown;

            if (cap >= INPUT_MAX) {
                r = -EFBIG;
                goto out;
            }
            grown = realloc(data, cap ? 2 * cap : 4096);
            if (!grown) {
                r = -ENOMEM;
                goto out;
            }
            data = grown;
            cap = cap ? 2 * cap : 4096;
        }
        n = fread(data + len, 1, cap - len, f);
        len += n;
        if (n == 0) {
            if (ferror(f))
                r = -EIO;
            break;
        }
    }
    if (r == 0) {
        fprintf(stderr, "running %s (%zu bytes)\n", path, len);
        (void)LLVMFuzzerTestOneInput(data, len);
    }
out:
    free(data);
    fclose(f);
    return r;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs the target on each regular file of dir, in name order. Returns the count or -errno. */
static int run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int r = 0;

    if (!d)
        return -errno;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        if (n == cap) {
            char **grown = realloc(names, (cap ? 2 * cap : 64) * sizeof(*names));

            if (!grown) {
                r = -ENOMEM;
                goto out;
            }
            names = grown;
            cap = cap ? 2 * cap : 64;
        }
        names[n] = strdup(e->d_name);
        if (!names[n]) {
            r = -ENOMEM;
            goto out;
        }
        n++;
    }
    if (n > 0)
        qsort(names, n, sizeof(*names), compare_names);
    for (size_t i = 0; i < n && r >= 0; i++) {
        char path[4096];
        struct stat st;

        if (snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= (int)sizeof(path)) {
            r = -ENAMETOOLONG;
            break;
        }
        if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
            continue;
        r = run_file(path);
        if (r < 0)
            fprintf(stderr, "%s: %s\n", path, strerror(-r));
    }
    if (r >= 0)
        r = (int)n;
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return r;
}

int main(int argc, char **argv)
{
    int runs = 0;

    if (LLVMFuzzerInitialize)
        (void)LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        int r;

        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        r = S_ISDIR(st.st_mode) ? run_dir(argv[i]) : run_file(argv[i]);
        if (r < 0) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(-r));
            return 1;
        }
        runs += S_ISDIR(st.st_mode) ? r : 1;
    }
    fprintf(stderr, "%d inputs ran\n", runs);
    return 0;
}
