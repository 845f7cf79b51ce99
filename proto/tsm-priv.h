/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The channel between the privileged monitor (tsmd, root) and the worker (tsmd-worker, no
 * capabilities): one SOCK_SEQPACKET socketpair, the worker's end on fd 3. A message is a fixed
 * struct in the manner of the kernel's UAPI, then, for guest requests and their replies only,
 * payload_len bytes of opaque payload. File descriptors travel as SCM_RIGHTS on the datagram
 * that names them, which carries that message alone. A datagram without fds carries up to
 * TSM_PRIV_PACK_MAX messages: each starts at a multiple of TSM_PRIV_PACK_ALIGN bytes from the
 * datagram's start, the bytes between two are zero and the last ends the datagram
 * (tsm_priv_unpack()); the kernel's cost is per datagram, and a busy side has many to send.
 *
 * Wire rules (checked by tsm_priv_check() on both ends):
 *   - fixed-width types only, no implicit padding (static asserts below), host byte order;
 *   - size first: the fixed part's length as the sender knows it. Shorter than the type's
 *     min_size is rejected; longer is accepted only if every extra byte is zero (the
 *     copy_struct_from_user() rule), so a newer sender's zeroed extensions are harmless;
 *   - flags and every __reserved field must be zero; strings are NUL-terminated inside their
 *     field and zero after the NUL;
 *   - the cookie of a message from the worker is never 0 on one that is answered, and 0 on every
 *     other (the monitor checks it: it marks a call whose worker ended with 0);
 *   - the message is exactly size + payload_len bytes, and payload_len is zero for every type
 *     that carries no payload.
 *
 * General format of results (struct tsm_priv_reply.result), negative errno:
 *   -ENOENT   no such context / vDevice in the monitor's table
 *   -ENODEV   the device is unknown to the monitor or gone
 *   -ENXIO    no TSM serves the device
 *   -EBADF    an adopted fd is not an iommufd
 *   -EMFILE   the monitor holds as many contexts as it may (HELLO's max_contexts)
 *   -ENOBUFS  the monitor did not take the fd that came with the message (ADOPT_CONTEXT): it had
 *             no fd left, or takes none while fds a worker passed wait to be closed
 *             (monitor-dispatch.h); TSM_PRIV_REPLY_MONITOR_OWN in value
 *   -EPERM    the monitor's policy gate: no rule lists the device for its backend (ATTACH_VDEVICE,
 *             BIND_VDEVICE) or grants the scope for it (GUEST_REQUEST)
 *   -EOPNOTSUPP  the backend or UAPI cannot do it
 *   -EBUSY, -EIO, -ETIMEDOUT, ...  what the backend or kernel said
 * A kernel TSM may answer -EPERM or -ENOMEM too, so a failed reply to ATTACH_VDEVICE,
 * BIND_VDEVICE, UNBIND_VDEVICE, GUEST_REQUEST, CONNECT_DEVICE or DISCONNECT_DEVICE sets
 * TSM_PRIV_REPLY_MONITOR_OWN in value where the result is the monitor's own: -EPERM of its policy
 * gate, -ENOMEM of its own memory; the backend (the kernel's sysfs) was not asked. Every other bit of such a value is zero (the worker ignores them).
 * A message that breaks the wire rules, or names state the sender does not own, is not
 * answered: the monitor kills the worker (a compromised worker) and starts a fresh one.
 *
 * Runs in: monitor and worker (libc only; the monitor links no JSON or Varlink code).
 */
#pragma once

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Raised whenever a message's meaning changes (2: SETTLE_VDEVICE, ATTACH_VDEVICE's flags; 3:
 * HELLO says how the previous worker ended; 4: GUEST_REQUEST names its backend; 5: the monitor
 * tells a new worker the vDevices it has (RESTORED_VDEVICE), and ATTACH_VDEVICE attaches new
 * ones only; 6: HELLO says how many contexts the monitor holds at most; 7: NEW_CONTEXT and
 * RESTORED_CONTEXT carry a context's reclaim id where they carried its reclaim token, which
 * stays in the worker; 8: LAST_GOOD hands the worker the configuration and policy to start
 * from, HELLO says whether it comes; 9: CONNECT/DISCONNECT_DEVICE are answered when the kernel
 * is done, like a bind, after later messages' replies, and -EBUSY while one of the device's is
 * on its way; 10: LATE tells the worker of a kernel call given up on that the kernel answered
 * after all; 11: RECLAIM_CONTEXT carries the reclaim id of the context's new token, which the
 * monitor names it by from then on; 12: the monitor keeps each LATE until the worker says it is
 * recorded (LATE_ACK), resends those a worker that ended had not to the next one, and sends the
 * count of those it could not keep (LATE op LOST); 13: RELOAD comes in two steps, a load
 * answered with the sealed memfd of the files the monitor loaded, which the worker applies,
 * then a commit that the monitor applies them too; 14: a refused RELOAD load, and a stale
 * LAST_GOOD, carry the monitor's reason as text, and the refusal says whether the policy
 * failed; 15: ATTACH_VDEVICE says, on a restore's attach, that the vDevice is bound, where its
 * __reserved was; 16: a failed reply says whether its result is the monitor's own,
 * TSM_PRIV_REPLY_MONITOR_OWN; 17: a datagram without fds may carry several messages; 18: HELLO
 * says when the monitor started, and carries the settings read at start, which the worker keeps
 * over its files'; 19: a failed CONNECT_DEVICE or DISCONNECT_DEVICE reply says whether its
 * result is the monitor's own too; 20: STATUS says whether the audit log takes records, where
 * its __reserved was; 21: ADOPT_CONTEXT's fd is a character device or a memfd, anything else a
 * violation, and one the monitor did not take is answered -ENOBUFS; 22: the monitor keeps a
 * context's previous reclaim id: RECLAIM_CONTEXT says the id the VMM reclaimed with,
 * RESTORED_CONTEXT carries it, and RESTORED_PREVIOUS tells it of a partial context's; 23:
 * GUEST_REQUEST's reply value says how many request bytes the TSM did not consume; 24: so does
 * a LATE of a guest request, request_unconsumed where its __reserved was; 25: CANCEL_REQUEST
 * drops a GUEST_REQUEST or BIND_VDEVICE nothing started yet; 26: the monitor passes a SIGHUP on
 * as SIGNAL_RELOAD, naming its sender, where it sent the worker SIGHUP; 27: FILES_CHANGED tells
 * the worker which files of the set in force differ on disk from what its load read; 28: the
 * monitor keeps the answer of a bind, unbind or guest request the device ran (REPLY flag
 * TSM_PRIV_REPLY_KEPT) until the worker says its record is durable (RECORDED), and sends those
 * it was not told of, or told nobody recorded, as LATEs): a worker binary newer or older than
 * its running monitor refuses the HELLO rather than misreading it. */
#define TSM_PRIV_VERSION 28U

/* The monitor hands the worker its end of the channel on this fd. */
#define TSM_PRIV_CHANNEL_FD 3

/* Largest guest request or response payload that crosses the channel. Every backend's scope
 * limits stay at or below it (checked by test-priv-proto). */
#define TSM_PRIV_PAYLOAD_MAX (64U * 1024U)
/* Largest fixed part of any message, with room for newer, zero-extended versions. */
#define TSM_PRIV_FIXED_MAX 512U
#define TSM_PRIV_DATAGRAM_MAX (TSM_PRIV_FIXED_MAX + TSM_PRIV_PAYLOAD_MAX)
/* Messages in one datagram at most, and where each starts: at multiples of the alignment of
 * the widest field, so that no message is read from an address its structs do not allow. */
#define TSM_PRIV_PACK_MAX 32U
#define TSM_PRIV_PACK_ALIGN 8U

/* The longest reason the monitor gives for files it did not load (RELOAD, LAST_GOOD), NUL not
 * counted: as long as ReloadFailed's message may be (daemon/service-methods.c). */
#define TSM_PRIV_REASON_MAX 512U

/* Guest requests the monitor holds at once (each with buffers up to TSM_PRIV_PAYLOAD_MAX):
 * beyond it the monitor answers -EBUSY, so the worker queues the rest itself. */
#define TSM_PRIV_REQUESTS_MAX 256U

#define TSM_PRIV_PCI_ADDRESS_MAX 16U /* "DDDD:BB:DD.F" and its NUL */
/* So a PCI domain has 7 hex digits at most here (the kernel's take up to 8). */
#define TSM_PRIV_PCI_DOMAIN_DIGITS_MAX (TSM_PRIV_PCI_ADDRESS_MAX - sizeof(":BB:DD.F"))
#define TSM_PRIV_NAME_MAX 16U        /* a TSM ("tsm0") or scope ("state-change") name and NUL */
#define TSM_PRIV_RECLAIM_ID_MAX 40U  /* a reclaim id (fdstore.h): 32 hex digits and NUL */
#define TSM_PRIV_UNIT_MAX 256U       /* a systemd unit name (255 characters at most) and NUL */

/* Slot 0 is the worker itself: contexts nobody holds (restored, waiting to be reclaimed). Every
 * client connection gets a slot of its own, never reused while the worker lives, except after
 * 2^32 connections, and then never one still in use (priv_slot_counter_next()). */
#define TSM_PRIV_SLOT_WORKER 0U

typedef enum TsmPrivType {
        /* monitor -> worker, at start, in this order: HELLO, LISTEN_SOCKET..., LAST_GOOD, then
         * per context RESTORED_CONTEXT and its RESTORED_VDEVICE... (RESTORED_VDEVICE and
         * LAST_GOOD come after REPLY in the enum); then the LATEs kept for it (come while none
         * ran, or sent to one that ended before it acknowledged them) */
        TSM_PRIV_HELLO = 1,           /* + payload: the settings read at start (struct tsm_priv_hello) */
        TSM_PRIV_LISTEN_SOCKET,       /* + fd: a listening Varlink socket */
        TSM_PRIV_RESTORED_CONTEXT,    /* a context kept from before, to be reclaimed */
        /* worker -> monitor, not answered */
        TSM_PRIV_READY,               /* serving; at most once */
        TSM_PRIV_STATUS,              /* for the service manager's STATUS= */
        /* worker -> monitor, answered by one TSM_PRIV_REPLY with the same cookie */
        TSM_PRIV_OPEN_CONTEXT,        /* reply value: the context id; + fd: a duplicate of the iommufd */
        TSM_PRIV_ADOPT_CONTEXT,       /* + fd: the client's iommufd; reply value: the context id */
        TSM_PRIV_RECLAIM_CONTEXT,     /* reply + fd: a duplicate of the context's iommufd; renames it */
        TSM_PRIV_CLOSE_CONTEXT,
        TSM_PRIV_ATTACH_VDEVICE,      /* a vDevice the monitor does not have yet */
        TSM_PRIV_DETACH_VDEVICE,
        TSM_PRIV_BIND_VDEVICE,
        TSM_PRIV_UNBIND_VDEVICE,
        TSM_PRIV_GET_VDEVICE_STATE,   /* reply value: TdispState */
        TSM_PRIV_GET_DEVICE_STATE,    /* reply value: TdispState (emulated devices) */
        TSM_PRIV_GUEST_REQUEST,       /* + payload; reply + payload, possibly later; reply
                                       * value: the request bytes the TSM did not consume,
                                       * offered no response buffer (a kernel's residue) */
        TSM_PRIV_CONNECT_DEVICE,      /* answered when the kernel is done (SPDM and IDE setup: */
        TSM_PRIV_DISCONNECT_DEVICE,   /* seconds), as a bind is; one per device at a time */
        TSM_PRIV_RELOAD,              /* the monitor loads the files (reply + fd), or applies them */
        TSM_PRIV_SETTLE_VDEVICE,      /* answered once no bind or unbind of it is on its way;
                                       * reply value: 1 if bound then */
        /* monitor -> worker */
        TSM_PRIV_REPLY,
        /* monitor -> worker, at start (appended: the other types keep their numbers) */
        TSM_PRIV_RESTORED_VDEVICE,    /* a vDevice of the RESTORED_CONTEXT before it */
        TSM_PRIV_LAST_GOOD,           /* + fd: the files to start from, if HELLO says it comes */
        /* monitor -> worker, any time after the start sequence, not answered (appended) */
        TSM_PRIV_LATE,                /* a kernel call given up on, answered after all */
        /* worker -> monitor, not answered (appended) */
        TSM_PRIV_LATE_ACK,            /* a LATE is being recorded, or is recorded */
        TSM_PRIV_RESTORED_PREVIOUS,   /* a partial context's previous reclaim id, before READY */
        TSM_PRIV_CANCEL_REQUEST,      /* a GUEST_REQUEST or BIND_VDEVICE the worker no longer
                                       * wants (its REPLY says: -ECANCELED if nothing started it) */
        /* monitor -> worker, any time after the start sequence, not answered (appended) */
        TSM_PRIV_SIGNAL_RELOAD,       /* the monitor got SIGHUP: reload, on record as its sender's */
        TSM_PRIV_FILES_CHANGED,       /* + payload: the files in force that differ on disk */
        /* worker -> monitor, not answered (appended) */
        TSM_PRIV_RECORDED,            /* + payload: cookies of kept answers, recorded or not */
        _TSM_PRIV_TYPE_MAX,
        _TSM_PRIV_TYPE_INVALID = -22, /* -EINVAL */
} TsmPrivType;

/* RESTORED_VDEVICE: the monitor's record of a vDevice, which follows the TSM's answers. */
#define TSM_PRIV_VDEVICE_BOUND (1U << 0)    /* bound, as the TSM last answered */
#define TSM_PRIV_VDEVICE_CHANGING (1U << 1) /* a bind or unbind is on its way: SETTLE_VDEVICE */
#define TSM_PRIV_VDEVICE_GONE (1U << 2)     /* its device went away (hotplug): it waits to be detached */
#define TSM_PRIV_VDEVICE_FLAGS_ALL (TSM_PRIV_VDEVICE_BOUND | TSM_PRIV_VDEVICE_CHANGING | TSM_PRIV_VDEVICE_GONE)

struct tsm_priv_hdr {
        uint32_t size;        /* of the fixed part, this header included */
        uint32_t flags;       /* 0, but TSM_PRIV_REPLY_KEPT on a REPLY */
        uint32_t type;        /* TsmPrivType */
        uint32_t cookie;      /* chosen by the asker, echoed in the reply; 0 if none comes */
        uint32_t payload_len; /* bytes after the fixed part */
        uint32_t __reserved;
};

/* How the worker before this one ended, for the new one's audit log. */
typedef enum TsmPrivWorkerEnd {
        TSM_PRIV_WORKER_FIRST = 0,        /* there was none */
        TSM_PRIV_WORKER_EXITED = 1,       /* status: its exit status */
        TSM_PRIV_WORKER_CRASHED = 2,      /* status: the signal that ended it */
        TSM_PRIV_WORKER_COMPROMISED = 3,  /* killed by the monitor for breaking a rule */
        TSM_PRIV_WORKER_UNRESPONSIVE = 4, /* killed by the monitor after it fell silent, or did not get ready in time */
        _TSM_PRIV_WORKER_END_MAX,
} TsmPrivWorkerEnd;

/*
 * HELLO's payload, if any: the settings tsmd read at start (the keys a reload does not apply), in
 * tsmd.conf syntax, NUL-terminated, as the monitor started with them. The worker takes them over
 * those of the files it starts from (LAST_GOOD), which may have been reloaded since: a worker
 * started after a reload writes its audit log and contexts' state where the monitor made them
 * the worker's and locked them, and keeps every other such key as tsmd started, as a reload
 * says. None: the files say them all.
 */
struct tsm_priv_hello {
        struct tsm_priv_hdr hdr;
        uint32_t version;        /* TSM_PRIV_VERSION */
        int32_t uapi;            /* TsmUapiVersion the kernel speaks, or -errno if none */
        uint32_t emulated;       /* 1: the emulated platform serves */
        uint32_t fdstore;        /* 1: contexts also survive a restart of tsmd itself */
        uint32_t n_sockets;      /* LISTEN_SOCKET messages that follow */
        uint32_t n_restored;     /* RESTORED_CONTEXT messages that follow the sockets */
        uint32_t previous_end;   /* TsmPrivWorkerEnd */
        uint32_t previous_status;
        uint32_t max_contexts;   /* the most the monitor holds, orphans included; more: -EMFILE */
        uint32_t last_good;      /* 1: a LAST_GOOD follows the sockets; 0: none loaded yet */
        uint64_t started_usec;   /* CLOCK_MONOTONIC at the monitor's start: tsmd's uptime, not a worker's */
};

typedef enum TsmPrivSocketKind {
        TSM_PRIV_SOCKET_ALL = 0,   /* every interface; the file mode decides who connects */
        TSM_PRIV_SOCKET_GUEST = 1, /* io.tsmd.Guest and io.tsmd.Service only */
} TsmPrivSocketKind;

struct tsm_priv_listen_socket {
        struct tsm_priv_hdr hdr;
        uint32_t kind; /* TsmPrivSocketKind */
        uint32_t __reserved;
};

/*
 * SECURITY: after a restart of the worker alone, the monitor's record of a context's vDevices
 * is the truth, not the state file the worker before wrote (and may have been made to write):
 * the new worker takes the RESTORED_VDEVICE messages as they are and attaches nothing of the
 * file's. Only a context the fd store handed back to a new tsmd (partial) may have vDevices the
 * monitor has not heard of; the worker attaches those from the file, until one has restored
 * the context (READY). The same for the previous reclaim id (a reclaim's token that stays valid
 * while the renewed one may not have reached the VMM): the monitor's, which a reclaim set
 * (RECLAIM_CONTEXT), and only as long as the file names it too (the worker drops it from the
 * file once the VMM has the new token); a partial context's is the file's, which the worker
 * tells the monitor (RESTORED_PREVIOUS).
 */
struct tsm_priv_restored_context {
        struct tsm_priv_hdr hdr;
        uint32_t context;
        uint32_t uid;
        char reclaim_id[TSM_PRIV_RECLAIM_ID_MAX];
        uint32_t n_vdevices; /* RESTORED_VDEVICE messages that follow this one */
        uint32_t partial;    /* 1: from the fd store, not restored by a worker since: the state
                              * file's other vDevices are to be attached; else 0 */
        char previous_reclaim_id[TSM_PRIV_RECLAIM_ID_MAX]; /* "" if none */
};

/* RESTORED_PREVIOUS: the previous reclaim id the state file of a partial context names (slot 0,
 * before READY), for the monitor to keep. SECURITY: a violation for any other context: the
 * monitor's record of one a worker restored is not the worker's to change but by a reclaim. */
struct tsm_priv_restored_previous {
        struct tsm_priv_hdr hdr;
        uint32_t context;
        uint32_t __reserved;
        char previous_reclaim_id[TSM_PRIV_RECLAIM_ID_MAX];
};

struct tsm_priv_restored_vdevice {
        struct tsm_priv_hdr hdr;
        uint32_t context; /* that of the RESTORED_CONTEXT before it */
        uint32_t vdevice;
        uint32_t state;   /* TSM_PRIV_VDEVICE_* */
        uint32_t __reserved;
        char pci_address[TSM_PRIV_PCI_ADDRESS_MAX];
};

/*
 * LAST_GOOD + fd: a sealed memfd holding the tsmd.conf and policy files that loaded well last
 * in the monitor, as it read them (daemon/last-good.h), for the worker to start from instead of
 * the disk, so it serves what the monitor's scope gate follows. stale: 1 if the files on disk
 * did not load as this worker was started, so these are older ones (the worker says so loudly);
 * then the payload may be the monitor's reason, a reason text as RELOAD's (none: 0 bytes).
 */
struct tsm_priv_last_good {
        struct tsm_priv_hdr hdr;
        uint32_t stale;
        uint32_t __reserved;
};

struct tsm_priv_ready {
        struct tsm_priv_hdr hdr;
};

/* STATUS's audit: whether the audit log takes records (the worker's AuditHealthState, in a
 * numbering of the channel's own), for the service manager's STATUS=. */
enum {
        TSM_PRIV_AUDIT_OK = 0,
        TSM_PRIV_AUDIT_FULL = 1,
        TSM_PRIV_AUDIT_FAILED = 2,
        _TSM_PRIV_AUDIT_MAX,
};

struct tsm_priv_status {
        struct tsm_priv_hdr hdr;
        uint32_t n_clients;
        uint32_t n_pending;
        uint32_t draining; /* 0 or 1 */
        uint32_t audit;    /* TSM_PRIV_AUDIT_* */
};

/* OPEN_CONTEXT and ADOPT_CONTEXT: a new context for a client slot (never slot 0). The uid and
 * reclaim id name it in the fd store, so the owner can reclaim it after a restart. SECURITY:
 * the id, never the token: the monitor names things others may list (fdstore.h). ADOPT_CONTEXT's
 * fd is a character device or a memfd (the worker passes no other): a close of any other kind of
 * file may wait on its file system, a client's FUSE server, for as long as it likes. */
struct tsm_priv_new_context {
        struct tsm_priv_hdr hdr;
        uint32_t slot;
        uint32_t uid;
        char reclaim_id[TSM_PRIV_RECLAIM_ID_MAX];
};

/* CLOSE_CONTEXT ends a context of slot. */
struct tsm_priv_context {
        struct tsm_priv_hdr hdr;
        uint32_t slot;
        uint32_t context;
};

/* RECLAIM_CONTEXT moves a slot-0 context to slot, and names it by reclaim_id from now on (in
 * the fd store too): the reclaim id of the new token the worker answers the VMM with, as every
 * reclaim rotates the token (README "Reclaim tokens are renewed"). The old name is taken out
 * of the fd store before the fd goes in under the new one (systemd keeps no second copy of an
 * fd it has); -EIO, changing nothing, if it cannot be. SECURITY: a reclaim id that names
 * another context is a violation, as for a new context. previous_reclaim_id is the id of the
 * token the VMM reclaimed with: the context's ("" says it too) or its previous one, else a
 * violation. Renamed, the context keeps it as its previous, which a worker restarted before the
 * VMM has the new token accepts too (RESTORED_CONTEXT). */
struct tsm_priv_reclaim_context {
        struct tsm_priv_hdr hdr;
        uint32_t slot;
        uint32_t context;
        char reclaim_id[TSM_PRIV_RECLAIM_ID_MAX];
        char previous_reclaim_id[TSM_PRIV_RECLAIM_ID_MAX];
};

/* A vDevice the monitor does not have. state is 0, or TSM_PRIV_VDEVICE_BOUND on a restore's
 * attach only (slot TSM_PRIV_SLOT_WORKER, a partial context): the state file says the kernel
 * kept it bound through a restart of tsmd. SECURITY: the monitor takes that word (for a kernel
 * TSM's device; it knows an emulated one is not bound) only to unbind the vDevice when it goes:
 * no check looks at it, so a worker claiming it can make the monitor unbind more, nothing else;
 * on a client's attach it is a violation. */
struct tsm_priv_attach_vdevice {
        struct tsm_priv_hdr hdr;
        uint32_t slot;
        uint32_t context;
        uint32_t vdevice;
        uint32_t state; /* TSM_PRIV_VDEVICE_BOUND or 0 */
        char pci_address[TSM_PRIV_PCI_ADDRESS_MAX];
};

/* DETACH, BIND, UNBIND, GET_VDEVICE_STATE: a vDevice attached to a context of slot. */
struct tsm_priv_vdevice {
        struct tsm_priv_hdr hdr;
        uint32_t slot;
        uint32_t context;
        uint32_t vdevice;
        uint32_t __reserved;
};

/* GET_DEVICE_STATE and DISCONNECT_DEVICE (tsm all zero), CONNECT_DEVICE. */
struct tsm_priv_device {
        struct tsm_priv_hdr hdr;
        char pci_address[TSM_PRIV_PCI_ADDRESS_MAX];
        char tsm[TSM_PRIV_NAME_MAX];
};

/* The scope travels by name: the monitor makes the number from the table of the backend that
 * serves the device, as everywhere else. */
struct tsm_priv_guest_request {
        struct tsm_priv_hdr hdr;
        uint32_t slot;
        uint32_t context;
        uint32_t vdevice;
        uint32_t max_response;
        uint32_t backend; /* TsmBackendType whose table the worker found the scope in */
        uint32_t __reserved;
        char scope[TSM_PRIV_NAME_MAX];
};

/* CANCEL_REQUEST: the worker no longer wants the GUEST_REQUEST or BIND_VDEVICE of slot it sent
 * with request_cookie (a policy reload took the client's grant away). If neither the emulated
 * device nor the kernel started it yet (it waits for the device's mailbox, or on the device's
 * lane), the monitor drops it and answers it -ECANCELED, TSM_PRIV_REPLY_MONITOR_OWN: that REPLY
 * is its only one (a bind's vDevice stays as the changes before it leave it). Else it runs to its end and is answered so; one answered already (the messages
 * crossed), or no request of slot, is nothing to cancel. request_cookie 0, or a reserved field
 * not zero, is a violation. */
struct tsm_priv_cancel_request {
        struct tsm_priv_hdr hdr;    /* cookie 0: not answered itself */
        uint32_t slot;
        uint32_t request_cookie;
        uint32_t __reserved[2];
};

/*
 * RELOAD, so that a reload leaves the worker and the monitor on one set of files, or both on
 * the one in force. commit 0: the monitor reads and parses tsmd.conf and the policy files it
 * names, applying nothing, and answers 0 with the sealed memfd of the very bytes it parsed (as
 * LAST_GOOD's), or -errno with nothing loaded: then value is 1 if tsmd.conf loaded and the
 * policy did not (else 0), and the payload is the monitor's reason (none: 0 bytes), as its
 * log says it ("file:line: message", "file: reason"), for the worker to answer with: the
 * worker may not be able to read the files, nor make the monitor's checks, and they may have
 * changed since. The worker applies the bytes, not the disk's, then sends commit 1: the monitor
 * applies what its last load loaded (emulated devices, scope gate, the files the next worker
 * starts from) and answers 0. A commit with no load answered 0 before it, since the worker
 * started or the last commit, is a violation. A load the worker does not commit (it could not
 * take the bytes) changes nothing.
 *
 * A reason text (tsm_priv_check_reason()): 1 to TSM_PRIV_REASON_MAX characters and a NUL, the
 * datagram's last byte; no other NUL, no control character (the monitor makes them '?' and
 * cuts a longer text to end in "...", string_shorten_printable()). The worker takes one that
 * breaks this as it takes any malformed message from the monitor: it stops trusting the
 * channel. A reason on a load answered 0 does too.
 */
struct tsm_priv_reload {
        struct tsm_priv_hdr hdr;
        uint32_t commit; /* 0 or 1 */
        uint32_t __reserved;
};

/*
 * SIGNAL_RELOAD: the monitor got SIGHUP (it reads it from a signalfd, with the kernel's siginfo),
 * and passes it on once the worker is READY, one message per SIGHUP it read: the worker reloads
 * as for io.tsmd.Service.Reload (RELOAD), and its audit record of the reload names the sender as
 * the monitor's kernel gave it: si_pid and si_uid (the sender's real uid), and the unit the
 * monitor found for that pid, read while a pidfd showed it was not reused and from a process of
 * that uid only (peer_identity_from_signal()). A pid is a hint: the sender may have exited (kill(1)
 * does at once) and its pid been reused by a process of the same uid. pid 0 with uid
 * TSM_PRIV_LATE_NONE: the kernel sent it (a terminal's hangup); pid 0 with a uid: a process in a
 * PID namespace tsmd cannot see. unit is "" where none is known, and always with pid 0. A
 * cookie other than 0, a reserved field not zero, a unit not NUL-terminated and zero after, or a
 * pid above INT32_MAX, and the worker stops trusting the channel.
 */
struct tsm_priv_signal_reload {
        struct tsm_priv_hdr hdr;    /* cookie 0: nothing answers it */
        uint32_t pid;               /* the sender's, 0: none known */
        uint32_t uid;               /* the sender's real uid; TSM_PRIV_LATE_NONE: the kernel's */
        uint32_t __reserved[2];
        char unit[TSM_PRIV_UNIT_MAX];
};

/*
 * FILES_CHANGED: the files of the set in force (tsmd.conf, the policy file, its drop-ins, those
 * added since included) whose contents on disk differ now from what the load of that set read
 * (daemon/files-on-disk.h), as the monitor, which reads them, found last. It sends one whenever
 * that list changes, one at every reload it applies (RELOAD commit, before its REPLY), and one
 * to a new worker at its READY if any differ; the last one the worker got is the truth. The
 * payload names n_changed of them, or fewer, in order: as many as fit in TSM_PRIV_PAYLOAD_MAX,
 * each a path of 1 to TSM_PRIV_PATH_MAX - 1 bytes and its NUL (a longer one is not named), the
 * last ending the datagram; no payload when none differ. A cookie other than 0, a reserved
 * field not zero, n_changed above TSM_PRIV_FILES_MAX, more paths than n_changed, or an empty,
 * too long or unterminated one, and the worker stops trusting the channel.
 */
#define TSM_PRIV_FILES_MAX 4096U /* tsmd.conf, the policy file, drop-ins loaded and added */
#define TSM_PRIV_PATH_MAX 4096U  /* PATH_MAX, its NUL included */
struct tsm_priv_files_changed {
        struct tsm_priv_hdr hdr;    /* cookie 0: nothing answers it */
        uint32_t n_changed;         /* how many differ; the payload names them, or fewer */
        uint32_t __reserved;
};

/* LATE: what the kernel did in a call whose caller was answered without it (a guest request
 * that timed out, a call whose device went or whose requester was cancelled, a bind, unbind or
 * connect whose worker ended first), or in the unbind that undid a bind the kernel did after all.
 * For the worker's audit log: it says who the call was for as far as the monitor knows, as the
 * worker that asked may be gone. The monitor keeps each (at most MONITOR_LATE_KEPT_MAX) until
 * the worker acknowledges it recorded (LATE_ACK durable), and sends those a worker that ended
 * did not acknowledge to the next one, with the seq it said it was writing the record under
 * (recorded_seq): the next worker writes it unless the record its log has at that seq is this
 * LATE's (its "lateId" is id: another worker's record may have taken the seq). What it could
 * not keep it counts, and sends the count as a LATE of op LOST, kept the same way. */
typedef enum TsmPrivLateOp {
        TSM_PRIV_LATE_GUEST_REQUEST = 1,
        TSM_PRIV_LATE_BIND = 2,
        TSM_PRIV_LATE_UNBIND = 3,
        TSM_PRIV_LATE_BIND_UNDO = 4, /* the unbind that undid an abandoned bind's success */
        TSM_PRIV_LATE_CONNECT = 5,
        TSM_PRIV_LATE_DISCONNECT = 6,
        TSM_PRIV_LATE_LOST = 7,      /* count late answers dropped; the call fields are empty */
        _TSM_PRIV_LATE_OP_MAX,
} TsmPrivLateOp;

#define TSM_PRIV_LATE_NONE UINT32_MAX /* uid, backend: not known */

struct tsm_priv_late {
        struct tsm_priv_hdr hdr;    /* cookie 0: nothing answers it */
        uint32_t op;                /* TsmPrivLateOp */
        uint32_t request_cookie;    /* the cookie of the message this worker asked with; 0 if it
                                     * was another worker's (or none) */
        uint32_t context;           /* the monitor's context id, 0: none (connect) */
        uint32_t vdevice;           /* 0: none */
        uint32_t uid;               /* the context's owner; TSM_PRIV_LATE_NONE */
        uint32_t backend;           /* TsmBackendType; TSM_PRIV_LATE_NONE */
        int32_t result;             /* the kernel's: 0 or -errno (> -4096) */
        uint32_t response_size;     /* a guest request's, 0 unless it succeeded */
        uint32_t scope_number;      /* a guest request's; 0 otherwise */
        uint32_t request_unconsumed; /* a guest request's request bytes its TSM, offered no
                                      * response buffer, did not consume (the kernel's residue);
                                      * 0 unless it succeeded with response_size 0 */
        uint64_t latency_usec;      /* since the monitor sent the call to the kernel */
        char pci_address[TSM_PRIV_PCI_ADDRESS_MAX];
        char scope[TSM_PRIV_NAME_MAX]; /* a guest request's; "" otherwise */
        char tsm[TSM_PRIV_NAME_MAX];   /* a connect's; "" otherwise */
        uint64_t id;                /* the monitor's (never 0): LATE_ACK names it */
        uint64_t recorded_seq;      /* a worker before said it wrote the record under this seq
                                     * (LATE_ACK); 0: none did */
        uint64_t count;             /* op LOST: how many; 0 otherwise */
};

/* LATE_ACK: the worker has the LATE id. Not durable: its record is being written under seq (the
 * audit log's, never 0), sent before the record can reach the disk, so that the next worker can
 * tell whether it did should this one end first. Durable: it is recorded (on disk, or counted in
 * a summary, or recorded never: seq 0), and the monitor forgets it. */
struct tsm_priv_late_ack {
        struct tsm_priv_hdr hdr;    /* cookie 0: not answered */
        uint64_t id;
        uint64_t seq;
        uint32_t durable;           /* 0 or 1 */
        uint32_t __reserved;
};

/*
 * RECORDED + payload: the cookies (uint32_t each, at least one, at most TSM_PRIV_RECORDED_MAX) of
 * answers the monitor sent with TSM_PRIV_REPLY_KEPT to this worker. The monitor keeps such an
 * answer (of a bind, unbind or guest request the device ran, and did not answer late by itself)
 * because the device acted and the worker's audit record of it is not durable yet: should the
 * worker end first, the next one records it as a LATE (request_cookie 0). late 0: their records
 * are durable (or failed the log, which says so), and the monitor forgets them; the worker sends
 * one after each group commit, with what goes out next. late 1: nobody records them (their
 * caller left before the answer came, and its record said so): the monitor sends each at once
 * as a LATE naming the cookie, recorded as one given up on. SECURITY: a cookie of an answer not
 * kept for this worker, or named twice, is a violation: a worker cannot make the monitor forget
 * what it never told it.
 */
#define TSM_PRIV_RECORDED_MAX 1024U
struct tsm_priv_recorded {
        struct tsm_priv_hdr hdr;    /* cookie 0: not answered */
        uint32_t late;              /* 0 or 1 */
        uint32_t __reserved;
};

/* REPLY's header flag (the only flag any message has): the monitor keeps this answer until
 * RECORDED names its cookie. */
#define TSM_PRIV_REPLY_KEPT (UINT32_C(1) << 0)

/* A failed reply's value: the result is the monitor's, not the backend's (see the general
 * format above). A high bit: RELOAD's failed reply says 1 in value for its own meaning. */
#define TSM_PRIV_REPLY_MONITOR_OWN (UINT32_C(1) << 31)

struct tsm_priv_reply {
        struct tsm_priv_hdr hdr;
        int32_t result;  /* 0 or -errno (see the general format above) */
        uint32_t value;  /* per request type; TSM_PRIV_REPLY_MONITOR_OWN on a failure */
};

_Static_assert(sizeof(struct tsm_priv_hdr) == 24, "no padding");
_Static_assert(sizeof(struct tsm_priv_hello) == 72, "no padding");
_Static_assert(sizeof(struct tsm_priv_listen_socket) == 32, "no padding");
_Static_assert(sizeof(struct tsm_priv_restored_context) == 120, "no padding");
_Static_assert(sizeof(struct tsm_priv_restored_previous) == 72, "no padding");
_Static_assert(sizeof(struct tsm_priv_restored_vdevice) == 56, "no padding");
_Static_assert(sizeof(struct tsm_priv_last_good) == 32, "no padding");
_Static_assert(sizeof(struct tsm_priv_ready) == 24, "no padding");
_Static_assert(sizeof(struct tsm_priv_status) == 40, "no padding");
_Static_assert(sizeof(struct tsm_priv_new_context) == 72, "no padding");
_Static_assert(sizeof(struct tsm_priv_context) == 32, "no padding");
_Static_assert(sizeof(struct tsm_priv_reclaim_context) == 112, "no padding");
_Static_assert(sizeof(struct tsm_priv_attach_vdevice) == 56, "no padding");
_Static_assert(sizeof(struct tsm_priv_vdevice) == 40, "no padding");
_Static_assert(sizeof(struct tsm_priv_device) == 56, "no padding");
_Static_assert(sizeof(struct tsm_priv_guest_request) == 64, "no padding");
_Static_assert(sizeof(struct tsm_priv_reload) == 32, "no padding");
_Static_assert(sizeof(struct tsm_priv_reply) == 32, "no padding");
_Static_assert(sizeof(struct tsm_priv_late) == 144, "no padding");
_Static_assert(sizeof(struct tsm_priv_late_ack) == 48, "no padding");
_Static_assert(sizeof(struct tsm_priv_cancel_request) == 40, "no padding");
_Static_assert(sizeof(struct tsm_priv_signal_reload) == 296, "no padding");
_Static_assert(sizeof(struct tsm_priv_files_changed) == 32, "no padding");
_Static_assert(sizeof(struct tsm_priv_recorded) == 32, "no padding");

/* Who may send a type (the other end kills a sender that breaks it). */
typedef enum TsmPrivSender {
        TSM_PRIV_FROM_MONITOR = 1 << 0,
        TSM_PRIV_FROM_WORKER = 1 << 1,
} TsmPrivSender;

typedef struct TsmPrivTypeDesc {
        const char *name;      /* "OPEN_CONTEXT", for logs */
        uint32_t size;         /* the fixed part this version sends */
        uint32_t min_size;     /* the shortest fixed part accepted */
        uint32_t sender;       /* TsmPrivSender */
        uint32_t max_payload;  /* 0: none allowed */
        uint32_t n_fds;        /* fds that must come with it (exactly) */
} TsmPrivTypeDesc;

/* The table for a type, or NULL if the type is unknown. */
const TsmPrivTypeDesc *tsm_priv_type_desc(uint32_t type);
const char *tsm_priv_type_to_string(uint32_t type);

/* Where a message lies in its datagram. */
typedef struct TsmPrivSpan {
        size_t offset, len;
} TsmPrivSpan;

/*
 * Splits a datagram of len bytes that came without fds into its messages (see the top): fills
 * ret with each one's span, in order, and returns how many (at least one). Only the lengths are
 * read, and a message ends early only where the bytes up to the next aligned offset are zero
 * and a header follows: otherwise (or in the last slot) it takes the rest of the datagram, and
 * tsm_priv_check() refuses it for its length. So a datagram packed against the rules is a
 * message that breaks them.
 */
size_t tsm_priv_unpack(const void *buf, size_t len, TsmPrivSpan ret[static TSM_PRIV_PACK_MAX]);

/*
 * Checks one received message of len bytes against the wire rules for a message from sender,
 * with n_fds attached. On success, copies the fixed part into ret (of ret_size bytes, the
 * struct for the type: zero-extended when the sender's is shorter) and points *ret_payload
 * into buf. On failure returns -EBADMSG (shape), -E2BIG (non-zero bytes past what we know),
 * -EPROTO (wrong direction, fds or payload), -EOPNOTSUPP (unknown type), with a static
 * description in *ret_reason.
 */
int tsm_priv_check(const void *buf, size_t len, size_t n_fds, TsmPrivSender sender, void *ret,
                   size_t ret_size, const void **ret_payload, const char **ret_reason);

/* True if the string field is NUL-terminated and zero after the NUL. */
bool tsm_priv_check_string(const char *field, size_t size);

/* True if the payload (len bytes) is a reason text as the monitor sends it (RELOAD). */
bool tsm_priv_check_reason(const void *payload, size_t len);

/* A reason text of text into buf, as the monitor sends it: cut, control characters made '?'.
 * Returns its payload length (the NUL included), 0 if text is NULL or empty. */
size_t tsm_priv_reason_make(const char *text, char buf[static TSM_PRIV_REASON_MAX + 1]);

/* Fills the header of a message of type; payload_len for the bytes that will follow. */
void tsm_priv_init(void *msg, uint32_t type, uint32_t cookie, uint32_t payload_len);

/*
 * Sends one message: the fixed part, then payload (may be NULL if payload_len is 0), with the
 * fd if fd >= 0. Blocks only as long as the socket buffer is full (the channel is local).
 */
int tsm_priv_send(int channel, const void *msg, const void *payload, size_t payload_len, int fd);

/*
 * Receives one datagram into buf (TSM_PRIV_DATAGRAM_MAX bytes) with up to max_fds fds (closed
 * and reported as -EPROTO if more arrive). Returns the length, 0 on EOF, -EAGAIN if nothing is
 * there, -EMSGSIZE if the datagram was truncated (too long).
 */
ssize_t tsm_priv_receive(int channel, void *buf, int *ret_fds, size_t max_fds, size_t *ret_n_fds);

/* Reads the channel a message at a time, for who waits for one (the loop's batches go through
 * an inbox, tsm-priv-batch.h): a datagram without fds may carry several. */
typedef struct TsmPrivReader {
        _Alignas(TSM_PRIV_PACK_ALIGN) uint8_t datagram[TSM_PRIV_DATAGRAM_MAX];
        TsmPrivSpan spans[TSM_PRIV_PACK_MAX];
        size_t n, next; /* the last datagram's messages, and the next one to hand out */
} TsmPrivReader;

/* tsm_priv_receive() for the next message: the rest of the last datagram first, then the
 * socket's next. *ret_msg points into the reader, valid until the next datagram is read. */
ssize_t tsm_priv_reader_receive(TsmPrivReader *r, int channel, const uint8_t **ret_msg, int *ret_fds,
                                size_t max_fds, size_t *ret_n_fds);
/* Whether a message of the last datagram is still to be handed out (the socket may be empty). */
bool tsm_priv_reader_has_message(const TsmPrivReader *r);

/* Room for more fds than any message carries, so that extra ones show (and are closed). */
typedef union TsmPrivControl {
        struct cmsghdr cmsg;
        uint8_t buf[CMSG_SPACE(sizeof(int) * 4)];
} TsmPrivControl;

/* The receive rules of tsm_priv_receive() applied to a datagram of n bytes that recvmsg() (or
 * recvmmsg()) filled into mh: takes up to max_fds fds, returns n or the error. With ret_fds_lost,
 * a datagram whose fds came and none was taken (the receiver gave them no room, or had no fd
 * left: the kernel drops what it cannot install, unopened) is returned as n bytes with no fd and
 * *ret_fds_lost true, for the receiver to answer as its own failure: not -EPROTO, the sender's
 * (whether it sent one fd or more cannot be told then). */
ssize_t tsm_priv_received(struct msghdr *mh, ssize_t n, int *ret_fds, size_t max_fds, size_t *ret_n_fds,
                          bool *ret_fds_lost);
