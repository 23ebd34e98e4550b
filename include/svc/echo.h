#ifndef SVC_ECHO_H
#define SVC_ECHO_H

/*
 * echo (RFC 862) over TCP and UDP.
 *
 * Options: "mode" (TCP only): "stream" (default) echoes every byte until the client closes;
 * "once" is the lecture's server: the first message read is echoed, then the connection is
 * closed. "max_datagram" (UDP only, 1..65507, default 65507): longer datagrams are dropped.
 */

#include "core/service.h"

extern const struct core_service svc_echo;

#endif
