/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * io.tsmd.Guest.WatchEvents and what it hears of: a device gone, or a binding the kernel ended
 * outside tsmd, told to every watch of the process that owns the vDevice. Runs in: worker.
 */

#include <sys/queue.h>

#include "audit-log.h"
#include "guest-internal.h"
#include "json-util.h"
#include "log.h"
#include "peer-identity.h"
#include "tsm-platform.h"

/* Events go to every subscription of the process that owns the device: a VMM watches on a
 * connection of its own, since a "more" call keeps its connection busy until the end.
 * SECURITY: only to a process provably the owner's; where nothing proves it (a peer in a PID
 * namespace we cannot see, which SO_PEERCRED gives pid 0, on a kernel without pidfs), the
 * owner's own connection only, not every process of its uid. */
static bool same_process(const GuestClient *a, const GuestClient *b) {
        return a == b || peer_identity_same_process(&a->identity, &b->identity);
}

/* Each watch keeps the count of its process's contexts, moved here as they come and go, rather
 * than counted when asked: guest_client_holds_state() is asked of every idle connection when
 * tsmd is full, and a pass over all clients for each would be a newcomer's to multiply. */
void guest_client_contexts_changed(GuestClient *c, long delta) {
        GuestClient *w;

        LIST_FOREACH(w, &c->manager->guest_clients, entry)
                if (w->watch && same_process(w, c))
                        w->watched_contexts += delta;
}

int guest_vl_watch_events(VarlinkCall *call, json_object *p, void *userdata) {
        GuestClient *c = guest_client_of(call), *o;
        json_object *first = json_object_new_object();
        int r;

        if (!first || json_object_add_null(first, "event") < 0) {
                json_object_put(first);
                return -ENOMEM;
        }
        varlink_call_unref(c->watch);
        c->watch = varlink_call_ref(call);
        c->watched_contexts = 0;
        LIST_FOREACH(o, &c->manager->guest_clients, entry)
                if (same_process(c, o))
                        c->watched_contexts += o->n_contexts;
        r = varlink_call_notify(call, first);
        if (r < 0)
                c->watch = varlink_call_unref(c->watch);
        return r;
}

static int event_reply_new(const char *kind, const GuestContext *ctx, const GuestVDevice *v, json_object **ret) {
        _cleanup_(json_object_putp) json_object *ev = json_object_new_object(), *reply = NULL;

        if (!ev || json_object_add(ev, "kind", json_object_new_string(kind)) < 0 ||
            json_object_add(ev, "context", json_object_new_int64((int64_t) ctx->handle)) < 0 ||
            json_object_add(ev, "vdeviceId", json_object_new_int64(v->id)) < 0 ||
            json_object_add(ev, "pciAddress", json_object_new_string(v->pci_address)) < 0 ||
            json_object_add_null(ev, "state") < 0)
                return -ENOMEM;
        reply = json_object_new_object();
        if (!reply || json_object_add(reply, "event", TAKE_PTR(ev)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(reply);
        return 0;
}

static void notify_event(Manager *m, GuestClient *owner, const char *kind, const GuestContext *ctx,
                         const GuestVDevice *v) {
        GuestClient *w;

        LIST_FOREACH(w, &m->guest_clients, entry) {
                json_object *reply;
                int r;

                if (!w->watch || !same_process(w, owner))
                        continue;
                r = event_reply_new(kind, ctx, v, &reply);
                if (r < 0)
                        /* A watcher that would miss an event is told instead: its call ends. */
                        (void) varlink_call_error_errno(w->watch, r);
                else if (varlink_call_notify(w->watch, reply) >= 0)
                        continue;
                w->watch = varlink_call_unref(w->watch); /* its call is over */
        }
}

/* What happened to a vDevice on pci_address; true if it changed it. */
typedef bool (*VDeviceChange)(Manager *m, GuestContext *ctx, GuestVDevice *v, const char *pci_address);

/* change on every vDevice of every context: a connected client's, whose watchers hear kind of
 * it, and one waiting to be reclaimed, whose VMM finds it so once it reclaims it. */
static void change_vdevices(Manager *m, const char *pci_address, VDeviceChange change, const char *kind) {
        GuestClient *c;

        LIST_FOREACH(c, &m->guest_clients, entry)
                for (size_t i = 0; i < c->n_contexts; i++)
                        for (size_t j = 0; j < c->contexts[i]->n_vdevices; j++)
                                if (change(m, c->contexts[i], &c->contexts[i]->vdevices[j], pci_address))
                                        notify_event(m, c, kind, c->contexts[i], &c->contexts[i]->vdevices[j]);
        for (size_t i = 0; i < m->n_orphans; i++)
                for (size_t j = 0; j < m->orphans[i]->n_vdevices; j++)
                        (void) change(m, m->orphans[i], &m->orphans[i]->vdevices[j], pci_address);
}

/* A vDevice whose device went: it holds nothing now, only a detach is left to it (DeviceGone). */
static bool vdevice_gone(Manager *m, GuestContext *ctx, GuestVDevice *v, const char *pci_address) {
        if (v->gone || !streq(v->pci_address, pci_address))
                return false;
        v->gone = true;
        v->bound = false;
        return true;
}

void guest_device_gone(Manager *m, const char *pci_address) {
        change_vdevices(m, pci_address, vdevice_gone, "device-removed");
}

static void on_unbound_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        if (error < 0)
                log_error_errno(error, "Audit record of a binding ended outside tsmd failed: %m");
}

/* A bound vDevice whose binding the kernel ended, tsmd not asked (SYSFS.md, tsm/bound): unbound
 * now, as the kernel has it, and recorded ("unbound-outside"). Not one with a Bind or Unbind on
 * its way, whose answer says what it is: the scan may have seen that change. */
static bool vdevice_unbound(Manager *m, GuestContext *ctx, GuestVDevice *v, const char *pci_address) {
        AuditRecord rec = AUDIT_RECORD_INIT;
        TsmDeviceInfo info;
        int r;

        if (v->gone || !v->bound || v->changing || !streq(v->pci_address, pci_address))
                return false;
        v->bound = false;
        /* Else a restart would take it for bound, and its VMM would see it so. */
        (void) guest_context_persist(m, ctx); /* owed if it fails */

        rec.event = audit_event_to_string(AUDIT_EVENT_UNBOUND_OUTSIDE);
        rec.uid = ctx->uid;
        rec.gid = ctx->gid;
        rec.pid = ctx->pid;
        rec.context_id = ctx->handle > 0 ? ctx->handle : AUDIT_U64_NONE;
        rec.vdevice_id = v->id;
        rec.pci = v->pci_address;
        if (tsm_platform_get_device(m->platform, v->pci_address, &info) >= 0)
                rec.backend = tsm_backend_type_to_string(info.backend);
        rec.result = "ok";
        /* SECURITY: it happened: kept while the log cannot take it, as a release is, else the log
         * would show the device bound still. */
        r = audit_log_record_owed_kept(m->audit, &rec, on_unbound_recorded, NULL, NULL, NULL);
        if (r < 0)
                on_unbound_recorded(m->audit, 0, r, NULL);
        return true;
}

void guest_device_unbound(Manager *m, const char *pci_address) {
        change_vdevices(m, pci_address, vdevice_unbound, "device-unbound");
}
