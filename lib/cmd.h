/* Running helper programs (iproute2, tc) on cold paths: set-up and teardown. */
#ifndef MYCE_CMD_H
#define MYCE_CMD_H

#include "error.h"

/* Runs argv (argv[0] looked up on PATH), waits; non-zero exit is an error whose
 * message holds the command and its stderr.  Returns 0 or negative. */
int myce_cmd_run(const char *const argv[], struct myce_error **err);
/* Same, but a failing command is not an error (returns its exit status). */
int myce_cmd_try(const char *const argv[]);
#define MYCE_CMD(err, ...) myce_cmd_run((const char *const[]){__VA_ARGS__, NULL}, err)
#define MYCE_CMD_TRY(...) myce_cmd_try((const char *const[]){__VA_ARGS__, NULL})

#endif
