#include "core/writeback.h"

#include <fcntl.h>

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
