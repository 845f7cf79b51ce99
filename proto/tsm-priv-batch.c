/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Batched sending and receiving on the monitor/worker channel. Runs in: monitor and worker. */

#include <sys/socket.h>
#include <sys/uio.h>

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

void tsm_priv_outbox_flush(TsmPrivOutbox *o, int channel) {
        struct mmsghdr mm[TSM_PRIV_BATCH_MAX];
        void *failed[TSM_PRIV_BATCH_MAX];
        int errors[TSM_PRIV_BATCH_MAX];
        size_t done = 0, n_failed = 0, n;

        assert(o);

        for (size_t i = 0; i < o->n; i++)
                mm[i] = (struct mmsghdr) { .msg_hdr = { .msg_iov = &o->iov[i], .msg_iovlen = 1 } };

        while (done < o->n) {
                int k = sendmmsg(channel, mm + done, (unsigned) (o->n - done), MSG_NOSIGNAL);

                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        int r = negative_errno();

                        /* The first unsent one is refused. Only a message of its own is (too
                         * long); anything else is the socket's (the peer is gone, or does not
                         * read: a blocking send timed out), and would refuse the rest after
                         * as long again each, so they fail with it at once. */
                        do {
                                errors[n_failed] = r;
                                failed[n_failed++] = o->userdata[done++];
                        } while (r != -EMSGSIZE && done < o->n);
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

struct TsmPrivInbox {
        size_t n;
        struct mmsghdr mm[TSM_PRIV_BATCH_MAX];
        struct iovec iov[TSM_PRIV_BATCH_MAX];
        TsmPrivControl control[TSM_PRIV_BATCH_MAX];
        TsmPrivDatagram d[TSM_PRIV_BATCH_MAX];
        /* Pages are only touched as far as datagrams fill them: a batch of small messages
         * costs a page each, not the whole maximum. */
        uint8_t buf[TSM_PRIV_BATCH_MAX][TSM_PRIV_DATAGRAM_MAX];
};

int tsm_priv_inbox_new(TsmPrivInbox **ret) {
        TsmPrivInbox *in;

        assert(ret);

        in = malloc(sizeof(TsmPrivInbox));
        if (!in)
                return -ENOMEM;
        in->n = 0;
        *ret = in;
        return 0;
}

void tsm_priv_inbox_clear(TsmPrivInbox *in) {
        if (!in)
                return;
        for (size_t i = 0; i < in->n; i++)
                close_many(in->d[i].fds, in->d[i].n_fds);
        in->n = 0;
}

TsmPrivInbox *tsm_priv_inbox_free(TsmPrivInbox *in) {
        if (!in)
                return NULL;
        tsm_priv_inbox_clear(in);
        return mfree(in);
}

int tsm_priv_inbox_receive(TsmPrivInbox *in, int channel) {
        int k;

        assert(in);

        tsm_priv_inbox_clear(in);
        for (size_t i = 0; i < TSM_PRIV_BATCH_MAX; i++) {
                in->iov[i] = (struct iovec) { .iov_base = in->buf[i], .iov_len = TSM_PRIV_DATAGRAM_MAX };
                in->mm[i] = (struct mmsghdr) { .msg_hdr = {
                        .msg_iov = &in->iov[i],
                        .msg_iovlen = 1,
                        .msg_control = &in->control[i],
                        .msg_controllen = sizeof(in->control[i].buf),
                } };
        }

        do
                k = recvmmsg(channel, in->mm, TSM_PRIV_BATCH_MAX, MSG_CMSG_CLOEXEC | MSG_DONTWAIT, NULL);
        while (k < 0 && errno == EINTR);
        if (k < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : negative_errno();

        for (size_t i = 0; i < (size_t) k; i++) {
                TsmPrivDatagram *d = &in->d[i];

                d->buf = in->buf[i];
                d->len = tsm_priv_received(&in->mm[i].msg_hdr, (ssize_t) in->mm[i].msg_len, d->fds,
                                           ELEMENTSOF(d->fds), &d->n_fds);
        }
        in->n = (size_t) k;
        return k;
}

TsmPrivDatagram *tsm_priv_inbox_get(TsmPrivInbox *in, size_t i) {
        assert(i < in->n);
        return &in->d[i];
}
