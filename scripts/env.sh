# Source this file (". scripts/env.sh") to build against the CRIU that
# scripts/setup.sh installed.  POSIX sh; safe under `set -u`; idempotent.
: "${MYCE_CRIU_PREFIX:=/opt/mycedrive/criu}"
export MYCE_CRIU_PREFIX
case ":${PKG_CONFIG_PATH:-}:" in
*":$MYCE_CRIU_PREFIX/lib/pkgconfig:"*) ;;
*) PKG_CONFIG_PATH="$MYCE_CRIU_PREFIX/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}" ;;
esac
export PKG_CONFIG_PATH
