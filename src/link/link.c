/* myce-link: a userspace wire between two TAP devices, with one-way delay,
 * an optional rate and a bounded drop-tail queue per direction; the link
 * between two sites of the embedded cluster on kernels without netem.
 *
 * Every frame read from one TAP is stamped with the time it is due at the
 * other TAP: the time it was read, plus the wait for the transmitter and its
 * serialisation time at --rate-mbit, plus --delay-ms.  It waits in that
 * direction's ring until then.  Due times never decrease within a direction,
 * so each ring is a FIFO whose head is the next frame due, and order is kept.
 *
 * One thread: epoll over both TAPs, one timerfd armed (absolute) at the
 * earliest head of the two rings, and a signalfd.  No allocation per frame:
 * frames are read straight into the ring.  See docs/link.md. */
#include "error.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <time.h>

/* Larger than any TAP frame: MTU 65521 plus Ethernet and VLAN headers. */
#define FRAME_MAX 65600
/* Frames read from one TAP before the loop looks at the clock again. */
#define READ_BATCH 32
/* Lateness histogram: 1 us buckets up to 5 ms, the last one is "more". */
#define LATE_BUCKETS 5001
#define NS_PER_MS 1000000LL

enum { TAG_A = 0, TAG_B = 1, TAG_TIMER, TAG_SIGNAL };

/* A frame in a ring; records are 16-byte aligned. */
struct rec {
	uint32_t len;
	uint32_t pad;
	int64_t due_ns;
	uint8_t data[];
};

/* A byte ring whose memory is mapped twice, back to back, so that a record
 * starting anywhere in it is contiguous in memory: no wrap-around cases. */
struct ring {
	uint8_t *base;
	size_t cap;
	uint64_t head, tail; /* byte offsets that only grow; tail - head in use */
	uint32_t count;
};

struct dir_stats {
	uint64_t frames, bytes, drops, write_errors;
	int64_t late_max_ns;
	uint64_t late_hist[LATE_BUCKETS];
};

/* One direction: frames read from src, written to dst. */
struct link_dir {
	const char *from, *to;
	int src, dst; /* borrowed from struct link */
	struct ring ring;
	int64_t link_free_ns; /* when the transmitter is done with the frames queued so far */
	bool blocked;	      /* dst answered EAGAIN: wait for EPOLLOUT */
	struct dir_stats st;
};

struct link {
	const char *tap[2];
	const char *ready_file;
	bool ready_written;
	double delay_ms, rate_mbit, queue_ms;
	long queue_frames;
	int rt_prio;
	int64_t delay_ns, queue_ns;
	double ns_per_byte; /* serialisation time; 0 = unlimited */
	int fd[2], ep, tfd, sfd;
	int64_t armed_ns;
	struct link_dir dir[2]; /* 0: a->b, 1: b->a */
	uint8_t scratch[FRAME_MAX];
};

static inline int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline size_t rec_size(size_t len)
{
	return (sizeof(struct rec) + len + 15) & ~(size_t)15;
}

static inline size_t ring_room(const struct ring *r)
{
	return r->cap - (size_t)(r->tail - r->head);
}

static inline struct rec *ring_at(const struct ring *r, uint64_t off)
{
	return (struct rec *)(r->base + off % r->cap);
}

static int ring_init(struct ring *r, size_t want, struct myce_error **err)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t cap = (want + page - 1) / page * page;
	_cleanup_close_ int fd = memfd_create("myce-link-ring", MFD_CLOEXEC);
	if (fd < 0)
		return myce_error_errno(err, "memfd_create");
	if (ftruncate(fd, (off_t)cap) < 0)
		return myce_error_errno(err, "size a ring of %zu bytes", cap);
	uint8_t *base = mmap(NULL, 2 * cap, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		return myce_error_errno(err, "reserve %zu bytes of address space", 2 * cap);
	/* Populated now: no page faults on the data path later. */
	int flags = MAP_SHARED | MAP_FIXED | MAP_POPULATE;
	if (mmap(base, cap, PROT_READ | PROT_WRITE, flags, fd, 0) == MAP_FAILED ||
	    mmap(base + cap, cap, PROT_READ | PROT_WRITE, flags, fd, 0) == MAP_FAILED) {
		int rc = myce_error_errno(err, "map a ring of %zu bytes", cap);
		munmap(base, 2 * cap);
		return rc;
	}
	*r = (struct ring){.base = base, .cap = cap};
	return 0;
}

static void ring_free(struct ring *r)
{
	if (r->base)
		munmap(r->base, 2 * r->cap);
	r->base = NULL;
}

/* Attaches to an existing persistent TAP; returns its fd (nonblocking). */
static int tap_attach(const char *name, struct myce_error **err)
{
	if (strlen(name) >= IFNAMSIZ)
		return myce_error_set(err, EINVAL, "device name %s is too long", name);
	/* TUNSETIFF with a name that does not exist would create a new device. */
	if (if_nametoindex(name) == 0)
		return myce_error_set(err, ENODEV,
				      "no device %s in this network namespace (create it first: "
				      "ip tuntap add dev %s mode tap)",
				      name, name);
	_cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return myce_error_errno(err, "open /dev/net/tun");
	struct ifreq ifr = {0};
	memcpy(ifr.ifr_name, name, strlen(name) + 1);
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		if (errno == EINVAL)
			return myce_error_set(err, EINVAL, "attach to %s: not a single-queue TAP device", name);
		if (errno == EBUSY)
			return myce_error_set(err, EBUSY, "attach to %s: another process holds it", name);
		return myce_error_errno(err, "attach to TAP %s", name);
	}
	if (ioctl(fd, TUNGETIFF, &ifr) < 0)
		return myce_error_errno(err, "TUNGETIFF on %s", name);
	/* Raced with its deletion: our TUNSETIFF made a new, transient one,
	 * which goes away with fd. */
	if (!(ifr.ifr_flags & IFF_PERSIST))
		return myce_error_set(err, ENODEV, "%s vanished while attaching", name);
	return steal_fd(&fd);
}

static int watch_tap(struct link *l, int t, int op, struct myce_error **err)
{
	/* fd[t] is the source of dir[t] and the destination of dir[1 - t]. */
	struct epoll_event ev = {.events = EPOLLIN | (l->dir[1 - t].blocked ? EPOLLOUT : 0), .data.u32 = (uint32_t)t};
	if (epoll_ctl(l->ep, op, l->fd[t], &ev) < 0)
		return myce_error_errno(err, "watch %s", l->tap[t]);
	return 0;
}

/* Reads up to READ_BATCH frames from d->src, stamps each with its due time
 * and queues it, or drops it when the queue is full.  Negative when the
 * device is gone. */
static int dir_read(struct link *l, struct link_dir *d, struct myce_error **err)
{
	struct ring *r = &d->ring;
	for (int i = 0; i < READ_BATCH; i++) {
		bool room = ring_room(r) >= sizeof(struct rec) + FRAME_MAX;
		struct rec *rec = ring_at(r, r->tail);
		ssize_t n = read(d->src, room ? rec->data : l->scratch, FRAME_MAX);
		if (n < 0) {
			if (errno == EAGAIN)
				return 0;
			if (errno == EINTR)
				continue;
			if (errno == EBADFD)
				return myce_error_set(err, ENODEV, "read from %s: the device is gone", d->from);
			return myce_error_errno(err, "read from %s", d->from);
		}
		if (n == 0)
			return 0;
		int64_t now = now_ns(), due;
		if (l->ns_per_byte > 0) {
			int64_t start = d->link_free_ns > now ? d->link_free_ns : now;
			if (!room || start - now > l->queue_ns) {
				d->st.drops++;
				continue;
			}
			d->link_free_ns = start + (int64_t)((double)n * l->ns_per_byte + 0.5);
			due = d->link_free_ns + l->delay_ns;
		} else {
			if (!room || r->count >= l->queue_frames) {
				d->st.drops++;
				continue;
			}
			due = now + l->delay_ns;
		}
		rec->len = (uint32_t)n;
		rec->due_ns = due;
		r->tail += rec_size((size_t)n);
		r->count++;
	}
	return 0;
}

/* Writes the frames that are due to d->dst.  Negative when the device is gone. */
static int dir_flush(struct link *l, struct link_dir *d, struct myce_error **err)
{
	struct ring *r = &d->ring;
	while (r->count > 0 && !d->blocked) {
		struct rec *rec = ring_at(r, r->head);
		int64_t now = now_ns();
		if (rec->due_ns > now)
			return 0;
		ssize_t n = write(d->dst, rec->data, rec->len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				d->blocked = true;
				return watch_tap(l, d == &l->dir[0] ? 1 : 0, EPOLL_CTL_MOD, err);
			}
			if (errno == EBADFD)
				return myce_error_set(err, ENODEV, "write to %s: the device is gone", d->to);
			/* E.g. EIO while the device is down (as it is until the
			 * caller has moved and configured it): the frame is lost. */
			if (d->st.write_errors++ == 0)
				log_debug("write to %s: %s (frame lost; further errors only counted)", d->to,
					  strerror(errno));
		} else {
			int64_t late = now - rec->due_ns;
			d->st.frames++;
			d->st.bytes += rec->len;
			d->st.late_hist[late / 1000 < LATE_BUCKETS - 1 ? late / 1000 : LATE_BUCKETS - 1]++;
			if (late > d->st.late_max_ns)
				d->st.late_max_ns = late;
		}
		r->head += rec_size(rec->len);
		r->count--;
	}
	return 0;
}

/* Arms the timer at the earliest frame due; a stale earlier expiry only
 * costs a spurious wake-up. */
static int rearm(struct link *l, struct myce_error **err)
{
	int64_t next = INT64_MAX;
	for (int i = 0; i < 2; i++) {
		const struct link_dir *d = &l->dir[i];
		if (d->ring.count > 0 && !d->blocked && ring_at(&d->ring, d->ring.head)->due_ns < next)
			next = ring_at(&d->ring, d->ring.head)->due_ns;
	}
	if (next == INT64_MAX || next == l->armed_ns)
		return 0;
	struct itimerspec its = {.it_value = {.tv_sec = next / 1000000000, .tv_nsec = next % 1000000000}};
	if (timerfd_settime(l->tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		return myce_error_errno(err, "timerfd_settime");
	l->armed_ns = next;
	return 0;
}

/* The lateness below which permille/1000 of the frames were written. */
static long late_percentile_us(const struct dir_stats *st, uint64_t permille)
{
	uint64_t want = (st->frames * permille + 999) / 1000, seen = 0;
	for (long i = 0; i < LATE_BUCKETS; i++) {
		seen += st->late_hist[i];
		if (seen >= want && seen > 0)
			return i;
	}
	return 0;
}

static void link_report(const struct link *l)
{
	for (int i = 0; i < 2; i++) {
		const struct link_dir *d = &l->dir[i];
		log_info("%s->%s frames=%" PRIu64 " bytes=%" PRIu64 " drops=%" PRIu64 " write_errors=%" PRIu64
			 " queued=%u late_p50_us=%ld late_p99_us=%ld late_p999_us=%ld late_max_us=%" PRId64,
			 d->from, d->to, d->st.frames, d->st.bytes, d->st.drops, d->st.write_errors, d->ring.count,
			 late_percentile_us(&d->st, 500), late_percentile_us(&d->st, 990),
			 late_percentile_us(&d->st, 999), d->st.late_max_ns / 1000);
	}
}

/* Returns 1 when asked to stop. */
static int on_signal(struct link *l)
{
	struct signalfd_siginfo si;
	while (read(l->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			log_info("signal %u: stopping", si.ssi_signo);
			return 1;
		}
		if (si.ssi_signo == SIGUSR1)
			link_report(l);
	}
	return 0;
}

static int link_run(struct link *l, struct myce_error **err)
{
	struct epoll_event evs[8];
	for (;;) {
		int n = epoll_wait(l->ep, evs, ARRAY_SIZE(evs), -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return myce_error_errno(err, "epoll_wait");
		}
		bool readable[2] = {false, false};
		for (int i = 0; i < n; i++) {
			uint32_t tag = evs[i].data.u32, ev = evs[i].events;
			if (tag == TAG_SIGNAL) {
				if (on_signal(l))
					return 0;
			} else if (tag == TAG_TIMER) {
				uint64_t expirations;
				if (read(l->tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
					return myce_error_errno(err, "read timerfd");
			} else {
				/* EPOLLERR: the device is gone; the read says so. */
				if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
					readable[tag] = true;
				if ((ev & EPOLLOUT) && l->dir[1 - tag].blocked) {
					l->dir[1 - tag].blocked = false;
					if (watch_tap(l, (int)tag, EPOLL_CTL_MOD, err) < 0)
						return -1;
				}
			}
		}
		/* Due frames first: reading a batch must not make them late. */
		for (int i = 0; i < 2; i++)
			if (dir_flush(l, &l->dir[i], err) < 0)
				return -1;
		for (int i = 0; i < 2; i++)
			if (readable[i] && dir_read(l, &l->dir[i], err) < 0)
				return -1;
		/* Frames with no delay go out at once. */
		for (int i = 0; i < 2; i++)
			if (dir_flush(l, &l->dir[i], err) < 0)
				return -1;
		if (rearm(l, err) < 0)
			return -1;
	}
}

/* Bytes a direction's ring needs: everything in flight (the delay) plus a
 * full queue, with room for the per-frame header of small frames. */
static size_t ring_bytes(const struct link *l)
{
	double bytes;
	if (l->rate_mbit > 0)
		bytes = 2.0 * l->rate_mbit * 1e6 / 8 * (l->delay_ms + l->queue_ms) / 1000;
	else
		bytes = (double)l->queue_frames * rec_size(1514);
	return (size_t)bytes + 1024 * 1024 + 2 * (sizeof(struct rec) + FRAME_MAX);
}

/* Timer and wake-up latency: a woken SCHED_OTHER task waits for the running
 * one's slice (1.5-3.5 ms late at p99 on the 2-vCPU test machine); a FIFO
 * task preempts it (p99 under 0.1 ms).  See docs/link.md. */
static void set_realtime(int prio)
{
	if (prio == 0)
		return;
	struct sched_param sp = {.sched_priority = prio};
	if (sched_setscheduler(0, SCHED_FIFO | SCHED_RESET_ON_FORK, &sp) < 0)
		log_warn("SCHED_FIFO priority %d refused (%s): timing is ms-accurate only on an idle machine", prio,
			 strerror(errno));
}

static int link_open(struct link *l, const sigset_t *sigs, struct myce_error **err)
{
	l->fd[0] = l->fd[1] = l->ep = l->tfd = l->sfd = -1;
	l->delay_ns = (int64_t)(l->delay_ms * NS_PER_MS + 0.5);
	l->queue_ns = (int64_t)(l->queue_ms * NS_PER_MS + 0.5);
	l->ns_per_byte = l->rate_mbit > 0 ? 8000.0 / l->rate_mbit : 0;
	size_t rb = ring_bytes(l);
	if (rb > (size_t)1 << 30)
		return myce_error_set(err, EINVAL, "a queue of %zu MiB per direction is too large; lower --queue-ms",
				      rb >> 20);
	for (int i = 0; i < 2; i++) {
		l->fd[i] = tap_attach(l->tap[i], err);
		if (l->fd[i] < 0)
			return -1;
	}
	for (int i = 0; i < 2; i++) {
		struct link_dir *d = &l->dir[i];
		d->from = l->tap[i];
		d->to = l->tap[1 - i];
		d->src = l->fd[i];
		d->dst = l->fd[1 - i];
		if (ring_init(&d->ring, rb, err) < 0)
			return myce_error_wrap(err, "queue %s->%s", d->from, d->to);
	}
	l->ep = epoll_create1(EPOLL_CLOEXEC);
	l->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	l->sfd = signalfd(-1, sigs, SFD_NONBLOCK | SFD_CLOEXEC);
	if (l->ep < 0 || l->tfd < 0 || l->sfd < 0)
		return myce_error_errno(err, "create epoll, timerfd and signalfd");
	struct epoll_event tev = {.events = EPOLLIN, .data.u32 = TAG_TIMER};
	struct epoll_event sev = {.events = EPOLLIN, .data.u32 = TAG_SIGNAL};
	if (epoll_ctl(l->ep, EPOLL_CTL_ADD, l->tfd, &tev) < 0 || epoll_ctl(l->ep, EPOLL_CTL_ADD, l->sfd, &sev) < 0)
		return myce_error_errno(err, "watch timerfd and signalfd");
	for (int i = 0; i < 2; i++)
		if (watch_tap(l, i, EPOLL_CTL_ADD, err) < 0)
			return -1;
	if (l->ready_file) {
		_cleanup_free_ char *pid = xasprintf("%d\n", (int)getpid());
		int rc = myce_write_file_atomic(l->ready_file, pid, strlen(pid), 0644);
		if (rc < 0)
			return myce_error_set(err, -rc, "write ready file %s: %s", l->ready_file, strerror(-rc));
		l->ready_written = true;
	}
	return 0;
}

static void link_close(struct link *l)
{
	if (l->ready_written)
		unlink(l->ready_file);
	for (int i = 0; i < 2; i++) {
		ring_free(&l->dir[i].ring);
		closep(&l->fd[i]);
	}
	closep(&l->ep);
	closep(&l->tfd);
	closep(&l->sfd);
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || *end || !(v >= lo && v <= hi))
		return false;
	*out = v;
	return true;
}

static int usage(void)
{
	fprintf(stderr, "usage: myce-link --a TAP --b TAP [--delay-ms MS] [--rate-mbit MBIT] [--queue-ms MS]\n"
			"                 [--queue-frames N] [--ready-file FILE] [--rt-prio P] [--verbose]\n"
			"Copies frames between two existing persistent TAP devices (ip tuntap add dev NAME mode tap),\n"
			"each direction delayed by MS (fractional allowed) and paced at MBIT (0 = unlimited), with a\n"
			"drop-tail queue of MS at the rate (default 200), or of N frames when unlimited (default 4096).\n"
			"FILE is written (our pid) once both devices are attached. Runs SCHED_FIFO at priority P\n"
			"(default 10; 0 = normal scheduling). SIGUSR1 prints the counters, SIGTERM/SIGINT stop.\n");
	return 2;
}

static int bad_usage(const char *msg)
{
	fprintf(stderr, "myce-link: %s\n", msg);
	return 2;
}

int main(int argc, char **argv)
{
	_cleanup_free_ struct link *l = xzalloc(sizeof(*l));
	l->queue_ms = 200;
	l->queue_frames = 4096;
	l->rt_prio = 10;
	bool verbose = false;
	static const struct option opts[] = {
		{"a", required_argument, 0, 'a'},	   {"b", required_argument, 0, 'b'},
		{"delay-ms", required_argument, 0, 'd'},   {"rate-mbit", required_argument, 0, 'r'},
		{"queue-ms", required_argument, 0, 'q'},   {"queue-frames", required_argument, 0, 'n'},
		{"ready-file", required_argument, 0, 'f'}, {"rt-prio", required_argument, 0, 'p'},
		{"verbose", no_argument, 0, 'v'},	   {"help", no_argument, 0, 'h'},
		{0, 0, 0, 0}};
	int c;
	double frames, prio;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'a': l->tap[0] = optarg; break;
		case 'b': l->tap[1] = optarg; break;
		case 'd':
			if (!parse_num(optarg, 0, 60000, &l->delay_ms))
				return bad_usage("--delay-ms is 0..60000 (ms, fractional allowed)");
			break;
		case 'r':
			if (!parse_num(optarg, 0, 100000, &l->rate_mbit))
				return bad_usage("--rate-mbit is 0..100000 (0 = unlimited)");
			break;
		case 'q':
			if (!parse_num(optarg, 0.1, 60000, &l->queue_ms))
				return bad_usage("--queue-ms is 0.1..60000");
			break;
		case 'n':
			if (!parse_num(optarg, 1, 1000000, &frames) || frames != (double)(long)frames)
				return bad_usage("--queue-frames is 1..1000000");
			l->queue_frames = (long)frames;
			break;
		case 'f': l->ready_file = optarg; break;
		case 'p':
			if (!parse_num(optarg, 0, 99, &prio) || prio != (double)(int)prio)
				return bad_usage("--rt-prio is 0..99 (0 = normal scheduling)");
			l->rt_prio = (int)prio;
			break;
		case 'v': verbose = true; break;
		case 'h': usage(); return 0;
		default: return usage();
		}
	}
	if (!l->tap[0] || !l->tap[1] || optind != argc)
		return usage();
	if (!strcmp(l->tap[0], l->tap[1]))
		return bad_usage("--a and --b must be two different devices");
	myce_log_init("myce-link", verbose ? MYCE_LOG_DEBUG : MYCE_LOG_INFO);

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGUSR1);
	sigprocmask(SIG_BLOCK, &sigs, NULL);
	/* A caller that goes away must not take us down with SIGPIPE on stderr. */
	signal(SIGPIPE, SIG_IGN);

	_cleanup_error_ struct myce_error *e = NULL;
	int rc = 0;
	if (link_open(l, &sigs, &e) < 0) {
		log_error("%s", myce_error_msg(e));
		rc = 1;
	} else {
		set_realtime(l->rt_prio);
		if (l->rate_mbit > 0)
			log_info("%s <-> %s: delay %g ms, rate %g Mbit/s, queue %g ms", l->tap[0], l->tap[1],
				 l->delay_ms, l->rate_mbit, l->queue_ms);
		else
			log_info("%s <-> %s: delay %g ms, rate unlimited, queue %ld frames", l->tap[0], l->tap[1],
				 l->delay_ms, l->queue_frames);
		if (link_run(l, &e) < 0) {
			log_error("%s", myce_error_msg(e));
			rc = 1;
		}
		link_report(l);
	}
	link_close(l);
	return rc;
}
