/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest: what one VMM connection owns (iommufd contexts, their vDevices, bindings,
 * requests in flight, its event subscription) and the methods acting on it. Ownership is
 * per connection: handles are looked up in the caller's own tables only, so no client can
 * name another's objects, and everything is released when the connection goes.
 * Runs in: worker.
 */
#pragma once

#include "manager.h"
#include "tsm-priv.h"

typedef struct GuestClient GuestClient;

int guest_methods_register(Manager *m);

/* Connection lifecycle, called by the manager. */
int guest_client_new(Manager *m, VarlinkConn *conn, GuestClient **ret);
/* Releases in the right order: requests, bindings, vDevices, contexts. */
GuestClient *guest_client_free(GuestClient *c);

/* A reload put m->policy in the place of old: each client keeps of its groups those the new one
 * asks about, read again from its socket where it names others. Before anything asks the new
 * policy about a client. */
void guest_policy_changed(Manager *m, const Policy *old);

/* Where contexts' state files live (ContextStateDirectory=). */
const char *guest_state_dir(const Manager *m);

/* Creates what the guest layer needs in the manager (timers). */
int guest_setup(Manager *m);

/* A context the monitor kept from before (a restart of the worker or of tsmd), with the
 * rc->n_vdevices vDevices the monitor has for it: rebuilt as an orphan that its owner can
 * reclaim until the reclaim timeout. */
int guest_restore_context(Manager *m, const struct tsm_priv_restored_context *rc,
                          const struct tsm_priv_restored_vdevice *vdevices);
/* After the last guest_restore_context(): removes the state files of contexts that are gone. */
void guest_restore_done(Manager *m);
/* Releases (or, when preserving for a restart, just closes) unreclaimed contexts. */
void guest_orphans_free(Manager *m);
/* The contexts, orphans included, whose state file is behind what they have: a save that failed
 * is tried again (guest-save.c). For GetStatus, told of each change (service_status_changed()). */
size_t guest_n_contexts_owing_save(const Manager *m);

/* A TDISP state's name in the IDLs' TdiState (io.tsmd.Guest's, and io.tsmd.Admin's Device
 * state, the one spelling); NULL for one out of range. */
const char *guest_tdi_state_to_string(int state);

/* For io.tsmd.Admin: walking clients and what they hold, and the contexts that wait to be
 * reclaimed after a restart (client NULL, context 0). */
typedef struct GuestVDeviceInfo {
        const GuestClient *client;
        uid_t uid; /* the owner's */
        uint64_t context;
        uint32_t vdevice_id;
        const char *pci_address;
        bool bound;
        bool changing; /* a Bind or Unbind of it awaits the TSM */
        bool gone;
} GuestVDeviceInfo;
typedef void (*GuestVDeviceFunc)(const GuestVDeviceInfo *v, void *userdata);
void guest_foreach_vdevice(Manager *m, GuestVDeviceFunc f, void *userdata);
GuestClient *guest_client_next(Manager *m, GuestClient *prev);
void guest_client_get_stats(const GuestClient *c, unsigned *ret_contexts, unsigned *ret_vdevices,
                            uint64_t *ret_calls);
/* Whether closing its connection would lose something: a context (and its vDevices), the
 * WatchEvents subscription, a request or change in flight. */
bool guest_client_holds_state(const GuestClient *c);

/* The identity taken when the connection was accepted. */
const struct PeerIdentity *guest_client_get_identity(const GuestClient *c);
/* The Varlink server refuses a call of the client before any method runs: see guest_op_refused(). */
void guest_client_refused(GuestClient *c, VarlinkCall *call, const char *error);

/* A device vanished: fail what used it and tell subscribers. */
void guest_device_gone(Manager *m, const char *pci_address);
/* The kernel ended the binding of a device outside tsmd (TsmPlatformDeviceUnbound): its bound
 * vDevices with no Bind or Unbind on their way are unbound now, recorded so, and subscribers
 * told ("device-unbound"). */
void guest_device_unbound(Manager *m, const char *pci_address);

/* Records what the kernel did in a call given up on, as the monitor tells it (LATE): one record
 * each up to RefusalRecordsPerUid= per uid in each RefusalIntervalSec= (a budget of their own,
 * audit-budget.h), the rest counted in summaries; none that a worker before wrote (the record at
 * the seq it said is in the files and has the LATE's id, read back in a query thread); or the count of those the monitor dropped (LOST). Tells the monitor (LATE_ACK) the
 * seq before the record can reach the disk, and when it is recorded; one whose record cannot be
 * queued it keeps, unacknowledged, to try again. guest-late.c */
void guest_audit_late(Manager *m, const struct tsm_priv_late *late);
/* Tries again to record the late answers whose records the audit log did not take (not
 * acknowledged: the monitor keeps them): after a reopen of the log worked, and before the next
 * LATE. guest_late_free_unrecorded() drops this worker's copies (the monitor keeps them). */
void guest_late_retry(Manager *m);
void guest_late_free_unrecorded(Manager *m);
/* The record of the call this worker sent the monitor with cookie has seq, and its result was an
 * error: a late answer to it names it (the latest MANAGER_LATE_ORIGINS only). seq 0: the record is
 * held for a pending reopen of the log, and remembered again once numbered; a late answer that
 * comes meanwhile waits for its seq. */
void guest_late_remember(Manager *m, uint32_t cookie, uint64_t seq);
