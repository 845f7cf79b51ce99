/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the files of libtsm share: the TsmClient object, pending asynchronous operations, the
 * call helpers and error bookkeeping. Nothing here is exported (-fvisibility=hidden and the
 * version script libtsm.sym). Runs in: the VMM process.
 */
#pragma once

#include <sys/queue.h>

#include <json-c/json.h>

#include "guest-limits.h"
#include "macro.h"
#include "tsm-priv.h"
#include "tsm.h"
#include "varlink-client.h"

#define TSM_GUEST_SOCKET_DEFAULT "/run/tsmd/io.tsmd.Guest"
#define TSM_TIMEOUT_DEFAULT_USEC (45ULL * 1000000ULL)
#define TSM_ERROR_MESSAGE_MAX 256

/* SECURITY: what a reply may cost the VMM. The Varlink defaults (16 MiB, depth 64) let a
 * compromised worker make a VMM parse 16 MiB of nested empty arrays into some 50 times that
 * in json-c objects. io.tsmd.Guest's largest reply is GuestRequest's: a response of at most
 * TSM_PRIV_PAYLOAD_MAX (nothing larger crosses tsmd's privilege boundary), base64-encoded,
 * plus room for the envelope and every other reply (AttachDevice's scopes, error texts). Its
 * deepest is DescribeConnection's, 6 levels ({"parameters":{"contexts":[{"vdevices":[{...}]}]}}):
 * 8 leaves a newer tsmd room. DescribeConnection's reply alone may be larger: what the most a
 * connection can hold comes to (GUEST_DESCRIBE_REPLY_MAX, and no more values than that holds,
 * GUEST_DESCRIBE_REPLY_VALUES_MAX), taken while that call's reply is to come only
 * (ltsm_client_describing_begin()). Tools calling other interfaces get the defaults (ltsm_client_widen_limits()),
 * but for the values a reply may hold (below). */
#define TSM_GUEST_MESSAGE_MAX (((size_t) TSM_PRIV_PAYLOAD_MAX + 2U) / 3U * 4U + 64U * 1024U)
#define TSM_GUEST_DEPTH_MAX 8U

/* SECURITY: values a reply may hold, whatever the interface. A tool's replies may be as large
 * as Varlink's default message (16 MiB), which holds 8 Mi zeros: some 1.2 GiB of json-c objects
 * in tsmctl. The most a legitimate one holds is a QueryAudit page, by default 10000 records of
 * some 20 values (GetCounters' histograms of 1024 keys a dimension come to less): 100 a record
 * leaves a newer tsmd room. tsmd's [Audit] MaxQueryRecords= may be set higher, but a page is
 * never more than its caller asks (tsmctl audit asks 10001 at most and goes on from nextSeq),
 * so this stays the library's own, not its caller's: a setter would be one more way for a VMM
 * to give up what protects it. An io.tsmd.Guest reply holds fewer by its size alone, but
 * DescribeConnection's, which has a count of its own (guest-limits.h). */
#define TSM_REPLY_JSON_VALUES_MAX (1U << 20)

/* SECURITY: fds a message from tsmd may carry. No reply of io.tsmd.Guest carries more than one
 * (OpenContext's and ReclaimContext's iommufd), nor does any call libtsm makes; no other
 * interface's carries any. The Varlink default (253) would let a compromised worker park that
 * many fds in the VMM per message: a message with more is a protocol violation, its fds closed
 * at once (varlink_stream_read(); beyond what the control buffer holds the kernel drops them). */
#define TSM_MESSAGE_FDS_MAX 1U

/* Asynchronous guest requests a client takes before it refuses more (-EAGAIN), unless the VMM
 * sets another bound (tsm_client_set_max_pending_requests()): tsmd's default MaxPendingCalls=, what
 * tsmd itself takes of one connection before it stops reading it. A guest that keeps more in
 * flight than tsmd would is flooding its VMM: it gets a busy status (the VMM's answer to -EAGAIN)
 * rather than a queue that grows until the 16 MiB output queue is full (some 100000 small
 * requests), each adding an exchange to every later call, the VMM's Unbind and Detach too. */
#define TSM_PENDING_REQUESTS_DEFAULT 64U

/* SECURITY: calls a client has at tsmd at a time; the others are held in libtsm, where
 * tsm_device_cancel_requests() and tsm_client_cancel_requests() can take them back
 * (varlink_client_set_max_in_flight()). tsmd answers in call order and runs a device's exchanges
 * one after the other: the guest's requests taken back, a VMM's Unbind waits behind at most this
 * many (8 exchanges of one device at most: 1.6 s at 200 ms an exchange), however many the guest had
 * queued. 8 still keeps 8 devices of one connection busy at once, and one device always has its
 * next request waiting at tsmd. */
#define TSM_CALLS_IN_FLIGHT_MAX 8U
/* The most tsm_client_set_max_calls_in_flight() takes. Calls past what tsmd reads of a connection
 * (MaxPendingCalls=, 64 by default) wait in the socket, where no cancel reaches them, and each
 * one sent is an exchange an Unbind may wait behind: 1024 leaves room for a tsmd configured
 * for more, and bounds that wait still. */
#define TSM_CALLS_IN_FLIGHT_LIMIT 1024U

typedef enum TsmOpType {
        TSM_OP_GUEST_REQUEST,
        TSM_OP_WATCH,
        TSM_OP_DESCRIBE,
        /* The device calls a VMM makes at hot-plug and unplug (tsm-device-async.c). */
        TSM_OP_ATTACH,
        TSM_OP_DETACH,
        TSM_OP_BIND,
        TSM_OP_UNBIND,
        TSM_OP_GET_STATE,
        TSM_OP_CLOSE, /* CloseContext: a VM's teardown */
} TsmOpType;

/* One asynchronous call: owned by the client's list from registration until destroy ran. The
 * VarlinkClient holds a pointer to it as the userdata of its reply callback. */
typedef struct TsmOp TsmOp;
struct TsmOp {
        TsmClient *client;
        TsmOpType type;
        TsmGuestRequestFunc request_callback;
        TsmEventFunc event_callback;
        TsmDescribeFunc describe_callback;
        TsmAttachFunc attach_callback; /* TSM_OP_ATTACH */
        TsmDoneFunc done_callback;     /* TSM_OP_DETACH, TSM_OP_CLOSE */
        TsmStateFunc state_callback;   /* TSM_OP_BIND, TSM_OP_UNBIND, TSM_OP_GET_STATE */
        void *userdata;
        TsmDestroyFunc destroy;
        size_t max_response_size;
        size_t request_size;
        uint64_t context;    /* TSM_OP_GUEST_REQUEST: whose it is (tsm_device_cancel_requests()) */
        uint32_t vdevice_id;
        bool subscribed; /* TSM_OP_WATCH: the first reply arrived */
        int64_t nonce;   /* TSM_OP_DESCRIBE: what its reply must echo */
        LIST_ENTRY(TsmOp) entry;
};
LIST_HEAD(TsmOpList, TsmOp);

/* What OpenContext or AdoptContext said takes a context of this connection back. */
typedef struct TsmReclaimToken {
        uint64_t context;
        char *token;
} TsmReclaimToken;

/* How many contexts that abandoned ReclaimContexts took back a client keeps for a retry (each
 * holds an iommufd): the oldest is forgotten beyond. As many as abandoned calls may be pending. */
#define TSM_LATE_RECLAIMS_MAX 8U

/* A tsm_context_reclaim() that timed out: from its call until its late reply (then dropped if
 * that is an error), and after a late success until a retry with the same token takes the
 * context it took back (tsm.h), or the entry is forgotten. A reconnect leaves an answered one
 * moved: the context went with the connection, and tsmd (restarted, say) knows it by the renewed
 * token only, which the retry sends in place of the one given. Owned by the client's list; the
 * abandoned call's reply callback holds a pointer to it as its userdata. */
typedef struct TsmLateReclaim TsmLateReclaim;
struct TsmLateReclaim {
        TsmClient *client;
        char *token;   /* the one reclaimed with, void at tsmd once the late success came */
        char *renewed; /* once answered: the one tsmd gave in its place */
        bool answered;
        bool moved;    /* its connection is gone: context and iommufd with it */
        uint64_t context;
        int iommufd; /* -EMFILE: it came, but the VMM had no fd left for it */
        TAILQ_ENTRY(TsmLateReclaim) entry;
};
TAILQ_HEAD(TsmLateReclaimList, TsmLateReclaim);

struct TsmClient {
        VarlinkClient *vc; /* NULL after a failed reconnect */
        char *address;
        uint64_t timeout_usec;

        char *error_name;
        char *error_message;
        size_t request_unconsumed; /* of the guest request last done (tsm_client_get_request_unconsumed()) */

        struct TsmOpList ops;
        TsmOp *watch; /* the open WatchEvents stream, if any */
        unsigned n_requests;   /* of ops, the guest requests */
        unsigned max_requests; /* tsm_client_set_max_pending_requests() */
        unsigned max_in_flight; /* tsm_client_set_max_calls_in_flight() */

        TsmReclaimToken *tokens; /* of this connection's contexts */
        size_t n_tokens, allocated_tokens;
        struct TsmLateReclaimList late_reclaims; /* oldest first; the answered ones lead */
        size_t n_late_reclaims_answered;

        bool wide_limits;       /* a tool called outside io.tsmd.Guest: Varlink's default limits */
        bool adopting;          /* tsm_client_new_from_fd() under way: no failure may hang up */
        /* DescribeConnections whose replies are to come, which may be that large: asynchronous
         * ones, a blocking one, and those of them abandoned (timed out), whose late replies come
         * on this connection only (a reconnect forgets them). */
        unsigned n_describing;
        unsigned n_describing_abandoned;

        unsigned n_busy;        /* entry points running that may run callbacks */
        unsigned n_dispatching; /* user callbacks running */
        bool free_requested;    /* tsm_client_free() from a callback: free when n_busy drops to 0 */
};

struct TsmScope {
        char *name;
        char *description;
        uint32_t number;
        uint64_t max_request_size;
        uint64_t max_response_size;
        bool allowed;
};

struct TsmDeviceInfo {
        char *backend;
        char *tsm;
        char *uapi;
        TsmScope *scopes;
        size_t n_scopes;
};

struct TsmEvent {
        const char *kind;
        uint64_t context;
        uint32_t vdevice_id;
        const char *pci_address;
        TsmTdiState state;
};

/* assert_return() for the entry points of a client (after checking c itself): like every local
 * failure, a failed check clears the client's error state (tsm.h), so that the name of an
 * earlier call's error is not taken for this one's. Other local failures return through
 * ltsm_error_set_local() for the same reason. */
#define assert_return_client(c, expr, r)                                                           \
        do {                                                                                       \
                if (_unlikely_(!(expr)))                                                           \
                        return ltsm_error_set_local((c), (r));                                     \
        } while (false)

/* ---- libtsm.c: calls ---- */

/* Gives c's connections Varlink's default limits from now on, for a call of method (a tool's,
 * through tsm_client_call_json()) unless it is one of io.tsmd.Guest's. */
int ltsm_client_widen_limits(TsmClient *c, const char *method);
/* Lets replies be as large as DescribeConnection's may be (GUEST_DESCRIBE_REPLY_MAX) while a
 * DescribeConnection's reply is to come: _begin() for each call made, _end() once its reply came
 * or it failed. Should the narrowing fail (no memory) the wider limits stay, which only that
 * call needs. */
int ltsm_client_describing_begin(TsmClient *c);
void ltsm_client_describing_end(TsmClient *c);

/* Whether a call may be made now: -EDEADLK for a blocking call from a callback, or while a
 * watch is open; -ENOTCONN without a working connection (error state set accordingly). */
int ltsm_client_check_callable(TsmClient *c, bool blocking);
/* One blocking call. Takes ownership of params. If fd >= 0, a duplicate of it is attached as
 * the call's fd number 0. On success *ret_reply is borrowed until the next call on c. Returns
 * the mapped errno and sets the error state. -ECANCELED if a callback freed c meanwhile (c is
 * gone then: the caller must return at once). */
/* Records the failure r of a Varlink call or step: -ECONNRESET for any that killed the
 * connection but a timeout or protocol violation, so that nothing else means "lost". */
int ltsm_error_set_failed(TsmClient *c, int r);
/* Leaves an entry point that may have run callbacks (n_busy); true if the client is gone. */
bool ltsm_client_leave(TsmClient *c);

int ltsm_client_call(TsmClient *c, const char *method, json_object *params, int fd,
                     json_object **ret_reply);
/* The same; should the call be abandoned (timed out), on_abandoned gets its late final reply
 * (varlink_client_on_abandoned_reply(), with userdata), to undo or keep what it made. */
int ltsm_client_call_full(TsmClient *c, const char *method, json_object *params, int fd,
                          VarlinkReplyFunc on_abandoned, void *userdata, json_object **ret_reply);
/* Ends a public blocking function whose ltsm_client_call() succeeded, after it took what it
 * needs from the reply, returning r: delivers replies to asynchronous calls that were read
 * together with that reply. Callbacks may run and free c: then c is gone and this returns
 * -ECANCELED, so the caller writes its outputs only after this succeeded, and returns at once
 * if it did not. */
int ltsm_client_call_done(TsmClient *c, int r);
/* The same for a call that failed with tsmd's error r (< 0, the error state set): the callbacks
 * may set the error state, which is the call's again after them. */
int ltsm_client_call_done_error(TsmClient *c, int r);
/* Attaches a duplicate of fd to the next call as its fd number 0 (the caller keeps fd). */
int ltsm_client_push_fd(TsmClient *c, int fd);
/* Queues an asynchronous call (flags: VARLINK_CALL_MORE) for op, which is added to c's list
 * on success. Takes ownership of params, not of op. If fd >= 0, a duplicate of it goes with
 * the call as its fd number 0. */
int ltsm_client_call_async(TsmClient *c, const char *method, json_object *params, unsigned flags, int fd,
                           TsmOp *op);
/* A new op, a copy of init (its type, callback, userdata, destroy and the rest), or NULL. */
TsmOp *ltsm_op_new(const TsmOp *init);
/* Removes op from its client's list and runs its destroy (as a callback). */
void ltsm_op_finish(TsmOp *op);

/* ---- tsm-error.c ---- */

/* The errno a Varlink error name (with its parameters) stands for (positive). */
int ltsm_error_to_errno(const char *name, json_object *parameters);
/* Records a Varlink error reply tsmd sent as the client's error state; returns the negative
 * errno. */
int ltsm_error_set_reply(TsmClient *c, const char *name, json_object *parameters);
/* The same for an error a reply callback of vc got: a local failure if vc died (the
 * connection is gone), else tsmd's reply. */
int ltsm_error_set_varlink(TsmClient *c, VarlinkClient *vc, const char *name, json_object *parameters);
/* Records a local failure r (< 0); connection failures get their io.tsmd.* name. Returns r. */
int ltsm_error_set_local(TsmClient *c, int r);
void ltsm_error_clear(TsmClient *c);

/* ---- tsm-reply.c: typed access to reply fields, -EBADMSG when missing or mistyped ---- */

int ltsm_reply_get_int(json_object *o, const char *key, int64_t min, int64_t max, int64_t *ret);
int ltsm_reply_get_string(json_object *o, const char *key, const char **ret);
int ltsm_reply_get_bool(json_object *o, const char *key, bool *ret);
/* A nullable TdiState field: _TSM_TDI_STATE_INVALID for null, missing or a newer name. */
TsmTdiState ltsm_reply_get_state(json_object *o, const char *key);
/* Decodes a base64 field into a malloc'd buffer of at most max bytes (-ENOBUFS beyond). */
int ltsm_reply_get_base64(json_object *o, const char *key, size_t max, void **ret, size_t *ret_len);

/* ---- tsm-device-info.c ---- */

int ltsm_device_info_from_reply(json_object *reply, TsmDeviceInfo **ret);

/* ---- tsm-guest.c ---- */

/* The parameters of io.tsmd.Guest.GuestRequest; -EINVAL for invalid arguments, -E2BIG for a
 * request larger than any scope takes (TSM_PRIV_PAYLOAD_MAX), -ENOMEM. */
int ltsm_guest_request_params(uint64_t context, uint32_t vdevice_id, const char *scope, const void *req,
                              size_t req_len, size_t max_response_size, json_object **ret);
/* A GuestRequest reply's requestUnconsumed (0 when absent); -EBADMSG beyond req_len. */
int ltsm_guest_request_unconsumed(json_object *reply, size_t req_len, size_t *ret);

/* {"context": context, "vdeviceId": vdevice_id} of the device calls; -EINVAL for an invalid
 * handle or id, -ENOMEM. */
int ltsm_device_params(uint64_t context, uint32_t vdevice_id, json_object **ret);
/* {"context": context} of CloseContext; -EINVAL, -ENOMEM. */
int ltsm_context_params(uint64_t context, json_object **ret);
/* AttachDevice's, naming the call's fd number 0 if vfio_fd >= 0: -EINVAL, -EBADF (vfio_fd is
 * not open), -ENOMEM. */
int ltsm_attach_params(uint64_t context, uint32_t vdevice_id, const char *pci_address, int vfio_fd,
                       json_object **ret);
/* A Bind's, Unbind's or GetDeviceState's reply: its state, and bound (required, -EBADMSG
 * without it) if ret_bound. */
int ltsm_state_reply(json_object *reply, TsmTdiState *ret_state, bool *ret_bound);

/* ---- tsm-reclaim.c ---- */

/* The context's token (replacing one it had); forgetting one not there is a no-op. */
int ltsm_tokens_remember(TsmClient *c, uint64_t context, const char *token);
void ltsm_tokens_forget(TsmClient *c, uint64_t context);
/* A new connection: the old handles mean nothing (the late reclaims answered are moved, the
 * others go). */
void ltsm_tokens_clear(TsmClient *c);
void ltsm_tokens_free(TsmClient *c);

/* A reclaim with token about to be made, in case it times out: the userdata of its abandoned
 * reply. ltsm_late_reclaim_free() it unless the call was abandoned (-ETIMEDOUT). */
int ltsm_late_reclaim_new(TsmClient *c, const char *token, TsmLateReclaim **ret);
/* Unlinks it, closes its iommufd and wipes its token. NULL is a no-op. */
void ltsm_late_reclaim_free(TsmLateReclaim *l);
/* Its late success: the context (its token remembered by the caller), the token tsmd renewed
 * it to, and its iommufd (taken; -EMFILE if it could not be received). The oldest answered entry
 * beyond TSM_LATE_RECLAIMS_MAX, and any older one of the same token, are forgotten. -ENOMEM if
 * the renewed token cannot be kept (the entry is then forgotten, as before this existed). */
int ltsm_late_reclaim_answered(TsmLateReclaim *l, uint64_t context, const char *renewed, int iommufd);
/* The answered entry of token, of this connection or moved, NULL if none. */
TsmLateReclaim *ltsm_late_reclaim_find(TsmClient *c, const char *token, bool moved);
/* Wipes and frees a token (a cleanup). */
void ltsm_token_freep(char **token);
/* The context was closed: no retry may be given it. */
void ltsm_late_reclaims_forget_context(TsmClient *c, uint64_t context);

/* ---- tsm-describe.c ---- */

DEFINE_TRIVIAL_CLEANUP_FUNC(TsmConnectionInfo *, tsm_connection_info_free);
/* tsm_client_describe() without the argument checks. */
int ltsm_describe(TsmClient *c, TsmConnectionInfo **ret);
/* DescribeConnection's parameters, with a new nonce (*ret_nonce), what its reply must echo. */
int ltsm_describe_params(int64_t *ret_nonce, json_object **ret);
/* Its reply: -EBADMSG for another nonce (it answers someone else's call) or a reply that does
 * not match the interface, -ENOMEM. */
int ltsm_describe_reply_parse(json_object *reply, int64_t nonce, TsmConnectionInfo **ret);

/* ---- tsm-async.c ---- */

/* Runs an op's callback with a local error (-ECANCELED on reconnect), as a callback. */
void ltsm_op_fail(TsmOp *op, int error);
/* Before a callback without a Varlink error: the name of an earlier call's error must not
 * look like this one's (tsm.h). */
void ltsm_error_clear_for(TsmClient *c, int error);

/* ---- tsm-device-async.c ---- */

/* The callback of a device op (TSM_OP_ATTACH ... TSM_OP_CLOSE) with a local error. */
void ltsm_device_op_fail(TsmOp *op, int error);
/* A device op's reply. */
void ltsm_device_op_reply(TsmOp *op, VarlinkClient *vc, json_object *parameters, const char *error);
