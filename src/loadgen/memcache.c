/* The memcached text protocol, client side: `set` with its one-line reply,
 * and a multi-key `get` answered by VALUE blocks and END. */
#include "loadgen.h"

#include <errno.h>
#include <string.h>

static ssize_t line_len(const char *in, size_t len)
{
	const char *nl = memchr(in, '\n', len);
	if (!nl)
		return -1;
	if (nl == in || nl[-1] != '\r')
		return -2; /* a bare LF: not the protocol */
	return nl - in - 1;
}

static void mc_encode_set(struct net_buf *out, const char *key, const char *val)
{
	size_t n = strlen(val);
	net_buf_printf(out, "set %s 0 0 %zu\r\n", key, n);
	net_buf_append(out, val, n);
	net_buf_append(out, "\r\n", 2);
}

static ssize_t mc_parse_set_reply(const char *in, size_t len, bool *ok)
{
	ssize_t ll = line_len(in, len);
	if (ll == -1)
		return len > 4096 ? -EPROTO : 0;
	if (ll < 0)
		return -EPROTO;
	*ok = ll == 6 && memcmp(in, "STORED", 6) == 0;
	return ll + 2;
}

static void mc_encode_get(struct net_buf *out, char *const *keys, size_t n)
{
	net_buf_append(out, "get", 3);
	for (size_t i = 0; i < n; i++) {
		net_buf_append(out, " ", 1);
		net_buf_append(out, keys[i], strlen(keys[i]));
	}
	net_buf_append(out, "\r\n", 2);
}

/* Index of key (length klen) in keys, searching from *hint on (replies come in request order). */
static ssize_t find_key(char *const *keys, size_t n, const char *key, size_t klen, size_t *hint)
{
	for (size_t k = 0; k < n; k++) {
		size_t i = (*hint + k) % n;
		if (strlen(keys[i]) == klen && memcmp(keys[i], key, klen) == 0) {
			*hint = i + 1;
			return (ssize_t)i;
		}
	}
	return -1;
}

static ssize_t mc_parse_get_reply(const char *in, size_t len, char *const *keys, size_t n,
				  char **vals)
{
	size_t off = 0, hint = 0;
	for (;;) {
		ssize_t ll = line_len(in + off, len - off);
		if (ll == -1)
			return len - off > 4096 ? -EPROTO : 0;
		if (ll < 0)
			return -EPROTO;
		const char *line = in + off;
		if (ll == 3 && memcmp(line, "END", 3) == 0)
			return (ssize_t)(off + 5);
		if (ll < 6 || memcmp(line, "VALUE ", 6) != 0)
			return -EPROTO; /* ERROR, CLIENT_ERROR, SERVER_ERROR or garbage */
		/* VALUE <key> <flags> <bytes> [<cas>] */
		_cleanup_free_ char *hdr = strndup(line, (size_t)ll);
		if (!hdr)
			abort();
		char *save = NULL;
		strtok_r(hdr, " ", &save);
		char *key = strtok_r(NULL, " ", &save);
		char *flags = strtok_r(NULL, " ", &save);
		char *bytes = strtok_r(NULL, " ", &save);
		if (!key || !flags || !bytes)
			return -EPROTO;
		char *end;
		unsigned long long nbytes = strtoull(bytes, &end, 10);
		if (*end != '\0' || nbytes > 1024 * 1024)
			return -EPROTO;
		size_t data_off = off + (size_t)ll + 2;
		if (len < data_off + nbytes + 2)
			return 0;
		if (in[data_off + nbytes] != '\r' || in[data_off + nbytes + 1] != '\n')
			return -EPROTO;
		ssize_t idx = find_key(keys, n, key, strlen(key), &hint);
		if (idx >= 0 && !vals[idx]) {
			vals[idx] = strndup(in + data_off, (size_t)nbytes);
			if (!vals[idx])
				abort();
		}
		off = data_off + nbytes + 2;
	}
}

const struct kv_proto memcache_proto = {
	.name = "memcached",
	.encode_set = mc_encode_set,
	.parse_set_reply = mc_parse_set_reply,
	.encode_get = mc_encode_get,
	.parse_get_reply = mc_parse_get_reply,
};
