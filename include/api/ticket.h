#ifndef API_TICKET_H
#define API_TICKET_H

/*
 * Download tickets: a short-lived, single-use secret that lets one GET of one stored file
 * through without the bearer token, so that a page that holds the token can hand a plain link
 * to the browser's download manager, which streams the file to disk (a link cannot send an
 * Authorization header). A ticket is issued by an authorised POST, is bound to a listener, a
 * file name and a version, lasts API_TICKET_TTL_MS and is gone once used. The Host and
 * cross-site checks still apply to the GET.
 *
 * Thread rules: any thread; one mutex, held with no I/O.
 */

#include <stdbool.h>
#include <stddef.h>

#define API_TICKET_TTL_MS 60000
#define API_TICKET_MAX 64 /* tickets held at once; the oldest goes first */
#define API_TICKET_LEN 43 /* characters of a ticket (32 random bytes, base64url) */

struct api_tickets;

/* An empty set. 0 or -ENOMEM. Free with api_tickets_free(). */
int api_tickets_new(struct api_tickets **ret);

/* Accepts NULL. */
void api_tickets_free(struct api_tickets *t);

/*
 * Issues a ticket for version (0: the current copy) of file name of listener id into out
 * (API_TICKET_LEN characters and a NUL). 0, or a negative errno (-EIO when no random bytes
 * could be had).
 */
int api_ticket_issue(struct api_tickets *t, const char *id, const char *name, unsigned version,
                     char out[API_TICKET_LEN + 1]);

/* Whether ticket is a live one for exactly id, name and version; a ticket that matches is
 * used up. */
bool api_ticket_redeem(struct api_tickets *t, const char *ticket, const char *id, const char *name,
                       unsigned version);

#endif
