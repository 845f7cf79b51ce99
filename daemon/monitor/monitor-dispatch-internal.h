/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the files of the monitor's request table share: the dispatch itself, the messages it
 * takes, the calls it has on their way, and the functions more than one of them uses
 * (monitor-dispatch.c: the table, checking a message and its lookups, a worker's start and
 * stop; monitor-dispatch-reply.c: the replies; monitor-dispatch-late.c: the kernel's late
 * answers; monitor-dispatch-worker.c: READY, STATUS, RELOAD; monitor-dispatch-context.c:
 * contexts; monitor-dispatch-attach.c: vDevices; monitor-dispatch-bind.c: binds, unbinds and a
 * vDevice's state; monitor-dispatch-device.c: devices, their connections and the device gate;
 * monitor-dispatch-request.c: guest requests). Not for other modules: they go through
 * monitor-dispatch.h. Runs in: monitor.
 */
#pragma once

#include <sys/queue.h>

#include "idle-flush.h"
#include "monitor-dispatch.h"
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
        struct tsm_priv_recorded recorded;
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

/* An answer kept until the worker's record of it is durable (monitor-dispatch-answer.c). */
typedef struct MonitorAnswer MonitorAnswer;

/* A guest request in flight: its reply goes out from the platform's callback. */
typedef struct MonitorRequest {
        MonitorDispatch *dispatch;
        uint32_t cookie;
        uint32_t slot; /* the asker's: only it may cancel the request (CANCEL_REQUEST) */
        uint32_t context, vdevice;
        uint32_t scope_number;
        uint64_t start_usec; /* for its kept answer's latency */
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
        bool fds_limited;    /* the last receive took fds of some datagrams only
                              * (dispatch_inbox_receive()) */
        /* LATE messages until a worker acknowledges them recorded, oldest first (an array of
         * MONITOR_LATE_KEPT_MAX, made at the first), and the LOST that counts those dropped for
         * want of room (id 0: none), kept the same way but apart: it needs no room of theirs. */
        MonitorLate *late_kept;
        size_t n_late_kept;
        MonitorLate late_lost;
        uint64_t n_late_dropped; /* since the last LOST was made */
        uint64_t next_late_id;
        RateLimit late_lost_log;
        /* Answers kept until the worker records them, oldest first. */
        TAILQ_HEAD(, MonitorAnswer) answers;
        size_t n_answers;
        RateLimit answers_full_log;

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

/*
 * A handler gets a message whose shape tsm_priv_check() accepted, its payload (NULL if none)
 * and its fd (-EBADF if none; the handler may take it). For a type that carries an fd, -EBADF
 * means one came that the monitor did not take (dispatch_inbox_receive()): the handler checks
 * what it can without it, then answers dispatch_reply_fd_lost(). It answers the worker itself
 * and returns 0; or, when the message breaks a rule, a negative errno with *ret_reason set (no
 * answer goes out); or the send error with *ret_reason untouched.
 */
typedef int (*PrivHandler)(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                           const char **ret_reason);

/* monitor-dispatch.c */
int dispatch_violation(int r, const char *reason, const char **ret_reason);
int dispatch_inbox_receive(MonitorDispatch *d, bool take_fds);
int dispatch_lookup_context(MonitorDispatch *d, uint32_t slot, uint32_t id, MonitorContext **ret,
                            const char **ret_reason);
int dispatch_lookup_vdevice(MonitorDispatch *d, uint32_t slot, uint32_t context, uint32_t id,
                            MonitorContext **ret_ctx, MonitorVDevice **ret_vdev, const char **ret_reason);
int dispatch_lookup_vdevice_message(MonitorDispatch *d, const struct tsm_priv_vdevice *q,
                                    MonitorContext **ret_ctx, MonitorVDevice **ret_vdev, const char **ret_reason);
TsmTarget dispatch_target_of(const MonitorContext *ctx, const MonitorVDevice *v);

/* monitor-dispatch-reply.c */
void dispatch_reply_failed(MonitorDispatch *d, int error);
void dispatch_on_reply_failed(int error, void *userdata);
int dispatch_reply_full(MonitorDispatch *d, uint32_t cookie, int result, uint32_t value, const void *payload,
                        size_t payload_len, int fd);
int dispatch_reply_flags(MonitorDispatch *d, uint32_t cookie, uint32_t flags, int result, uint32_t value,
                         const void *payload, size_t payload_len);
void dispatch_on_flush(void *userdata);
int dispatch_reply(MonitorDispatch *d, const PrivMessage *m, int result, uint32_t value, int fd);
int dispatch_reply_own(MonitorDispatch *d, const PrivMessage *m, int result);
int dispatch_reply_not_started(MonitorDispatch *d, const PrivMessage *m, int result);
int dispatch_reply_fd_lost(MonitorDispatch *d, const PrivMessage *m);

/* monitor-dispatch-late.c */
MonitorLateTag dispatch_late_tag(MonitorDispatch *d, TsmPrivLateOp op, uint32_t cookie,
                                 const MonitorContext *ctx, uint32_t vdevice, const char *pci_address);
void dispatch_late_send(MonitorDispatch *d, MonitorLate *l);
void dispatch_late_lost_flush(MonitorDispatch *d);
void dispatch_late_make(MonitorDispatch *d, const MonitorLateTag *t, const KernelLate *k, struct tsm_priv_late *ret);
void dispatch_late_keep(MonitorDispatch *d, const struct tsm_priv_late *late);
void dispatch_on_platform_late(TsmPlatform *p, const KernelLate *k, void *userdata);
void dispatch_late_orphan(MonitorDispatch *d, TsmRequest *req, KernelOp op, const char *pci_address,
                          uint32_t vdevice, int result, uint64_t at_usec, const MonitorLateTag *tag);
int dispatch_priv_late_ack(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                           const char **ret_reason);
bool dispatch_late_take_acks_in(MonitorDispatch *d, size_t from, size_t k);
void dispatch_late_take_acks(MonitorDispatch *d);

/* monitor-dispatch-answer.c */
/* Replies to the call with cookie that the device ran (req: its platform call; k: its answer,
 * as a late one would be), keeping the answer until the worker records it (RECORDED). */
int dispatch_reply_acted(MonitorDispatch *d, TsmRequest *req, uint32_t cookie, const MonitorLateTag *tag,
                         const KernelLate *k, uint32_t value, const void *payload, size_t payload_len);
int dispatch_priv_recorded(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                           const char **ret_reason);
bool dispatch_answers_take_recorded(MonitorDispatch *d, const void *buf, size_t len, size_t n_fds);
void dispatch_answers_orphan(MonitorDispatch *d);

/* monitor-dispatch-worker.c */
int dispatch_priv_ready(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                        const char **ret_reason);
int dispatch_priv_status(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                         const char **ret_reason);
int dispatch_priv_reload(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                         const char **ret_reason);

/* monitor-dispatch-context.c */
int dispatch_priv_open_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                               const char **ret_reason);
int dispatch_priv_adopt_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                const char **ret_reason);
int dispatch_priv_reclaim_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                  const char **ret_reason);
int dispatch_priv_restored_previous(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                    const char **ret_reason);
int dispatch_priv_close_context(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                const char **ret_reason);

/* monitor-dispatch-attach.c */
int dispatch_priv_attach_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason);
int dispatch_priv_detach_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason);

/* monitor-dispatch-bind.c */
MonitorChange *dispatch_change_free(MonitorChange *mc);
int dispatch_priv_bind_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                               const char **ret_reason);
int dispatch_priv_unbind_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason);
int dispatch_priv_settle_vdevice(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason);
int dispatch_priv_get_vdevice_state(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                    const char **ret_reason);
int dispatch_cancel_bind(MonitorDispatch *d, uint32_t slot, uint32_t cookie);

/* monitor-dispatch-device.c */
bool dispatch_device_listed(MonitorDispatch *d, const TsmDeviceInfo *info, const char *what);
int dispatch_priv_get_device_state(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                   const char **ret_reason);
MonitorConnect *dispatch_connect_free(MonitorConnect *mc);
int dispatch_priv_connect_device(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason);
int dispatch_priv_disconnect_device(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                    const char **ret_reason);
void dispatch_on_device_gone(TsmPlatform *p, const char *pci_address, void *userdata);
void dispatch_on_device_unbound(TsmPlatform *p, const char *pci_address, void *userdata);

/* monitor-dispatch-request.c */
MonitorRequest *dispatch_request_free(MonitorRequest *mr);
void dispatch_fail_requests_of(MonitorDispatch *d, uint32_t context, uint32_t vdevice);
int dispatch_priv_guest_request(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                const char **ret_reason);
int dispatch_priv_cancel_request(MonitorDispatch *d, const PrivMessage *m, const void *payload, int *fd,
                                 const char **ret_reason);
