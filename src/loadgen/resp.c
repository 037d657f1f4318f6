/* A minimal RESP (Redis serialization protocol) client side: commands are
 * sent as arrays of bulk strings; replies are parsed incrementally from a
 * buffer (0 = need more bytes). */
#include "loadgen.h"

#include <errno.h>
#include <string.h>

static void put_bulk(struct net_buf *out, const char *s)
{
	size_t n = strlen(s);
	net_buf_printf(out, "$%zu\r\n", n);
	net_buf_append(out, s, n);
	net_buf_append(out, "\r\n", 2);
}

/* Length of the line at in (without CRLF), or -1 if no CRLF yet. */
static ssize_t line_len(const char *in, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++)
		if (in[i] == '\r' && in[i + 1] == '\n')
			return (ssize_t)i;
	return -1;
}

/* Parses the integer after the type byte of a header line. */
static int header_int(const char *in, ssize_t ll, long long *v)
{
	if (ll < 2)
		return -EPROTO;
	char tmp[32];
	if (ll - 1 >= (ssize_t)sizeof(tmp))
		return -EPROTO;
	memcpy(tmp, in + 1, (size_t)ll - 1);
	tmp[ll - 1] = '\0';
	char *end;
	errno = 0;
	*v = strtoll(tmp, &end, 10);
	if (errno || *end != '\0')
		return -EPROTO;
	return 0;
}

/* Size of one complete value at in: > 0, 0 if incomplete, < 0 if not RESP.
 * For a bulk string, *bulk and *bulk_len give its data (NULL for nil). */
static ssize_t resp_value(const char *in, size_t len, const char **bulk, long long *bulk_len)
{
	if (bulk)
		*bulk = NULL;
	ssize_t ll = line_len(in, len);
	if (ll < 0)
		return len > 64 * 1024 ? -EPROTO : 0;
	size_t head = (size_t)ll + 2;
	long long n;
	switch (in[0]) {
	case '+':
	case '-':
	case ':':
		return (ssize_t)head;
	case '$':
		if (header_int(in, ll, &n) < 0)
			return -EPROTO;
		if (n < 0) {
			if (bulk_len)
				*bulk_len = -1;
			return (ssize_t)head;
		}
		if (len < head + (size_t)n + 2)
			return 0;
		if (in[head + n] != '\r' || in[head + n + 1] != '\n')
			return -EPROTO;
		if (bulk) {
			*bulk = in + head;
			*bulk_len = n;
		}
		return (ssize_t)(head + (size_t)n + 2);
	case '*': {
		if (header_int(in, ll, &n) < 0)
			return -EPROTO;
		size_t off = head;
		for (long long i = 0; i < n; i++) {
			ssize_t r = resp_value(in + off, len - off, NULL, NULL);
			if (r <= 0)
				return r;
			off += (size_t)r;
		}
		return (ssize_t)off;
	}
	default:
		return -EPROTO;
	}
}

static void resp_encode_set(struct net_buf *out, const char *key, const char *val)
{
	net_buf_append(out, "*3\r\n$3\r\nSET\r\n", 13);
	put_bulk(out, key);
	put_bulk(out, val);
}

static ssize_t resp_parse_set_reply(const char *in, size_t len, bool *ok)
{
	ssize_t r = resp_value(in, len, NULL, NULL);
	if (r > 0)
		*ok = in[0] == '+' && len >= 5 && memcmp(in, "+OK\r\n", 5) == 0;
	return r;
}

static void resp_encode_get(struct net_buf *out, char *const *keys, size_t n)
{
	net_buf_printf(out, "*%zu\r\n$4\r\nMGET\r\n", n + 1);
	for (size_t i = 0; i < n; i++)
		put_bulk(out, keys[i]);
}

static ssize_t resp_parse_get_reply(const char *in, size_t len, char *const *keys, size_t n,
				    char **vals)
{
	ssize_t total = resp_value(in, len, NULL, NULL);
	if (total <= 0)
		return total;
	/* Complete: now walk it. */
	ssize_t ll = line_len(in, len);
	long long count;
	if (in[0] != '*' || header_int(in, ll, &count) < 0 || count != (long long)n)
		return -EPROTO;
	size_t off = (size_t)ll + 2;
	for (size_t i = 0; i < n; i++) {
		const char *data;
		long long dlen = -1;
		ssize_t r = resp_value(in + off, (size_t)total - off, &data, &dlen);
		if (r <= 0 || in[off] != '$')
			return -EPROTO;
		vals[i] = data ? strndup(data, (size_t)dlen) : NULL;
		if (data && !vals[i])
			abort();
		off += (size_t)r;
	}
	return total;
}

const struct kv_proto resp_proto = {
	.name = "redis",
	.encode_set = resp_encode_set,
	.parse_set_reply = resp_parse_set_reply,
	.encode_get = resp_encode_get,
	.parse_get_reply = resp_parse_get_reply,
};
