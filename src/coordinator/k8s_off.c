/* The coordinator without Kubernetes mode (myce-coordinator): the Kubernetes
 * API client and libcurl stay out of its address space, which keeps it under
 * 10 MB resident with 1,000 containers (bench/coordinator-memory.sh).
 * `myce-coordinator --kubeconfig` execs myce-coordinator-k8s (main.c), built
 * from the same sources plus k8s_mig.c and k8s_obj.c. */
#include "coord.h"

#include "log.h"

void k8s_mig_start(struct coord *c, const cJSON *body, struct myce_http_resp *resp)
{
	(void)c;
	(void)body;
	myce_http_error(resp, 400, "migrating a pod by name needs the coordinator's Kubernetes mode "
				   "(--kubeconfig); use \"app\" for the embedded cluster's applications");
}

long k8s_mig_target_of(struct coord *c, const char *pod, long local_id)
{
	(void)c;
	(void)pod;
	(void)local_id;
	return -1;
}

int k8s_mig_recover(struct coord *c)
{
	pthread_mutex_lock(&c->lock);
	_cleanup_json_ cJSON *rows = db_query(c, "SELECT m.id FROM migrations m JOIN k8s_migrations k ON k.migration_id = m.id"
						 " WHERE m.outcome IS NULL");
	pthread_mutex_unlock(&c->lock);
	int n = cJSON_GetArraySize(rows);
	if (n)
		log_error("%d Kubernetes-mode migration(s) left in flight: restart the coordinator with --kubeconfig "
			  "to conclude them", n);
	return 0;
}
