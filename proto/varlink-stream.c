/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * NUL-framed JSON messages with SCM_RIGHTS fds on a non-blocking stream socket.
 * Runs in: worker, clients.
 *
 * Where received fds belong: the kernel detaches a message's fds with the first socket
 * buffer of that message and ends the read right after that buffer (unix_stream_read_generic
 * never glues data after an skb that carried fds), so a read brings the fds of one sendmsg()
 * at most, but may glue the bytes of earlier ones before them: messages without fds, or the
 * rest of one whose fds came with an earlier read. We send every message that carries fds
 * with a sendmsg() of its own, so the fds of a read belong to the last message that starts
 * within that read. A read that carries fds but starts no message is a protocol violation.
 * So are more fds than allowed, or any where none are: the violation of the message they
 * belong to, whose refusal comes in its place; the messages complete before it in the same
 * read are delivered first (varlink_stream_next()).
 */

#include <fcntl.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "fd-closer.h"
#include "json-util.h"
#include "json-write.h"
#include "varlink-stream.h"

/* Per read: the room a read asks the kernel to fill, at the end of the input buffer. */
#define READ_CHUNK (16U * 1024U)

/* What the buffer messages are serialized into keeps between them (see varlink_stream_enqueue()). */
#define OUT_TEXT_KEEP (64U * 1024U)

typedef struct FdBatch {
        uint64_t start; /* absolute stream position of the message these fds belong to */
        uint64_t end;   /* output only: end of that message */
        int *fds;
        size_t n_fds;
        bool refused;   /* input only: that message came with fds it may not carry (closed) */
} FdBatch;

struct VarlinkStream {
        int fd;
        VarlinkLimits limits; /* in force, for input from in_limits_at on (see set_limits) */
        bool allow_fd_input;
        bool allow_fd_output;
        uid_t peer_uid; /* whose fds the closer counts what we close under */

        /* What input is judged by: limits' values, or those of before varlink_stream_set_limits()
         * until the message under way then is consumed (in_offset reaches in_limits_at). */
        size_t in_max_message_size;
        unsigned in_max_depth, in_max_json_values;
        uint64_t in_limits_at;
        bool in_limits_pending;

        json_tokener *tokener;
        unsigned tokener_depth;
        uint64_t in_refused_limit; /* see varlink_stream_get_refused_limit() */

        /* Input: in_buf[in_start..in_end), read into in place and parsed there (a message is
         * never copied before its parse), the buffer freed whenever it is empty: an idle
         * connection holds none. */
        char *in_buf;
        size_t in_start, in_end, in_allocated;
        char **in_spare; /* see varlink_stream_set_read_spare() */
        uint64_t in_offset;     /* absolute position of in_buf[in_start] */
        size_t in_scanned;      /* bytes from in_start known to hold no NUL */
        bool in_complete;       /* a NUL is known to be in the input */
        FdBatch in_fds[2];      /* read gating guarantees at most two pending batches */
        size_t n_in_fds;

        /* Output: out_buf[out_start..out_end), queued messages not written yet, the buffer
         * freed whenever it is empty (as the input's). */
        char *out_buf;
        size_t out_start, out_end, out_allocated;
        JsonText out_text; /* varlink_stream_enqueue()'s, reused */
        uint64_t out_offset;
        uint64_t out_hold_from; /* output from this stream position on is held back (UINT64_MAX: none) */
        FdBatch *out_fds;
        size_t n_out_fds, allocated_out_fds;
};

static void fd_batch_done(FdBatch *b) {
        close_many(b->fds, b->n_fds);
        b->fds = mfree(b->fds);
        b->n_fds = 0;
}

/* SECURITY: what the peer sent may be of a file system the peer serves (FUSE), whose close
 * waits on it: closed without waiting (fd-closer.h). */
static void in_batch_done(VarlinkStream *s, FdBatch *b) {
        fd_closer_close_many_for(b->fds, b->n_fds, s->peer_uid);
        b->fds = mfree(b->fds);
        b->n_fds = 0;
}

int varlink_stream_new(int fd, const VarlinkLimits *limits, VarlinkStream **ret) {
        _cleanup_(varlink_stream_freep) VarlinkStream *s = NULL;
        int r;

        assert(limits);
        assert(ret);

        s = new0(VarlinkStream, 1);
        if (!s) {
                fd_closer_close_socket_for(fd, FD_CLOSER_PEER_NONE);
                return -ENOMEM;
        }
        s->fd = fd;
        s->peer_uid = FD_CLOSER_PEER_NONE;
        s->out_hold_from = UINT64_MAX;
        if (limits->max_fds_per_message > VARLINK_FDS_PER_MESSAGE_MAX)
                return -EINVAL;
        s->limits = *limits;
        s->in_max_message_size = limits->max_message_size;
        s->in_max_depth = limits->max_depth;
        s->in_max_json_values = limits->max_json_values;

        r = json_tokener_new_strict(limits->max_depth, &s->tokener);
        if (r < 0)
                return r;
        s->tokener_depth = limits->max_depth;

        *ret = TAKE_PTR(s);
        return 0;
}

int varlink_stream_detach_fd(VarlinkStream *s) {
        int fd;

        assert(s);
        if (s->fd < 0)
                return -EBADF;
        if (s->in_end > s->in_start || s->n_in_fds > 0 || s->out_end > s->out_start || s->n_out_fds > 0)
                return -EBUSY;
        fd = s->fd;
        s->fd = -EBADF;
        return fd;
}

int varlink_stream_move_fd(VarlinkStream *s, int fd) {
        assert(s);
        if (s->fd < 0 || fd < 0)
                return -EBADF;
        if (fd == s->fd)
                return 0;
        /* One step: no fd another thread opens meanwhile can take the number. */
        if (dup3(s->fd, fd, O_CLOEXEC) < 0)
                return negative_errno();
        safe_close(s->fd);
        s->fd = fd;
        return 0;
}

VarlinkStream *varlink_stream_free(VarlinkStream *s) {
        if (!s)
                return NULL;

        for (size_t i = 0; i < s->n_in_fds; i++)
                in_batch_done(s, &s->in_fds[i]);
        for (size_t i = 0; i < s->n_out_fds; i++)
                fd_batch_done(&s->out_fds[i]);
        free(s->out_fds);

        free(s->in_buf);
        free(s->out_buf);
        json_text_done(&s->out_text);
        if (s->tokener)
                json_tokener_free(s->tokener);
        /* SECURITY: fds the peer sent and we never read are released with the socket, the last
         * reference to a writeback-cached FUSE file among them waiting on its server: not on
         * our thread (fd-closer.h). */
        fd_closer_close_socket_for(s->fd, s->peer_uid);
        return mfree(s);
}

/* The limits of input apply from the next message on: one under way finishes under those it
 * started with (a bound it has kept so far, and MessageTimeoutSec= bounds it anyway). */
static void stream_apply_input_limits(VarlinkStream *s) {
        s->in_max_message_size = s->limits.max_message_size;
        s->in_max_depth = s->limits.max_depth;
        s->in_max_json_values = s->limits.max_json_values;
        s->in_limits_pending = false;
}

int varlink_stream_set_limits(VarlinkStream *s, const VarlinkLimits *limits) {
        unsigned depth;

        assert(s);
        assert(limits);

        if (limits->max_fds_per_message > VARLINK_FDS_PER_MESSAGE_MAX)
                return -EINVAL;

        /* json-c's own depth limit is a backstop behind json_strict_check(), which enforces
         * ours exactly: it must only never be below it, for the message under way too. */
        depth = MAX(limits->max_depth, s->in_max_depth);
        if (depth > s->tokener_depth) {
                json_tokener *tok;
                int r;

                r = json_tokener_new_strict(depth, &tok);
                if (r < 0)
                        return r;
                json_tokener_free(s->tokener);
                s->tokener = tok;
                s->tokener_depth = depth;
        }

        s->limits = *limits;
        /* Fds, and output, obey them at once: the fds of a message come with its first byte, so
         * any received from now on belong to a message that starts now. */
        s->in_limits_at = s->in_offset + (s->in_end - s->in_start);
        if (s->in_limits_at == s->in_offset)
                stream_apply_input_limits(s);
        else
                s->in_limits_pending = true;
        return 0;
}

int varlink_stream_get_fd(const VarlinkStream *s) {
        return s->fd;
}

size_t varlink_stream_get_max_message_size(const VarlinkStream *s) {
        assert(s);
        return s->limits.max_message_size;
}

void varlink_stream_set_allow_fds(VarlinkStream *s, bool input, bool output) {
        s->allow_fd_input = input;
        s->allow_fd_output = output;
}

void varlink_stream_set_read_spare(VarlinkStream *s, char **spare) {
        s->in_spare = spare;
}

void varlink_stream_set_peer_uid(VarlinkStream *s, uid_t uid) {
        s->peer_uid = uid;
}

/* Looks for a NUL in the bytes not scanned yet. */
static bool stream_scan(VarlinkStream *s) {
        size_t len = s->in_end - s->in_start;
        const char *nul;

        if (s->in_complete)
                return true;
        if (s->in_scanned >= len)
                return false;

        nul = memchr(s->in_buf + s->in_start + s->in_scanned, 0, len - s->in_scanned);
        if (!nul) {
                s->in_scanned = len;
                return false;
        }

        s->in_scanned = (size_t) (nul - (s->in_buf + s->in_start));
        s->in_complete = true;
        return true;
}

bool varlink_stream_has_message(VarlinkStream *s) {
        return stream_scan(s);
}

size_t varlink_stream_get_input_size(const VarlinkStream *s) {
        return s->in_end - s->in_start;
}

/* Room for a read at the input's end: what is buffered (the start of one message, read gating
 * says) moved to the front, the buffer grown by doublings, so that a 16 MiB message arriving a
 * read at a time is copied O(log n) times. */
static int input_reserve(VarlinkStream *s) {
        size_t len = s->in_end - s->in_start, size;
        char *p;

        if (s->in_allocated - s->in_end >= READ_CHUNK)
                return 0;
        /* A read buffer of READ_CHUNK bytes is more than glibc keeps in its caches: each of its
         * malloc()s consolidated the small free chunks first (BENCHMARKS.md, 2026-12-08). */
        if (!s->in_buf && s->in_spare && *s->in_spare) {
                s->in_buf = TAKE_PTR(*s->in_spare);
                s->in_allocated = READ_CHUNK;
                return 0;
        }
        if (s->in_start > 0) {
                memmove(s->in_buf, s->in_buf + s->in_start, len);
                s->in_start = 0;
                s->in_end = len;
                if (s->in_allocated - s->in_end >= READ_CHUNK)
                        return 0;
        }
        size = MAX(len + READ_CHUNK, s->in_allocated * 2);
        p = realloc(s->in_buf, size);
        if (!p)
                return -ENOMEM;
        s->in_buf = p;
        s->in_allocated = size;
        return 0;
}

/* An empty input keeps no buffer. */
static void input_release_if_empty(VarlinkStream *s) {
        if (s->in_start < s->in_end)
                return;
        if (s->in_buf && s->in_spare && !*s->in_spare && s->in_allocated == READ_CHUNK)
                *s->in_spare = TAKE_PTR(s->in_buf);
        s->in_buf = mfree(s->in_buf);
        s->in_start = s->in_end = s->in_allocated = 0;
}

/* Whether the next message is one refused for its fds (varlink_stream_read()): nothing
 * before it is left to deliver, so the violation is reported now, and again on each call. */
static bool input_refused(const VarlinkStream *s) {
        return s->n_in_fds > 0 && s->in_fds[0].refused && s->in_fds[0].start == s->in_offset;
}

/* An input refusal, with the limit it was judged by (varlink_stream_get_refused_limit()). */
static int input_refuse(VarlinkStream *s, int error, uint64_t limit) {
        s->in_refused_limit = limit;
        return error;
}

uint64_t varlink_stream_get_refused_limit(const VarlinkStream *s) {
        return s->in_refused_limit;
}

size_t varlink_stream_get_input_n_fds(const VarlinkStream *s) {
        size_t n = 0;

        for (size_t i = 0; i < s->n_in_fds; i++)
                n += s->in_fds[i].n_fds;
        return n;
}

uint64_t varlink_stream_get_input_offset(const VarlinkStream *s) {
        return s->in_offset;
}

static int collect_fds(VarlinkStream *s, struct msghdr *mh, int **ret_fds, size_t *ret_n) {
        _cleanup_free_ int *fds = NULL;
        size_t n = 0;

        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                size_t k;

                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;

                k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                int *p = realloc(fds, (n + k) * sizeof(int));
                if (!p) {
                        /* Never leak what the kernel installed into our table. */
                        for (size_t i = 0; i < k; i++) {
                                int fd;

                                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                                fd_closer_close_for(fd, s->peer_uid);
                        }
                        fd_closer_close_many_for(fds, n, s->peer_uid);
                        return -ENOMEM;
                }
                fds = p;
                memcpy(fds + n, CMSG_DATA(c), k * sizeof(int));
                n += k;
        }

        *ret_fds = TAKE_PTR(fds);
        *ret_n = n;
        return 0;
}

/* How many fds a read has room for: the most the kernel passes with one message (SCM_MAX_FD),
 * or half the fd table, if that is less. SECURITY: the kernel releases an fd it drops from a
 * message (no room in the control buffer, or none left in the table) on the receiving thread as
 * the read returns, and the last reference to a file of a FUSE file system with the writeback
 * cache waits on its server there (fuse_release() writes the inode back first): every fd sent
 * is received, and those not kept are closed off the loop (fd-closer.h). */
static size_t fds_room;

static void fds_room_init(void) {
        struct rlimit rl;

        fds_room = getrlimit(RLIMIT_NOFILE, &rl) >= 0 && rl.rlim_cur != RLIM_INFINITY
                           ? CLAMP((size_t) rl.rlim_cur / 2, (size_t) 1, (size_t) VARLINK_FDS_PER_MESSAGE_MAX)
                           : VARLINK_FDS_PER_MESSAGE_MAX;
}

/* Worked out once per process: a getrlimit() per read would cost the worker's loop a system
 * call a message. Once, not lazily by whoever reads first: streams of a process's clients
 * (libtsm's, one per thread) read concurrently. */
static size_t read_fds_room(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;

        (void) pthread_once(&once, fds_room_init);
        return fds_room;
}

/* Whether the next read would bring fds: a peek, with no room for them (the kernel drops its own
 * copies of a peek's fds, not the last references: those stay with the message). */
static bool input_brings_fds(VarlinkStream *s, size_t len) {
        union {
                struct cmsghdr cmsg;
                uint8_t buf[CMSG_SPACE(0)];
        } control;
        struct iovec iov = { .iov_base = s->in_buf + s->in_end, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control, .msg_controllen = sizeof(control) };
        ssize_t n;

        do
                n = recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_PEEK);
        while (n < 0 && errno == EINTR);
        return n > 0 && (mh.msg_flags & MSG_CTRUNC);
}

int varlink_stream_read(VarlinkStream *s) {
        _cleanup_free_ int *fds = NULL;
        union {
                struct cmsghdr cmsg;
                uint8_t buf[CMSG_SPACE(sizeof(int) * VARLINK_FDS_PER_MESSAGE_MAX)];
        } control;
        /* SECURITY: while more than MaxFdsPerUid= of the peer's uid's fds (or a quarter of
         * what the closer takes of everybody's) wait to be closed behind a close some file
         * system holds (a FUSE server that does not answer, fd-closer.h), none of its are
         * taken: they would fill our fd table. Nor may the kernel drop them (read_fds_room()):
         * a read that would bring fds then is not made, and the connection goes
         * (-EDQUOT), its socket closed, with the fds queued on it, off the loop. Other uids' fds
         * are taken meanwhile. */
        const bool congested = fd_closer_congested(s->peer_uid, s->limits.max_fds_per_uid);
        struct iovec iov = { .iov_len = READ_CHUNK };
        struct msghdr mh = {
                .msg_iov = &iov,
                .msg_iovlen = 1,
                .msg_control = &control,
                /* Room for every fd the kernel passes: more than allowed are received, and
                 * refused below. */
                .msg_controllen = CMSG_SPACE(sizeof(int) * read_fds_room()),
        };
        /* How many fds the control buffer takes (CMSG_SPACE() pads: maybe one more than
         * asked for). */
        const size_t capacity = (mh.msg_controllen - CMSG_LEN(0)) / sizeof(int);
        size_t n_fds = 0;
        uint64_t read_start, msg_start;
        bool drained, lost, refused;
        ssize_t n;
        int r;

        assert(s);

        if (input_refused(s))
                return input_refuse(s, -EPROTO, s->limits.max_fds_per_message);
        if (stream_scan(s))
                return 0; /* the caller must consume what is there first */
        if (s->in_end - s->in_start >= s->in_max_message_size)
                return input_refuse(s, -EMSGSIZE, s->in_max_message_size);
        /* No more than the message under way may still have: what a connection buffers of its
         * input never exceeds MaxMessageSize= (its uid's budget, MaxBufferedPerUid=, counts on
         * it); the rest waits in the socket. */
        iov.iov_len = MIN((size_t) READ_CHUNK, s->in_max_message_size - (s->in_end - s->in_start));

        r = input_reserve(s);
        if (r < 0)
                return r;
        iov.iov_base = s->in_buf + s->in_end;
        if (_unlikely_(congested) && input_brings_fds(s, iov.iov_len)) {
                input_release_if_empty(s);
                return -EDQUOT;
        }
        do
                n = recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
                r = errno == EAGAIN ? 0 : negative_errno();
                input_release_if_empty(s);
                return r;
        }
        if (n == 0)
                input_release_if_empty(s);

        r = collect_fds(s, &mh, &fds, &n_fds);
        if (r < 0)
                return r;
        if (n == 0) {
                fd_closer_close_many_for(fds, n_fds, s->peer_uid);
                return -ECONNRESET;
        }
        s->in_end += (size_t) n;

        /* Short: the socket is empty (or the read stopped at an fd boundary; then the next
         * readiness brings the rest). */
        drained = (size_t) n < iov.iov_len;
        if (n_fds == 0 && !(mh.msg_flags & MSG_CTRUNC))
                return drained ? 2 : 1;

        /* MSG_CTRUNC with room left for more fds: the kernel could not install the next one
         * (our RLIMIT_NOFILE is reached) and dropped the rest. That is our failure, not the
         * peer's: the message goes on with a -EMFILE entry standing for the lost fds, so that
         * only the call or reply naming one of them fails. With the buffer (a table too small
         * for SCM_MAX_FD's worth) or the limit full, the peer sent more than allowed. */
        lost = (mh.msg_flags & MSG_CTRUNC) && n_fds < capacity && n_fds < s->limits.max_fds_per_message;

        /* The fds belong to the last message starting within this read. Read gating means
         * the bytes buffered before this read are one incomplete message (or none), and at
         * most that message's batch is pending. */
        size_t prev_len = s->in_end - s->in_start - (size_t) n;
        const char *p = s->in_buf + s->in_end - n;
        const char *nul = n > 1 ? memrchr(p, 0, (size_t) n - 1) : NULL;

        read_start = s->in_offset + prev_len;
        if (nul)
                msg_start = read_start + (uint64_t) (nul - p) + 1;
        else if (prev_len == 0)
                msg_start = read_start;
        else {
                fd_closer_close_many_for(fds, n_fds, s->peer_uid);
                return input_refuse(s, -EPROTO, s->limits.max_fds_per_message);
        }
        if (s->n_in_fds >= ELEMENTSOF(s->in_fds)) {
                fd_closer_close_many_for(fds, n_fds, s->peer_uid);
                return input_refuse(s, -EPROTO, s->limits.max_fds_per_message);
        }

        /* SECURITY: a peer must not be able to park fds in our table beyond the limits: they
         * are closed now. The messages before theirs are not at fault (the kernel glues them
         * to the read that brings the fds): they are delivered, and the refusal waits for
         * the message the fds belong to. */
        refused = ((mh.msg_flags & MSG_CTRUNC) && !lost) || !s->allow_fd_input ||
                  n_fds > s->limits.max_fds_per_message;
        if (refused) {
                fd_closer_close_many_for(fds, n_fds, s->peer_uid);
                fds = mfree(fds);
                n_fds = 0;
        } else if (lost) {
                int *q = realloc(fds, (n_fds + 1) * sizeof(int));

                if (!q) {
                        fd_closer_close_many_for(fds, n_fds, s->peer_uid);
                        return -ENOMEM;
                }
                fds = q;
                fds[n_fds++] = -EMFILE;
        }

        s->in_fds[s->n_in_fds++] = (FdBatch){
                .start = msg_start,
                .fds = TAKE_PTR(fds),
                .n_fds = n_fds,
                .refused = refused,
        };
        /* Refused for the next message: reported now, and (the batch kept) on every call after. */
        if (refused && msg_start == s->in_offset)
                return input_refuse(s, -EPROTO, s->limits.max_fds_per_message);
        return drained ? 2 : 1;
}

void varlink_stream_shutdown(VarlinkStream *s) {
        union {
                struct cmsghdr cmsg;
                uint8_t buf[CMSG_SPACE(sizeof(int) * VARLINK_FDS_PER_MESSAGE_MAX)];
        } control;
        char buf[4096];

        assert(s);
        if (s->fd < 0)
                return;

        /* SECURITY: with our read side shut, the peer's sends fail (EPIPE): the loop below ends
         * once it read what was queued before (fd-closer.h). Those fds are received, as any
         * read's, and closed as refused ones are; none is left to the kernel to drop. */
        (void) shutdown(s->fd, SHUT_RDWR);
        for (;;) {
                struct iovec iov = { .iov_base = buf, .iov_len = sizeof(buf) };
                struct msghdr mh = {
                        .msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = &control,
                        .msg_controllen = CMSG_SPACE(sizeof(int) * read_fds_room()),
                };
                _cleanup_free_ int *fds = NULL;
                size_t n_fds = 0;
                ssize_t n;

                n = recvmsg(s->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        break; /* not a socket any more (EAGAIN cannot be: the read side is shut) */
                if (collect_fds(s, &mh, &fds, &n_fds) >= 0)
                        fd_closer_close_many_for(fds, n_fds, s->peer_uid);
                if (n == 0)
                        break;
        }
        /* And those read but not consumed: nothing will consume them. */
        for (size_t i = 0; i < s->n_in_fds; i++)
                in_batch_done(s, &s->in_fds[i]);
        s->n_in_fds = 0;
}

int varlink_stream_next(VarlinkStream *s, json_object **ret_msg, int **ret_fds, size_t *ret_n_fds) {
        _cleanup_(json_object_putp) json_object *msg = NULL;
        FdBatch batch = {};
        size_t len;
        const char *text;
        uint64_t start;
        int r;

        assert(s);
        assert(ret_msg);

        if (input_refused(s))
                return input_refuse(s, -EPROTO, s->limits.max_fds_per_message);
        if (!stream_scan(s)) {
                if (s->in_end - s->in_start >= s->in_max_message_size)
                        return input_refuse(s, -EMSGSIZE, s->in_max_message_size);
                return 0;
        }

        len = s->in_scanned; /* position of the NUL */
        if (len + 1 > s->in_max_message_size)
                return input_refuse(s, -EMSGSIZE, s->in_max_message_size);

        start = s->in_offset;
        text = s->in_buf + s->in_start;

        /* A number no int64 holds is still a number: in an int field it is refused by name. */
        r = json_parse_strict_full(s->tokener, s->in_max_depth, s->in_max_json_values ?: SIZE_MAX,
                                   JSON_STRICT_ANY_NUMBER, text, len, &msg);
        /* Named with the limits it was judged by, which consuming it may replace. */
        s->in_refused_limit = r == -ELOOP ? s->in_max_depth : r == -E2BIG ? s->in_max_json_values : 0;

        s->in_start += len + 1;
        input_release_if_empty(s);
        s->in_offset += len + 1;
        s->in_scanned = 0;
        s->in_complete = false;
        if (_unlikely_(s->in_limits_pending) && s->in_offset >= s->in_limits_at)
                stream_apply_input_limits(s);

        /* Hand over the fds that arrived with this message's first byte. A batch for a
         * position this message spans but does not start at is a violation. */
        while (s->n_in_fds > 0 && s->in_fds[0].start < s->in_offset) {
                FdBatch b = s->in_fds[0];

                memmove(s->in_fds, s->in_fds + 1, (--s->n_in_fds) * sizeof(FdBatch));
                if (b.start != start || batch.fds) {
                        in_batch_done(s, &b);
                        in_batch_done(s, &batch);
                        return input_refuse(s, -EPROTO, s->limits.max_fds_per_message);
                }
                batch = b;
        }

        if (r < 0) {
                in_batch_done(s, &batch);
                return r;
        }
        if (!json_object_is_type(msg, json_type_object)) {
                in_batch_done(s, &batch);
                return input_refuse(s, -EBADMSG, 0);
        }

        *ret_msg = TAKE_PTR(msg);
        if (ret_fds) {
                *ret_fds = batch.fds;
                *ret_n_fds = batch.n_fds;
        } else
                in_batch_done(s, &batch);
        return 1;
}

/* Room for n more bytes at the output's end: what is queued moved to the front once most of
 * the buffer before it is written, else the buffer grown by doublings. */
static int output_reserve(VarlinkStream *s, size_t n) {
        size_t len = s->out_end - s->out_start, size;
        char *p;

        if (s->out_allocated - s->out_end >= n)
                return 0;
        if (s->out_start >= len && s->out_allocated - len >= n) {
                memmove(s->out_buf, s->out_buf + s->out_start, len);
                s->out_start = 0;
                s->out_end = len;
                return 0;
        }
        size = MAX(s->out_end + n, s->out_allocated * 2);
        p = realloc(s->out_buf, size);
        if (!p)
                return -ENOMEM;
        s->out_buf = p;
        s->out_allocated = size;
        return 0;
}

int varlink_stream_enqueue_text(VarlinkStream *s, const char *text, size_t len, int *fds,
                                size_t n_fds) {
        return varlink_stream_enqueue_text_full(s, text, len, fds, n_fds, 0, 0);
}

int varlink_stream_enqueue_text_full(VarlinkStream *s, const char *text, size_t len, int *fds, size_t n_fds,
                                     size_t room, unsigned room_fds) {
        size_t max_size, max_fds;
        uint64_t start;

        assert(s);
        assert(text || len == 0);

        max_size = MAX(s->limits.max_message_size, room);
        max_fds = MAX(s->limits.max_fds_per_message, room_fds);
        if (n_fds > 0 && (!s->allow_fd_output || n_fds > max_fds)) {
                close_many(fds, n_fds);
                free(fds);
                return n_fds > max_fds ? -E2BIG : -EOPNOTSUPP;
        }
        if (len + 1 > max_size) {
                close_many(fds, n_fds);
                free(fds);
                return -E2BIG;
        }
        if (s->out_end - s->out_start + len + 1 > MAX(s->limits.max_output_size, room)) {
                close_many(fds, n_fds);
                free(fds);
                return -ENOBUFS;
        }

        start = s->out_offset + (s->out_end - s->out_start);
        if (n_fds > 0) {
                if (!GREEDY_REALLOC(s->out_fds, s->allocated_out_fds, s->n_out_fds + 1)) {
                        close_many(fds, n_fds);
                        free(fds);
                        return -ENOMEM;
                }
        }

        if (output_reserve(s, len + 1) < 0) {
                close_many(fds, n_fds);
                free(fds);
                return -ENOMEM;
        }
        if (len > 0)
                memcpy(s->out_buf + s->out_end, text, len);
        s->out_buf[s->out_end + len] = '\0';
        s->out_end += len + 1;

        if (n_fds > 0)
                s->out_fds[s->n_out_fds++] = (FdBatch){
                        .start = start,
                        .end = start + len + 1,
                        .fds = fds,
                        .n_fds = n_fds,
                };
        else
                free(fds);
        return 0;
}

int varlink_stream_enqueue(VarlinkStream *s, json_object *msg, int *fds, size_t n_fds) {
        int r;

        assert(s);
        assert(msg);

        /* What a large message before this one left beyond the kept size goes first. */
        json_text_trim(&s->out_text, OUT_TEXT_KEEP);
        r = json_write(msg, &s->out_text);
        if (r < 0) {
                close_many(fds, n_fds);
                free(fds);
                return r;
        }
        return varlink_stream_enqueue_text(s, s->out_text.data, s->out_text.len, fds, n_fds);
}

int varlink_stream_write(VarlinkStream *s) {
        bool progress = false;

        assert(s);

        for (;;) {
                char control[CMSG_SPACE(sizeof(int) * 253)];
                struct iovec iov;
                struct msghdr mh = {};
                FdBatch *batch = NULL;
                size_t len, limit;
                ssize_t n;

                len = s->out_end - s->out_start;
                /* Nothing from the held-back part on (varlink_stream_hold_output()). */
                if (s->out_hold_from <= s->out_offset)
                        break;
                len = (size_t) MIN((uint64_t) len, s->out_hold_from - s->out_offset);
                if (len == 0)
                        break;

                /* A message with fds goes out in a sendmsg() of its own (see the top). */
                limit = len;
                if (s->n_out_fds > 0) {
                        FdBatch *b = &s->out_fds[0];

                        if (b->start == s->out_offset) {
                                batch = b;
                                limit = (size_t) (b->end - b->start);
                        } else
                                limit = MIN(len, (size_t) (b->start - s->out_offset));
                }

                iov = (struct iovec) { .iov_base = s->out_buf + s->out_start, .iov_len = limit };
                mh.msg_iov = &iov;
                mh.msg_iovlen = 1;
                if (batch) {
                        struct cmsghdr *c;

                        if (batch->n_fds > 253)
                                return -E2BIG;
                        mh.msg_control = control;
                        mh.msg_controllen = CMSG_SPACE(sizeof(int) * batch->n_fds);
                        /* CMSG_SPACE() pads: no uninitialised bytes to the kernel. */
                        memset(control, 0, mh.msg_controllen);
                        c = CMSG_FIRSTHDR(&mh);
                        c->cmsg_level = SOL_SOCKET;
                        c->cmsg_type = SCM_RIGHTS;
                        c->cmsg_len = CMSG_LEN(sizeof(int) * batch->n_fds);
                        memcpy(CMSG_DATA(c), batch->fds, sizeof(int) * batch->n_fds);
                }

                n = sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        if (errno == EAGAIN)
                                break;
                        return negative_errno();
                }

                if (batch) {
                        /* The fds went with the first byte; the rest of the message needs none. */
                        fd_batch_done(batch);
                        memmove(s->out_fds, s->out_fds + 1, (--s->n_out_fds) * sizeof(FdBatch));
                }

                s->out_start += (size_t) n;
                s->out_offset += (uint64_t) n;
                progress = true;
        }

        if (s->out_start == s->out_end) {
                s->out_buf = mfree(s->out_buf);
                s->out_start = s->out_end = s->out_allocated = 0;
        }
        return progress;
}

size_t varlink_stream_get_output_size(const VarlinkStream *s) {
        return s->out_end - s->out_start;
}

size_t varlink_stream_get_writable_size(const VarlinkStream *s) {
        size_t len = s->out_end - s->out_start;

        if (s->out_hold_from <= s->out_offset)
                return 0;
        return (size_t) MIN((uint64_t) len, s->out_hold_from - s->out_offset);
}

void varlink_stream_hold_output(VarlinkStream *s, uint64_t from) {
        s->out_hold_from = from;
}

int varlink_stream_drop_output(VarlinkStream *s, const VarlinkOutputRange *ranges, size_t n) {
        uint64_t queued_end = s->out_offset + (s->out_end - s->out_start), prev_end = s->out_hold_from;
        size_t to, n_fds = 0, dropped = 0;
        size_t from;

        assert(s);
        assert(ranges || n == 0);

        /* SECURITY: only whole messages that no byte of was written: the peer must never see
         * a message cut short, nor one spliced from two. Checked in full before anything moves. */
        for (size_t i = 0; i < n; i++) {
                const VarlinkOutputRange *g = &ranges[i];

                if (g->start < prev_end || g->start < s->out_offset || g->end <= g->start || g->end > queued_end)
                        return -EINVAL;
                /* Message boundaries: each message ends in its NUL. */
                if (s->out_buf[s->out_start + (size_t) (g->end - s->out_offset) - 1] != '\0' ||
                    (g->start > s->out_offset && s->out_buf[s->out_start + (size_t) (g->start - s->out_offset) - 1] != '\0'))
                        return -EINVAL;
                prev_end = g->end;
        }
        if (n == 0)
                return 0;

        /* One pass: what lies between the ranges moves down over them, in order. */
        to = s->out_start + (size_t) (ranges[0].start - s->out_offset);
        for (size_t i = 0; i < n; i++) {
                uint64_t next = i + 1 < n ? ranges[i + 1].start : queued_end;
                size_t keep = (size_t) (next - ranges[i].end);

                from = s->out_start + (size_t) (ranges[i].end - s->out_offset);
                memmove(s->out_buf + to, s->out_buf + from, keep);
                to += keep;
        }
        s->out_end = to;

        /* The fds of the dropped messages are closed; those of the others move with them. */
        for (size_t i = 0, r = 0; i < s->n_out_fds; i++) {
                FdBatch *b = &s->out_fds[i];

                while (r < n && ranges[r].end <= b->start) {
                        dropped += (size_t) (ranges[r].end - ranges[r].start);
                        r++;
                }
                if (r < n && b->start >= ranges[r].start) {
                        /* A batch starts its message, and a range is whole messages. */
                        fd_batch_done(b);
                        continue;
                }
                b->start -= dropped;
                b->end -= dropped;
                s->out_fds[n_fds++] = *b;
        }
        s->n_out_fds = n_fds;

        if (s->out_start == s->out_end) {
                s->out_buf = mfree(s->out_buf);
                s->out_start = s->out_end = s->out_allocated = 0;
        }
        return 0;
}

uint64_t varlink_stream_get_output_offset(const VarlinkStream *s) {
        return s->out_offset;
}
