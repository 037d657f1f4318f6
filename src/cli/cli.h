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
/* cluster_k8s.c: the Kubernetes side of `cluster up|down --kubeconfig`. */
#define MYCE_K8S_SVC_TABLE "mycedrive-k8s-svc"
/* The kubeconfig is readable and its API server answers; *abs: its absolute path. */
int cluster_k8s_check(const char *kubeconfig, char **abs, struct myce_error **err);
/* Waits until the API has nodes node1..nodeN, Ready. */
int cluster_k8s_wait_nodes(const char *kubeconfig, int nodes, struct myce_error **err);
/* Deletes the Node objects node1..nodeN (best effort; says what failed unless quiet). */
void cluster_k8s_delete_nodes(const char *kubeconfig, int nodes, bool quiet);
int cmd_run(struct cli *c, int argc, char **argv);
int cmd_get(struct cli *c, int argc, char **argv);
int cmd_migrate(struct cli *c, int argc, char **argv);
int cmd_delete(struct cli *c, int argc, char **argv);

#endif
