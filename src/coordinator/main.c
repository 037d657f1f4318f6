/* myce-coordinator main: configuration, state, the HTTP server. */
#include "coord.h"

#include "cluster.h"
#include "log.h"
#include "util.h"
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <string.h>

int main(int argc, char **argv)
{
	struct coord c = {.zstd_level = 1};
	const char *db = MYCE_RUN_DIR "/coordinator.db", *token_file = NULL, *tls_cert = NULL, *tls_key = NULL;
	const char *kubeconfig = NULL;
	static const struct option opts[] = {{"listen", required_argument, 0, 'l'},
					     {"db", required_argument, 0, 'd'},
					     {"token-file", required_argument, 0, 't'},
					     {"zstd-level", required_argument, 0, 'z'},
					     {"tls-cert", required_argument, 0, 'C'},
					     {"tls-key", required_argument, 0, 'K'},
					     {"kubeconfig", required_argument, 0, 'k'},
					     {0, 0, 0, 0}};
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'l': c.listen = optarg; break;
		case 'd': db = optarg; break;
		case 't': token_file = optarg; break;
		case 'z': c.zstd_level = atoi(optarg); break;
		case 'C': tls_cert = optarg; break;
		case 'K': tls_key = optarg; break;
		case 'k': kubeconfig = optarg; break;
		default: return 2;
		}
	}
	if (!c.listen || !token_file || !tls_cert != !tls_key) {
		fprintf(stderr, "usage: myce-coordinator --listen IP:PORT --token-file F [--db PATH] [--zstd-level N]\n"
				"                        [--tls-cert FILE --tls-key FILE]   (HTTPS; both or neither)\n"
				"                        [--kubeconfig FILE]                (Kubernetes mode)\n");
		return 2;
	}
	myce_log_init("coordinator", MYCE_LOG_INFO);
	_cleanup_error_ struct myce_error *e = NULL;
	/* A bad TLS configuration is refused before the database or the
	 * service table is touched. */
	if (tls_cert && myce_http_tls_check(tls_cert, tls_key, &e) < 0) {
		log_error("%s", myce_error_msg(e));
		return 1;
	}
	c.token = myce_token_load(token_file, &e);
	pthread_mutex_init(&c.lock, NULL);
	pthread_cond_init(&c.changed, NULL);
#ifdef MYCE_COORD_K8S
	/* Kubernetes mode: a bad kubeconfig is refused before anything changes. */
	if (kubeconfig && myce_k8s_new(kubeconfig, &c.k8s, &e) < 0) {
		log_error("kubeconfig %s: %s", kubeconfig, myce_error_msg(e));
		return 1;
	}
#else
	/* Kubernetes mode lives in its own build, so that libcurl and the
	 * API client are not mapped into the embedded-mode coordinator. */
	if (kubeconfig) {
		_cleanup_free_ char *dir = myce_exe_dir();
		_cleanup_free_ char *k8s = xasprintf("%s/myce-coordinator-k8s", dir);
		execv(k8s, argv);
		log_error("exec %s: %s", k8s, strerror(errno));
		return 1;
	}
#endif
	if (!c.token || db_open(&c, db, &e) < 0 || net_services_init(&c, &e) < 0) {
		log_error("%s", myce_error_msg(e));
		return 1;
	}
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	struct myce_http_server *srv =
		myce_http_server_new_tls(c.listen, c.token, tls_cert, tls_key, coord_api_handle, &c, &e);
	if (!srv) {
		log_error("%s", myce_error_msg(e));
		return 1;
	}
	log_info("coordinator up on %s://%s (mycedrive %s, db %s%s)", tls_cert ? "https" : "http", c.listen, MYCE_VERSION,
		 db, c.k8s ? ", Kubernetes mode" : "");
	int inflight = mig_recover(&c);
	if (inflight)
		log_info("recovering %d migration(s) left in flight", inflight);
	int s;
	sigwait(&sigs, &s);
	log_info("shutting down");
	myce_http_server_free(srv);
	pthread_mutex_lock(&c.lock);
	sqlite3_close(c.db);
	free(c.token);
#ifdef MYCE_COORD_K8S
	myce_k8s_free(c.k8s);
#endif
	return 0;
}
