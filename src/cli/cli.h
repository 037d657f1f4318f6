/* mycectl: one file per subcommand, dispatched from a table in main.c. */
#ifndef MYCE_CLI_H
#define MYCE_CLI_H

#include "error.h"
#include "http.h"

#include <stdbool.h>

struct cli {
	bool json;       /* -o json */
	char *coord_url;
	char *ca_file;   /* CA of an https coordinator (--ca, or the cluster's) */
	char *token;     /* loaded lazily */
};

/* Calls the coordinator; on transport or auth trouble prints a clear
 * message. Returns HTTP status or negative. */
int cli_call(struct cli *c, const char *method, const char *path, const cJSON *body, long timeout_ms, cJSON **out,
	     struct myce_error **err);
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* prints, returns 1 */
void cli_print_json(const cJSON *j);
/* The coordinator's URL: https with ca (--ca FILE) or with the cluster's own
 * CA when `cluster up` made one, else http. */
void cli_pick_coordinator(struct cli *c, const char *ca);

int cmd_cluster(struct cli *c, int argc, char **argv);
int cmd_run(struct cli *c, int argc, char **argv);
int cmd_get(struct cli *c, int argc, char **argv);
int cmd_migrate(struct cli *c, int argc, char **argv);
int cmd_delete(struct cli *c, int argc, char **argv);

#endif
