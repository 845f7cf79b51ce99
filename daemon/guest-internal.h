/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the io.tsmd.Guest files share (guest.c: the method table, a client's lifecycle, and the
 * replies, lookups and limits the methods share; guest-context.c: contexts and their release;
 * guest-attach.c: vDevices; guest-bind.c: Bind, Unbind and device state; guest-request.c: guest
 * requests; guest-events.c: WatchEvents and what it hears of; guest-policy.c: a reload of the
 * policy; guest-restore.c: contexts kept across a restart, waiting for their owners). Not for
 * other modules: they go through guest.h. Runs in: worker.
 */
#pragma once

#include <sys/queue.h>

#include "backend.h"
#include "context-store.h"
#include "fdstore.h"
#include "guest-op.h"
#include "guest.h"
#include "json-util.h"
#include "peer-identity.h"
#include "priv-call.h"
#include "tsm-platform.h"
#include "varlink-service.h"

#define GUEST_ERROR(name) "io.tsmd.Guest." name

/* The reasons of the Denied, BadFileDescriptor and ReclaimRefused the methods give, which
 * guest-reply-bound.c measures. */
#define GUEST_REASON_NO_CLIENT_RULE "no policy rule matches the client"
/* The monitor's own gates, in its words: on devices (ATTACH_VDEVICE and BIND_VDEVICE answered
 * -EPERM, TSM_PRIV_REPLY_MONITOR_OWN), and on scopes (GUEST_REQUEST answered so). */
#define GUEST_REASON_DEVICE_NOT_LISTED "no policy rule lists the device for its backend"
#define GUEST_REASON_SCOPE_NOT_GRANTED "no policy rule grants the scope for the device"
#define GUEST_REASON_NO_FD "no fd attached at that index"
#define GUEST_REASON_NOT_IOMMUFD "not an iommufd"
#define GUEST_REASON_NOT_RDWR "not open for reading and writing"
#define GUEST_REASON_NOT_CHAR "not a character device"
#define GUEST_REASON_NOT_VFIO "not a VFIO device"
#define GUEST_REASON_OTHER_DEVICE "the VFIO device is another PCI device"
/* AttachDevice of a kernel TSM's device without one, [Guest] RequireVfioFileDescriptor=yes. */
#define GUEST_REASON_MISSING "missing"
#define GUEST_REASON_NO_RECLAIM "no context of yours waits under this token"
/* A ReclaimRefused naming the device it refuses is cut there. */
#define GUEST_RECLAIM_REASON_MAX 255

typedef struct GuestSaveRetry GuestSaveRetry;

typedef struct GuestVDevice {
        uint32_t id;
        char *pci_address;
        bool bound;
        bool changing; /* a Bind or Unbind of it awaits the TSM */
        bool gone;
        /* Restored, but the monitor did not take it back (its device missing or busy): the
         * monitor may not know it at all, and a detach of a vDevice it does not know is a
         * violation. Whatever it still holds goes with the context. */
        bool unattached;
} GuestVDevice;

struct GuestContext {
        uint64_t handle;
        uint32_t id;   /* the monitor's name for it; the monitor holds the iommufd */
        uint32_t slot; /* whose it is in the monitor's table: the owner's, or 0 while orphaned */
        GuestVDevice *vdevices;
        size_t n_vdevices, allocated_vdevices;

        /* Surviving restarts: the owner's uid and the reclaim id of the token it reclaims the
         * context with (fdstore.h). The token itself went to the owner, and is kept nowhere. */
        uid_t uid;
        /* The owner's as it was when it opened (or reclaimed) the context, for the records made
         * on its behalf (releases), kept across restarts: the process may be gone by then.
         * AUDIT_GID_INVALID and 0 where the state file did not say. */
        gid_t gid;
        pid_t pid;
        char reclaim_id[RECLAIM_ID_LEN + 1];
        /* Between a reclaim and the moment its answer, with the renewed token, is in the VMM's
         * socket: the reclaim id of the token it reclaimed with, which it may be left with
         * should tsmd die meanwhile. "" otherwise. */
        char previous_reclaim_id[RECLAIM_ID_LEN + 1];
        /* Its state file is behind what it has (a save failed): tried again until it is not,
         * NULL otherwise (guest-save.c). */
        GuestSaveRetry *save_retry;
};

struct GuestClient {
        Manager *manager;
        VarlinkConn *conn;
        uint32_t slot;         /* its slot in the monitor's table */
        PeerIdentity identity; /* taken at connect time */
        GuestContext **contexts;
        size_t n_contexts, allocated_contexts;
        uint64_t next_handle;
        VarlinkCall *watch; /* WatchEvents subscription */
        size_t watched_contexts; /* while watch: its process's contexts, whose events it hears */
        TAILQ_HEAD(, PendingRequest) pending;
        LIST_HEAD(, PendingChange) changes;
        /* GetDeviceState calls waiting for the calls of their vDevice made before them. */
        LIST_HEAD(, PendingState) states;
        uint64_t next_serial; /* orders the three: a call's place among the client's calls */
        GuestOps ops; /* its audited calls */
        LIST_ENTRY(GuestClient) entry;
};

/* A GuestRequest passed to the monitor, until it answers (guest-request.c). */
typedef struct PendingRequest {
        GuestClient *client;
        VarlinkCall *call;
        PrivRequest *request;
        char *pci_address;
        TsmBackendType backend;
        const char *scope; /* the backend's scope table's */
        uint32_t scope_number;
        size_t response_size; /* offered: the caller's limit, capped by the scope's and its connection's */
        const char *revoked; /* a reload took its grant away, why (static): the monitor is asked to drop it */
        uint64_t context; /* handle */
        uint32_t vdevice;
        uint64_t serial; /* GuestClient.next_serial */
        TAILQ_ENTRY(PendingRequest) entry;
} PendingRequest;

/* A Bind or Unbind the TSM works on: the device answers when it is done (an SPDM exchange). */
typedef struct PendingChange {
        GuestClient *client;
        VarlinkCall *call;
        PrivRequest *request;
        uint64_t context; /* handle */
        uint32_t vdevice;
        bool bind;
        uint64_t serial; /* GuestClient.next_serial */
        const char *revoked; /* as PendingRequest's */
        LIST_ENTRY(PendingChange) entry;
} PendingChange;

/* A GetDeviceState made while a call of its vDevice made before it was unanswered: answered
 * once none is, with the state they left (the monitor asked then). */
typedef struct PendingState {
        VarlinkCall *call;
        uint64_t context; /* handle */
        uint32_t vdevice;
        uint64_t serial; /* GuestClient.next_serial */
        LIST_ENTRY(PendingState) entry;
} PendingState;

/* An unbind tsmd makes on a client's behalf without a call (at release, or after a restart cut
 * a bind or unbind off), or the bind of an emulated device a restart of tsmd lost, with what its
 * audit record needs once the TSM is done. */
typedef struct Release {
        Manager *manager;
        const char *event; /* the record's: "release", "restore-unbind" or "restore-bind" */
        uid_t uid;
        gid_t gid;
        pid_t pid;
        uint64_t context; /* handle */
        uint32_t context_id; /* the monitor's: the context may be reclaimed meanwhile */
        uint32_t vdevice;
        char *pci_address;
        uint32_t priv_cookie; /* of its bind or unbind: a late answer of the kernel names the record */
} Release;

GuestClient *guest_client_of(VarlinkCall *call);
/* c's contexts went up or down by delta (from c->n_contexts, which changed already or is to):
 * the watches of its process count them (GuestClient.watched_contexts). */
void guest_client_contexts_changed(GuestClient *c, long delta);
int guest_reply_limit(VarlinkCall *call, const char *limit, unsigned max);

/* The replies the methods share (guest.c): what each means is said where it is defined. */
int guest_reply_no_such_context(VarlinkCall *call, int64_t handle);
int guest_reply_no_such_vdevice(VarlinkCall *call, int64_t handle, int64_t id);
int guest_send_denied(VarlinkCall *call, const char *reason);
int guest_reply_denied(VarlinkCall *call, const char *reason);
int guest_reply_invalid_parameter(VarlinkCall *call, const char *name);
int guest_reply_device_busy(VarlinkCall *call, const char *pci_address);
int guest_reply_backend_error(VarlinkCall *call, int r, const char *pci_address);
int guest_reply_tsm_error(VarlinkCall *call, const PrivRequest *req, int r, const char *pci_address,
                          const char *gate_reason);
int guest_reply_state_not_saved(VarlinkCall *call, int error);
int guest_fd_lost(const char *field);

/* The parameters' lookups the methods share (guest.c). */
int64_t guest_get_int(json_object *p, const char *key, int64_t def);
GuestContext *guest_find_context(GuestClient *c, int64_t handle);
int guest_lookup_full(VarlinkCall *call, json_object *p, GuestContext **ret_ctx, GuestVDevice **ret_vdev,
                      TsmDeviceInfo *ret_info);
int guest_lookup(VarlinkCall *call, json_object *p, GuestContext **ret_ctx, GuestVDevice **ret_vdev);

/* What a client holds, against the limits that count it: tsmd.conf's [Guest]
 * MaxContextsPerClient= and MaxVDevicesPerClient= count its connection's contexts and vDevices,
 * its policy rule's MaxContexts= and MaxVDevices= those of every connection of its process
 * (peer_identity_may_be_same_process()): a VMM has two at least (WatchEvents keeps one busy), and
 * more connections must not mean more contexts. */
typedef struct GuestUsage {
        size_t contexts, vdevices;                 /* the connection's */
        size_t process_contexts, process_vdevices; /* of all its process's connections */
        unsigned max_contexts, max_vdevices;       /* tsmd.conf's, for the connection */
        unsigned rule_contexts, rule_vdevices;     /* the policy rule's, for the process */
} GuestUsage;

void guest_client_usage(GuestClient *c, GuestUsage *ret);
/* The lowest of the limits that n more contexts (vDevices) would pass, 0 if none. */
unsigned guest_usage_contexts_over(const GuestUsage *u, size_t n);
unsigned guest_usage_vdevices_over(const GuestUsage *u, size_t n);
/* The contexts over all clients, orphans included, and the most there may be: MaxContexts=,
 * lowered to the monitor's own maximum. */
size_t guest_n_contexts(const Manager *m);
unsigned guest_max_contexts(const Manager *m);
/* Those of one uid, its orphans included: what MaxContextsPerUid= bounds. */
size_t guest_n_contexts_of_uid(const Manager *m, uid_t uid);

GuestVDevice *guest_find_vdevice(GuestContext *ctx, int64_t id);

/* A vDevice given up (guest-context.c): unbound if it is (or is being) bound, and detached. */
void guest_vdevice_release(Manager *m, GuestContext *ctx, GuestVDevice *v);

/* A Bind or Unbind, a GetDeviceState or a GuestRequest that waited, unlinked from its client
 * and freed, its call unreferenced (guest-bind.c, guest-request.c); and the GetDeviceState calls
 * of c that wait for nothing any more, answered (guest-bind.c). */
PendingChange *guest_change_free(PendingChange *pc);
PendingState *guest_state_free(PendingState *ps);
void guest_states_flush(GuestClient *c);
void guest_pending_free(PendingRequest *pr);

/* Writing a context's state file (in guest_state_dir()): what a restarted tsmd needs to
 * rebuild the context (guest-save.c). A failure is returned, for the callers that make a change
 * only once it is saved, and the context owes a save from then on: tried again on a timer, with
 * backoff, until a save of it succeeds (a retry, or this of a later change) or it goes. Logged
 * once when it starts owing and once when it is paid. */
int guest_context_persist(Manager *m, GuestContext *ctx);
/* The same, before a change the state file must know of is made: a failure leaves the change
 * unmade (guest.c). */
int guest_persist_before_change(Manager *m, GuestContext *ctx);
/* Tries now every save owed, but except's: the first failure, or 0 once none is owed. */
int guest_pay_owed_saves(Manager *m, const GuestContext *except);
/* The context goes (guest_context_free()): nothing is owed any more, its release removes the
 * file. One kept for the next worker or tsmd (preserve) gets a last try. */
void guest_context_save_end(Manager *m, GuestContext *ctx, bool preserve);

/* Releases its vDevices (unbinding and recording them) and closes it in the monitor, or, when
 * the worker exits to be restarted, only forgets it. */
void guest_context_free(Manager *m, GuestContext *ctx);

Release *guest_release_free(Release *rel);
/* The audit record of a Release, made once the TSM answered its unbind. */
void guest_audit_release(const Release *rel, int result);
/* The audit record of a context released without a CloseContext (its owner left, or did not
 * reclaim it in time), event "release-context": with its open-context, the trail has its end.
 * Its vDevices' unbinds have records of their own ("release"), once the TSM answered. Nothing
 * when the worker exits to be restarted (the context lives on). */
void guest_audit_context_release(Manager *m, const GuestContext *ctx);
/* A context by the monitor's id for it, held or orphaned; NULL if the worker has none. */
GuestContext *guest_find_context_by_id(Manager *m, uint32_t id);

/* The methods of io.tsmd.Guest, which guest.c's table runs: contexts (guest-context.c;
 * ReclaimContext, guest-restore.c), vDevices (guest-attach.c), binding and device state
 * (guest-bind.c), guest requests (guest-request.c), events (guest-events.c), what a connection
 * holds (guest-describe.c). */
int guest_vl_open_context(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_adopt_context(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_close_context(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_reclaim_context(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_attach_device(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_detach_device(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_bind(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_unbind(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_get_device_state(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_guest_request(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_watch_events(VarlinkCall *call, json_object *p, void *userdata);
int guest_vl_describe_connection(VarlinkCall *call, json_object *p, void *userdata);

/* The replies of OpenContext, AdoptContext and ReclaimContext (fd_index < 0: no fd, token
 * NULL: none) and of AttachDevice (scopes taken), and a scope of the latter. */
int guest_context_reply_new(int64_t handle, int64_t fd_index, const char *token, json_object **ret);
int guest_attach_reply_new(const char *backend, const char *tsm, const char *uapi, json_object *scopes,
                           json_object **ret);
int guest_scope_json_new(const TsmScopeDesc *s, int64_t number, bool allowed, json_object **ret);
/* DescribeConnection's reply for c's contexts, echoing nonce (NULL: none; a reference is taken). */
int guest_describe_reply_new(const GuestClient *c, json_object *nonce, json_object **ret);
/* The IDL's TdiState names, indexed by TdispState, NULL-terminated. */
const char *const *guest_tdi_states(void);

/* The largest answer of a Guest method that acts (guest-reply-bound.c): bytes as sent, with the
 * NUL, and fds. -ENOENT for one that only reads. */
int guest_reply_bound(const char *method, size_t *ret_size, unsigned *ret_fds);
