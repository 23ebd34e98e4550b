#ifndef CLI_BACKUP_H
#define CLI_BACKUP_H

#include "cli/common.h"

/*
 * The backup client verb of the sockserv command: put (upload a file), get (restore one), ls
 * (list what is stored), speaking the protocol of svc/backup.h. Takes the arguments after the
 * verb's name (argv[0] is "backup") and returns the process exit status: 0 done, 1 failure
 * (network, timeout, any ERR line from the server, a checksum that does not match), 2 usage
 * error. Messages and the progress bar go to stderr, results to stdout.
 */

/*
 * sockserv backup put FILE [--name NAME] [--timeout DURATION] HOST [PORT]
 * sockserv backup get NAME [--version N] [-o FILE] [--timeout DURATION] HOST [PORT]
 * sockserv backup ls [--timeout DURATION] HOST [PORT]
 * PORT defaults to 32400.
 */
int cli_backup_main(int argc, char **argv);

/* Prints the verb's help to stdout. */
void cli_backup_usage(void);

/* The verb's arguments and options, for cli_args_parse() (cli/common.h). */
extern const struct cli_command cli_backup_command;

#endif
