/* myce-coordinator: the paper's Migration Coordinator.  The only holder of
 * durable state (SQLite); decides, never carries bulk data. */
#ifndef MYCE_COORD_H
#define MYCE_COORD_H

#include "error.h"
#include "http.h"
#include "k8s.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

struct coord {
	sqlite3 *db;
	pthread_mutex_t lock;  /* one writer: every use of db holds it */
	pthread_cond_t changed; /* broadcast when a pod registers or a migration moves */
	char *token;
	char *listen;
	int zstd_level;        /* -1: choose from the link */
	struct myce_k8s *k8s;  /* Kubernetes mode (--kubeconfig), else NULL */
};

/* api.c: the HTTP handler (myce_http_handler). */
void coord_api_handle(void *ctx, const struct myce_http_req *req, struct myce_http_resp *resp);

/* metrics.c: GET /metrics (Prometheus text), computed from the database. */
void coord_metrics(struct coord *c, struct myce_http_resp *resp);

/* db.c */
int db_open(struct coord *c, const char *path, struct myce_error **err);
/* Runs sql with printf-style %Q/%q quoting (sqlite3_mprintf); lock held. */
int db_exec(struct coord *c, struct myce_error **err, const char *fmt, ...);
/* Rows of a query as a JSON array of objects (column name -> value). */
cJSON *db_query(struct coord *c, const char *fmt, ...);
/* First row or NULL. */
cJSON *db_query_one(struct coord *c, const char *fmt, ...);
int64_t db_last_id(struct coord *c);

/* net.c: host-side network state (service DNAT map, host routes). */
int net_services_init(struct coord *c, struct myce_error **err);
/* Points svc_ip:port at ep_ip:port; old_ep is the current endpoint or NULL. */
int net_service_set(const char *svc_ip, int port, const char *old_ep, const char *ep_ip, struct myce_error **err);
int net_service_del(const char *svc_ip, int port, struct myce_error **err);
int net_route_addr(const char *addr, const char *via, struct myce_error **err);
void net_route_addr_del(const char *addr);

/* apps.c */
void apps_create(struct coord *c, const cJSON *body, struct myce_http_resp *resp);
void apps_delete(struct coord *c, const char *name, struct myce_http_resp *resp);
/* Allocates a pod address on node (lock held); NULL when the range is full. */
char *pods_alloc_addr(struct coord *c, const char *node);
/* Waits until pod id reaches one of the states (lock held); false on timeout. */
bool pods_wait_state(struct coord *c, long id, const char *s1, const char *s2, int timeout_ms);
/* True once addr:port accepts TCP connections (polled up to timeout_ms). */
bool app_ready(const char *addr, int port, int timeout_ms);
/* Calls the node daemon: method + path, JSON in/out. Returns HTTP status or <0. */
int node_call(struct coord *c, const char *node, const char *method, const char *path, const cJSON *body,
	      long timeout_ms, cJSON **out, struct myce_error **err);

/* migration.c */
void mig_start(struct coord *c, const cJSON *body, struct myce_http_resp *resp);
void mig_handoff(struct coord *c, long id, struct myce_http_resp *resp);
void mig_freeze(struct coord *c, long id, struct myce_http_resp *resp);
cJSON *mig_get(struct coord *c, long id); /* lock held */
/* At start: drives every migration left in flight to an end state. */
int mig_recover(struct coord *c);
/* Shared with the Kubernetes mode: test crash points (MYCE_FAULT), a phase
 * recorded before it starts (lock held), the host routes of the carried
 * addresses to node, the source node's send (dump, stream, restore) and
 * what the nodes know after a restart of the coordinator. */
void mig_crash_point(const char *name);
void mig_set_phase(struct coord *c, long id, const char *phase);
void mig_route_carried(long id, const cJSON *carried, const char *node);
const char *mig_send_phase(const char *mode);
int mig_send(struct coord *c, long id, const char *src_node, long src_pod, const char *dst_node, long dst_pod,
	     const cJSON *carried, const char *mode, int level, cJSON **res, struct myce_error **err);
cJSON *mig_source_record(struct coord *c, const char *src_node, long id);
cJSON *mig_agent_state(struct coord *c, const char *node, long pod);

/* k8s_mig.c: Kubernetes mode, a pod of the API migrated through the real
 * controllers (docs/k8s-migration.md). */
void k8s_mig_start(struct coord *c, const cJSON *body, struct myce_http_resp *resp);
int k8s_mig_recover(struct coord *c);
/* The role of a registering agent of pod "namespace/name" (lock held):
 * the id of the migration whose target it is, or -1.  Records local_id. */
long k8s_mig_target_of(struct coord *c, const char *pod, long local_id);

/* k8s_carry.c: the addresses Kubernetes-mode targets carry, reserved
 * against the kubelets' own allocation (all with the lock held). */
int k8s_carry_reserve(struct coord *c, long mid, const char *pod, const cJSON *carried, struct myce_error **err);
/* [{addr, migration_id, pod, node}]: every address reserved now. */
cJSON *k8s_carry_list(struct coord *c);
/* A node reports addr unused by its pod local_id: -ENOENT when that pod is
 * not its newest holder, -EBUSY while the pod migrates. */
int k8s_carry_release(struct coord *c, long local_id, const char *addr, struct myce_error **err);
/* Pod "namespace/name" went away for good: what it carried is free. */
void k8s_carry_drop_pod(struct coord *c, const char *pod);

/* k8s_obj.c: the coordinator's requests to the Kubernetes API. */
/* GET of a namespaced pod; 0 and *out, or -ENOENT / another error. */
int kobj_pod_get(struct coord *c, const char *ns, const char *name, cJSON **out, struct myce_error **err);
int kobj_node_get(struct coord *c, const char *name, cJSON **out, struct myce_error **err);
bool kobj_node_ready(const cJSON *node);
int kobj_pod_patch(struct coord *c, const char *ns, const char *name, const cJSON *patch, struct myce_error **err);
/* Deletes a pod (grace_s < 0: its own grace period); a pod already gone is success. */
int kobj_pod_delete(struct coord *c, const char *ns, const char *name, const char *uid, int grace_s,
		    struct myce_error **err);
/* Records a core/v1 Event on a pod (best effort, logged on failure). */
void kobj_event(struct coord *c, const char *ns, const char *pod, const char *uid, bool warning, const char *reason,
		const char *fmt, ...) __attribute__((format(printf, 7, 8)));

#endif
