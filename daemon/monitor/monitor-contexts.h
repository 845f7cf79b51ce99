/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The monitor's own table of iommufd contexts: the authority the dispatch table checks every
 * worker request against. Each context has an id the monitor chose (from 1, never reused while
 * the monitor runs), the monitor's reference to the iommufd, the worker client slot that holds
 * it (TSM_PRIV_SLOT_WORKER, 0, for nobody: restored, waiting to be reclaimed), its owner's uid
 * and reclaim id (together they name the fd in systemd's fd store; the monitor never has the
 * reclaim token, only this digest of it, fdstore.h, but in an old-style name systemd handed back
 * and would not take out, legacy_name), and the vDevices attached to it.
 * Runs in: monitor.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "fdstore.h"
#include "macro.h"
#include "tsm-priv-batch.h"
#include "tsm-priv.h"

typedef struct TsmPlatform TsmPlatform;

typedef struct MonitorVDevice {
        uint32_t id; /* the VMM's iommufd vDevice id, never 0 */
        char pci_address[TSM_PRIV_PCI_ADDRESS_MAX]; /* as the platform spells it */
        uint64_t serial; /* tells this attachment from a later one under the same id */
        bool bound;      /* as the TSM last answered */
        /* Binds and unbinds sent to the TSM and not answered yet (they run on the device's
         * lane, in order); bound_next is what the last of them will make it. */
        unsigned n_changes;
        bool bound_next;
        /* Its device went away. A device that comes back under the address is another one: a
         * gone vDevice neither holds nor operates it, and waits to be detached. */
        bool gone;
        /* The kernel ended its binding outside tsmd (monitor_contexts_device_unbound()), and no
         * bind or unbind was sent for it since: its guest requests are refused as the kernel
         * refuses a TDI not bound (-ENXIO), without asking it. */
        bool unbound_outside;
} MonitorVDevice;

typedef struct MonitorContext {
        uint32_t id;
        int fd;
        uint32_t slot;
        uid_t uid;
        char reclaim_id[RECLAIM_ID_LEN + 1];
        /* The fd is in systemd's fd store: under legacy_name if set, else in a carrier if shared,
         * else under uid and reclaim_id. */
        bool stored;
        /* Stored in a carrier of its own (fdstore.h, Shared): another context holds its file
         * description, and systemd keeps one copy of that. Under shared_from too if that is set:
         * the id it was renamed from, so that a start finding both keeps the old one. */
        bool shared;
        char shared_from[RECLAIM_ID_LEN + 1];
        /* Stored only in its rename's carrier ("ctxid.<uid>.<reclaim_id>.<carried_from>"): the
         * fd store would not take it under its new name. "" if not. */
        char carried_from[RECLAIM_ID_LEN + 1];
        /* Restored under the name a tsmd before this one gave it ("ctx.<uid>.<token>"), and
         * systemd did not take it out of the store: the fd is stored under that name still (it
         * drops a second copy of an fd it holds), so that name is the one to remove when the
         * context ends, and the next start tries the rename again. NULL once renamed. */
        char *legacy_name;
        /* The reclaim id of the token it was reclaimed with last, renewed since (RECLAIM_CONTEXT),
         * or the one a partial context's state file names (RESTORED_PREVIOUS); "" if none. */
        char previous_reclaim_id[RECLAIM_ID_LEN + 1];
        /* Handed back by the fd store, and no worker has restored it since (READY): it may have
         * vDevices only the state file knows of. Else vdevices are all it has. */
        bool partial;
        MonitorVDevice *vdevices;
        size_t n_vdevices, allocated_vdevices;
        uint64_t next_serial;
        TAILQ_ENTRY(MonitorContext) entry;
} MonitorContext;

typedef struct MonitorContexts MonitorContexts;

/*
 * SECURITY: the fds the monitor keeps out of reach of contexts, so that whatever a worker made
 * it hold, it can still start the next one (which releases the orphans nobody reclaims). A
 * monitor out of fds could not: no socketpair() for the channel, no room for the child's dups
 * (it exits 10), and no worker is left to free anything. What it needs beside its contexts:
 *   - its own, always open: stdio, the worker's binary, the event loop's epoll and signal pipe,
 *     the kernel lanes' eventfd, the uevent socket, the listening sockets, the channel, the
 *     journal's socket, the sealed memfd of the files in force (10 measured on the emulated
 *     platform with two listening sockets, a dozen on the kernel's); room for more sockets;
 *   - for a moment: a worker's start (socketpair, the child's two dups above fd 10, the config,
 *     policy file, drop-in directory and file, and worker directories it rereads, the memfd of
 *     what they loaded; at start, the set kept in the fd store), the notification and fd store
 *     sockets, a rename's carrier pair, an OPEN_CONTEXT's second fd,
 *     a reclaimed copy;
 *   - a batch of datagrams from the worker, each with the fd of an ADOPT_CONTEXT: the kernel
 *     installs them before any handler can refuse one, and truncates (a violation) what does
 *     not fit;
 *   - the guest requests in flight, each holding a duplicate of its iommufd on the kernel's
 *     TSMs (kernel-lanes.c).
 * Binds and unbinds on their way hold a duplicate each too; they are bounded per vDevice
 * (MONITOR_CHANGES_PER_VDEVICE_MAX) and a device has one vDevice, so they scale with the
 * devices, not the contexts, and end when the kernel answers.
 */
#define MONITOR_FDS_OWN 32U
#define MONITOR_FDS_TRANSIENT 16U
#define MONITOR_FDS_RESERVED (MONITOR_FDS_OWN + MONITOR_FDS_TRANSIENT + TSM_PRIV_BATCH_MAX + TSM_PRIV_REQUESTS_MAX)

/* The most contexts a monitor whose RLIMIT_NOFILE soft limit is nofile (RLIM_INFINITY: none)
 * may hold: configured, lowered to what the limit leaves beside MONITOR_FDS_RESERVED (0 if
 * nothing). */
size_t monitor_contexts_max_for_nofile(uint64_t nofile, size_t configured);

/* Holds at most SIZE_MAX contexts until told otherwise. */
int monitor_contexts_new(MonitorContexts **ret);
/*
 * Closes every context's fd. With preserve (stopping under a service manager that keeps the
 * fds for the next tsmd), the fd store keeps them; without, they are removed from it, and
 * the kernel tears the contexts down with the last fd. Bindings are not undone here: the
 * kernel ends them with the context, and the emulated devices end with the process.
 */
MonitorContexts *monitor_contexts_free(MonitorContexts *c, bool preserve);
/* Scope cleanup preserves: an error path must not end the contexts of running VMs. */
static inline MonitorContexts *monitor_contexts_free_preserve(MonitorContexts *c) {
        return monitor_contexts_free(c, true);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(MonitorContexts *, monitor_contexts_free_preserve);

/* The most contexts the table holds: _add() and _restore() refuse more. Lowering it below the
 * current size ends none. */
void monitor_contexts_set_max(MonitorContexts *c, size_t max);
size_t monitor_contexts_get_max(const MonitorContexts *c);
bool monitor_contexts_is_full(const MonitorContexts *c);

/*
 * Adds a context for slot, taking fd (closed on failure too). When the fd store is available
 * the fd is stored there under uid and reclaim_id, in a carrier of its own if another context
 * holds its file description (an AdoptContext of the same iommufd; or if the kernel cannot tell:
 * fdstore.h, Shared), as systemd keeps one copy of a file description. A failure to store is
 * logged, not fatal: the context then just does not survive a restart of tsmd. Returns 0 and
 * the new id in *ret_id (may be NULL); -EINVAL for a bad reclaim id or uid, -EEXIST if the
 * reclaim id names a context already, -EMFILE if the table is full, -ENOSPC once ids run out,
 * -ENOMEM.
 */
int monitor_contexts_add(MonitorContexts *c, int fd, uint32_t slot, uid_t uid, const char *reclaim_id,
                         uint32_t *ret_id);
/* Adds a context handed back by the service manager under fdname (fdstore.h), taking fd: at
 * slot 0, with no vDevices, partial. -EINVAL if the name is not one of ours, else as _add(); one
 * refused as the table is full is taken out of the fd store too, or every start would hand it back,
 * and so is one under a legacy name refused as its context is known already (under its new name).
 * One under a legacy name (its token) has the old name taken out of the store, then is stored
 * again under its reclaim id; if the old name cannot be taken out, it stays stored under that name
 * (legacy_name), not under both. */
/* A rename's carrier (fdstore.h) is kept for monitor_contexts_restore_done(): 1, *ret_id 0. A
 * shared context's carrier is restored as the context it carries (-EBADMSG, and out of the store,
 * if it carries none), shared still. */
int monitor_contexts_restore(MonitorContexts *c, int fd, const char *fdname, uint32_t *ret_id);
/* Once every fd the service manager handed back is in: settles the renames a restart cut off.
 * A shared context's renamed entry is taken out, and its context ended, where the context came
 * back under the id it was renamed from too. A carrier is taken out of the store where its
 * context came back under either of its names; else its context is restored (as by _restore())
 * under the new name, stored under it, and then the carrier is taken out. */
void monitor_contexts_restore_done(MonitorContexts *c);

/* Names ctx by reclaim_id from now on (a reclaim renewed its token), in the fd store too if it
 * is stored, so that it is there under one name whenever tsmd dies (fdstore.h): a carrier goes
 * in, then the old name goes out, the fd goes in under the new one, and the carrier goes out.
 * One whose file description another context holds (or where the kernel cannot tell) goes in
 * under the new name first, in a carrier of its own naming the old id, then the old name goes
 * out (fdstore.h, Shared). -EINVAL for a bad reclaim id, -EEXIST if it names a context already;
 * what the notification gave (changing nothing) if the carrier cannot be stored or the old name
 * taken out. A failure to store under the new name is logged: the context survives restarts of
 * the worker then, not of tsmd. */
int monitor_contexts_rename(MonitorContexts *c, MonitorContext *ctx, const char *reclaim_id);

/* Borrowed, valid until the context is removed; NULL if there is none. */
MonitorContext *monitor_contexts_get(MonitorContexts *c, uint32_t id);
MonitorContext *monitor_contexts_find_reclaim_id(MonitorContexts *c, const char *reclaim_id);
/* The vDevice holding the physical device at pci_address (as the platform spells it), in any
 * context; NULL if none. Gone vDevices hold nothing. */
MonitorVDevice *monitor_contexts_find_device(MonitorContexts *c, const char *pci_address,
                                             MonitorContext **ret_ctx);

/* Whether a vDevice holds the device at pci_address, and (*ret_bound) whether it is bound with no
 * bind or unbind on its way; an EmuStateHeld (emu-state.h), userdata the MonitorContexts. */
bool monitor_contexts_holds_device(const char *pci_address, bool *ret_bound, void *userdata);

/* Ends a context: unbinds its bound vDevices (not the gone ones) through the platform, takes it
 * out of the fd store, closes the fd. The unbinds are queued on their devices' lanes after
 * what runs there, each with its own reference to the iommufd, and their results logged. -ENOENT
 * if there is no such context. */
int monitor_contexts_remove(MonitorContexts *c, TsmPlatform *p, uint32_t id);

/* The device at pci_address went away (hotplug, a reload of the emulated devices): every vDevice
 * on it is gone, and no longer bound. */
void monitor_contexts_device_gone(MonitorContexts *c, const char *pci_address);
/* The kernel has no TDI of the device at pci_address bound any more (TsmPlatformDeviceUnbound):
 * a vDevice on it that reads bound, with no bind or unbind on its way, lost its binding outside
 * tsmd: it is unbound now (unbound_outside), and logged so. */
void monitor_contexts_device_unbound(MonitorContexts *c, const char *pci_address);

/* The worker died: nobody holds any context now (every slot becomes 0). */
void monitor_contexts_orphan_all(MonitorContexts *c);

size_t monitor_contexts_size(const MonitorContexts *c);
/* In order of ids: the first context if prev is NULL, else the one after prev. */
MonitorContext *monitor_contexts_next(MonitorContexts *c, MonitorContext *prev);
#define MONITOR_CONTEXTS_FOREACH(ctx, c)                                                           \
        for ((ctx) = monitor_contexts_next((c), NULL); (ctx); (ctx) = monitor_contexts_next((c), (ctx)))

MonitorVDevice *monitor_context_find_vdevice(MonitorContext *ctx, uint32_t id);
/* Records a vDevice (unbound). -EINVAL for id 0 or an address that does not fit, -EEXIST if
 * the id is attached already, -ENOMEM. The pointer is valid until the next change of ctx. */
int monitor_context_add_vdevice(MonitorContext *ctx, uint32_t id, const char *pci_address,
                                MonitorVDevice **ret);
/* Whether v is bound once the binds and unbinds sent for it are done (if they succeed). */
bool monitor_vdevice_bound_eventually(const MonitorVDevice *v);
/* Unbinds v through the platform if it is, or is being, bound and not gone (asynchronously, as
 * for monitor_contexts_remove()), then forgets it. */
void monitor_context_remove_vdevice(MonitorContext *ctx, TsmPlatform *p, MonitorVDevice *v);
