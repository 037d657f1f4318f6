/* myce-node: the node daemon.  Everything that needs a node's privileges:
 * creating pods (namespaces, veth, addresses), streaming checkpoints to
 * other nodes and receiving them, the network preparation of a migration
 * target.  Runs inside its node's network namespace. */
#ifndef MYCE_NODE_H
#define MYCE_NODE_H

#include "error.h"
#include "http.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct pod {
	long id;
	char *app;
	char *addr;       /* the pod's own address */
	cJSON *carried;   /* array of addresses it carries for earlier pods */
	pid_t agent_pid;  /* in the node daemon's PID namespace; 0 once exited */
	bool target;      /* created as a migration target */
	int64_t active_since_us; /* serving since (start or restore); 0 = not yet */
	char *k8s_pod;    /* Kubernetes mode: "namespace/name" of the Pod object, else NULL */
	char *k8s_uid;    /* and its UID */
	struct pod *next;
};

struct transfer {
	long migration_id;
	uint64_t raw_done, raw_total, wire_done;
	struct transfer *next;
};

/* What became of each migration this node was the source of, so that a
 * restarted coordinator can conclude it. */
struct send_record {
	long migration_id;
	cJSON *result; /* NULL while running */
	struct send_record *next;
};

struct node {
	char *name;
	int idx;
	char *ip;
	char *coord_url;
	char *ca_file;         /* CA that signed an https coordinator's certificate, or NULL */
	char *token;
	char *exe_dir;
	pthread_mutex_t lock; /* protects pods and transfers */
	struct pod *pods;
	struct transfer *transfers;
	struct send_record *sends;
	bool fault_fired;     /* fault.c: each injected fault fires once */
	double carry_max_s;   /* carried addresses are released after this at the latest */
};

/* pods.c */
int pod_create(struct node *n, const cJSON *spec, struct pod **out, struct myce_error **err);
int pod_delete(struct node *n, long id, struct myce_error **err);
struct pod *pod_find(struct node *n, long id); /* call with n->lock held */
void pod_reaped(struct node *n, pid_t pid);
/* Reaps agents that exited (SIGCHLD). */
void pods_reap(struct node *n);
cJSON *pod_to_json(const struct pod *p);
char *pod_agent_sock(long id);
void pods_delete_all(struct node *n);
/* Writes the pod's pod.json (lock held). */
void pod_save(struct node *n, const struct pod *p);
/* At start: adopt the pods in `live` (the coordinator's list), clean the rest. */
void pods_reconcile(struct node *n, const cJSON *live);

/* send.c: the source side of a migration (checkpoint and stream). */
void node_send(struct node *n, long pod_id, const cJSON *req, struct myce_http_resp *resp);
/* The destination's guard, addresses and routes for a migration target. */
int node_target_network(struct node *n, struct pod *p, const cJSON *carried, struct myce_error **err);
/* local rollback: restore the pod's application from its local checkpoint. */
void node_restore_local(struct node *n, long pod_id, struct myce_http_resp *resp);
/* The agent's own view: state (running, checkpointed, ...), app_pid. */
void node_agent_status(struct node *n, long pod_id, struct myce_http_resp *resp);
cJSON *node_transfer_get(struct node *n, long migration_id);
/* {"state": "running"|"done", "result": {...}} or NULL when unknown. */
cJSON *node_send_record(struct node *n, long migration_id);

/* unlock.c: removes CRIU's network lock from a source pod whose
 * application moved away (POST /v1/pods/{id}/unlock). */
void node_unlock(struct node *n, long pod_id, struct myce_http_resp *resp);

/* fault.c: test-only fault injection (MYCE_FAULT). */
bool fault_fire(struct node *n, const char *name);
/* Returns a descriptor that relays to fd, flipping the byte at flip_at. */
int fault_corrupting_relay(int fd, uint64_t flip_at);

/* addrgc.c: releases carried addresses no connection uses any more. */
int addrgc_start(struct node *n, struct myce_error **err);

/* recv.c: the destination side: accepts streams on MYCE_STREAM_PORT. */
int node_recv_start(struct node *n, struct myce_error **err);

/* kubelet*.c: Kubernetes mode (--kubeconfig), a virtual kubelet for the
 * embedded runtime.  A pod directory holding this file belongs to it. */
#define MYCE_KUBELET_FILE "k8s.json"
struct kubelet;
/* api_ns: the network namespace from which the API server is reachable
 * (-1: this daemon's own); the daemon's pods live in its current one. */
int kubelet_start(struct node *n, const char *kubeconfig, int api_ns, struct kubelet **out, struct myce_error **err);
/* Stops watching and renewing; pods keep running (pods_delete_all ends them). */
void kubelet_stop(struct kubelet *k);

#endif
