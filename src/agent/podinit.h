/* What myce-agent and myce-podinit share (src/agent/podinit.c says why
 * a pod of several containers has a pod-init at all). */
#ifndef MYCE_PODINIT_H
#define MYCE_PODINIT_H

#include <signal.h>

/* pod-init -> agent (PID 1 of the pod): "container <index> ended with
 * <code>, the pod is ending", value (index << 8) | code.  A real-time
 * signal, so that it queues and carries its value. */
#define MYCE_PODINIT_SIG (SIGRTMIN + 2)
#define MYCE_PODINIT_VALUE(index, code) (((index) << 8) | ((code) & 0xff))
#define MYCE_PODINIT_INDEX(value) ((value) >> 8)
#define MYCE_PODINIT_CODE(value) ((value) & 0xff)

/* After the first container ended, the others get SIGTERM, and SIGKILL
 * this much later. */
#define MYCE_PODINIT_KILL_S 10

#define MYCE_PODINIT_BINARY "myce-podinit"

#endif
