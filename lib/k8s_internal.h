/* What lib/kubeconfig.c, lib/k8s.c and lib/k8s_informer.c share about one
 * API server configuration.  Not for programs: they use lib/k8s.h.  Unit
 * tests include it to look at what a kubeconfig produced. */
#ifndef MYCE_K8S_INTERNAL_H
#define MYCE_K8S_INTERNAL_H

#include "k8s.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define MYCE_K8S_POOL 8                     /* idle connections kept */
#define MYCE_K8S_TOKEN_MAX_AGE_US 60000000LL /* re-read a token file after 60 s */
#define MYCE_K8S_SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* A PEM blob in memory (from a file or from base64 -data). */
struct myce_k8s_blob {
	char *data;
	size_t len;
};

struct myce_k8s {
	char *server; /* "https://host:port", no trailing '/' */
	char *ns;     /* never NULL */
	struct myce_k8s_blob ca;   /* empty: the system's CA store */
	bool insecure;             /* insecure-skip-tls-verify */
	struct myce_k8s_blob cert; /* client certificate (PEM) */
	struct myce_k8s_blob key;  /* client key (PEM) */
	char *token_file;          /* re-read when old or after a 401 */
	long timeout_ms;

	pthread_mutex_t lock; /* token, token_read_us, pool */
	char *token;          /* bearer token or NULL */
	int64_t token_read_us;
	CURL *pool[MYCE_K8S_POOL];
	int npool;
};

/* Allocates an empty configuration (namespace "default", timeout 30 s). */
struct myce_k8s *myce_k8s_alloc(void);

/* A copy of the current bearer token (NULL if none), re-reading the token
 * file when the copy is older than MYCE_K8S_TOKEN_MAX_AGE_US or force is set.
 * A failed re-read keeps the old token. Caller frees. */
char *myce_k8s_token(struct myce_k8s *c, bool force);

/* Sets URL, TLS (CA, client certificate, verification), authorization and
 * the common headers on h; hdrs receives the header list to free after the
 * transfer; extra_header (may be NULL) is added, e.g. a Content-Type. */
void myce_k8s_curl_setup(struct myce_k8s *c, CURL *h, const char *url, const char *token, const char *extra_header,
			 struct curl_slist **hdrs);

/* Decodes standard base64 (whitespace ignored); NULL if malformed. */
char *myce_k8s_base64_decode(const char *in, size_t *len_out);

/* libcurl initialised once per process. */
void myce_k8s_curl_init(void);

static inline void curl_slist_freep(struct curl_slist **l)
{
	if (*l)
		curl_slist_free_all(*l);
}
#define _cleanup_slist_ __attribute__((cleanup(curl_slist_freep)))

#endif
