#ifndef API_EVENTS_H
#define API_EVENTS_H

/*
 * The server-sent event streams of GET /api/v1/events: each client's stream is a subscription
 * to the event bus (core/events.h), written out by a libmicrohttpd content reader.
 *
 * On connect a stream sends "retry: 2000", then either the events after the client's
 * Last-Event-ID (when the bus still holds that id in its ring) or a "snapshot" event with
 * every listener, then the bus's events as they happen, each as
 * "id: N\nevent: TYPE\ndata: JSON\n\n", and ": keepalive" when nothing else was sent for the
 * keep-alive interval.
 *
 * A stream with nothing to send suspends its connection (MHD_suspend_connection(): no busy
 * loop in the daemon's thread) and is resumed by the bus's notification, by the keep-alive
 * timer or by api_events_shutdown(). A client that reads too slowly is overrun by the bus: its
 * stream sends what was queued and ends. One that stops reading is cut by the server when its
 * socket stops draining (api/server.h), which then ends its stream with api_events_cut(); one
 * that went away is noticed at the next write. Nothing here ever blocks a publisher or another
 * stream.
 *
 * Thread rules: api_events_new(), api_events_shutdown() and api_events_free() from the thread
 * that starts and stops the server; api_stream_open() and api_stream_response() from
 * libmicrohttpd's thread (a handler, the reply); the rest runs on libmicrohttpd's thread, the
 * publishers' threads and the keep-alive thread, under the locks the .c names.
 */

#include <stdint.h>

#include <jansson.h>

#include <microhttpd.h>

#include "core/buf.h"
#include "core/events.h"
#include "core/registry.h"

#define API_EVENTS_RETRY_MS 2000      /* the reconnection delay suggested to clients */
#define API_EVENTS_KEEPALIVE_MS 15000 /* ": keepalive" after this long with nothing sent */

struct api_events;
struct api_stream;

/*
 * Prepares the streams of one server over bus and registry (both borrowed; they must outlive
 * the server) and starts the keep-alive thread; keepalive_ms 0 is API_EVENTS_KEEPALIVE_MS.
 * Returns 0 or a negative errno.
 */
int api_events_new(struct core_events *bus, struct core_registry *registry, unsigned keepalive_ms,
                   struct api_events **ret);

/*
 * Ends every stream (each finishes its response at its next turn, suspended ones are resumed
 * for it), refuses new ones, joins the keep-alive thread, and waits up to half a second for
 * the streams to send their end. Call before MHD_stop_daemon(): libmicrohttpd must not be
 * stopped with suspended connections. Accepts NULL.
 */
void api_events_shutdown(struct api_events *h);

/*
 * Ends the stream of connection c, if one is open on it, at its next turn (a suspended stream is
 * resumed for it): for a connection the server cut (shutdown(2)), which libmicrohttpd would not
 * notice while the stream waits for events; nothing more reaches the client. c is only
 * compared, never dereferenced. Any thread that holds none of the locks of this module.
 */
void api_events_cut(struct api_events *h, const struct MHD_Connection *c);

/* Frees h once the daemon has stopped (every stream was freed with its response). Accepts
 * NULL. */
void api_events_free(struct api_events *h);

/* The newest events of the bus other than the metrics ticks, newest first, at most max: a new
 * array (core_events_recent()). 0 or -ENOMEM. Any thread. */
int api_events_recent(struct api_events *h, size_t max, json_t **ret);

/*
 * Opens a stream: subscribes to the bus and prepares what the stream sends first (the events
 * after last_event_id, the header's text or NULL, or else a snapshot). Returns 0 with *ret
 * (free with api_stream_free() unless api_stream_response() took it), -ESHUTDOWN once
 * api_events_shutdown() was called, or -ENOMEM.
 */
int api_stream_open(struct api_events *h, const char *last_event_id, struct api_stream **ret);

/* Unsubscribes and frees a stream that no response took. Accepts NULL. */
void api_stream_free(struct api_stream *s);

/*
 * The response that writes s on connection c (Content-Type text/event-stream, Cache-Control
 * no-store, X-Accel-Buffering no). Takes ownership of s, also on failure (NULL, out of
 * memory); the response frees it when libmicrohttpd is done with it.
 */
struct MHD_Response *api_stream_response(struct api_stream *s, struct MHD_Connection *c);

/*
 * Parses a Last-Event-ID value: a decimal event id, blanks around it allowed. Returns 0 with
 * *ret, or -EINVAL (the stream then starts with a snapshot). Pure, any thread.
 */
int api_event_id_parse(const char *text, uint64_t *ret);

/*
 * Appends one event as the stream writes it: "id: N\nevent: TYPE\ndata: DATA\n\n" (data of
 * len bytes; each line of it, should it hold several, gets its own "data: "). Returns 0 or
 * -ENOMEM (b is then unchanged). Pure, any thread.
 */
int api_event_append(struct core_buf *b, uint64_t id, const char *type, const char *data,
                     size_t len);

#endif
