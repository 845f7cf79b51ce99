/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Batched sending and receiving on the monitor/worker channel. Runs in: monitor and worker. */

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "fd-closer.h"
#include "fd-fuse.h"
#include "macro.h"
#include "tsm-priv-batch.h"

struct TsmPrivOutbox {
        TsmPrivSendFailed failed;
        size_t n;
        struct iovec iov[TSM_PRIV_BATCH_MAX]; /* fixed part and payload in one allocation each */
        void *userdata[TSM_PRIV_BATCH_MAX];
};

int tsm_priv_outbox_new(TsmPrivSendFailed failed, TsmPrivOutbox **ret) {
        TsmPrivOutbox *o;

        assert(failed);
        assert(ret);

        o = new0(TsmPrivOutbox, 1);
        if (!o)
                return -ENOMEM;
        o->failed = failed;
        *ret = o;
        return 0;
}

void tsm_priv_outbox_clear(TsmPrivOutbox *o) {
        if (!o)
                return;
        for (size_t i = 0; i < o->n; i++)
                free(o->iov[i].iov_base);
        o->n = 0;
}

TsmPrivOutbox *tsm_priv_outbox_free(TsmPrivOutbox *o) {
        if (!o)
                return NULL;
        tsm_priv_outbox_clear(o);
        return mfree(o);
}

size_t tsm_priv_outbox_size(const TsmPrivOutbox *o) {
        return o->n;
}

int tsm_priv_outbox_add(TsmPrivOutbox *o, int channel, const void *msg, const void *payload,
                        size_t payload_len, void *userdata) {
        const struct tsm_priv_hdr *h = msg;
        uint8_t *copy;

        assert(o);
        assert(msg);

        if (payload_len != h->payload_len)
                return -EINVAL;
        if (payload_len > TSM_PRIV_BATCH_PAYLOAD_MAX) {
                tsm_priv_outbox_flush(o, channel);
                return tsm_priv_send(channel, msg, payload, payload_len, -EBADF);
        }
        /* A loop: failure callbacks of the flush may queue messages of their own. */
        while (o->n == TSM_PRIV_BATCH_MAX)
                tsm_priv_outbox_flush(o, channel);

        copy = malloc(h->size + payload_len);
        if (!copy) {
                /* Out of memory is no reason to fail a message, which a monitor would take for
                 * a wedged worker: it goes now, unbatched, after what waits. */
                tsm_priv_outbox_flush(o, channel);
                return tsm_priv_send(channel, msg, payload, payload_len, -EBADF);
        }
        memcpy(copy, msg, h->size);
        if (payload_len > 0)
                memcpy(copy + h->size, payload, payload_len);
        o->iov[o->n] = (struct iovec) { .iov_base = copy, .iov_len = h->size + payload_len };
        o->userdata[o->n++] = userdata;
        return 0;
}

int tsm_priv_outbox_add_owned(TsmPrivOutbox *o, int channel, void *msg, void *userdata) {
        const struct tsm_priv_hdr *h = msg;
        int r;

        assert(o);
        assert(msg);

        if (h->payload_len > TSM_PRIV_BATCH_PAYLOAD_MAX) {
                tsm_priv_outbox_flush(o, channel);
                r = tsm_priv_send(channel, msg, (const uint8_t *) msg + h->size, h->payload_len, -EBADF);
                if (r >= 0)
                        free(msg);
                return r;
        }
        while (o->n == TSM_PRIV_BATCH_MAX)
                tsm_priv_outbox_flush(o, channel);
        o->iov[o->n] = (struct iovec) { .iov_base = msg, .iov_len = (size_t) h->size + h->payload_len };
        o->userdata[o->n++] = userdata;
        return 0;
}

/* Lays the queued messages out as datagrams: each takes messages while they fit, with the
 * zeros before each one after the first (tsm-priv.h). Returns how many datagrams; first[d] is
 * the message datagram d starts with, first[n] == o->n. */
static size_t outbox_pack(TsmPrivOutbox *o, struct iovec iov[static 2 * TSM_PRIV_BATCH_MAX],
                          struct mmsghdr mm[static TSM_PRIV_BATCH_MAX], size_t first[static TSM_PRIV_BATCH_MAX + 1]) {
        static const uint8_t zeros[TSM_PRIV_PACK_ALIGN];
        size_t n = 0, n_iov = 0;

        for (size_t i = 0; i < o->n; n++) {
                size_t start = n_iov, bytes = 0;

                first[n] = i;
                do {
                        size_t at = DIV_ROUND_UP(bytes, TSM_PRIV_PACK_ALIGN) * TSM_PRIV_PACK_ALIGN;

                        if (i > first[n] && (at + o->iov[i].iov_len > TSM_PRIV_DATAGRAM_MAX ||
                                             i - first[n] == TSM_PRIV_PACK_MAX))
                                break;
                        if (at > bytes)
                                iov[n_iov++] = (struct iovec) { .iov_base = (void *) zeros, .iov_len = at - bytes };
                        iov[n_iov++] = o->iov[i];
                        bytes = at + o->iov[i++].iov_len;
                } while (i < o->n);
                mm[n] = (struct mmsghdr) { .msg_hdr = { .msg_iov = iov + start, .msg_iovlen = n_iov - start } };
        }
        first[n] = o->n;
        return n;
}

void tsm_priv_outbox_flush(TsmPrivOutbox *o, int channel) {
        struct iovec iov[2 * TSM_PRIV_BATCH_MAX];
        struct mmsghdr mm[TSM_PRIV_BATCH_MAX];
        size_t first[TSM_PRIV_BATCH_MAX + 1];
        void *failed[TSM_PRIV_BATCH_MAX];
        int errors[TSM_PRIV_BATCH_MAX];
        size_t done = 0, n_failed = 0, n, n_datagrams;

        assert(o);

        n_datagrams = outbox_pack(o, iov, mm, first);
        while (done < n_datagrams) {
                int k = sendmmsg(channel, mm + done, (unsigned) (n_datagrams - done), MSG_NOSIGNAL);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int r = negative_errno();

                        /* The first unsent one is refused. Only a datagram of its own is (too
                         * long); anything else is the socket's (the peer is gone, or does not
                         * read: a blocking send timed out), and would refuse the rest after
                         * as long again each, so they fail with it at once. */
                        do {
                                for (size_t i = first[done]; i < first[done + 1]; i++) {
                                        errors[n_failed] = r;
                                        failed[n_failed++] = o->userdata[i];
                                }
                                done++;
                        } while (r != -EMSGSIZE && done < n_datagrams);
                        continue;
                }
                /* A datagram goes whole or not at all. */
                done += (size_t) k;
        }
        n = o->n;
        for (size_t i = 0; i < n; i++)
                free(o->iov[i].iov_base);
        o->n = 0;

        for (size_t i = 0; i < n_failed; i++)
                o->failed(errors[i], failed[i]);
}

/* ---- receiving -------------------------------------------------------------------------- */

/* Room for as many fds as one datagram can carry (the kernel's SCM_MAX_FD): SECURITY, every fd
 * that came is installed, so the kernel drops none. One it drops is released at the return of
 * the receive, on the receiving thread (fput()'s task work), and that release may wait on a FUSE
 * server for as long as it likes (fuse_release() writes a writeback-cached inode back first):
 * the monitor's event loop would wait with it. Installed, each goes to the closer (fd-closer.h). */
typedef union TsmPrivInboxControl {
        struct cmsghdr cmsg;
        uint8_t buf[CMSG_SPACE(sizeof(int) * TSM_PRIV_SCM_MAX_FD)];
} TsmPrivInboxControl;

struct TsmPrivInbox {
        size_t n;  /* messages */
        bool more; /* every datagram slot was filled */
        size_t max_fds; /* datagrams received per call, whose fds are taken */
        size_t max_batch; /* datagrams per call at most: half the fd table's worth of fds */
        struct mmsghdr mm[TSM_PRIV_BATCH_MAX];
        struct iovec iov[TSM_PRIV_BATCH_MAX];
        TsmPrivInboxControl control[TSM_PRIV_BATCH_MAX];
        TsmPrivReceived d[TSM_PRIV_BATCH_MAX * TSM_PRIV_PACK_MAX];
        /* Pages are only touched as far as datagrams fill them: a batch of small messages
         * costs a page each, not the whole maximum. Aligned, as the messages in them are. */
        _Alignas(TSM_PRIV_PACK_ALIGN) uint8_t buf[TSM_PRIV_BATCH_MAX][TSM_PRIV_DATAGRAM_MAX];
};

int tsm_priv_inbox_new(TsmPrivInbox **ret) {
        struct rlimit rl;
        TsmPrivInbox *in;

        assert(ret);

        in = malloc(sizeof(TsmPrivInbox));
        if (!in)
                return -ENOMEM;
        in->n = 0;
        in->more = false;
        in->max_fds = TSM_PRIV_BATCH_MAX;
        /* SECURITY: a receive with more fds than the table has room for has the kernel drop the
         * rest (above). With tsmd's limit raised to the hard one, as it is, that is a batch. */
        in->max_batch = TSM_PRIV_BATCH_MAX;
        if (getrlimit(RLIMIT_NOFILE, &rl) >= 0 && rl.rlim_cur != RLIM_INFINITY)
                in->max_batch = CLAMP((size_t) rl.rlim_cur / (2 * TSM_PRIV_SCM_MAX_FD), (size_t) 1,
                                      (size_t) TSM_PRIV_BATCH_MAX);
        *ret = in;
        return 0;
}

void tsm_priv_inbox_clear(TsmPrivInbox *in) {
        if (!in)
                return;
        for (size_t i = 0; i < in->n; i++)
                fd_closer_close_many(in->d[i].fds, in->d[i].n_fds); /* maybe a client's: fd-closer.h */
        in->n = 0;
}

TsmPrivInbox *tsm_priv_inbox_free(TsmPrivInbox *in) {
        if (!in)
                return NULL;
        tsm_priv_inbox_clear(in);
        return mfree(in);
}

int tsm_priv_inbox_receive(TsmPrivInbox *in, int channel) {
        /* Datagrams past the room for fds wait for the next receive, but one, so that messages
         * without fds go on. */
        size_t vlen = CLAMP(in->max_fds, (size_t) 1, in->max_batch);
        int k;

        assert(in);

        tsm_priv_inbox_clear(in);
        for (size_t i = 0; i < vlen; i++) {
                in->iov[i] = (struct iovec) { .iov_base = in->buf[i], .iov_len = TSM_PRIV_DATAGRAM_MAX };
                in->mm[i] = (struct mmsghdr) { .msg_hdr = {
                        .msg_iov = &in->iov[i],
                        .msg_iovlen = 1,
                        .msg_control = &in->control[i],
                        .msg_controllen = sizeof(in->control[i].buf),
                } };
        }

        do
                k = recvmmsg(channel, in->mm, (unsigned) vlen, MSG_CMSG_CLOEXEC | MSG_DONTWAIT, NULL);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : negative_errno();

        for (size_t i = 0; i < (size_t) k; i++) {
                TsmPrivReceived *d = &in->d[in->n++];
                TsmPrivSpan spans[TSM_PRIV_PACK_MAX];
                size_t m;

                d->buf = in->buf[i];
                d->len = tsm_priv_received(&in->mm[i].msg_hdr, (ssize_t) in->mm[i].msg_len, d->fds,
                                           ELEMENTSOF(d->fds), &d->n_fds, &d->fds_lost);
                d->fds_refused = false;
                d->fds_refused_may_wait = false;
                /* Past the room: not taken, closed as any other left (the closer's thread if it may
                 * wait), and said so. */
                if (i >= in->max_fds && d->n_fds > 0) {
                        d->fds_refused_may_wait = fd_may_reach_fuse(d->fds[0]);
                        fd_closer_close_many(d->fds, d->n_fds);
                        d->n_fds = 0;
                        d->fds_lost = d->fds_refused = true;
                }
                /* An fd's datagram is its message alone: tsm_priv_check() holds it to its length. */
                if (d->len <= 0 || d->n_fds > 0 || d->fds_lost)
                        continue;
                m = tsm_priv_unpack(d->buf, (size_t) d->len, spans);
                for (size_t j = 0; j < m; j++)
                        in->d[in->n - 1 + j] = (TsmPrivReceived) {
                                .buf = in->buf[i] + spans[j].offset,
                                .len = (ssize_t) spans[j].len,
                        };
                in->n += m - 1;
        }
        in->more = (size_t) k == vlen;
        return (int) in->n;
}

void tsm_priv_inbox_limit_fds(TsmPrivInbox *in, size_t n) {
        in->max_fds = MIN(n, (size_t) TSM_PRIV_BATCH_MAX);
}

bool tsm_priv_inbox_more(const TsmPrivInbox *in) {
        return in->more;
}

TsmPrivReceived *tsm_priv_inbox_get(TsmPrivInbox *in, size_t i) {
        assert(i < in->n);
        return &in->d[i];
}
