/* Services + EndpointSlices -> nft rules (see ksvc.h). */
#include "ksvc.h"

#include "http.h"
#include "util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <string.h>

void myce_ksvc_map_free(struct myce_ksvc_map *m)
{
	if (!m)
		return;
	for (int i = 0; i < m->n; i++) {
		struct myce_ksvc_entry *e = &m->e[i];
		free(e->id);
		free(e->ip);
		free(e->proto);
		for (int j = 0; j < e->n_eps; j++)
			free(e->eps[j].ip);
		free(e->eps);
	}
	free(m->e);
	free(m);
}

static bool ipv4(const char *s)
{
	struct in_addr a;
	return s && inet_pton(AF_INET, s, &a) == 1;
}

static char *lower(const char *s)
{
	char *c = xstrdup(s);
	for (char *p = c; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return c;
}

static const char *str_or(const char *s, const char *def)
{
	return s ? s : def;
}

static void add_ep(struct myce_ksvc_ep **list, int *n, const char *ip, int port)
{
	for (int i = 0; i < *n; i++)
		if (!strcmp((*list)[i].ip, ip) && (*list)[i].port == port)
			return;
	*list = xrealloc(*list, sizeof(**list) * (size_t)(*n + 1));
	(*list)[*n].ip = xstrdup(ip);
	(*list)[*n].port = port;
	(*n)++;
}

static void free_eps(struct myce_ksvc_ep *list, int n)
{
	for (int i = 0; i < n; i++)
		free(list[i].ip);
	free(list);
}

/* The endpoints of one service port, from the slices of its service. */
static void collect(struct myce_ksvc_entry *e, const char *ns, const char *svc, const char *pname,
		    const char *proto, const cJSON *slices)
{
	struct myce_ksvc_ep *ready = NULL, *serving = NULL;
	int n_ready = 0, n_serving = 0;
	const cJSON *sl;
	cJSON_ArrayForEach(sl, slices)
	{
		const cJSON *meta = cJSON_GetObjectItem(sl, "metadata");
		const char *owner = myce_json_str(cJSON_GetObjectItem(meta, "labels"), "kubernetes.io/service-name");
		if (!owner || strcmp(owner, svc) || strcmp(str_or(myce_json_str(meta, "namespace"), ""), ns))
			continue;
		if (strcmp(str_or(myce_json_str(sl, "addressType"), ""), "IPv4"))
			continue;
		int port = 0;
		const cJSON *pp;
		cJSON_ArrayForEach(pp, cJSON_GetObjectItem(sl, "ports"))
		{
			_cleanup_free_ char *pr = lower(str_or(myce_json_str(pp, "protocol"), "TCP"));
			if (!strcmp(str_or(myce_json_str(pp, "name"), ""), pname) && !strcmp(pr, proto))
				port = (int)myce_json_num(pp, "port", 0);
		}
		if (port < 1 || port > 65535)
			continue;
		const cJSON *ep;
		cJSON_ArrayForEach(ep, cJSON_GetObjectItem(sl, "endpoints"))
		{
			const cJSON *cond = cJSON_GetObjectItem(ep, "conditions");
			/* Unset ready means ready; unset serving follows ready. */
			bool r = myce_json_bool(cond, "ready", true);
			bool s = myce_json_bool(cond, "serving", r);
			const cJSON *a;
			cJSON_ArrayForEach(a, cJSON_GetObjectItem(ep, "addresses"))
			{
				if (!cJSON_IsString(a) || !ipv4(a->valuestring))
					continue;
				if (r)
					add_ep(&ready, &n_ready, a->valuestring, port);
				else if (s)
					add_ep(&serving, &n_serving, a->valuestring, port);
			}
		}
	}
	if (n_ready) {
		e->eps = ready;
		e->n_eps = n_ready;
		free_eps(serving, n_serving);
	} else {
		e->eps = serving;
		e->n_eps = n_serving;
	}
}

static int ip_cmp(const char *a, const char *b)
{
	struct in_addr x, y;
	inet_pton(AF_INET, a, &x);
	inet_pton(AF_INET, b, &y);
	uint32_t u = ntohl(x.s_addr), v = ntohl(y.s_addr);
	return u < v ? -1 : u > v;
}

static int ep_cmp(const void *a, const void *b)
{
	const struct myce_ksvc_ep *x = a, *y = b;
	int c = ip_cmp(x->ip, y->ip);
	return c ? c : x->port - y->port;
}

static int entry_cmp(const void *a, const void *b)
{
	const struct myce_ksvc_entry *x = a, *y = b;
	int c = ip_cmp(x->ip, y->ip);
	if (!c)
		c = strcmp(x->proto, y->proto);
	return c ? c : x->port - y->port;
}

struct myce_ksvc_map *myce_ksvc_compute(const cJSON *services, const cJSON *slices)
{
	struct myce_ksvc_map *m = xzalloc(sizeof(*m));
	const cJSON *s;
	cJSON_ArrayForEach(s, services)
	{
		const cJSON *meta = cJSON_GetObjectItem(s, "metadata");
		const cJSON *spec = cJSON_GetObjectItem(s, "spec");
		const char *ns = myce_json_str(meta, "namespace"), *name = myce_json_str(meta, "name");
		const char *cip = myce_json_str(spec, "clusterIP");
		const char *type = str_or(myce_json_str(spec, "type"), "ClusterIP");
		if (!ns || !name || !ipv4(cip) || !strcmp(type, "ExternalName"))
			continue; /* headless ("None"), IPv6 or not a ClusterIP service */
		const cJSON *p;
		cJSON_ArrayForEach(p, cJSON_GetObjectItem(spec, "ports"))
		{
			int port = (int)myce_json_num(p, "port", 0);
			_cleanup_free_ char *proto = lower(str_or(myce_json_str(p, "protocol"), "TCP"));
			if (port < 1 || port > 65535 || (strcmp(proto, "tcp") && strcmp(proto, "udp") && strcmp(proto, "sctp")))
				continue;
			const char *pname = str_or(myce_json_str(p, "name"), "");
			m->e = xrealloc(m->e, sizeof(*m->e) * (size_t)(m->n + 1));
			struct myce_ksvc_entry *e = &m->e[m->n++];
			memset(e, 0, sizeof(*e));
			e->id = xasprintf("%s/%s:%s", ns, name, pname);
			e->ip = xstrdup(cip);
			e->port = port;
			e->proto = steal_pointer(&proto);
			collect(e, ns, name, pname, e->proto, slices);
			if (e->n_eps > 1)
				qsort(e->eps, (size_t)e->n_eps, sizeof(*e->eps), ep_cmp);
		}
	}
	if (m->n > 1)
		qsort(m->e, (size_t)m->n, sizeof(*m->e), entry_cmp);
	return m;
}

struct buf {
	char *s;
	size_t n, cap;
};

static void __attribute__((format(printf, 2, 3))) bprintf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	_cleanup_free_ char *x = xvasprintf(fmt, ap);
	va_end(ap);
	size_t l = strlen(x);
	if (b->n + l + 1 > b->cap) {
		b->cap = (b->n + l + 1) * 2;
		b->s = xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->n, x, l + 1);
	b->n += l;
}

char *myce_ksvc_nft_delete(const char *table)
{
	/* "add" first makes the "delete" succeed whether or not the table exists. */
	return xasprintf("add table ip %s\ndelete table ip %s\n", table, table);
}

#define MASQ_MARK "0x4000"

char *myce_ksvc_nft(const struct myce_ksvc_map *m, const char *table, const char *masq_cidr)
{
	struct buf b = {0};
	const char *t = table;
	bprintf(&b, "add table ip %s\ndelete table ip %s\nadd table ip %s\n", t, t, t);
	bprintf(&b, "add map ip %s services { type ipv4_addr . inet_proto . inet_service : verdict; }\n", t);
	bprintf(&b, "add set ip %s no-endpoints { type ipv4_addr . inet_proto . inet_service; }\n", t);
	/* Before the coordinator's own service table (priority -100). */
	bprintf(&b, "add chain ip %s output { type nat hook output priority -110; }\n", t);
	bprintf(&b, "add chain ip %s prerouting { type nat hook prerouting priority -110; }\n", t);
	bprintf(&b, "add rule ip %s output ip daddr . meta l4proto . th dport vmap @services\n", t);
	bprintf(&b, "add rule ip %s prerouting ip daddr . meta l4proto . th dport vmap @services\n", t);
	bprintf(&b, "add chain ip %s filter-output { type filter hook output priority -10; }\n", t);
	bprintf(&b, "add chain ip %s filter-forward { type filter hook forward priority -10; }\n", t);
	bprintf(&b, "add rule ip %s filter-output ip daddr . meta l4proto . th dport @no-endpoints reject\n", t);
	bprintf(&b, "add rule ip %s filter-forward ip daddr . meta l4proto . th dport @no-endpoints reject\n", t);
	if (masq_cidr) {
		bprintf(&b, "add chain ip %s postrouting { type nat hook postrouting priority 110; }\n", t);
		bprintf(&b, "add rule ip %s postrouting meta mark & " MASQ_MARK " == " MASQ_MARK " masquerade\n", t);
	}
	for (int i = 0; i < m->n; i++) {
		const struct myce_ksvc_entry *e = &m->e[i];
		if (!e->n_eps) {
			bprintf(&b, "add element ip %s no-endpoints { %s . %s . %d }\n", t, e->ip, e->proto, e->port);
			continue;
		}
		/* Chain names from the index: service names may not fit nft's identifiers. */
		bprintf(&b, "add chain ip %s svc-%d { comment \"%s\"; }\n", t, i, e->id);
		bprintf(&b, "add element ip %s services { %s . %s . %d : goto svc-%d }\n", t, e->ip, e->proto, e->port, i);
		if (masq_cidr)
			bprintf(&b, "add rule ip %s svc-%d ip saddr %s meta mark set meta mark | " MASQ_MARK "\n", t, i,
				masq_cidr);
		if (e->n_eps == 1) {
			bprintf(&b, "add rule ip %s svc-%d meta l4proto %s dnat to %s:%d\n", t, i, e->proto, e->eps[0].ip,
				e->eps[0].port);
			continue;
		}
		/* Endpoint chains first: a verdict map may only name existing chains. */
		for (int j = 0; j < e->n_eps; j++) {
			bprintf(&b, "add chain ip %s svc-%d-ep-%d\n", t, i, j);
			bprintf(&b, "add rule ip %s svc-%d-ep-%d meta l4proto %s dnat to %s:%d\n", t, i, j, e->proto,
				e->eps[j].ip, e->eps[j].port);
		}
		bprintf(&b, "add rule ip %s svc-%d numgen random mod %d vmap { ", t, i, e->n_eps);
		for (int j = 0; j < e->n_eps; j++)
			bprintf(&b, "%s%d : goto svc-%d-ep-%d", j ? ", " : "", j, i, j);
		bprintf(&b, " }\n");
	}
	return b.s;
}
