#ifndef CLI_DATE_H
#define CLI_DATE_H

#include "cli/common.h"

/*
 * The date client verb of the sockserv command. Takes the arguments after the verb's name
 * (argv[0] is the verb) and returns the process exit status: 0 done, 1 failure (network,
 * timeout, server refused), 2 usage error. Messages go to stderr, results to stdout.
 */

/* sockserv date [--tcp] [--iso | --unix] [--timeout DURATION] HOST [PORT] */
int cli_date_main(int argc, char **argv);

/* Prints the verb's help to stdout. */
void cli_date_usage(void);

/* The verb's arguments and options, for cli_args_parse() (cli/common.h). */
extern const struct cli_command cli_date_command;

#endif
