/* Certificates for the embedded cluster's coordinator (see tlsgen.h). */
#include "tlsgen.h"

#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static void keyp(gnutls_x509_privkey_t *k)
{
	if (*k)
		gnutls_x509_privkey_deinit(*k);
}
static void crtp(gnutls_x509_crt_t *c)
{
	if (*c)
		gnutls_x509_crt_deinit(*c);
}
#define _cleanup_key_ __attribute__((cleanup(keyp)))
#define _cleanup_crt_ __attribute__((cleanup(crtp)))

#define TRY(what, call)                                                                            \
	do {                                                                                       \
		int r_ = (call);                                                                   \
		if (r_ < 0)                                                                        \
			return myce_error_set(err, EINVAL, "%s: %s", what, gnutls_strerror(r_));  \
	} while (0)

static int new_key(gnutls_x509_privkey_t *k, struct myce_error **err)
{
	TRY("key", gnutls_x509_privkey_init(k));
	TRY("generate key", gnutls_x509_privkey_generate(*k, GNUTLS_PK_ECDSA,
							 GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0));
	return 0;
}

/* The fields both certificates share: version, serial, validity, CN, key. */
static int new_crt(gnutls_x509_crt_t *c, gnutls_x509_privkey_t key, const char *cn, int days,
		   struct myce_error **err)
{
	unsigned char serial[16];
	if (getrandom(serial, sizeof(serial), 0) != (ssize_t)sizeof(serial))
		return myce_error_errno(err, "no randomness for a certificate serial");
	serial[0] &= 0x7f; /* positive */
	time_t now = time(NULL);
	TRY("certificate", gnutls_x509_crt_init(c));
	TRY("version", gnutls_x509_crt_set_version(*c, 3));
	TRY("serial", gnutls_x509_crt_set_serial(*c, serial, sizeof(serial)));
	TRY("activation", gnutls_x509_crt_set_activation_time(*c, now - 3600));
	TRY("expiration", gnutls_x509_crt_set_expiration_time(*c, now + (time_t)days * 86400));
	TRY("name", gnutls_x509_crt_set_dn_by_oid(*c, GNUTLS_OID_X520_COMMON_NAME, 0, cn, (unsigned)strlen(cn)));
	TRY("public key", gnutls_x509_crt_set_key(*c, key));
	unsigned char id[64];
	size_t idn = sizeof(id);
	TRY("key id", gnutls_x509_crt_get_key_id(*c, GNUTLS_KEYID_USE_SHA1, id, &idn));
	TRY("subject key id", gnutls_x509_crt_set_subject_key_id(*c, id, idn));
	return 0;
}

static int write_pem(const char *dir, const char *name, gnutls_datum_t *d, int mode, struct myce_error **err)
{
	_cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
	int r = myce_write_file_atomic(path, d->data, d->size, mode);
	explicit_bzero(d->data, d->size);
	gnutls_free(d->data);
	d->data = NULL;
	if (r < 0) {
		errno = -r;
		return myce_error_errno(err, "write %s", path);
	}
	return 0;
}

int myce_tls_make_certs(const char *dir, const char *ip, int valid_days, struct myce_error **err)
{
	unsigned char ip4[4];
	if (inet_pton(AF_INET, ip, ip4) != 1)
		return myce_error_set(err, EINVAL, "certificate address %s: not an IPv4 address", ip);
	_cleanup_key_ gnutls_x509_privkey_t cakey = NULL, key = NULL;
	_cleanup_crt_ gnutls_x509_crt_t ca = NULL, crt = NULL;
	if (new_key(&cakey, err) < 0 || new_key(&key, err) < 0)
		return -EINVAL;

	if (new_crt(&ca, cakey, "mycedrive cluster CA", valid_days, err) < 0)
		return -EINVAL;
	TRY("CA constraints", gnutls_x509_crt_set_basic_constraints(ca, 1, 0));
	TRY("CA key usage", gnutls_x509_crt_set_key_usage(ca, GNUTLS_KEY_KEY_CERT_SIGN | GNUTLS_KEY_CRL_SIGN));
	TRY("sign CA", gnutls_x509_crt_sign2(ca, ca, cakey, GNUTLS_DIG_SHA256, 0));

	if (new_crt(&crt, key, ip, valid_days, err) < 0)
		return -EINVAL;
	TRY("constraints", gnutls_x509_crt_set_basic_constraints(crt, 0, -1));
	TRY("key usage", gnutls_x509_crt_set_key_usage(crt, GNUTLS_KEY_DIGITAL_SIGNATURE));
	TRY("purpose", gnutls_x509_crt_set_key_purpose_oid(crt, GNUTLS_KP_TLS_WWW_SERVER, 0));
	TRY("address", gnutls_x509_crt_set_subject_alt_name(crt, GNUTLS_SAN_IPADDRESS, ip4, sizeof(ip4),
							      GNUTLS_FSAN_SET));
	unsigned char id[64];
	size_t idn = sizeof(id);
	TRY("CA key id", gnutls_x509_crt_get_subject_key_id(ca, id, &idn, NULL));
	TRY("authority key id", gnutls_x509_crt_set_authority_key_id(crt, id, idn));
	TRY("sign", gnutls_x509_crt_sign2(crt, ca, cakey, GNUTLS_DIG_SHA256, 0));

	gnutls_datum_t d = {0};
	TRY("export key", gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &d));
	if (write_pem(dir, "tls.key", &d, 0600, err) < 0)
		return -EIO;
	TRY("export certificate", gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &d));
	if (write_pem(dir, "tls.crt", &d, 0644, err) < 0)
		return -EIO;
	TRY("export CA", gnutls_x509_crt_export2(ca, GNUTLS_X509_FMT_PEM, &d));
	return write_pem(dir, "ca.pem", &d, 0644, err);
}
