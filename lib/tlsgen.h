/* A private CA and a server certificate for the embedded cluster's
 * coordinator, made with GnuTLS at `cluster up` (no openssl CLI needed). */
#ifndef MYCE_TLSGEN_H
#define MYCE_TLSGEN_H

#include "error.h"

/* Writes dir/ca.pem (a fresh self-signed CA, ECDSA P-256, SHA-256),
 * dir/tls.crt (a server certificate for the IPv4 address ip, signed by
 * that CA) and dir/tls.key (its key, mode 0600).  The CA's private key is
 * never written: once this returns, nobody can sign another certificate
 * that clients trusting ca.pem would accept.  Files are written
 * atomically; on error nothing is half-written. */
int myce_tls_make_certs(const char *dir, const char *ip, int valid_days, struct myce_error **err);

#endif
