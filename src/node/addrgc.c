/* The carried addresses' end of life.  A pod restored from a migration
 * carries its predecessors' addresses so that their established connections
 * survive; once no connection uses such an address any more (or after a
 * bounded time, reported), the node asks the coordinator to release it and
 * removes it from the pod and its route from the node. */
#include "node.h"

#include "cluster.h"
#include "log.h"
#include "netns.h"
#include "nlroute.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

struct carried_check {
	long id;
	pid_t agent_pid;
	int64_t since_us;
	cJSON *carried;
};

/* Counts the sockets of the pod's network namespace whose local address is
 * addr, ignoring listeners and TIME_WAIT. */
static int connections_on(pid_t agent_pid, const char *addr)
{
	_cleanup_free_ char *path = xasprintf("/proc/%d/net/tcp", (int)agent_pid);
	_cleanup_fclose_ FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	struct in_addr want;
	if (inet_pton(AF_INET, addr, &want) != 1)
		return -1;
	char line[512];
	int n = 0;
	if (!fgets(line, sizeof(line), f)) /* header */
		return 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned slot, local, lport, state;
		if (sscanf(line, " %u: %8X:%X %*8X:%*X %X", &slot, &local, &lport, &state) != 4)
			continue;
		if (state == 0x0A || state == 0x06 || state == 0x07) /* LISTEN, TIME_WAIT, CLOSE */
			continue;
		if (local == want.s_addr)
			n++;
	}
	return n;
}

struct addr_del {
	const char *addr;
};

static int del_inside(void *arg, struct myce_error **err)
{
	struct addr_del *d = arg;
	_cleanup_free_ char *cidr = xasprintf("%s/32", d->addr);
	return myce_nl_addr_del("eth0", cidr, err);
}

static void release(struct node *n, long id, const char *addr, int conns, double age_s)
{
	_cleanup_free_ char *url = xasprintf("%s/v1/pods/%ld/release", n->coord_url, id);
	_cleanup_json_ cJSON *body = cJSON_CreateObject();
	cJSON_AddStringToObject(body, "addr", addr);
	cJSON_AddNumberToObject(body, "open_connections", conns);
	_cleanup_error_ struct myce_error *e = NULL;
	int st = myce_http_call_ca("POST", url, n->token, n->ca_file, body, 5000, NULL, &e);
	if (st != 200)
		return; /* e.g. the app is migrating right now: try again later */
	_cleanup_free_ char *ns = myce_pod_netns(id);
	_cleanup_close_ int nsfd = myce_netns_open(ns, NULL);
	struct addr_del d = {addr};
	if (nsfd >= 0)
		myce_netns_run(nsfd, del_inside, &d, NULL);
	_cleanup_free_ char *cidr = xasprintf("%s/32", addr);
	myce_nl_route_del(cidr, NULL);
	pthread_mutex_lock(&n->lock);
	struct pod *p = pod_find(n, id);
	if (p) {
		for (int i = cJSON_GetArraySize(p->carried) - 1; i >= 0; i--) {
			cJSON *x = cJSON_GetArrayItem(p->carried, i);
			if (cJSON_IsString(x) && !strcmp(x->valuestring, addr))
				cJSON_DeleteItemFromArray(p->carried, i);
		}
	}
	pthread_mutex_unlock(&n->lock);
	if (conns > 0)
		log_warn("pod %ld: released carried address %s after %.0f s with %d connection(s) still open", id, addr,
			 age_s, conns);
	else
		log_info("pod %ld: released carried address %s (no connection uses it any more)", id, addr);
}

static void *gc_thread(void *arg)
{
	struct node *n = arg;
	for (;;) {
		sleep(1);
		struct carried_check checks[64];
		int k = 0;
		int64_t now = myce_now_us();
		pthread_mutex_lock(&n->lock);
		for (struct pod *p = n->pods; p && k < 64; p = p->next) {
			if (p->agent_pid <= 0 || !p->active_since_us || cJSON_GetArraySize(p->carried) == 0)
				continue;
			checks[k++] = (struct carried_check){p->id, p->agent_pid, p->active_since_us,
							     cJSON_Duplicate(p->carried, true)};
		}
		pthread_mutex_unlock(&n->lock);
		for (int i = 0; i < k; i++) {
			double age_s = (double)(now - checks[i].since_us) / 1e6;
			/* Give restored connections a moment to show up. */
			if (age_s >= 2) {
				const cJSON *a;
				cJSON_ArrayForEach(a, checks[i].carried)
				{
					int c = connections_on(checks[i].agent_pid, a->valuestring);
					if (c == 0 || (c > 0 && age_s > n->carry_max_s))
						release(n, checks[i].id, a->valuestring, c, age_s);
				}
			}
			cJSON_Delete(checks[i].carried);
		}
	}
	return NULL;
}

int addrgc_start(struct node *n, struct myce_error **err)
{
	pthread_t t;
	if (pthread_create(&t, NULL, gc_thread, n) != 0)
		return myce_error_set(err, EAGAIN, "start the carried-address collector");
	pthread_detach(t);
	return 0;
}
