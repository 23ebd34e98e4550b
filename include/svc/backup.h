#ifndef SVC_BACKUP_H
#define SVC_BACKUP_H

/*
 * backup over TCP: the lecture's Remote Copy Procedure (the client sends a file name, the
 * server acknowledges, the client sends the file) made a real backup service. The manual page
 * sockserv-protocols(7) is the full contract; in short, on one connection:
 *
 *   C: PUT <name> <size> [<sha256>]\n        S: OK\n | ERR <code> <text>\n
 *   C: <size bytes>                          S: STORED <name> <version> <size> <sha256>\n
 *                                               | ERR <code> <text>\n (nothing kept)
 *   C: GET <name> [<version>]\n              S: OK <size> <sha256|-> <version>\n + content
 *                                               (size bytes, sent as fast as the client reads
 *                                               them; commands sent meanwhile are answered after)
 *   C: LIST\n                                S: OK <n>\n, n lines, END\n
 *   C: QUIT\n                                S: BYE\n
 *
 * and the lecture's bare flow: a first read with no verb and no newline inside is a file
 * name; the server answers ACK\n, stores what follows until the client closes, answers
 * STORED ... and marks the copy unverified. Names travel percent-encoded (%XX for bytes
 * 0x00-0x20, 0x7f and %).
 *
 * STORED is sent only once the data is fsynced, the file renamed into place and the directory
 * fsynced; a cut connection, a size or checksum mismatch, a full disk or a failed write leave
 * nothing behind and never touch an earlier copy (see svc/backup_store.h for the layout).
 *
 * Options: "directory" (absolute; default <state_dir>/backup/<listener_id>), "on_exists"
 * ("version", "replace", "reject"; default "version"), "max_file_size" (bytes, default 4 GiB),
 * "quota_bytes" (bytes of every copy kept, versions included; 0: unlimited; default 64 GiB),
 * "require_checksum" (default false: when true, uploads without a SHA-256 are refused).
 *
 * A restore's content is produced by session_pull (CORE_VERDICT_PULL), 256 KiB at a time, so a
 * file of any size goes out with bounded memory and no client acknowledgement.
 *
 * File I/O runs on the runner's connection threads: the service blocks on the disk.
 */

#include "core/service.h"

extern const struct core_service svc_backup;

#endif
