#ifndef CLI_CLI_H
#define CLI_CLI_H

#include "cli/common.h"

/*
 * The sockserv command's client verbs. Each takes the arguments after the verb's name
 * (argv[0] is the verb) and returns the process exit status: 0 done, 1 failure (network,
 * timeout, server refused), 2 usage error. Messages go to stderr, results to stdout.
 */

/* sockserv echo [--udp] [--timeout DURATION] HOST PORT [MESSAGE] */
int cli_echo_main(int argc, char **argv);

/* Prints the verb's help to stdout. */
void cli_echo_usage(void);

/* The verb's arguments and options, for cli_args_parse() (cli/common.h). */
extern const struct cli_command cli_echo_command;

#endif
