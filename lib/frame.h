/* Length-prefixed JSON messages on a stream socket ([u32 big-endian length]
 * [JSON]), used for the node-to-node migration handshake and the final
 * answer around the checkpoint stream. */
#ifndef MYCE_FRAME_H
#define MYCE_FRAME_H

#include "error.h"

#include <cjson/cJSON.h>

#define MYCE_FRAME_MAX (1024 * 1024)

int myce_frame_send(int fd, const cJSON *msg, struct myce_error **err);
/* Waits at most timeout_ms for the message to start arriving (-1: forever). */
int myce_frame_recv(int fd, long timeout_ms, cJSON **msg, struct myce_error **err);
/* TCP connect to ip:port with a timeout; returns fd or negative. */
int myce_tcp_connect(const char *ip, int port, long timeout_ms, struct myce_error **err);
/* TCP listener on ip:port (SO_REUSEADDR); returns fd or negative. */
int myce_tcp_listen(const char *ip, int port, struct myce_error **err);

#endif
