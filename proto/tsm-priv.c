/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The monitor/worker channel's wire rules (see tsm-priv.h). Runs in: monitor and worker. */

#include <sys/socket.h>
#include <sys/uio.h>

#include "fd-closer.h"
#include "macro.h"
#include "tsm-priv.h"

#define M TSM_PRIV_FROM_MONITOR
#define W TSM_PRIV_FROM_WORKER
#define TYPE(t, s, from, payload, fds)                                                             \
        [TSM_PRIV_##t] = { .name = #t, .size = sizeof(struct s), .min_size = sizeof(struct s),    \
                           .sender = (from), .max_payload = (payload), .n_fds = (fds) }

static const TsmPrivTypeDesc type_table[_TSM_PRIV_TYPE_MAX] = {
        TYPE(HELLO, tsm_priv_hello, M, TSM_PRIV_PAYLOAD_MAX, 0),
        TYPE(LISTEN_SOCKET, tsm_priv_listen_socket, M, 0, 1),
        TYPE(RESTORED_CONTEXT, tsm_priv_restored_context, M, 0, 0),
        TYPE(READY, tsm_priv_ready, W, 0, 0),
        TYPE(STATUS, tsm_priv_status, W, 0, 0),
        TYPE(OPEN_CONTEXT, tsm_priv_new_context, W, 0, 0),
        TYPE(ADOPT_CONTEXT, tsm_priv_new_context, W, 0, 1),
        TYPE(RECLAIM_CONTEXT, tsm_priv_reclaim_context, W, 0, 0),
        TYPE(CLOSE_CONTEXT, tsm_priv_context, W, 0, 0),
        TYPE(ATTACH_VDEVICE, tsm_priv_attach_vdevice, W, 0, 0),
        TYPE(DETACH_VDEVICE, tsm_priv_vdevice, W, 0, 0),
        TYPE(BIND_VDEVICE, tsm_priv_vdevice, W, 0, 0),
        TYPE(UNBIND_VDEVICE, tsm_priv_vdevice, W, 0, 0),
        TYPE(GET_VDEVICE_STATE, tsm_priv_vdevice, W, 0, 0),
        TYPE(GET_DEVICE_STATE, tsm_priv_device, W, 0, 0),
        TYPE(GUEST_REQUEST, tsm_priv_guest_request, W, TSM_PRIV_PAYLOAD_MAX, 0),
        TYPE(CONNECT_DEVICE, tsm_priv_device, W, 0, 0),
        TYPE(DISCONNECT_DEVICE, tsm_priv_device, W, 0, 0),
        TYPE(RELOAD, tsm_priv_reload, W, 0, 0),
        TYPE(SETTLE_VDEVICE, tsm_priv_vdevice, W, 0, 0),
        /* The fd of OPEN/RECLAIM and RELOAD replies is optional: counted by the receiver, not here. */
        TYPE(REPLY, tsm_priv_reply, M, TSM_PRIV_PAYLOAD_MAX, 0),
        TYPE(RESTORED_VDEVICE, tsm_priv_restored_vdevice, M, 0, 0),
        TYPE(LAST_GOOD, tsm_priv_last_good, M, TSM_PRIV_REASON_MAX + 1, 1),
        TYPE(LATE, tsm_priv_late, M, 0, 0),
        TYPE(LATE_ACK, tsm_priv_late_ack, W, 0, 0),
        TYPE(RESTORED_PREVIOUS, tsm_priv_restored_previous, W, 0, 0),
        TYPE(CANCEL_REQUEST, tsm_priv_cancel_request, W, 0, 0),
        TYPE(SIGNAL_RELOAD, tsm_priv_signal_reload, M, 0, 0),
        TYPE(FILES_CHANGED, tsm_priv_files_changed, M, TSM_PRIV_PAYLOAD_MAX, 0),
        TYPE(RECORDED, tsm_priv_recorded, W, TSM_PRIV_RECORDED_MAX * sizeof(uint32_t), 0),
};
#undef TYPE
#undef M
#undef W

const TsmPrivTypeDesc *tsm_priv_type_desc(uint32_t type) {
        if (type >= _TSM_PRIV_TYPE_MAX || !type_table[type].name)
                return NULL;
        return &type_table[type];
}

const char *tsm_priv_type_to_string(uint32_t type) {
        const TsmPrivTypeDesc *d = tsm_priv_type_desc(type);

        return d ? d->name : NULL;
}

bool tsm_priv_check_string(const char *field, size_t size) {
        const char *nul = memchr(field, 0, size);

        if (!nul)
                return false;
        for (const char *p = nul; p < field + size; p++)
                if (*p)
                        return false;
        return true;
}

bool tsm_priv_check_reason(const void *payload, size_t len) {
        const unsigned char *p = payload;

        /* SECURITY: text for a client and the journal, whoever sent it: bounded, one string,
         * nothing a terminal or a log reader would take for a command or a new line. */
        if (len < 2 || len > TSM_PRIV_REASON_MAX + 1 || p[len - 1] != 0)
                return false;
        for (size_t i = 0; i < len - 1; i++)
                if (p[i] < 0x20 || p[i] == 0x7f)
                        return false;
        return true;
}

size_t tsm_priv_reason_make(const char *text, char buf[static TSM_PRIV_REASON_MAX + 1]) {
        char longer[TSM_PRIV_REASON_MAX + 2];
        size_t n = text ? strnlen(text, TSM_PRIV_REASON_MAX + 1) : 0;

        if (n == 0)
                return 0;
        /* One byte more than fits, so that the cut shows. */
        memcpy(longer, text, n);
        longer[n] = 0;
        string_shorten_printable(longer, TSM_PRIV_REASON_MAX);
        n = strlen(longer);
        memcpy(buf, longer, n + 1);
        return n + 1;
}

static bool all_zero(const uint8_t *p, size_t n) {
        for (size_t i = 0; i < n; i++)
                if (p[i])
                        return false;
        return true;
}

int tsm_priv_check(const void *buf, size_t len, size_t n_fds, TsmPrivSender sender, void *ret,
                   size_t ret_size, const void **ret_payload, const char **ret_reason) {
        const TsmPrivTypeDesc *d;
        struct tsm_priv_hdr h;

#define REFUSE(err, why)                                                                           \
        ({                                                                                         \
                *ret_reason = (why);                                                               \
                return (err);                                                                      \
        })

        if (len < sizeof(h))
                REFUSE(-EBADMSG, "shorter than a header");
        memcpy(&h, buf, sizeof(h));
        d = tsm_priv_type_desc(h.type);
        if (!d)
                REFUSE(-EOPNOTSUPP, "unknown message type");
        if (!(d->sender & sender))
                REFUSE(-EPROTO, "message type not sent in this direction");
        if ((h.flags & ~(h.type == TSM_PRIV_REPLY ? TSM_PRIV_REPLY_KEPT : 0)) != 0 || h.__reserved != 0)
                REFUSE(-EBADMSG, "flags or reserved header field not zero");
        if (h.size < d->min_size)
                REFUSE(-EBADMSG, "fixed part shorter than the type's minimum");
        if (h.size > TSM_PRIV_FIXED_MAX)
                REFUSE(-EBADMSG, "fixed part longer than any message");
        if (h.payload_len > d->max_payload)
                REFUSE(-EPROTO, "payload where none is allowed, or too large");
        if ((size_t) h.size + h.payload_len != len)
                REFUSE(-EBADMSG, "message length does not match size + payload_len");
        if (n_fds > d->n_fds && h.type != TSM_PRIV_REPLY)
                REFUSE(-EPROTO, "unexpected file descriptors");
        if (n_fds > 1 || (n_fds < d->n_fds))
                REFUSE(-EPROTO, "file descriptors missing or too many");
        /* copy_struct_from_user(): a longer struct is fine if we know everything non-zero in it. */
        if (h.size > d->size && !all_zero((const uint8_t *) buf + d->size, h.size - d->size))
                REFUSE(-E2BIG, "non-zero bytes past the known fixed part");
        if (ret_size != d->size)
                REFUSE(-EPROTO, "receiver's struct does not match the type");

        memset(ret, 0, ret_size);
        memcpy(ret, buf, MIN((size_t) h.size, ret_size));
        if (ret_payload)
                *ret_payload = h.payload_len > 0 ? (const uint8_t *) buf + h.size : NULL;
        return 0;
#undef REFUSE
}

size_t tsm_priv_unpack(const void *buf, size_t len, TsmPrivSpan ret[static TSM_PRIV_PACK_MAX]) {
        const uint8_t *p = buf;
        size_t offset = 0, n = 0;

        assert(len > 0);

        for (;;) {
                size_t rest = len - offset, size = rest, next = len;

                /* SECURITY: a message ends early only where zeros lead to another header, as
                 * between the fields of a struct, and the last slot takes what is left: every
                 * byte of a datagram belongs to a message the rules are checked on, or is zero. */
                if (n < TSM_PRIV_PACK_MAX - 1 && rest >= sizeof(struct tsm_priv_hdr)) {
                        struct tsm_priv_hdr h;
                        uint64_t said;

                        memcpy(&h, p + offset, sizeof(h));
                        said = (uint64_t) h.size + h.payload_len;
                        if (said >= sizeof(h) && said < rest) {
                                next = offset + DIV_ROUND_UP((size_t) said, TSM_PRIV_PACK_ALIGN) * TSM_PRIV_PACK_ALIGN;
                                if (next + sizeof(h) <= len && all_zero(p + offset + said, next - offset - (size_t) said))
                                        size = (size_t) said;
                        }
                }
                ret[n++] = (TsmPrivSpan) { .offset = offset, .len = size };
                if (size == rest)
                        return n;
                offset = next;
        }
}

void tsm_priv_init(void *msg, uint32_t type, uint32_t cookie, uint32_t payload_len) {
        const TsmPrivTypeDesc *d = tsm_priv_type_desc(type);
        struct tsm_priv_hdr *h = msg;

        assert(d);
        memset(msg, 0, d->size);
        *h = (struct tsm_priv_hdr){ .size = d->size, .type = type, .cookie = cookie, .payload_len = payload_len };
}

int tsm_priv_send(int channel, const void *msg, const void *payload, size_t payload_len, int fd) {
        const struct tsm_priv_hdr *h = msg;
        union {
                struct cmsghdr cmsg;
                uint8_t buf[CMSG_SPACE(sizeof(int))];
        } control = {};
        struct iovec iov[2] = {
                { .iov_base = (void *) msg, .iov_len = h->size },
                { .iov_base = (void *) payload, .iov_len = payload_len },
        };
        struct msghdr mh = { .msg_iov = iov, .msg_iovlen = payload_len > 0 ? 2 : 1 };
        ssize_t n;

        if (payload_len != h->payload_len)
                return -EINVAL;
        if (fd >= 0) {
                mh.msg_control = &control;
                mh.msg_controllen = sizeof(control.buf);
                control.cmsg.cmsg_level = SOL_SOCKET;
                control.cmsg.cmsg_type = SCM_RIGHTS;
                control.cmsg.cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(&control.cmsg), &fd, sizeof(int));
        }
        do
                n = sendmsg(channel, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        return (size_t) n == h->size + payload_len ? 0 : -EIO;
}

ssize_t tsm_priv_received(struct msghdr *mh, ssize_t n, int *ret_fds, size_t max_fds, size_t *ret_n_fds,
                          bool *ret_fds_lost) {
        size_t n_fds = 0;
        bool excess = false;

        if (ret_fds_lost)
                *ret_fds_lost = false;

        for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
                        int fd;

                        memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                        if (n_fds < max_fds)
                                ret_fds[n_fds++] = fd;
                        else {
                                fd_closer_close(fd);
                                excess = true;
                        }
                }
        }
        /* MSG_CTRUNC with no fd at all: the kernel installed none of those that came, as it
         * installs what there is room for first and stops at the first it cannot (no fd left). */
        if (ret_fds_lost && n_fds == 0 && !excess && (mh->msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == MSG_CTRUNC) {
                *ret_fds_lost = true;
                *ret_n_fds = 0;
                return n;
        }
        /* SECURITY: the worker's fds may be a client's, of a file system the client serves,
         * whose close waits on it (fd-closer.h). */
        if (excess || (mh->msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
                fd_closer_close_many(ret_fds, n_fds);
                *ret_n_fds = 0;
                return excess || (mh->msg_flags & MSG_CTRUNC) ? -EPROTO : -EMSGSIZE;
        }
        *ret_n_fds = n_fds;
        return n;
}

ssize_t tsm_priv_receive(int channel, void *buf, int *ret_fds, size_t max_fds, size_t *ret_n_fds) {
        TsmPrivControl control;
        struct iovec iov = { .iov_base = buf, .iov_len = TSM_PRIV_DATAGRAM_MAX };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control.buf) };
        ssize_t n;

        do
                n = recvmsg(channel, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : negative_errno();
        return tsm_priv_received(&mh, n, ret_fds, max_fds, ret_n_fds, NULL);
}

ssize_t tsm_priv_reader_receive(TsmPrivReader *r, int channel, const uint8_t **ret_msg, int *ret_fds,
                                size_t max_fds, size_t *ret_n_fds) {
        TsmPrivSpan span;

        if (r->next == r->n) {
                ssize_t n;

                r->n = r->next = 0;
                n = tsm_priv_receive(channel, r->datagram, ret_fds, max_fds, ret_n_fds);
                *ret_msg = r->datagram;
                /* An fd's datagram is its message alone: tsm_priv_check() holds it to its length. */
                if (n <= 0 || *ret_n_fds > 0)
                        return n;
                r->n = tsm_priv_unpack(r->datagram, (size_t) n, r->spans);
        }
        span = r->spans[r->next++];
        *ret_msg = r->datagram + span.offset;
        *ret_n_fds = 0;
        return (ssize_t) span.len;
}

bool tsm_priv_reader_has_message(const TsmPrivReader *r) {
        return r->next < r->n;
}
