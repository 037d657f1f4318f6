/* myce-proxy: the service proxy of Kubernetes mode, for the host's network
 * namespace (the client site), as kube-proxy is for a node.  It watches
 * Services and EndpointSlices and keeps nft table `ip mycedrive-k8s-svc`
 * equal to what they say (lib/ksvc.c): ClusterIP:port -> the ready
 * endpoints (the serving ones when none is ready).  Every change rewrites
 * the table in one nft transaction, so a connection never meets a half
 * programmed service; established connections keep their translation
 * (conntrack).  On SIGTERM it removes its table. */
#include "cluster.h"
#include "http.h"
#include "k8s.h"
#include "ksvc.h"
#include "log.h"
#include "nft.h"
#include "util.h"
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>

#define DEFAULT_TABLE "mycedrive-k8s-svc"

struct proxy {
	struct myce_k8s *api;
	struct myce_k8s_informer *svcs, *slices;
	const char *table;
	const char *pod_cidr; /* masqueraded when they reach a service, or NULL */
	int efd; /* an informer saw a change */
	char *applied;
	unsigned applies;
};

static void on_change(void *ud, enum myce_k8s_event ev, const cJSON *obj)
{
	struct proxy *p = ud;
	uint64_t one = 1;
	(void)!write(p->efd, &one, sizeof(one));
}

static int sync_rules(struct proxy *p, struct myce_error **err)
{
	_cleanup_json_ cJSON *svcs = myce_k8s_informer_list(p->svcs);
	_cleanup_json_ cJSON *slices = myce_k8s_informer_list(p->slices);
	struct myce_ksvc_map *m = myce_ksvc_compute(svcs, slices);
	_cleanup_free_ char *rules = myce_ksvc_nft(m, p->table, p->pod_cidr);
	int mapped = 0, eps = 0;
	for (int i = 0; i < m->n; i++) {
		mapped += m->e[i].n_eps > 0;
		eps += m->e[i].n_eps;
	}
	int n = m->n;
	myce_ksvc_map_free(m);
	if (p->applied && !strcmp(p->applied, rules))
		return 0;
	if (myce_nft_run(rules, err) < 0)
		return myce_error_wrap(err, "program table %s", p->table);
	free(p->applied);
	p->applied = steal_pointer(&rules);
	p->applies++;
	log_info("services: %d ports, %d with endpoints (%d endpoints)", n, mapped, eps);
	return 0;
}

int main(int argc, char **argv)
{
	struct proxy p = {.table = DEFAULT_TABLE, .pod_cidr = MYCE_POD_NET, .efd = -1};
	const char *kubeconfig = NULL;
	static const struct option opts[] = {{"kubeconfig", required_argument, 0, 'k'},
					     {"table", required_argument, 0, 't'},
					     {"pod-cidr", required_argument, 0, 'p'},
					     {0, 0, 0, 0}};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'k': kubeconfig = optarg; break;
		case 't': p.table = optarg; break;
		case 'p': p.pod_cidr = *optarg ? optarg : NULL; break;
		default: return 2;
		}
	}
	if (!kubeconfig || optind != argc) {
		fprintf(stderr, "usage: myce-proxy --kubeconfig FILE [--table NAME] [--pod-cidr CIDR|\"\"]\n");
		return 2;
	}
	myce_log_init("proxy", MYCE_LOG_INFO);
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	_cleanup_close_ int sfd = signalfd(-1, &sigs, SFD_CLOEXEC);
	p.efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	_cleanup_error_ struct myce_error *e = NULL;
	if (sfd < 0 || p.efd < 0) {
		log_error("signalfd/eventfd: %s", strerror(errno));
		return 1;
	}
	if (myce_k8s_new(kubeconfig, &p.api, &e) < 0 ||
	    myce_k8s_informer_start(p.api, "/api/v1/services", NULL, on_change, &p, &p.svcs, &e) < 0 ||
	    myce_k8s_informer_start(p.api, "/apis/discovery.k8s.io/v1/endpointslices", NULL, on_change, &p, &p.slices,
				    &e) < 0) {
		log_error("%s", myce_error_msg(e));
		myce_k8s_informer_stop(p.svcs);
		myce_k8s_free(p.api);
		close(p.efd);
		return 1;
	}
	log_info("myce-proxy (mycedrive %s): watching services and endpoint slices of %s", MYCE_VERSION,
		 myce_k8s_server(p.api));
	bool synced = false, retry = false;
	for (;;) {
		/* Rules only from complete lists: never wipe services at start. */
		if (!synced && myce_k8s_informer_wait_synced(p.svcs, 0) && myce_k8s_informer_wait_synced(p.slices, 0)) {
			synced = true;
			uint64_t one = 1;
			(void)!write(p.efd, &one, sizeof(one));
		}
		struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = p.efd, .events = POLLIN}};
		int r = poll(pf, 2, !synced ? 100 : retry ? 1000 : -1);
		if (r < 0 && errno != EINTR)
			break;
		if (pf[0].revents & POLLIN)
			break;
		if (pf[1].revents & POLLIN) {
			uint64_t v;
			(void)!read(p.efd, &v, sizeof(v));
		}
		if (synced && ((pf[1].revents & POLLIN) || (retry && r == 0))) {
			_cleanup_error_ struct myce_error *se = NULL;
			retry = sync_rules(&p, &se) < 0;
			if (retry)
				log_error("%s (retrying)", myce_error_msg(se));
		}
	}
	log_info("stopping: removing table %s", p.table);
	myce_k8s_informer_stop(p.svcs);
	myce_k8s_informer_stop(p.slices);
	_cleanup_free_ char *del = myce_ksvc_nft_delete(p.table);
	if (myce_nft_run(del, &e) < 0)
		log_error("%s", myce_error_msg(e));
	myce_k8s_free(p.api);
	free(p.applied);
	close(p.efd);
	return 0;
}
