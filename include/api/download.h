#ifndef API_DOWNLOAD_H
#define API_DOWNLOAD_H

/*
 * The body of a stored file's download (GET /api/v1/listeners/{id}/files/{name}), read from
 * its descriptor by the download workers, never by libmicrohttpd's thread. A worker reads the
 * file in blocks of API_DOWNLOAD_BLOCK bytes into one of the download's two buffers while
 * libmicrohttpd sends the other; when no block is ready the content reader suspends the
 * connection and the worker resumes it once one is. A download holds at most two blocks.
 *
 * A file that ends before its announced size (it shrank) ends the response with an error:
 * libmicrohttpd closes the connection, so the client sees a body shorter than Content-Length.
 *
 * The same workers open the file: the server hands a download's request to them as a job (its
 * handler, which opens the file and fills the reply), its connection suspended meanwhile.
 *
 * Thread rules: api_downloads_start()/api_downloads_stop()/api_downloads_free() from the
 * thread that starts and stops the server; the rest from libmicrohttpd's thread.
 */

#include <stdbool.h>
#include <stdint.h>

#include <microhttpd.h>

#define API_DOWNLOAD_WORKERS 2
#define API_DOWNLOAD_BLOCK (512 * 1024)

struct api_downloads;

typedef void (*api_download_job_fn)(void *arg);

/* A job for the workers: fn(arg), then conn resumed. The caller's storage; done is the
 * workers' (read it with api_download_job_done()). */
struct api_download_job {
    api_download_job_fn fn;
    void *arg;
    struct MHD_Connection *conn;
    bool done;
    struct api_download_job *next;
};

/* Starts the workers. 0, or a negative errno. Stop them with api_downloads_stop(), then free
 * with api_downloads_free(). */
int api_downloads_start(struct api_downloads **ret);

/*
 * Ends every download in flight (each one's next read fails, so libmicrohttpd closes its
 * connection; a suspended one is resumed for that) and joins the workers. Later downloads
 * fail. Call before MHD_stop_daemon(). Accepts NULL; a second call does nothing.
 */
void api_downloads_stop(struct api_downloads *p);

/*
 * Runs job->fn(job->arg) on a worker, then resumes job->conn, which the caller (libmicrohttpd's
 * thread) has just suspended. Jobs handed before a stop are run by it. -ESHUTDOWN when the
 * workers stop (nothing handed: the caller resumes conn).
 */
int api_downloads_run(struct api_downloads *p, struct api_download_job *job);

/* Whether job was handed and is done (its connection resumed). */
bool api_download_job_done(struct api_downloads *p, const struct api_download_job *job);

/* Stops the workers if they still run, and frees p. Call after MHD_stop_daemon() (which frees
 * the responses). Accepts NULL. */
void api_downloads_free(struct api_downloads *p);

/*
 * A response of the size bytes of fd from offset 0, to be queued on conn, read by p's workers.
 * Takes ownership of fd on success (closed when libmicrohttpd frees the response); on failure
 * (NULL: ENOMEM, or p stopped) the caller keeps it.
 */
struct MHD_Response *api_download_response(struct api_downloads *p, struct MHD_Connection *conn,
                                           int fd, uint64_t size);

#endif
