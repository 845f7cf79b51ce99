/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The monitor's request table and its handlers. Runs in: monitor. */

#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include "backend.h"
#include "fd-closer.h"
#include "fd-fuse.h"
#include "fdstore.h"
#include "idle-flush.h"
#include "log.h"
#include "monitor-dispatch.h"
#include "monitor-iommufd.h"
#include "ratelimit.h"
#include "tsm-platform.h"
#include "tsm-priv-batch.h"

/* Every fixed part the worker sends, so one buffer takes whichever type arrives (the types only
 * the monitor sends, tsm_priv_check() refuses first). */
typedef union PrivMessage {
        struct tsm_priv_hdr hdr;
        struct tsm_priv_ready ready;
        struct tsm_priv_status status;
        struct tsm_priv_new_context new_context;
        struct tsm_priv_context context;
        struct tsm_priv_reclaim_context reclaim_context;
        struct tsm_priv_attach_vdevice attach;
        struct tsm_priv_vdevice vdevice;
        struct tsm_priv_device device;
        struct tsm_priv_guest_request guest_request;
        struct tsm_priv_reload reload;
        struct tsm_priv_late_ack late_ack;
        struct tsm_priv_restored_previous restored_previous;
        struct tsm_priv_cancel_request cancel_request;
} PrivMessage;

/* Who a kernel call is for, should it be given up on while the kernel runs it: the lanes copy
 * it then (tsm_request_set_late_tag()), and hand it back with the kernel's late answer, which
 * goes to the worker's audit log (LATE). */
typedef struct MonitorLateTag {
        uint64_t generation; /* of the worker that asked: its cookie means nothing to another */
        uint32_t op;         /* TsmPrivLateOp */
        uint32_t cookie;
        uint32_t context, vdevice;
        uint32_t uid, backend; /* TSM_PRIV_LATE_NONE: not known */
        char pci_address[TSM_PRIV_PCI_ADDRESS_MAX];
        char scope[TSM_PRIV_NAME_MAX];
        char tsm[TSM_PRIV_NAME_MAX];
} MonitorLateTag;
_Static_assert(sizeof(MonitorLateTag) <= KERNEL_LATE_TAG_MAX, "fits the lanes' copy");

/* A guest request in flight: its reply goes out from the platform's callback. */
typedef struct MonitorRequest {
        MonitorDispatch *dispatch;
        uint32_t cookie;
        uint32_t slot; /* the asker's: only it may cancel the request (CANCEL_REQUEST) */
        uint32_t context, vdevice;
        TsmRequest *request;
        MonitorLateTag tag;
        LIST_ENTRY(MonitorRequest) entry;
} MonitorRequest;

/* A bind or unbind in flight. It outlives the worker that asked for it: the TDI changes all the
 * same, and the monitor's record of it must follow. Or a SETTLE_VDEVICE waiting for those of its
 * vDevice to be answered (no request of its own). */
typedef struct MonitorChange {
        MonitorDispatch *dispatch;
        uint32_t cookie; /* 0 once the worker that asked is gone: nobody to answer */
        TsmRequest *request;
        bool settle;
        bool bind;
        uint32_t context, vdevice;
        uint64_t serial;
        uint64_t start_usec; /* for a late answer's latency */
        MonitorLateTag tag;
        LIST_ENTRY(MonitorChange) entry;
} MonitorChange;

/* A connect or disconnect on its way: the kernel sets up (or tears down) the SPDM session and
 * IDE inside the sysfs write, on the device's lane. It outlives the worker that asked: the
 * device changes all the same, and the platform looks at it again when it has. */
typedef struct MonitorConnect {
        MonitorDispatch *dispatch;
        uint32_t cookie; /* 0 once the worker that asked is gone: nobody to answer */
        TsmRequest *request;
        char pci_address[TSM_PRIV_PCI_ADDRESS_MAX];
        char tsm[TSM_PRIV_NAME_MAX]; /* "" for a disconnect */
        uint64_t start_usec;
        MonitorLateTag tag;
        LIST_ENTRY(MonitorConnect) entry;
} MonitorConnect;

/* A LATE kept until a worker acknowledges it recorded (MONITOR_LATE_KEPT_MAX). */
typedef struct MonitorLate {
        struct tsm_priv_late msg;  /* id set; request_cookie 0 once it goes to another worker */
        uint64_t sent_generation;  /* of the worker it last went to: only that one may ack it */
} MonitorLate;

struct MonitorDispatch {
        struct event_base *base;
        TsmPlatform *platform;
        MonitorContexts *contexts;
        MonitorDispatchCallbacks cb;
        void *userdata;
        uint64_t started_usec; /* CLOCK_MONOTONIC, told each worker: tsmd's uptime */

        int channel;        /* borrowed; -EBADF while no worker is served */
        size_t inbox_n, inbox_next; /* messages received, and the next to handle */
        bool stalled;       /* a reply could not be sent: nothing more goes to this worker */
        uint32_t seen_once; /* a bit per type: MON_ONCE messages this worker sent */
        bool reload_loaded; /* a RELOAD load answered 0 to this worker, not committed yet */
        uint32_t violation_type;
        RateLimit scope_refusal_log; /* a worker can ask for ungranted scopes as often as it likes */
        RateLimit device_refusal_log; /* and for devices no rule lists */
        RateLimit contexts_full_log;  /* and for contexts past the cap */
        RateLimit fd_lost_log;        /* and fds not taken (MONITOR_WORKER_FDS_CLOSING_MAX) */
        TsmPrivWorkerEnd previous_end; /* for the next HELLO */
        uint32_t previous_status;
        const char *start_settings; /* HELLO's payload, with its NUL; borrowed; NULL: none */
        int last_good_fd; /* borrowed; -EBADF: none */
        bool last_good_stale;
        char last_good_reason[TSM_PRIV_REASON_MAX + 1]; /* a stale one's (LAST_GOOD's payload) */
        size_t last_good_reason_len;                    /* its payload length; 0: none */
        uint64_t generation; /* of the worker served: one more at each start */
        bool compromised;    /* it broke a rule: nothing more is taken from it */
        bool fds_limited;    /* the last receive took fds of some datagrams only (inbox_receive()) */
        /* LATE messages until a worker acknowledges them recorded, oldest first (an array of
         * MONITOR_LATE_KEPT_MAX, made at the first), and the LOST that counts those dropped for
         * want of room (id 0: none), kept the same way but apart: it needs no room of theirs. */
        MonitorLate *late_kept;
        size_t n_late_kept;
        MonitorLate late_lost;
        uint64_t n_late_dropped; /* since the last LOST was made */
        uint64_t next_late_id;
        RateLimit late_lost_log;

        LIST_HEAD(, MonitorRequest) requests;
        size_t n_requests;
        LIST_HEAD(, MonitorChange) changes;
        LIST_HEAD(, MonitorConnect) connects; /* at most one per device (the platform's rule) */

        /* Requests arrive by the batch and the replies without fds to a batch leave together
         * at its end; those of guest requests once the loop is idle (or 1 ms from the first
         * at the latest: idle-flush.h). */
        TsmPrivOutbox *outbox;
        TsmPrivInbox *inbox;
        IdleFlush *flush;
};

/* When a request may come, as OpenSSH's monitor has it. */
typedef enum MonitorPermit {
        MON_PERMIT = 1 << 0, /* the worker may send it */
        MON_ONCE = 1 << 1,   /* at most once per worker */
        MON_ANSWERED = 1 << 2, /* answered by a REPLY with its cookie, which is never 0 */
} MonitorPermit;

_Static_assert(_TSM_PRIV_TYPE_MAX <= 32, "seen_once has a bit per type");
_Static_assert(MONITOR_WORKER_FDS_CLOSING_MAX >= TSM_PRIV_BATCH_MAX,
               "with nothing waiting to be closed, every datagram of a batch may carry its fd");

/*
 * A handler gets a message whose shape tsm_priv_check() accepted, its payload (NULL if none)
 * and its fd (-EBADF if none; the handler may take it). For a type that carries an fd, -EBADF
 * means one came that the monitor did not take (inbox_receive()): the handler checks what it
 * can without it, then answers reply_fd_lost(). It answers the worker itself and
 * returns 0; or, when the message breaks a rule, a negative errno with *ret_reason set (no
 * answer goes out); or the send error with *ret_reason untouched.
 */
typedef int (*PrivHandler)(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                           const char **ret_reason);

/* A broken rule: returns r with *ret_reason set, as a handler does. */
static int violation(int r, const char *reason, const char **ret_reason) {
        *ret_reason = reason;
        return r;
}

/*
 * SECURITY: the monitor never waits on the worker for long. Its sends block at most
 * MONITOR_SEND_TIMEOUT_USEC (the socket's SO_SNDTIMEO); a reply the worker does not take in that
 * time, or one that fails otherwise, ends this worker: nothing more is sent to it (each further
 * send could block as long again, and the kernel lanes deliver many replies in one callback),
 * and the caller kills it. A worker that leaves its replies unread is wedged or compromised;
 * a reply dropped silently would leave it out of step anyway.
 */
static void reply_failed(MonitorDispatch *d, int error) {
        if (error == -EPIPE || error == -ECONNRESET) {
                /* The worker is gone; the end of file on the channel tells the monitor so. */
                log_debug_errno(error, "Failed to send a reply to the worker: %m");
                return;
        }
        if (d->stalled)
                return;
        d->stalled = true;
        if (d->cb.stalled)
                d->cb.stalled(error, d->userdata);
}

static void on_reply_failed(int error, void *userdata) {
        reply_failed(userdata, error);
}

static int reply_full(MonitorDispatch *d, uint32_t cookie, int result, uint32_t value, const void *payload,
                      size_t payload_len, int fd) {
        struct tsm_priv_reply rep;
        int r;

        if (d->stalled)
                return -EPIPE;
        tsm_priv_init(&rep, TSM_PRIV_REPLY, cookie, (uint32_t) payload_len);
        rep.result = result;
        rep.value = value;
        if (fd < 0) {
                r = tsm_priv_outbox_add(d->outbox, d->channel, &rep, payload, payload_len, d);
                if (r >= 0)
                        idle_flush_schedule(d->flush);
        } else {
                /* In order: what waits goes first. */
                tsm_priv_outbox_flush(d->outbox, d->channel);
                r = d->stalled ? -EPIPE : tsm_priv_send(d->channel, &rep, payload, payload_len, fd);
        }
        if (r < 0) {
                reply_failed(d, r);
                /* A stalled worker is gone as far as the dispatch is concerned. */
                return d->stalled ? -EPIPE : r;
        }
        return 0;
}

static void on_flush(void *userdata) {
        MonitorDispatch *d = userdata;

        if (d->channel >= 0 && !d->stalled)
                tsm_priv_outbox_flush(d->outbox, d->channel);
}

static int reply(MonitorDispatch *d, const PrivMessage *m, int result, uint32_t value, int fd) {
        return reply_full(d, m->hdr.cookie, result, value, NULL, 0, fd);
}

/* A failure of the monitor's own, the backend not asked (its policy gate's -EPERM, its own
 * -ENOMEM): said so, as a kernel TSM may answer the same errno (TSM_PRIV_REPLY_MONITOR_OWN). */
static int reply_own(MonitorDispatch *d, const PrivMessage *m, int result) {
        assert(result < 0);
        return reply(d, m, result, TSM_PRIV_REPLY_MONITOR_OWN, -EBADF);
}

/* The platform's failure to start a call: its -ENOMEM is the monitor's own memory, as the TSM
 * answers only later, from the callback. */
static int reply_not_started(MonitorDispatch *d, const PrivMessage *m, int result) {
        return result == -ENOMEM ? reply_own(d, m, result) : reply(d, m, result, 0, -EBADF);
}

/* The fd that came with m was not taken: the monitor had no fd left, or took none while fds a
 * worker passed wait to be closed (MONITOR_WORKER_FDS_CLOSING_MAX). Its own failure, not the
 * worker's: a correct worker sends such messages too. */
static int reply_fd_lost(MonitorDispatch *d, const PrivMessage *m) {
        if (d->fds_limited)
                log_full_ratelimited(&d->fd_lost_log, LOG_WARNING,
                                     "Not taking the fd the worker passed with %s: %zu fds a worker passed wait to be "
                                     "closed behind a close some file system holds. Failing it with ENOBUFS.",
                                     tsm_priv_type_to_string(m->hdr.type), fd_closer_n_waiting(FD_CLOSER_PEER_NONE));
        else
                log_full_ratelimited(&d->fd_lost_log, LOG_WARNING,
                                     "No fd left to receive the one the worker passed with %s (RLIMIT_NOFILE "
                                     "reached), failing it with ENOBUFS.",
                                     tsm_priv_type_to_string(m->hdr.type));
        return reply_own(d, m, -ENOBUFS);
}

/* ---- late answers of the kernel ----------------------------------------------------------- */

/* ctx: the context the call is for, which the caller has at hand (NULL: none). */
static MonitorLateTag late_tag(MonitorDispatch *d, TsmPrivLateOp op, uint32_t cookie, const MonitorContext *ctx,
                               uint32_t vdevice, const char *pci_address) {
        MonitorLateTag t = { .generation = d->generation, .op = op, .cookie = cookie,
                             .context = ctx ? ctx->id : 0, .vdevice = vdevice,
                             .uid = ctx ? (uint32_t) ctx->uid : TSM_PRIV_LATE_NONE,
                             .backend = TSM_PRIV_LATE_NONE };

        if (pci_address && strlen(pci_address) < sizeof(t.pci_address))
                strcpy(t.pci_address, pci_address);
        return t;
}

/* To the worker served, if any; it stays kept either way. A worker that does not take its
 * messages is ended like one that leaves its replies unread (reply_failed()). */
static void late_send(MonitorDispatch *d, MonitorLate *l) {
        int r;

        if (d->channel < 0 || d->stalled)
                return;
        r = tsm_priv_outbox_add(d->outbox, d->channel, &l->msg, NULL, 0, d);
        if (r < 0) {
                reply_failed(d, r);
                return;
        }
        l->sent_generation = d->generation;
        idle_flush_schedule(d->flush);
}

int monitor_dispatch_signal_reload(MonitorDispatch *d, pid_t pid, uid_t uid, const char *unit) {
        struct tsm_priv_signal_reload m;
        int r;

        if (d->channel < 0 || d->stalled)
                return -ENOTCONN;
        tsm_priv_init(&m, TSM_PRIV_SIGNAL_RELOAD, 0, 0);
        m.pid = pid > 0 ? (uint32_t) pid : 0;
        m.uid = uid == (uid_t) -1 ? TSM_PRIV_LATE_NONE : (uint32_t) uid;
        /* A name too long for the field is none: cut, it would name another unit. */
        if (m.pid > 0 && unit && strlen(unit) < sizeof(m.unit))
                strcpy(m.unit, unit);
        r = tsm_priv_outbox_add(d->outbox, d->channel, &m, NULL, 0, d);
        if (r < 0) {
                reply_failed(d, r);
                return r;
        }
        idle_flush_schedule(d->flush);
        return 0;
}

int monitor_dispatch_files_changed(MonitorDispatch *d, uint32_t n_changed, const char *paths, size_t size) {
        _cleanup_free_ char *named = NULL;
        struct tsm_priv_files_changed m;
        size_t n = 0;
        int r;

        if (d->channel < 0 || d->stalled)
                return -ENOTCONN;
        /* Whole paths, as many as fit, none longer than a path may be (a drop-in's name after a
         * long directory's): n_changed says how many differ. */
        if (size > 0) {
                named = malloc(MIN(size, (size_t) TSM_PRIV_PAYLOAD_MAX));
                if (!named)
                        return -ENOMEM;
        }
        for (size_t i = 0; i < size;) {
                size_t len = strnlen(paths + i, size - i) + 1;

                if (i + len > size)
                        break;
                if (len <= TSM_PRIV_PATH_MAX) {
                        if (n + len > TSM_PRIV_PAYLOAD_MAX)
                                break;
                        memcpy(named + n, paths + i, len);
                        n += len;
                }
                i += len;
        }
        tsm_priv_init(&m, TSM_PRIV_FILES_CHANGED, 0, (uint32_t) n);
        m.n_changed = MIN(n_changed, TSM_PRIV_FILES_MAX);
        r = tsm_priv_outbox_add(d->outbox, d->channel, &m, n > 0 ? named : NULL, n, d);
        if (r < 0) {
                reply_failed(d, r);
                return r;
        }
        idle_flush_schedule(d->flush);
        return 0;
}

/* The count of late answers dropped goes out as a LOST, once the one before is acknowledged. */
static void late_lost_flush(MonitorDispatch *d) {
        struct tsm_priv_late *m = &d->late_lost.msg;

        if (m->id != 0 || d->n_late_dropped == 0)
                return;
        tsm_priv_init(m, TSM_PRIV_LATE, 0, 0);
        m->op = TSM_PRIV_LATE_LOST;
        m->uid = m->backend = TSM_PRIV_LATE_NONE;
        m->id = ++d->next_late_id;
        m->count = d->n_late_dropped;
        d->late_lost.sent_generation = 0;
        d->n_late_dropped = 0;
        late_send(d, &d->late_lost);
}

/* Kept until a worker acknowledges it recorded, whichever worker that is: the audit log must
 * hear of it, and a worker may end before it took it, or before it wrote its record. */
static void late_keep(MonitorDispatch *d, const struct tsm_priv_late *late) {
        MonitorLate *l;

        /* SECURITY: bounded: a hung TSM answers as many calls late as it was given, and a worker
         * need not acknowledge. The oldest stay: they may be in the audit log already. */
        if (!d->late_kept)
                d->late_kept = new(MonitorLate, MONITOR_LATE_KEPT_MAX);
        if (!d->late_kept || d->n_late_kept >= MONITOR_LATE_KEPT_MAX) {
                d->n_late_dropped++;
                log_full_ratelimited(&d->late_lost_log, LOG_WARNING,
                                     "A kernel TSM call to %s answered late, and %zu such answers wait to be "
                                     "recorded already: its own audit record is lost, the count of such is recorded.",
                                     late->pci_address, d->n_late_kept);
                late_lost_flush(d);
                return;
        }
        l = &d->late_kept[d->n_late_kept++];
        *l = (MonitorLate){ .msg = *late };
        l->msg.id = ++d->next_late_id;
        if (d->channel < 0)
                log_debug("A kernel TSM call to %s answered late while no worker runs: kept for the next one "
                          "(%zu kept).", late->pci_address, d->n_late_kept);
        late_send(d, l);
}

static void on_platform_late(TsmPlatform *p, const KernelLate *k, void *userdata) {
        static const TsmPrivLateOp ops[_KERNEL_OP_MAX] = {
                [KERNEL_OP_REQUEST] = TSM_PRIV_LATE_GUEST_REQUEST,
                [KERNEL_OP_BIND] = TSM_PRIV_LATE_BIND,
                [KERNEL_OP_UNBIND] = TSM_PRIV_LATE_UNBIND,
                [KERNEL_OP_WRITE] = TSM_PRIV_LATE_CONNECT, /* untagged: it wrote, to which file unknown */
        };
        MonitorDispatch *d = userdata;
        MonitorLateTag t;
        struct tsm_priv_late late;

        /* Every call the monitor makes is tagged; without memory for the copy, what the lanes
         * know. */
        if (k->tag && k->tag_size == sizeof(t))
                memcpy(&t, k->tag, sizeof(t));
        else
                t = late_tag(d, ops[k->op], 0, NULL, k->vdevice_id, k->lane);
        if (k->undo)
                t.op = TSM_PRIV_LATE_BIND_UNDO;

        tsm_priv_init(&late, TSM_PRIV_LATE, 0, 0);
        late.op = t.op;
        late.request_cookie = t.generation == d->generation && d->channel >= 0 ? t.cookie : 0;
        late.context = t.context;
        late.vdevice = t.vdevice;
        late.uid = t.uid;
        late.backend = t.backend;
        late.result = k->result < 0 ? MAX(k->result, -4095) : 0;
        late.response_size = (uint32_t) MIN(k->response_len, (size_t) TSM_PRIV_PAYLOAD_MAX);
        late.scope_number = t.op == TSM_PRIV_LATE_GUEST_REQUEST ? k->scope_number : 0;
        /* What a request on time says in its reply's value (on_request_done()): at most its
         * request's length, itself at most a payload's, and only offered no response buffer
         * (the transport's residue counts one or the other), as the worker checks. */
        if (t.op == TSM_PRIV_LATE_GUEST_REQUEST && late.result == 0 && late.response_size == 0)
                late.request_unconsumed = (uint32_t) MIN(k->request_unconsumed, (size_t) TSM_PRIV_PAYLOAD_MAX);
        late.latency_usec = k->latency_usec;
        memcpy(late.pci_address, t.pci_address, sizeof(late.pci_address));
        memcpy(late.scope, t.scope, sizeof(late.scope));
        memcpy(late.tsm, t.tsm, sizeof(late.tsm));
        if (!late.pci_address[0] && k->lane && strlen(k->lane) < sizeof(late.pci_address))
                strcpy(late.pci_address, k->lane);
        late_keep(d, &late);
}

/* The kernel answered a call whose worker ended meanwhile (at_usec: when the call was made),
 * unless it answers late by itself (the call was given up on in the kernel: its device went). */
static void late_orphan(MonitorDispatch *d, TsmRequest *req, KernelOp op, const char *pci_address, uint32_t vdevice,
                        int result, uint64_t at_usec, const MonitorLateTag *tag) {
        const KernelLate k = { .op = op, .lane = pci_address, .vdevice_id = vdevice, .result = result,
                               .latency_usec = now_monotonic_usec() - at_usec, .tag = tag, .tag_size = sizeof(*tag) };

        if (!tsm_request_answers_late(req))
                on_platform_late(d->platform, &k, d);
}

/* ---- the worker's word that it has a LATE -------------------------------------------------- */

static MonitorLate *late_find(MonitorDispatch *d, uint64_t id) {
        if (id == 0)
                return NULL;
        if (d->late_lost.msg.id == id)
                return &d->late_lost;
        for (size_t i = 0; i < d->n_late_kept; i++)
                if (d->late_kept[i].msg.id == id)
                        return &d->late_kept[i];
        return NULL;
}

static int priv_late_ack(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                         const char **ret_reason) {
        const struct tsm_priv_late_ack *a = &m->late_ack;
        MonitorLate *l;

        if (a->__reserved != 0)
                return violation(-EBADMSG, "reserved field not zero", ret_reason);
        if (a->durable > 1)
                return violation(-EBADMSG, "durable neither 0 nor 1", ret_reason);
        if (!a->durable && a->seq == 0)
                return violation(-EBADMSG, "being recorded under no seq", ret_reason);
        /* SECURITY: only what went to this worker, once: it cannot make the monitor forget what
         * it was never told. (What it was told it can lie about, as it can about any record.) */
        l = late_find(d, a->id);
        if (!l || l->sent_generation != d->generation)
                return violation(-EPERM, "no such LATE sent to this worker", ret_reason);
        if (!a->durable) {
                l->msg.recorded_seq = a->seq;
                return 0;
        }
        if (l == &d->late_lost) {
                d->late_lost = (MonitorLate){};
                late_lost_flush(d);
                return 0;
        }
        memmove(l, l + 1, (size_t) (d->late_kept + d->n_late_kept - (l + 1)) * sizeof(*l));
        d->n_late_kept--;
        return 0;
}

/* The LATE_ACKs among the messages of the inbox from index from on, taken as the worker is
 * ending: false once one breaks a rule, which ends the taking, as it would the worker. */
static bool late_take_acks_in(MonitorDispatch *d, size_t from, size_t k) {
        for (size_t i = from; i < k; i++) {
                TsmPrivReceived *dg = tsm_priv_inbox_get(d->inbox, i);
                const char *reason = NULL;
                struct tsm_priv_hdr h;
                PrivMessage m;

                if (dg->len < (ssize_t) sizeof(h))
                        continue;
                memcpy(&h, dg->buf, sizeof(h));
                if (h.type != TSM_PRIV_LATE_ACK)
                        continue;
                if (tsm_priv_check(dg->buf, (size_t) dg->len, dg->n_fds, TSM_PRIV_FROM_WORKER, &m,
                                   sizeof(m.late_ack), NULL, &reason) < 0 ||
                    h.cookie != 0 || priv_late_ack(d, &m, NULL, NULL, &reason) < 0)
                        return false;
        }
        return true;
}

/* Receives the next batch from the worker, taking its fds (take_fds) only as far as
 * MONITOR_WORKER_FDS_CLOSING_MAX allows: SECURITY, each may be a client's of a FUSE file system
 * it serves, whose close, on the closer's thread, waits on it, holding every fd queued after it
 * open. Past that, one datagram at a time, whose fds are not taken (fds_lost): closed at once,
 * never left to the kernel to drop on this thread (tsm_priv_inbox_receive()); one whose close
 * may wait is no correct worker's, which ends the worker (process_message()). */
static int inbox_receive(MonitorDispatch *d, bool take_fds) {
        size_t waiting;

        /* What the last batch left goes to be closed first: it counts. */
        tsm_priv_inbox_clear(d->inbox);
        waiting = take_fds ? MIN(fd_closer_n_waiting(FD_CLOSER_PEER_NONE), (size_t) MONITOR_WORKER_FDS_CLOSING_MAX)
                           : MONITOR_WORKER_FDS_CLOSING_MAX;
        tsm_priv_inbox_limit_fds(d->inbox, MONITOR_WORKER_FDS_CLOSING_MAX - waiting);
        d->fds_limited = MONITOR_WORKER_FDS_CLOSING_MAX - waiting < TSM_PRIV_BATCH_MAX;
        return tsm_priv_inbox_receive(d->inbox, d->channel);
}

/* The LATE_ACKs an ended worker sent that are still unread: what it acknowledged counts, or the
 * next worker would record again what this one did. Bounded: a worker being killed may still be
 * writing. */
static void late_take_acks(MonitorDispatch *d) {
        bool broken = false;

        /* One datagram per receive (no fds taken): as many as 64 batches were. */
        for (unsigned b = 0; b < 64 * TSM_PRIV_BATCH_MAX && !broken; b++) {
                int k = inbox_receive(d, false);

                if (k < 0)
                        break;
                broken = !late_take_acks_in(d, 0, (size_t) k);
                /* SECURITY: no correct worker's: what follows goes with the channel, off the loop
                 * (monitor.c), rather than more such fds waiting on the closer's thread. */
                for (size_t i = 0; i < (size_t) k && !broken; i++)
                        broken = tsm_priv_inbox_get(d->inbox, i)->fds_refused_may_wait;
                tsm_priv_inbox_clear(d->inbox);
                if (!tsm_priv_inbox_more(d->inbox))
                        break;
        }
}

/* ---- lookups: the worker names only what the monitor gave out, on behalf of its holder ---- */

static int lookup_context(MonitorDispatch *d, uint32_t slot, uint32_t id, MonitorContext **ret,
                          const char **ret_reason) {
        MonitorContext *ctx = monitor_contexts_get(d->contexts, id);

        /* SECURITY: contexts are named by the ids the monitor handed out, each on behalf of the
         * slot holding it. Slot 0 names the orphans, which the worker reattaches or lets go. */
        if (!ctx)
                return violation(-EPERM, "unknown context", ret_reason);
        if (ctx->slot != slot)
                return violation(-EPERM, "context held by another slot", ret_reason);
        *ret = ctx;
        return 0;
}

static int lookup_vdevice(MonitorDispatch *d, uint32_t slot, uint32_t context, uint32_t id,
                          MonitorContext **ret_ctx, MonitorVDevice **ret_vdev, const char **ret_reason) {
        MonitorContext *ctx;
        MonitorVDevice *v;
        int r;

        r = lookup_context(d, slot, context, &ctx, ret_reason);
        if (r < 0)
                return r;
        v = monitor_context_find_vdevice(ctx, id);
        if (!v)
                return violation(-EPERM, "vDevice not attached to the context", ret_reason);
        *ret_ctx = ctx;
        *ret_vdev = v;
        return 0;
}

/* The vDevice a DETACH/BIND/UNBIND/GET_VDEVICE_STATE message names, with its shape checked. */
static int lookup_vdevice_message(MonitorDispatch *d, const struct tsm_priv_vdevice *q, MonitorContext **ret_ctx,
                                  MonitorVDevice **ret_vdev, const char **ret_reason) {
        if (q->__reserved != 0)
                return violation(-EBADMSG, "reserved field not zero", ret_reason);
        return lookup_vdevice(d, q->slot, q->context, q->vdevice, ret_ctx, ret_vdev, ret_reason);
}

static TsmTarget target_of(const MonitorContext *ctx, const MonitorVDevice *v) {
        return (TsmTarget){ .pci_address = v->pci_address, .iommufd = ctx->fd, .vdevice_id = v->id };
}

/* ---- worker status ----------------------------------------------------------------------- */

static int priv_ready(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                      const char **ret_reason) {
        MonitorContext *ctx;

        /* It restored every context before it said so: what the state files had to add, it has
         * attached. From now on the monitor's record is all a context has (tsm-priv.h). */
        MONITOR_CONTEXTS_FOREACH(ctx, d->contexts)
                ctx->partial = false;
        /* Emulated devices that came back with their state at the start (emu-state.h) are held
         * again by the vDevices restored, or released now. */
        tsm_platform_emulated_restored(d->platform, monitor_contexts_holds_device, d->contexts);
        log_debug("Worker is ready.");
        if (d->cb.ready)
                d->cb.ready(d->userdata);
        return 0;
}

static int priv_status(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                       const char **ret_reason) {
        const struct tsm_priv_status *s = &m->status;

        if (s->draining > 1)
                return violation(-EBADMSG, "draining neither 0 nor 1", ret_reason);
        if (s->audit >= _TSM_PRIV_AUDIT_MAX)
                return violation(-EBADMSG, "audit state unknown", ret_reason);
        if (d->cb.status)
                d->cb.status(s, d->userdata);
        return 0;
}

/* A load answers with the sealed memfd of the files loaded; a commit applies them (tsm-priv.h). */
static int priv_reload(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                       const char **ret_reason) {
        const struct tsm_priv_reload *rl = &m->reload;
        _cleanup_free_ char *why = NULL;
        bool policy_failed = false;
        int loaded = -EBADF, r;

        if (rl->__reserved != 0)
                return violation(-EBADMSG, "reserved field not zero", ret_reason);
        if (rl->commit > 1)
                return violation(-EBADMSG, "commit neither 0 nor 1", ret_reason);
        if (rl->commit) {
                /* SECURITY: only a set the monitor loaded and handed this worker, and once. */
                if (!d->reload_loaded)
                        return violation(-EPROTO, "commit without a load", ret_reason);
                d->reload_loaded = false;
                r = d->cb.reload(d->userdata, true, NULL, NULL, NULL);
                return reply(d, m, r < 0 ? r : 0, 0, -EBADF);
        }

        d->reload_loaded = false;
        r = d->cb.reload ? d->cb.reload(d->userdata, false, &loaded, &why, &policy_failed) : -EOPNOTSUPP;
        if (r >= 0 && loaded < 0)
                r = -ENODATA;
        if (r < 0) {
                /* Why, in our words: the worker may not be able to find out itself. */
                char text[TSM_PRIV_REASON_MAX + 1];
                size_t len = tsm_priv_reason_make(why, text);

                return reply_full(d, m->hdr.cookie, r, policy_failed, len > 0 ? text : NULL, len, -EBADF);
        }
        d->reload_loaded = true;
        return reply(d, m, 0, 0, loaded);
}

/* ---- contexts ---------------------------------------------------------------------------- */

static int check_new_context(MonitorDispatch *d, const struct tsm_priv_new_context *n,
                             const char **ret_reason) {
        /* SECURITY: slot 0 is the worker itself; a new context is always some client's. */
        if (n->slot == TSM_PRIV_SLOT_WORKER)
                return violation(-EPERM, "new context for slot 0", ret_reason);
        if (n->uid == UINT32_MAX)
                return violation(-EBADMSG, "invalid uid", ret_reason);
        if (!tsm_priv_check_string(n->reclaim_id, sizeof(n->reclaim_id)) || !reclaim_hex_is_valid(n->reclaim_id))
                return violation(-EBADMSG, "reclaim id not 32 lowercase hex digits", ret_reason);
        /* The worker derives ids from tokens of 128 random bits: a repeat is no accident. Two
         * fds under one name would leave the fd store together. */
        if (monitor_contexts_find_reclaim_id(d->contexts, n->reclaim_id))
                return violation(-EPERM, "reclaim id names another context", ret_reason);
        return 0;
}

/* SECURITY: the monitor holds no more contexts than its cap (monitor-contexts.h): each is an fd,
 * and past it the monitor could not start the next worker. An answer, not a violation: the
 * worker counts the same contexts and refuses first, but an honest one may still get here (a
 * context it could not restore, its MaxContexts= changed since the monitor started). */
static bool contexts_full(MonitorDispatch *d) {
        if (!monitor_contexts_is_full(d->contexts))
                return false;
        log_full_ratelimited(&d->contexts_full_log, LOG_WARNING,
                             "Refusing a new context: the monitor holds its maximum of %zu.",
                             monitor_contexts_get_max(d->contexts));
        return true;
}

static int priv_open_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                             const char **ret_reason) {
        const struct tsm_priv_new_context *n = &m->new_context;
        _cleanup_close_ int iommufd = -EBADF, copy = -EBADF;
        uint32_t id;
        int r;

        r = check_new_context(d, n, ret_reason);
        if (r < 0)
                return r;
        if (contexts_full(d))
                return reply(d, m, -EMFILE, 0, -EBADF);

        r = monitor_iommufd_open(d->platform, &iommufd);
        if (r < 0) {
                log_warning_errno(r, "Failed to open '%s': %m", tsm_platform_get_iommu_device(d->platform));
                return reply(d, m, r, 0, -EBADF);
        }
        /* The worker passes its copy on to the client; the monitor keeps its own reference. */
        copy = fcntl(iommufd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return reply(d, m, negative_errno(), 0, -EBADF);
        r = monitor_contexts_add(d->contexts, TAKE_FD(iommufd), n->slot, n->uid, n->reclaim_id, &id);
        if (r < 0)
                return reply(d, m, r, 0, -EBADF);

        log_info("Opened context %" PRIu32 " for uid %" PRIu32 " (slot %" PRIu32 ").", id, n->uid, n->slot);
        return reply(d, m, 0, id, copy);
}

static int priv_adopt_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                              const char **ret_reason) {
        const struct tsm_priv_new_context *n = &m->new_context;
        uint32_t id;
        int r;

        r = check_new_context(d, n, ret_reason);
        if (r < 0)
                return r;
        if (*fd < 0)
                return reply_fd_lost(d, m);
        /* SECURITY: a correct worker passes only these (its fd_may_be_iommufd(), guest-context.c): any
         * other is no client's junk let through but the worker's doing, a file of some file system,
         * maybe a FUSE one a client serves and never answers, whose close would hold the closer
         * and every fd after it. An fd the monitor cannot tell is its own failure. */
        r = fd_is_device_or_memfd(*fd);
        if (r < 0)
                return reply_own(d, m, r);
        if (r == 0)
                return violation(-EBADF, "adopted fd neither a character device nor a memfd", ret_reason);
        if (contexts_full(d))
                return reply(d, m, -EMFILE, 0, -EBADF);

        /* Not a violation: the fd comes from a client, and clients pass junk (of the kinds
         * above: /dev/null, a memfd of their own). */
        r = monitor_iommufd_verify(d->platform, *fd);
        if (r < 0) {
                log_debug_errno(r, "Refusing to adopt an fd of uid %" PRIu32 ": %m", n->uid);
                return reply(d, m, r, 0, -EBADF);
        }
        r = monitor_contexts_add(d->contexts, TAKE_FD(*fd), n->slot, n->uid, n->reclaim_id, &id);
        if (r < 0)
                return reply(d, m, r, 0, -EBADF);

        log_info("Adopted context %" PRIu32 " of uid %" PRIu32 " (slot %" PRIu32 ").", id, n->uid, n->slot);
        return reply(d, m, 0, id, -EBADF);
}

static int priv_reclaim_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                const char **ret_reason) {
        const struct tsm_priv_reclaim_context *c = &m->reclaim_context;
        char previous[RECLAIM_ID_LEN + 1];
        _cleanup_close_ int copy = -EBADF;
        MonitorContext *ctx, *named;
        const char *presented;
        int r;

        if (c->slot == TSM_PRIV_SLOT_WORKER)
                return violation(-EPERM, "reclaim for slot 0", ret_reason);
        if (!tsm_priv_check_string(c->reclaim_id, sizeof(c->reclaim_id)) || !reclaim_hex_is_valid(c->reclaim_id))
                return violation(-EBADMSG, "reclaim id not 32 lowercase hex digits", ret_reason);
        /* SECURITY: only an orphan can change hands; one held by a client stays with it. The
         * worker checked uid and token, from what RESTORED_CONTEXT told it. */
        r = lookup_context(d, TSM_PRIV_SLOT_WORKER, c->context, &ctx, ret_reason);
        if (r < 0)
                return r;
        /* The new token's id: from 128 fresh random bits, so naming another context is no
         * accident. Its own name keeps it: the worker could not save the state a renewal needs
         * (the VMM keeps its token then). */
        named = monitor_contexts_find_reclaim_id(d->contexts, c->reclaim_id);
        if (named && named != ctx)
                return violation(-EPERM, "reclaim id names another context", ret_reason);
        /* SECURITY: the token reclaimed with is the context's or its previous one, as the
         * monitor told the worker (RESTORED_CONTEXT): kept as the previous one, it must be one
         * the VMM had, never one a worker made up. */
        if (!tsm_priv_check_string(c->previous_reclaim_id, sizeof(c->previous_reclaim_id)))
                return violation(-EBADMSG, "previous reclaim id not a NUL-terminated string", ret_reason);
        presented = isempty(c->previous_reclaim_id) ? ctx->reclaim_id : c->previous_reclaim_id;
        if (!streq(presented, ctx->reclaim_id) &&
            (isempty(ctx->previous_reclaim_id) || !streq(presented, ctx->previous_reclaim_id)))
                return violation(-EPERM, "reclaim with an id the context does not have", ret_reason);

        copy = fcntl(ctx->fd, F_DUPFD_CLOEXEC, 3);
        if (copy < 0)
                return reply(d, m, negative_errno(), 0, -EBADF);
        if (!named) {
                memcpy(previous, presented, sizeof(previous));
                r = monitor_contexts_rename(d->contexts, ctx, c->reclaim_id);
                if (r < 0)
                        return reply(d, m, r, 0, -EBADF);
                memcpy(ctx->previous_reclaim_id, previous, sizeof(previous));
        }
        ctx->slot = c->slot;

        log_info("Context %" PRIu32 " of uid %u reclaimed (slot %" PRIu32 ").", ctx->id, (unsigned) ctx->uid,
                 c->slot);
        return reply(d, m, 0, 0, copy);
}

static int priv_restored_previous(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                  const char **ret_reason) {
        const struct tsm_priv_restored_previous *p = &m->restored_previous;
        MonitorContext *ctx;
        int r;

        if (p->__reserved != 0)
                return violation(-EBADMSG, "reserved field set", ret_reason);
        if (!tsm_priv_check_string(p->previous_reclaim_id, sizeof(p->previous_reclaim_id)) ||
            !reclaim_hex_is_valid(p->previous_reclaim_id))
                return violation(-EBADMSG, "reclaim id not 32 lowercase hex digits", ret_reason);
        r = lookup_context(d, TSM_PRIV_SLOT_WORKER, p->context, &ctx, ret_reason);
        if (r < 0)
                return r;
        /* SECURITY: the state file's word, as for its vDevices (ATTACH_VDEVICE): only where the
         * monitor has none, and only before READY. */
        if (!ctx->partial)
                return violation(-EPERM, "previous reclaim id of a context the monitor knows whole", ret_reason);
        memcpy(ctx->previous_reclaim_id, p->previous_reclaim_id, sizeof(ctx->previous_reclaim_id));
        return 0;
}

static void fail_requests_of(MonitorDispatch *d, uint32_t context, uint32_t vdevice);

static int priv_close_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                              const char **ret_reason) {
        const struct tsm_priv_context *c = &m->context;
        MonitorContext *ctx;
        uid_t uid;
        int r;

        r = lookup_context(d, c->slot, c->context, &ctx, ret_reason);
        if (r < 0)
                return r;

        uid = ctx->uid;
        fail_requests_of(d, c->context, 0);
        r = monitor_contexts_remove(d->contexts, d->platform, c->context);
        if (r >= 0)
                log_info("Closed context %" PRIu32 " of uid %u.", c->context, (unsigned) uid);
        return reply(d, m, r < 0 ? r : 0, 0, -EBADF);
}

/* ---- vDevices ---------------------------------------------------------------------------- */

/* SECURITY: the worker checked the client against the policy; the monitor checks the device
 * against it too, as it checks a guest request's scope, without trusting the worker's word on
 * who the client is: only a device some rule lists for the backend serving it may be attached
 * to a client's context or bound, or connected or disconnected (connection_listed())
 * (MonitorDispatchCallbacks). */
static bool device_listed(MonitorDispatch *d, const TsmDeviceInfo *info, const char *what) {
        if (d->cb.device_listed && d->cb.device_listed(info->pci_address, info->backend, d->userdata))
                return true;
        log_full_ratelimited(&d->device_refusal_log, LOG_WARNING,
                             "Refusing to %s %s: no policy rule lists the device for its backend %s.", what,
                             info->pci_address, strna(tsm_backend_type_to_string(info->backend)));
        return false;
}

static int priv_attach_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                               const char **ret_reason) {
        const struct tsm_priv_attach_vdevice *a = &m->attach;
        MonitorContext *ctx;
        MonitorVDevice *v;
        TsmDeviceInfo info;
        int r;

        if (a->state & ~TSM_PRIV_VDEVICE_BOUND)
                return violation(-EBADMSG, "unknown vDevice state", ret_reason);
        r = lookup_context(d, a->slot, a->context, &ctx, ret_reason);
        if (r < 0)
                return r;
        if (a->vdevice == 0)
                return violation(-EINVAL, "vDevice id 0", ret_reason); /* iommufd object ids start at 1 */
        if (!tsm_priv_check_string(a->pci_address, sizeof(a->pci_address)))
                return violation(-EBADMSG, "PCI address not a NUL-terminated string", ret_reason);
        /* SECURITY: a worker hears of every vDevice the monitor has when it starts
         * (RESTORED_VDEVICE), whatever its state files say, and attaches new ones only. */
        if (monitor_context_find_vdevice(ctx, a->vdevice))
                return violation(-EPERM, "vDevice attached already", ret_reason);
        /* SECURITY: a kept context gains vDevices from its state file only where the monitor knows
         * none (partial: the fd store handed it back), and only before READY: a file a worker
         * wrote must not reattach devices to another owner's context behind the reclaim. */
        if (ctx->slot == TSM_PRIV_SLOT_WORKER && !ctx->partial)
                return violation(-EPERM, "vDevice attached to a kept context the monitor knows whole", ret_reason);
        /* A client's new vDevice is not bound: only a restore brings back one the kernel kept. */
        if ((a->state & TSM_PRIV_VDEVICE_BOUND) && ctx->slot != TSM_PRIV_SLOT_WORKER)
                return violation(-EPERM, "a client's new vDevice said bound", ret_reason);

        /* Not a violation: the device may have gone since the worker looked (hotplug). */
        r = tsm_platform_get_device(d->platform, a->pci_address, &info);
        if (r < 0)
                return reply(d, m, r, 0, -EBADF);
        /* Not asked of a restore's attach (slot 0, a context the fd store handed back, before
         * READY): that records a vDevice the kernel kept in the VMM's iommufd through a restart
         * of tsmd, bound perhaps, and perhaps under a policy narrowed since. Refused, it would
         * stay there, locked, with nobody to unbind it when its context ends; recorded, it gives
         * the worker no more than it had (binding it again is asked, set_bound()), and it is
         * unbound at the release when no client may reclaim it. */
        if (ctx->slot != TSM_PRIV_SLOT_WORKER && !device_listed(d, &info, "attach"))
                return reply_own(d, m, -EPERM);

        /* SECURITY: one physical device belongs to one context at a time. Only the monitor sees
         * every context, the orphans the worker knows nothing of included. A device released
         * with a bind or unbind still on its way stays busy until the TSM has answered: the next
         * guest gets it in the state the release left it in. */
        if (monitor_contexts_find_device(d->contexts, info.pci_address, NULL) ||
            tsm_platform_is_changing(d->platform, info.pci_address))
                return reply(d, m, -EBUSY, 0, -EBADF);

        r = monitor_context_add_vdevice(ctx, a->vdevice, info.pci_address, &v);
        if (r < 0)
                return reply_own(d, m, r);
        /* SECURITY: a restore's word, from a state file the worker wrote, that the kernel kept the
         * vDevice bound through a restart of tsmd: taken, as it only makes the vDevice unbound
         * when it goes (at a detach or release, monitor_contexts_remove()); no check looks at it.
         * Not for an emulated TSM's device: that TSM lives in this monitor, and bound nothing yet
         * (the worker binds it again, asking as for any bind). */
        if ((a->state & TSM_PRIV_VDEVICE_BOUND) && !info.emulated)
                v->bound = true;
        log_debug("Attached %s as vDevice %" PRIu32 " of context %" PRIu32 "%s.", info.pci_address, a->vdevice,
                  ctx->id, v->bound ? ", bound" : "");
        return reply(d, m, 0, 0, -EBADF);
}

static int priv_detach_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                               const char **ret_reason) {
        const struct tsm_priv_vdevice *q = &m->vdevice;
        MonitorContext *ctx;
        MonitorVDevice *v;
        int r;

        r = lookup_vdevice_message(d, q, &ctx, &v, ret_reason);
        if (r < 0)
                return r;

        fail_requests_of(d, ctx->id, v->id);
        monitor_context_remove_vdevice(ctx, d->platform, v);
        log_debug("Detached vDevice %" PRIu32 " of context %" PRIu32 ".", q->vdevice, ctx->id);
        return reply(d, m, 0, 0, -EBADF);
}

static MonitorChange *change_free(MonitorChange *mc) {
        if (!mc)
                return NULL;
        LIST_REMOVE(mc, entry);
        return mfree(mc);
}

/* The vDevice (NULL: detached) has no bind or unbind on its way any more: answer who waits. */
static void answer_settled(MonitorDispatch *d, uint32_t context, uint32_t vdevice, uint64_t serial,
                           const MonitorVDevice *v) {
        MonitorChange *mc, *next;

        for (mc = LIST_FIRST(&d->changes); mc; mc = next) {
                next = LIST_NEXT(mc, entry);
                if (!mc->settle || mc->context != context || mc->vdevice != vdevice || mc->serial != serial)
                        continue;
                if (mc->cookie != 0 && d->channel >= 0)
                        (void) reply_full(d, mc->cookie, v ? 0 : -ENODEV, v && v->bound, NULL, 0, -EBADF);
                change_free(mc);
        }
}

static void on_change_done(TsmRequest *req, int result, void *userdata) {
        MonitorChange *mc = userdata;
        MonitorDispatch *d = mc->dispatch;
        MonitorContext *ctx = monitor_contexts_get(d->contexts, mc->context);
        MonitorVDevice *v = ctx ? monitor_context_find_vdevice(ctx, mc->vdevice) : NULL;
        const char *what = mc->bind ? "bind" : "unbind";

        /* Detached meanwhile (its release queued an unbind behind this), or another
         * attachment under the same id by now: nothing here to update. */
        if (v && v->serial != mc->serial)
                v = NULL;
        if (v) {
                assert(v->n_changes > 0);
                v->n_changes--;
                if (result >= 0 && !v->gone)
                        v->bound = mc->bind;
        }
        if (result < 0)
                log_debug_errno(result, "Failed to %s %s (vDevice %" PRIu32 " of context %" PRIu32 "): %m", what,
                                tsm_request_get_pci_address(req), mc->vdevice, mc->context);
        else
                log_info("%s %s (vDevice %" PRIu32 " of context %" PRIu32 ").", mc->bind ? "Bound" : "Unbound",
                         tsm_request_get_pci_address(req), mc->vdevice, mc->context);

        if (mc->cookie != 0 && d->channel >= 0)
                (void) reply_full(d, mc->cookie, result < 0 ? result : 0, 0, NULL, 0, -EBADF);
        else if (mc->cookie == 0)
                /* The worker that asked ended meanwhile, and its record of the call (if it wrote
                 * one: a crash does not) says it failed: the audit log hears how it ended. */
                late_orphan(d, req, mc->bind ? KERNEL_OP_BIND : KERNEL_OP_UNBIND, tsm_request_get_pci_address(req),
                            mc->vdevice, result, mc->start_usec, &mc->tag);
        if (!v || v->n_changes == 0)
                answer_settled(d, mc->context, mc->vdevice, mc->serial, v);
        change_free(mc);
}

/* Answered from the platform's callback: a kernel bind is an SPDM exchange, and runs on the
 * device's lane while the monitor serves everyone else. */
static int set_bound(MonitorDispatch *d, const PrivMessage *m, bool bind, const char **ret_reason) {
        const struct tsm_priv_vdevice *q = &m->vdevice;
        TsmDeviceInfo info;
        MonitorChange *mc;
        MonitorContext *ctx;
        MonitorVDevice *v;
        TsmTarget t;
        int r;

        r = lookup_vdevice_message(d, q, &ctx, &v, ret_reason);
        if (r < 0)
                return r;

        if (v->gone)
                return reply(d, m, -ENODEV, 0, -EBADF);
        r = tsm_platform_get_device(d->platform, v->pci_address, &info);
        /* A device gone since the worker looked is answered, as the platform would. Unbinding
         * gives a device up, which must stay possible whatever the policy says now. */
        if (bind && r < 0)
                return reply(d, m, r, 0, -EBADF);
        if (bind && !device_listed(d, &info, "bind"))
                return reply_own(d, m, -EPERM);
        /* SECURITY: bounded, as guest requests are; a flood of binds and unbinds would hold
         * memory (and fds) while the device takes its time, past the worker's end. Over the
         * bound no correct worker goes, but a refusal is enough: it holds nothing. */
        if (v->n_changes >= MONITOR_CHANGES_PER_VDEVICE_MAX) {
                log_debug("Too many binds and unbinds of vDevice %" PRIu32 " of context %" PRIu32
                          " on their way, refusing another.", v->id, ctx->id);
                return reply(d, m, -EBUSY, 0, -EBADF);
        }

        mc = new0(MonitorChange, 1);
        if (!mc)
                return reply_own(d, m, -ENOMEM);
        *mc = (MonitorChange){ .dispatch = d, .cookie = q->hdr.cookie, .bind = bind, .context = ctx->id,
                               .vdevice = v->id, .serial = v->serial, .start_usec = now_monotonic_usec(),
                               .tag = late_tag(d, bind ? TSM_PRIV_LATE_BIND : TSM_PRIV_LATE_UNBIND, q->hdr.cookie,
                                               ctx, v->id, v->pci_address) };
        /* For a late answer's record: the device may be gone by then. */
        if (r >= 0)
                mc->tag.backend = info.backend;
        LIST_INSERT_HEAD(&d->changes, mc, entry);

        t = target_of(ctx, v);
        r = bind ? tsm_platform_bind(d->platform, &t, on_change_done, mc, &mc->request)
                 : tsm_platform_unbind(d->platform, &t, on_change_done, mc, &mc->request);
        if (r < 0) {
                change_free(mc);
                log_debug_errno(r, "Failed to %s %s (vDevice %" PRIu32 " of context %" PRIu32 "): %m",
                                bind ? "bind" : "unbind", v->pci_address, v->id, ctx->id);
                return reply_not_started(d, m, r);
        }
        tsm_request_set_late_tag(mc->request, &mc->tag, sizeof(mc->tag));
        v->n_changes++;
        v->bound_next = bind;
        v->unbound_outside = false; /* what the TDI is now is the TSM's answer to this */
        return 0;
}

static int priv_bind_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                             const char **ret_reason) {
        return set_bound(d, m, true, ret_reason);
}

static int priv_unbind_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                               const char **ret_reason) {
        return set_bound(d, m, false, ret_reason);
}

/* A new worker restoring a vDevice whose bind or unbind its predecessor did not see answered
 * learns where it ends: answered when none is on its way any more. */
static int priv_settle_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                               const char **ret_reason) {
        const struct tsm_priv_vdevice *q = &m->vdevice;
        MonitorChange *mc;
        MonitorContext *ctx;
        MonitorVDevice *v;
        int r;

        r = lookup_vdevice_message(d, q, &ctx, &v, ret_reason);
        if (r < 0)
                return r;
        if (v->n_changes == 0)
                return reply(d, m, 0, v->bound, -EBADF);
        /* SECURITY: one waits per vDevice; more would only pile up (see set_bound()). */
        LIST_FOREACH(mc, &d->changes, entry)
                if (mc->settle && mc->context == ctx->id && mc->vdevice == v->id && mc->serial == v->serial) {
                        log_debug("A SETTLE_VDEVICE of vDevice %" PRIu32 " of context %" PRIu32
                                  " waits already, refusing another.", v->id, ctx->id);
                        return reply(d, m, -EBUSY, 0, -EBADF);
                }

        /* Plain, not reply_own(): no TSM answers a settle, so its -ENOMEM is the monitor's
         * anyway, and the worker fails every settle alike. */
        mc = new0(MonitorChange, 1);
        if (!mc)
                return reply(d, m, -ENOMEM, 0, -EBADF);
        *mc = (MonitorChange){ .dispatch = d, .cookie = q->hdr.cookie, .settle = true, .context = ctx->id,
                               .vdevice = v->id, .serial = v->serial };
        LIST_INSERT_HEAD(&d->changes, mc, entry);
        return 0;
}

static int priv_get_vdevice_state(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                  const char **ret_reason) {
        const struct tsm_priv_vdevice *q = &m->vdevice;
        MonitorContext *ctx;
        MonitorVDevice *v;
        TsmTarget t;
        int r, state = 0;

        r = lookup_vdevice_message(d, q, &ctx, &v, ret_reason);
        if (r < 0)
                return r;

        if (v->gone)
                return reply(d, m, -ENODEV, 0, -EBADF);

        t = target_of(ctx, v);
        r = tsm_platform_get_state(d->platform, &t, &state);
        return reply(d, m, r < 0 ? r : 0, r < 0 ? 0 : (uint32_t) state, -EBADF);
}

/* ---- devices ----------------------------------------------------------------------------- */

static int check_device(const struct tsm_priv_device *dev, bool with_tsm, const char **ret_reason) {
        if (!tsm_priv_check_string(dev->pci_address, sizeof(dev->pci_address)))
                return violation(-EBADMSG, "PCI address not a NUL-terminated string", ret_reason);
        if (!tsm_priv_check_string(dev->tsm, sizeof(dev->tsm)))
                return violation(-EBADMSG, "TSM name not a NUL-terminated string", ret_reason);
        if (!with_tsm && dev->tsm[0] != 0)
                return violation(-EBADMSG, "TSM name where none belongs", ret_reason);
        return 0;
}

static int priv_get_device_state(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason) {
        TsmTarget t = { .pci_address = m->device.pci_address, .iommufd = -EBADF };
        int r, state = 0;

        r = check_device(&m->device, false, ret_reason);
        if (r < 0)
                return r;

        /* Only the emulated TSM lets the host see a TDI's state without a vDevice, and only
         * where it serves the address (not under a real device that shadows it). */
        r = tsm_platform_get_state(d->platform, &t, &state);
        return reply(d, m, r < 0 ? -ENODEV : 0, r < 0 ? 0 : (uint32_t) state, -EBADF);
}

static MonitorConnect *connect_free(MonitorConnect *mc) {
        if (!mc)
                return NULL;
        LIST_REMOVE(mc, entry);
        return mfree(mc);
}

static void on_connect_done(TsmRequest *req, int result, void *userdata) {
        MonitorConnect *mc = userdata;
        MonitorDispatch *d = mc->dispatch;
        bool connect = mc->tsm[0] != 0;

        if (result < 0)
                log_debug_errno(result, "Failed to %s '%s'%s%s: %m", connect ? "connect" : "disconnect",
                                mc->pci_address, connect ? " to " : "", mc->tsm);
        else if (connect)
                log_info("Connected %s to %s.", mc->pci_address, mc->tsm);
        else
                log_info("Disconnected %s from its TSM.", mc->pci_address);
        /* The worker that asked died meanwhile, and its record of the call with it: the journal
         * keeps what happened. */
        if (mc->cookie == 0) {
                /* That worker recorded it as failed (ETIMEDOUT) at its end: the audit log hears
                 * how it ended after all, from whichever worker runs; once, from the kernel's
                 * answer itself when it was given up on in the kernel (its device went). */
                log_notice("The %s of %s was answered after the worker that asked for it ended: %s.",
                           connect ? "connect" : "disconnect", mc->pci_address,
                           result < 0 ? strerror(-result) : "done");
                late_orphan(d, req, KERNEL_OP_WRITE, mc->pci_address, 0, result, mc->start_usec, &mc->tag);
        } else if (d->channel >= 0)
                (void) reply_full(d, mc->cookie, result < 0 ? result : 0, 0, NULL, 0, -EBADF);
        connect_free(mc);
}

/* Answered from the platform's callback: a kernel TSM connect is an SPDM session and IDE key
 * setup, and runs on the device's lane while the monitor serves everyone else. */
static int set_connected(MonitorDispatch *d, const PrivMessage *m, bool connect) {
        const struct tsm_priv_device *dev = &m->device;
        MonitorConnect *mc;
        int r;

        /* Our own -ENOMEM is said so: the kernel's write may fail ENOMEM too, which the worker
         * answers ConnectFailed, where ours is tsmd's failure (io.tsmd.System). */
        mc = new0(MonitorConnect, 1);
        if (!mc)
                return reply_own(d, m, -ENOMEM);
        *mc = (MonitorConnect){ .dispatch = d, .cookie = dev->hdr.cookie, .start_usec = now_monotonic_usec(),
                                .tag = late_tag(d, connect ? TSM_PRIV_LATE_CONNECT : TSM_PRIV_LATE_DISCONNECT,
                                                dev->hdr.cookie, NULL, 0, dev->pci_address) };
        memcpy(mc->pci_address, dev->pci_address, sizeof(mc->pci_address));
        memcpy(mc->tsm, dev->tsm, sizeof(mc->tsm));
        memcpy(mc->tag.tsm, dev->tsm, sizeof(mc->tag.tsm));
        LIST_INSERT_HEAD(&d->connects, mc, entry);

        /* SECURITY: the sysfs path is made from an address the inventory knows (tsm-platform.c),
         * and the platform takes one connect or disconnect per device at a time (-EBUSY): the
         * worker cannot make the monitor hold more of them than there are devices. */
        r = connect ? tsm_platform_connect(d->platform, dev->pci_address, dev->tsm, on_connect_done, mc, &mc->request)
                    : tsm_platform_disconnect(d->platform, dev->pci_address, on_connect_done, mc, &mc->request);
        if (r < 0) {
                connect_free(mc);
                log_debug_errno(r, "Failed to %s '%s': %m", connect ? "connect" : "disconnect", dev->pci_address);
                return reply_not_started(d, m, r);
        }
        tsm_request_set_late_tag(mc->request, &mc->tag, sizeof(mc->tag));
        return 0;
}

/* SECURITY: the worker checked that an administrator asked and that some rule lists the device;
 * the monitor checks the latter too, as for an attach or bind: SPDM and IDE are started or torn
 * down only on a device some rule lists for the backend of the TSM the connection is with (the
 * TSM named, or the one the device is connected to; one of a kind tsmd does not recognise no rule
 * lists), never on another device of the host's, whatever the worker says. Where nothing would
 * be written (no such device or TSM, a function, a device connected to nothing disconnected), the
 * platform answers as it does. */
static bool connection_listed(MonitorDispatch *d, const struct tsm_priv_device *dev, bool connect) {
        TsmDeviceInfo info;

        if (tsm_platform_get_connection(d->platform, dev->pci_address, connect ? dev->tsm : NULL, &info) < 0)
                return true;
        return device_listed(d, &info, connect ? "connect" : "disconnect");
}

static int priv_connect_device(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                               const char **ret_reason) {
        int r;

        r = check_device(&m->device, true, ret_reason);
        if (r < 0)
                return r;
        if (!connection_listed(d, &m->device, true))
                return reply_own(d, m, -EPERM);
        return set_connected(d, m, true);
}

/* Whether a guest holds the kernel device at address, or a bind, unbind or connect of it is on
 * its way. */
static bool kernel_device_in_use(MonitorDispatch *d, const char *address) {
        TsmDeviceInfo info;

        return tsm_platform_get_device(d->platform, address, &info) >= 0 && !info.emulated &&
               (monitor_contexts_find_device(d->contexts, info.pci_address, NULL) ||
                tsm_platform_is_changing(d->platform, info.pci_address));
}

static int priv_disconnect_device(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                  const char **ret_reason) {
        const struct tsm_priv_device *dev = &m->device;
        Inventory *inv = tsm_platform_get_inventory(d->platform);
        int r;

        r = check_device(dev, false, ret_reason);
        if (r < 0)
                return r;
        if (!connection_listed(d, dev, false))
                return reply_own(d, m, -EPERM);

        /* SECURITY: not from under a guest, not even one whose VMM has yet to reclaim its
         * context after a restart (which only the monitor sees), nor while a release's unbind
         * is on its way; nor from under the guest of a function the DSM speaks for, which
         * loses its link with it. Not a violation: the worker may not have seen it yet. */
        if (kernel_device_in_use(d, dev->pci_address))
                return reply(d, m, -EBUSY, 0, -EBADF);
        for (size_t i = 0; i < inventory_n_devices(inv); i++) {
                const InventoryDevice *f = inventory_device_at(inv, i);

                if (f->dsm_address && streq(f->dsm_address, dev->pci_address) && kernel_device_in_use(d, f->address))
                        return reply(d, m, -EBUSY, 0, -EBADF);
        }

        return set_connected(d, m, false);
}

/* ---- guest requests ---------------------------------------------------------------------- */

static MonitorRequest *request_free(MonitorRequest *mr) {
        if (!mr)
                return NULL;
        LIST_REMOVE(mr, entry);
        mr->dispatch->n_requests--;
        return mfree(mr);
}

/* The vDevice (0: every vDevice of the context) is going: its guest requests in flight are
 * answered -ENODEV now. One the kernel runs finishes unanswered; one still waiting for its
 * device never reaches it, nor holds up the unbind of the release or the device's next guest. */
static void fail_requests_of(MonitorDispatch *d, uint32_t context, uint32_t vdevice) {
        MonitorRequest *mr, *next;

        for (mr = LIST_FIRST(&d->requests); mr; mr = next) {
                next = LIST_NEXT(mr, entry);
                if (mr->context != context || (vdevice != 0 && mr->vdevice != vdevice))
                        continue;
                /* The answer first: a late answer the cancel hands over at once (the kernel's,
                 * not yet delivered) names the worker's record of it. */
                (void) reply_full(d, mr->cookie, -ENODEV, 0, NULL, 0, -EBADF);
                tsm_request_cancel(TAKE_PTR(mr->request));
                request_free(mr);
        }
}

static void on_request_done(TsmRequest *req, int result, void *userdata) {
        MonitorRequest *mr = userdata;
        MonitorDispatch *d = mr->dispatch;
        const void *response = NULL;
        size_t len = 0, unconsumed = 0;

        if (result >= 0) {
                response = tsm_request_get_response(req, &len);
                unconsumed = tsm_request_get_request_unconsumed(req);
                /* max_response was capped, and a request is at most TSM_PRIV_PAYLOAD_MAX: never
                 * happens. */
                if (len > TSM_PRIV_PAYLOAD_MAX || unconsumed > TSM_PRIV_PAYLOAD_MAX) {
                        result = -ENOBUFS;
                        response = NULL;
                        len = unconsumed = 0;
                }
        }
        /* The value: the request bytes the TSM did not consume (tsm-priv.h). */
        (void) reply_full(d, mr->cookie, result < 0 ? result : 0, (uint32_t) unconsumed, response, len, -EBADF);
        request_free(mr);
}

static int priv_guest_request(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                              const char **ret_reason) {
        const struct tsm_priv_guest_request *g = &m->guest_request;
        const TsmScopeDesc *desc;
        MonitorRequest *mr;
        MonitorContext *ctx;
        MonitorVDevice *v;
        TsmDeviceInfo info;
        TsmTarget t;
        uint32_t number;
        int r;

        r = lookup_vdevice(d, g->slot, g->context, g->vdevice, &ctx, &v, ret_reason);
        if (r < 0)
                return r;
        if (!tsm_priv_check_string(g->scope, sizeof(g->scope)))
                return violation(-EBADMSG, "scope not a NUL-terminated string", ret_reason);
        if (g->backend >= _TSM_BACKEND_TYPE_MAX)
                return violation(-EBADMSG, "backend not a known type", ret_reason);
        if (g->__reserved != 0)
                return violation(-EBADMSG, "reserved field not zero", ret_reason);

        /* Gone or disconnected since the worker looked: an answer, not a violation. So is a
         * device another backend serves now: the worker and the monitor follow uevents each on
         * its own, and the worker's is still on its way; it will find the vDevice gone. */
        if (v->gone)
                return reply(d, m, -ENODEV, 0, -EBADF);
        r = tsm_platform_get_device(d->platform, v->pci_address, &info);
        if (r < 0)
                return reply(d, m, r, 0, -EBADF);
        if (info.backend != (TsmBackendType) g->backend)
                return reply(d, m, -ENODEV, 0, -EBADF);
        /* Its binding ended outside tsmd: the kernel would refuse it (pci_tsm_guest_req()'s
         * ENXIO), and so does the monitor, as it has it unbound. */
        if (v->unbound_outside)
                return reply(d, m, -ENXIO, 0, -EBADF);

        /* SECURITY: the scope is looked up by name in the table of the backend serving this
         * device, in the UAPI in use; the worker knows both, so anything else is not a slip. */
        r = tsm_platform_scope_number(d->platform, &info, g->scope, &number);
        if (r == -ENOENT)
                return violation(-EPERM, "no such scope for the device's backend", ret_reason);
        if (r == -EOPNOTSUPP)
                return violation(-EPERM, "scope not available in the UAPI in use", ret_reason);
        if (r < 0)
                return reply(d, m, r, 0, -EBADF);
        desc = tsm_backend_find_scope(tsm_backend_desc(info.backend), g->scope);
        if (!desc)
                return reply(d, m, -ENOENT, 0, -EBADF);
        /* SECURITY: the worker checked the client against the policy; the monitor checks the
         * scope against it too, as far as it can without trusting the worker's word on who the
         * client is: any scope, a default one included, only where some rule grants it for the
         * device (MonitorDispatchCallbacks). */
        if (!(d->cb.scope_granted && d->cb.scope_granted(info.pci_address, info.backend, desc->name, d->userdata))) {
                log_full_ratelimited(&d->scope_refusal_log, LOG_WARNING,
                                     "Refusing a guest request in scope %s to %s: no policy rule grants it for the device.",
                                     desc->name, info.pci_address);
                return reply_own(d, m, -EPERM);
        }
        if (g->hdr.payload_len > desc->max_request)
                return violation(-EMSGSIZE, "request larger than the scope allows", ret_reason);

        if (d->n_requests >= MONITOR_REQUESTS_MAX) {
                log_debug("Too many guest requests in flight, refusing another.");
                return reply(d, m, -EBUSY, 0, -EBADF);
        }
        mr = new0(MonitorRequest, 1);
        if (!mr)
                return reply_own(d, m, -ENOMEM);
        *mr = (MonitorRequest){ .dispatch = d, .cookie = g->hdr.cookie, .slot = g->slot, .context = ctx->id,
                                .vdevice = v->id };
        /* Only a kernel call can be given up on while it runs: an emulated one needs no tag. */
        if (!info.emulated) {
                mr->tag = late_tag(d, TSM_PRIV_LATE_GUEST_REQUEST, g->hdr.cookie, ctx, v->id, info.pci_address);
                mr->tag.backend = info.backend;
                memcpy(mr->tag.scope, g->scope, sizeof(mr->tag.scope));
        }
        LIST_INSERT_HEAD(&d->requests, mr, entry);
        d->n_requests++;

        t = target_of(ctx, v);
        /* The response buffer: the worker's limit, capped by what crosses the channel here and
         * by the scope's own limit in the platform. */
        r = tsm_platform_request(d->platform, &t, g->scope, payload ?: (const void *) "", g->hdr.payload_len,
                                 MIN((size_t) g->max_response, (size_t) TSM_PRIV_PAYLOAD_MAX),
                                 on_request_done, mr, &mr->request);
        if (r < 0) {
                request_free(mr);
                return reply_not_started(d, m, r);
        }
        if (!info.emulated)
                tsm_request_set_late_tag(mr->request, &mr->tag, sizeof(mr->tag));
        log_debug("Guest request (scope %s, %" PRIu32 " bytes) to %s for context %" PRIu32 ".", desc->name,
                  g->hdr.payload_len, v->pci_address, ctx->id);
        return 0;
}

/* A bind of slot's with cookie that nothing started yet (waiting for the emulated device's
 * mailbox, or queued on its kernel lane): dropped and answered -ECANCELED, the vDevice as the
 * changes before it leave it. Returns 1 if it was, 0 if there is none such. */
static int cancel_bind(MonitorDispatch *d, uint32_t slot, uint32_t cookie) {
        MonitorContext *ctx;
        MonitorChange *mc, *o;
        MonitorVDevice *v;
        int r;

        LIST_FOREACH(mc, &d->changes, entry)
                if (mc->cookie == cookie && mc->bind && !mc->settle)
                        break;
        ctx = mc ? monitor_contexts_get(d->contexts, mc->context) : NULL;
        if (!ctx || ctx->slot != slot || !tsm_request_cancel_unstarted(mc->request))
                return 0;
        mc->request = NULL;
        v = monitor_context_find_vdevice(ctx, mc->vdevice);
        if (v && v->serial == mc->serial) {
                assert(v->n_changes > 0);
                v->n_changes--;
                /* What the newest change still on its way will make it (the list's newest first). */
                LIST_FOREACH(o, &d->changes, entry)
                        if (o != mc && !o->settle && o->context == mc->context && o->vdevice == mc->vdevice &&
                            o->serial == mc->serial) {
                                v->bound_next = o->bind;
                                break;
                        }
        } else
                v = NULL;
        r = reply_full(d, mc->cookie, -ECANCELED, TSM_PRIV_REPLY_MONITOR_OWN, NULL, 0, -EBADF);
        if (!v || v->n_changes == 0)
                answer_settled(d, mc->context, mc->vdevice, mc->serial, v);
        change_free(mc);
        return r < 0 ? r : 1;
}

/* The worker no longer wants a guest request or bind it sent (tsm-priv.h): dropped and answered
 * -ECANCELED if the device (or the kernel) has not started it, else left to run to its end. */
static int priv_cancel_request(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                               const char **ret_reason) {
        const struct tsm_priv_cancel_request *q = &m->cancel_request;
        MonitorRequest *mr;
        int r;

        if (q->request_cookie == 0)
                return violation(-EBADMSG, "cancel of cookie 0", ret_reason);
        if (q->__reserved[0] != 0 || q->__reserved[1] != 0)
                return violation(-EBADMSG, "reserved field not zero", ret_reason);
        LIST_FOREACH(mr, &d->requests, entry)
                if (mr->cookie == q->request_cookie && mr->slot == q->slot)
                        break;
        if (!mr) {
                r = cancel_bind(d, q->slot, q->request_cookie);
                return MIN(r, 0);
        }
        /* Answered already (the messages crossed), or started: its answer is its own. */
        if (!tsm_request_cancel_unstarted(mr->request))
                return 0;
        mr->request = NULL;
        r = reply_full(d, mr->cookie, -ECANCELED, TSM_PRIV_REPLY_MONITOR_OWN, NULL, 0, -EBADF);
        request_free(mr);
        return r;
}

/* ---- devices going away ------------------------------------------------------------------ */

static void on_device_gone(TsmPlatform *p, const char *pci_address, void *userdata) {
        MonitorDispatch *d = userdata;

        /* Its requests in flight fail by themselves (the platform answers them -ENODEV). */
        monitor_contexts_device_gone(d->contexts, pci_address);
}

static void on_device_unbound(TsmPlatform *p, const char *pci_address, void *userdata) {
        MonitorDispatch *d = userdata;

        monitor_contexts_device_unbound(d->contexts, pci_address);
}

/* ---- the table --------------------------------------------------------------------------- */

/* HELLO, LISTEN_SOCKET, RESTORED_CONTEXT, RESTORED_VDEVICE, LAST_GOOD, LATE and REPLY go the other
 * way: no entry, never permitted. */
static const struct {
        PrivHandler handler;
        unsigned flags; /* MonitorPermit */
} priv_table[_TSM_PRIV_TYPE_MAX] = {
        [TSM_PRIV_READY] = { priv_ready, MON_PERMIT | MON_ONCE },
        [TSM_PRIV_STATUS] = { priv_status, MON_PERMIT },
        [TSM_PRIV_OPEN_CONTEXT] = { priv_open_context, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_ADOPT_CONTEXT] = { priv_adopt_context, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_RECLAIM_CONTEXT] = { priv_reclaim_context, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_CLOSE_CONTEXT] = { priv_close_context, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_ATTACH_VDEVICE] = { priv_attach_vdevice, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_DETACH_VDEVICE] = { priv_detach_vdevice, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_BIND_VDEVICE] = { priv_bind_vdevice, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_UNBIND_VDEVICE] = { priv_unbind_vdevice, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_GET_VDEVICE_STATE] = { priv_get_vdevice_state, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_GET_DEVICE_STATE] = { priv_get_device_state, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_GUEST_REQUEST] = { priv_guest_request, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_CONNECT_DEVICE] = { priv_connect_device, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_DISCONNECT_DEVICE] = { priv_disconnect_device, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_RELOAD] = { priv_reload, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_SETTLE_VDEVICE] = { priv_settle_vdevice, MON_PERMIT | MON_ANSWERED },
        [TSM_PRIV_LATE_ACK] = { priv_late_ack, MON_PERMIT },
        [TSM_PRIV_RESTORED_PREVIOUS] = { priv_restored_previous, MON_PERMIT },
        [TSM_PRIV_CANCEL_REQUEST] = { priv_cancel_request, MON_PERMIT },
};

int monitor_dispatch_new(struct event_base *base, TsmPlatform *platform, MonitorContexts *contexts,
                         const MonitorDispatchCallbacks *cb, void *userdata, MonitorDispatch **ret) {
        MonitorDispatch *d;

        assert(base);
        assert(platform);
        assert(contexts);
        assert(ret);

        d = new0(MonitorDispatch, 1);
        if (!d)
                return -ENOMEM;
        d->base = base;
        d->platform = platform;
        d->contexts = contexts;
        d->started_usec = now_monotonic_usec(); /* made as the monitor starts */
        d->scope_refusal_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        d->device_refusal_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        d->contexts_full_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        d->fd_lost_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        if (cb)
                d->cb = *cb;
        d->userdata = userdata;
        d->channel = d->last_good_fd = -EBADF;
        LIST_INIT(&d->requests);
        LIST_INIT(&d->changes);
        LIST_INIT(&d->connects);
        if (idle_flush_new(base, on_flush, d, &d->flush) < 0 ||
            tsm_priv_outbox_new(on_reply_failed, &d->outbox) < 0 || tsm_priv_inbox_new(&d->inbox) < 0) {
                monitor_dispatch_free(d);
                return -ENOMEM;
        }
        d->late_lost_log = RATELIMIT(MONITOR_LOG_RATELIMIT_INTERVAL_USEC, MONITOR_LOG_RATELIMIT_BURST);
        tsm_platform_set_device_gone_callback(platform, on_device_gone, d);
        tsm_platform_set_device_unbound_callback(platform, on_device_unbound, d);
        tsm_platform_set_late_callback(platform, on_platform_late, d);
        *ret = d;
        return 0;
}

MonitorDispatch *monitor_dispatch_free(MonitorDispatch *d) {
        MonitorConnect *mcon;
        MonitorChange *mc;

        if (!d)
                return NULL;
        monitor_dispatch_stop(d);
        /* The monitor is exiting: its contexts, and with them the bindings, end with it. */
        while ((mc = LIST_FIRST(&d->changes))) {
                tsm_request_cancel(mc->request);
                change_free(mc);
        }
        /* A write the kernel runs finishes on its lane, unanswered (kernel-lanes.h). */
        while ((mcon = LIST_FIRST(&d->connects))) {
                tsm_request_cancel(mcon->request);
                connect_free(mcon);
        }
        tsm_platform_set_device_gone_callback(d->platform, NULL, NULL);
        tsm_platform_set_device_unbound_callback(d->platform, NULL, NULL);
        tsm_platform_set_late_callback(d->platform, NULL, NULL);
        free(d->late_kept);
        idle_flush_free(d->flush);
        tsm_priv_outbox_free(d->outbox);
        tsm_priv_inbox_free(d->inbox);
        return mfree(d);
}

void monitor_dispatch_set_previous_worker(MonitorDispatch *d, TsmPrivWorkerEnd end, uint32_t status) {
        d->previous_end = end;
        d->previous_status = status;
}

void monitor_dispatch_set_last_good(MonitorDispatch *d, int fd, bool stale, const char *reason) {
        d->last_good_fd = fd;
        d->last_good_stale = fd >= 0 && stale;
        d->last_good_reason_len = d->last_good_stale ? tsm_priv_reason_make(reason, d->last_good_reason) : 0;
}

int monitor_dispatch_set_start_settings(MonitorDispatch *d, const char *text) {
        if (text && strlen(text) + 1 > TSM_PRIV_PAYLOAD_MAX)
                return -E2BIG;
        d->start_settings = text;
        return 0;
}

int monitor_dispatch_start(MonitorDispatch *d, int channel, const MonitorListenSocket *sockets,
                           size_t n_sockets) {
        struct timeval send_timeout = { .tv_sec = MONITOR_SEND_TIMEOUT_USEC / 1000000,
                                        .tv_usec = MONITOR_SEND_TIMEOUT_USEC % 1000000 };
        struct tsm_priv_hello hello;
        MonitorContext *ctx;
        TsmUapiVersion v;
        int r;

        assert(d);
        assert(channel >= 0);
        assert(sockets || n_sockets == 0);

        if (d->channel >= 0)
                return -EBUSY;
        if (n_sockets > UINT32_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n_sockets; i++)
                if (sockets[i].fd < 0 ||
                    (sockets[i].kind != TSM_PRIV_SOCKET_ALL && sockets[i].kind != TSM_PRIV_SOCKET_GUEST))
                        return -EINVAL;

        /* No send waits on this worker longer than this (reply_failed()). */
        if (setsockopt(channel, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout)) < 0)
                return negative_errno();
        d->stalled = false;

        /* Whatever an earlier worker held is nobody's now: the new one starts from orphans. */
        monitor_contexts_orphan_all(d->contexts);

        tsm_priv_init(&hello, TSM_PRIV_HELLO, 0, d->start_settings ? (uint32_t) strlen(d->start_settings) + 1 : 0);
        hello.version = TSM_PRIV_VERSION;
        r = tsm_platform_get_uapi(d->platform, &v);
        hello.uapi = r < 0 ? r : (int32_t) v;
        hello.emulated = tsm_platform_is_emulated(d->platform);
        hello.fdstore = fdstore_available();
        hello.n_sockets = (uint32_t) n_sockets;
        hello.n_restored = (uint32_t) monitor_contexts_size(d->contexts);
        hello.previous_end = d->previous_end;
        hello.previous_status = d->previous_status;
        hello.max_contexts = (uint32_t) MIN(monitor_contexts_get_max(d->contexts), (size_t) UINT32_MAX);
        hello.last_good = d->last_good_fd >= 0;
        hello.started_usec = d->started_usec;
        r = tsm_priv_send(channel, &hello, d->start_settings, hello.hdr.payload_len, -EBADF);
        if (r < 0)
                return r;

        for (size_t i = 0; i < n_sockets; i++) {
                struct tsm_priv_listen_socket ls;

                tsm_priv_init(&ls, TSM_PRIV_LISTEN_SOCKET, 0, 0);
                ls.kind = sockets[i].kind;
                r = tsm_priv_send(channel, &ls, NULL, 0, sockets[i].fd);
                if (r < 0)
                        return r;
        }

        if (d->last_good_fd >= 0) {
                struct tsm_priv_last_good lg;

                tsm_priv_init(&lg, TSM_PRIV_LAST_GOOD, 0, (uint32_t) d->last_good_reason_len);
                lg.stale = d->last_good_stale;
                r = tsm_priv_send(channel, &lg, d->last_good_reason_len > 0 ? d->last_good_reason : NULL,
                                  d->last_good_reason_len, d->last_good_fd);
                if (r < 0)
                        return r;
        }

        MONITOR_CONTEXTS_FOREACH(ctx, d->contexts) {
                struct tsm_priv_restored_context rc;

                if (ctx->n_vdevices > UINT32_MAX)
                        return -E2BIG;
                tsm_priv_init(&rc, TSM_PRIV_RESTORED_CONTEXT, 0, 0);
                rc.context = ctx->id;
                rc.uid = (uint32_t) ctx->uid;
                memcpy(rc.reclaim_id, ctx->reclaim_id, sizeof(ctx->reclaim_id));
                rc.n_vdevices = (uint32_t) ctx->n_vdevices;
                rc.partial = ctx->partial;
                memcpy(rc.previous_reclaim_id, ctx->previous_reclaim_id, sizeof(ctx->previous_reclaim_id));
                r = tsm_priv_send(channel, &rc, NULL, 0, -EBADF);
                if (r < 0)
                        return r;

                for (size_t i = 0; i < ctx->n_vdevices; i++) {
                        const MonitorVDevice *vd = &ctx->vdevices[i];
                        struct tsm_priv_restored_vdevice rv;

                        tsm_priv_init(&rv, TSM_PRIV_RESTORED_VDEVICE, 0, 0);
                        rv.context = ctx->id;
                        rv.vdevice = vd->id;
                        rv.state = (vd->bound ? TSM_PRIV_VDEVICE_BOUND : 0) |
                                   (vd->n_changes > 0 ? TSM_PRIV_VDEVICE_CHANGING : 0) |
                                   (vd->gone ? TSM_PRIV_VDEVICE_GONE : 0);
                        assert(strlen(vd->pci_address) < sizeof(rv.pci_address));
                        strcpy(rv.pci_address, vd->pci_address);
                        r = tsm_priv_send(channel, &rv, NULL, 0, -EBADF);
                        if (r < 0)
                                return r;
                }
        }

        d->channel = channel;
        d->seen_once = 0;
        d->reload_loaded = false;
        d->generation++;
        d->compromised = false;
        /* What the kernel answered late meanwhile, and what the worker before did not say it
         * recorded: no cookie of this worker's. */
        for (size_t i = 0; i < d->n_late_kept; i++) {
                d->late_kept[i].msg.request_cookie = 0;
                late_send(d, &d->late_kept[i]);
        }
        if (d->late_lost.msg.id != 0)
                late_send(d, &d->late_lost);
        late_lost_flush(d);
        log_debug("Worker started with %zu sockets and %zu contexts to reclaim.", n_sockets,
                  monitor_contexts_size(d->contexts));
        return 0;
}

/* Whether the worker shut its end of the channel (closed it, or exited): no more comes. */
static bool channel_hung_up(int channel) {
        struct pollfd p = { .fd = channel, .events = POLLRDHUP };

        return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP));
}

/* One message from the worker (or the error of its datagram): its shape, whether it may come
 * now, what it means. */
static int process_message(MonitorDispatch *d, TsmPrivReceived *dg, const char **ret_reason) {
        /* SECURITY: may be a client's, of a file system it serves, whose close waits on it. */
        _cleanup_close_peer_ int fd = -EBADF;
        const TsmPrivTypeDesc *desc;
        const char *reason = NULL;
        const void *payload = NULL;
        struct tsm_priv_hdr h = {};
        size_t n_fds = dg->n_fds;
        ssize_t n = dg->len;
        PrivMessage m;
        int r;

        if (n >= 0 && n_fds > 0) {
                fd = TAKE_FD(dg->fds[0]); /* closed on every path, unless a handler takes it */
                dg->n_fds = 0;
        }
        /* One came, at least, and was not taken: the shape is checked as if it had been (a type
         * that carries none is the worker's fault all the same), the handler answers the rest. */
        if (n >= 0 && dg->fds_lost)
                n_fds = 1;
        /* SECURITY: on SOCK_SEQPACKET a read of no bytes is end of file, or a record of no bytes,
         * which no worker sends: a worker that sent one and stays is no worker of ours. Only end
         * of file leaves the worker's side shut. (With an fd it is a record: too short, below.) */
        d->violation_type = 0;
        if (n == 0 && n_fds == 0)
                return channel_hung_up(d->channel) ? -EPIPE : violation(-EBADMSG, "empty datagram", ret_reason);
        if (n == -ECONNRESET)
                return -EPIPE;
        if (n == -EMSGSIZE)
                return violation(-EMSGSIZE, "datagram longer than any message", ret_reason);
        if (n == -EPROTO)
                return violation(-EPROTO, "more file descriptors than any message carries", ret_reason);
        if (n < 0)
                return (int) n;

        if ((size_t) n >= sizeof(h))
                memcpy(&h, dg->buf, sizeof(h));
        desc = tsm_priv_type_desc(h.type);
        if (desc)
                d->violation_type = h.type;
        /* SECURITY: a correct worker passes only character devices and memfds (ADOPT_CONTEXT);
         * each fd of another kind that comes while the monitor takes none would wait on the
         * closer's thread past MONITOR_WORKER_FDS_CLOSING_MAX. */
        if (dg->fds_refused_may_wait)
                return violation(-EBADF, "file descriptor whose close may wait on a file system", ret_reason);

        /* The shape first, with the rules both ends share... */
        r = tsm_priv_check(dg->buf, (size_t) n, n_fds, TSM_PRIV_FROM_WORKER, &m,
                           desc && desc->size <= sizeof(m) ? desc->size : sizeof(m), &payload, &reason);
        if (r < 0)
                return violation(r, reason, ret_reason);

        /* ... then whether it may come now ... */
        if (!priv_table[h.type].handler || !(priv_table[h.type].flags & MON_PERMIT))
                return violation(-EPROTO, "message type not permitted", ret_reason);
        if ((priv_table[h.type].flags & MON_ONCE) && (d->seen_once & (UINT32_C(1) << h.type)))
                return violation(-EPROTO, "permitted once per worker, sent again", ret_reason);
        d->seen_once |= UINT32_C(1) << h.type;
        /* SECURITY: cookie 0 is what the monitor marks a call whose worker ended with, and makes a
         * late answer of when the kernel is done: a worker may not have it made for calls it
         * makes (it would fill the late answers kept with its own). Nor may it name a reply to
         * what is not answered. */
        if ((priv_table[h.type].flags & MON_ANSWERED) && h.cookie == 0)
                return violation(-EPROTO, "cookie 0 on a message that is answered", ret_reason);
        if (!(priv_table[h.type].flags & MON_ANSWERED) && h.cookie != 0)
                return violation(-EPROTO, "cookie on a message that is not answered", ret_reason);

        /* ... then what it means, against the monitor's own state. */
        r = priv_table[h.type].handler(d, &m, payload, &fd, &reason);
        if (r < 0)
                return reason ? violation(r, reason, ret_reason) : r;
        return 0;
}

int monitor_dispatch_process(MonitorDispatch *d, const char **ret_reason) {
        unsigned handled = 0;
        int k;

        assert(d);
        assert(ret_reason);

        *ret_reason = NULL;
        if (d->channel < 0)
                return -ENOTCONN;
        /* Not another message from a worker that does not take its replies: it is being killed. */
        if (d->stalled)
                return -EPIPE;

        for (;;) {
                size_t i;
                int r;

                if (d->inbox_next == d->inbox_n) {
                        /* Slots to spare in the last receive: the socket was empty. */
                        bool drained = d->inbox_n > 0 && !tsm_priv_inbox_more(d->inbox);

                        d->inbox_n = d->inbox_next = 0;
                        if (drained || handled >= MONITOR_MESSAGES_PER_WAKEUP)
                                break;
                        k = inbox_receive(d, true);
                        if (k == -EAGAIN)
                                break;
                        if (k == -ECONNRESET)
                                return -EPIPE;
                        if (k < 0)
                                return k;
                        d->inbox_n = (size_t) k;
                }
                if (handled >= MONITOR_MESSAGES_PER_WAKEUP)
                        break; /* the rest of what was received: the caller comes back */

                i = d->inbox_next++;
                handled++;
                r = process_message(d, tsm_priv_inbox_get(d->inbox, i), ret_reason);
                /* A reply could not be sent: the worker is being killed, nothing more of it
                 * starts (its LATE_ACKs among the rest count: monitor_dispatch_stop()). */
                if (r >= 0 && d->stalled)
                        return -EPIPE;
                if (r < 0) {
                        d->compromised = *ret_reason != NULL;
                        /* A worker that is gone (not a violation: it stalled, hung up) still
                         * acknowledged what it acknowledged after this: the next would record
                         * again what this one did. */
                        if (!d->compromised)
                                (void) late_take_acks_in(d, i + 1, d->inbox_n);
                        tsm_priv_inbox_clear(d->inbox);
                        d->inbox_n = d->inbox_next = 0;
                        return r;
                }
        }

        /* The answers to this round leave together; those of guest requests come later. */
        tsm_priv_outbox_flush(d->outbox, d->channel);
        return d->stalled ? -EPIPE : d->inbox_next < d->inbox_n;
}

const char *monitor_dispatch_get_violation_type(const MonitorDispatch *d) {
        return tsm_priv_type_to_string(d->violation_type) ?: "unknown";
}

void monitor_dispatch_stop(MonitorDispatch *d) {
        MonitorChange *mc, *next;
        MonitorConnect *mcon;
        MonitorRequest *mr;

        assert(d);

        while ((mr = LIST_FIRST(&d->requests))) {
                tsm_request_cancel(mr->request);
                request_free(mr);
        }
        /* Binds and unbinds go on: the TSM changes the TDI whether or not anyone listens.
         * Who waited for them to settle was the worker that is gone. */
        for (mc = LIST_FIRST(&d->changes); mc; mc = next) {
                next = LIST_NEXT(mc, entry);
                mc->cookie = 0;
                if (mc->settle)
                        change_free(mc);
        }
        /* So do connects and disconnects: the platform must see where they end. */
        LIST_FOREACH(mcon, &d->connects, entry)
                mcon->cookie = 0;
        /* The LATEs it did not acknowledge go to the next worker; those it did, not again:
         * among the messages received and not handled yet too. */
        if (d->channel >= 0 && !d->compromised && late_take_acks_in(d, d->inbox_next, d->inbox_n))
                late_take_acks(d);
        d->inbox_n = d->inbox_next = 0;
        d->compromised = false;
        /* Nothing meant for the old worker may reach the next one (the LATEs stay kept). */
        tsm_priv_outbox_clear(d->outbox);
        tsm_priv_inbox_clear(d->inbox);
        d->channel = -EBADF;
        d->seen_once = 0;
        d->reload_loaded = false;
        d->stalled = false;
        monitor_contexts_orphan_all(d->contexts);
}

size_t monitor_dispatch_n_requests(const MonitorDispatch *d) {
        return d->n_requests;
}

size_t monitor_dispatch_n_late_kept(const MonitorDispatch *d) {
        return d->n_late_kept;
}

uint64_t monitor_dispatch_n_late_lost(const MonitorDispatch *d) {
        return d->n_late_dropped + d->late_lost.msg.count;
}
