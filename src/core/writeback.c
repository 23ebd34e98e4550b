#include "core/writeback.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

void core_writeback_init(struct core_writeback *w, uint64_t offset)
{
    w->written = offset;
    w->flushed = offset;
}

void core_writeback_wrote(struct core_writeback *w, int fd, uint64_t n)
{
    uint64_t prev;

    w->written += n;
    if (w->written - w->flushed < CORE_WRITEBACK_STEP)
        return;
    prev = w->flushed >= CORE_WRITEBACK_STEP ? w->flushed - CORE_WRITEBACK_STEP : 0;
    if (w->flushed > prev)
        (void)sync_file_range(fd, (off_t)prev, (off_t)(w->flushed - prev),
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER);
    (void)sync_file_range(fd, (off_t)w->flushed, (off_t)(w->written - w->flushed),
                          SYNC_FILE_RANGE_WRITE);
    w->flushed = w->written;
}

void core_writeback_rest(struct core_writeback *w, int fd)
{
    if (w->written > w->flushed)
        (void)sync_file_range(fd, (off_t)w->flushed, 0, SYNC_FILE_RANGE_WRITE);
    w->flushed = w->written;
}

bool core_writeback_direct(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    return flags >= 0 && fcntl(fd, F_SETFL, flags | O_DIRECT) == 0;
}

/* The writes from now on go through the page cache. 0, or a negative errno. */
static int to_buffered(int fd, bool *direct)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_DIRECT) < 0)
        return -errno;
    *direct = false;
    return 0;
}

int core_writeback_append(struct core_writeback *w, int fd, bool *direct, const void *p, size_t n)
{
    const uint8_t *b = p;
    int e;

    while (n > 0) {
        size_t len = n;
        ssize_t k;

        if (direct && *direct) {
            if (n < CORE_WRITEBACK_DIRECT_ALIGN ||
                ((uintptr_t)b | w->written) % CORE_WRITEBACK_DIRECT_ALIGN != 0) {
                e = to_buffered(fd, direct);
                if (e < 0)
                    return e;
            } else {
                len = n - n % CORE_WRITEBACK_DIRECT_ALIGN;
            }
        }
        k = write(fd, b, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno == EINVAL && direct && *direct) {
            e = to_buffered(fd, direct); /* alignments the file system or device refuses */
            if (e < 0)
                return e;
            continue;
        }
        if (k < 0)
            return -errno;
        if (k == 0)
            return -EIO;
        b += k;
        n -= (size_t)k;
        if (!w)
            continue;
        if (direct && *direct) /* on the device already: nothing for the writeback to start */
            core_writeback_init(w, w->written + (uint64_t)k);
        else
            core_writeback_wrote(w, fd, (uint64_t)k);
    }
    return 0;
}
