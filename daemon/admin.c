/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* io.tsmd.Admin: backends, devices, clients, audit query and follow, counters. Every call is
 * checked against the policy's administrators and audited. Runs in: worker. */

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>

#include "admin.h"
#include "backend.h"
#include "guest.h"
#include "json-util.h"
#include "log.h"
#include "peer-identity.h"
#include "policy.h"
#include "reply-bound.h"
#include "tdisp.h"
#include "tsm-platform.h"
#include "varlink-errors.h"
#include "varlink-service.h"

bool manager_is_admin(Manager *m, VarlinkConn *conn) {
        GuestClient *c = varlink_conn_get_userdata(conn);

        return c && policy_is_admin(m->policy, guest_client_get_identity(c));
}

static const char *uapi_name(Manager *m, bool emulated) {
        TsmUapiVersion v;

        if (emulated)
                return "emulated";
        if (tsm_platform_get_uapi(m->platform, &v) < 0)
                return "none";
        return tsm_uapi_version_to_string(v) ?: "none";
}

static int vl_list_backends(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        Inventory *inv = tsm_platform_get_inventory(m->platform);
        EmuPlatform *emu = tsm_platform_get_emulated(m->platform);
        _cleanup_(json_object_putp) json_object *a = json_object_new_array(), *reply = NULL;

        if (!a)
                return -ENOMEM;
        for (size_t i = 0; i < inventory_n_tsms(inv); i++) {
                const InventoryTsm *t = inventory_tsm_at(inv, i);
                json_object *o = json_object_new_object();
                unsigned n = 0;

                for (size_t j = 0; j < inventory_n_devices(inv); j++) {
                        const InventoryDevice *d = inventory_device_at(inv, j);
                        if (d->connected_tsm && streq(d->connected_tsm, t->name))
                                n++;
                }
                if (!o || json_object_add(o, "tsm", json_object_new_string(t->name)) < 0 ||
                    json_object_add_string_or_null(o, "type", tsm_backend_type_to_string(t->type)) < 0 ||
                    json_object_add_string_or_null(o, "parentDriver", t->parent_driver) < 0 ||
                    json_object_add(o, "uapi", json_object_new_string(uapi_name(m, false))) < 0 ||
                    json_object_add(o, "devices", json_object_new_int(n)) < 0 || json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }
        if (emu) {
                json_object *o = json_object_new_object();

                if (!o || json_object_add(o, "tsm", json_object_new_string(EMULATED_TSM_NAME)) < 0 ||
                    json_object_add(o, "type", json_object_new_string("emulated")) < 0 ||
                    json_object_add_null(o, "parentDriver") < 0 ||
                    json_object_add(o, "uapi", json_object_new_string("emulated")) < 0 ||
                    json_object_add(o, "devices", json_object_new_int((int) emu_platform_get_n_devices(emu))) < 0 ||
                    json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }

        reply = json_object_new_object();
        if (!reply || json_object_add(reply, "platform", json_object_new_string(emu ? "emulated" : "kernel")) < 0 ||
            json_object_add(reply, "backends", TAKE_PTR(a)) < 0)
                return -ENOMEM;
        return varlink_call_reply(call, TAKE_PTR(reply));
}

typedef struct OwnerLookup {
        const char *pci_address;
        json_object *owner; /* NULL: none (a null "owner") */
        int error;
} OwnerLookup;

static void find_owner(const GuestVDeviceInfo *v, void *userdata) {
        OwnerLookup *l = userdata;
        const PeerIdentity *id = v->client ? guest_client_get_identity(v->client) : NULL;
        json_object *o;

        if (l->owner || l->error < 0 || v->gone || !streq(v->pci_address, l->pci_address))
                return;
        o = json_object_new_object();
        if (!o || json_object_add(o, "uid", json_object_new_int64(v->uid)) < 0 ||
            json_object_add(o, "pid", json_object_new_int64(id ? id->pid : 0)) < 0 ||
            json_object_add_string_or_null(o, "unit", id ? id->unit : NULL) < 0 ||
            json_object_add(o, "context", json_object_new_int64((int64_t) v->context)) < 0 ||
            json_object_add(o, "vdeviceId", json_object_new_int64(v->vdevice_id)) < 0 ||
            json_object_add(o, "bound", json_object_new_boolean(v->bound)) < 0 ||
            json_object_add(o, "changing", json_object_new_boolean(v->changing)) < 0 ||
            json_object_add(o, "reclaimable", json_object_new_boolean(!v->client)) < 0) {
                json_object_put(o);
                l->error = -ENOMEM; /* not to be told as no owner */
                return;
        }
        l->owner = o;
}

static int add_device(Manager *m, json_object *a, const char *address, const char *dsm, const char *tsm,
                      const char *backend, const char *state) {
        OwnerLookup l = { .pci_address = address };
        json_object *o = json_object_new_object();

        guest_foreach_vdevice(m, find_owner, &l);
        if (!o || json_object_add(o, "pciAddress", json_object_new_string(address)) < 0 ||
            json_object_add_string_or_null(o, "dsm", dsm) < 0 ||
            json_object_add_string_or_null(o, "tsm", tsm) < 0 ||
            json_object_add_string_or_null(o, "backend", backend) < 0 ||
            json_object_add_string_or_null(o, "state", state) < 0 ||
            l.error < 0 ||
            (l.owner ? json_object_add(o, "owner", TAKE_PTR(l.owner)) : json_object_add_null(o, "owner")) < 0 ||
            json_object_array_add(a, o) < 0) {
                json_object_put(o);
                json_object_put(l.owner);
                return -ENOMEM;
        }
        return 0;
}

static int vl_list_devices(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        Inventory *inv = tsm_platform_get_inventory(m->platform);
        EmuPlatform *emu = tsm_platform_get_emulated(m->platform);
        _cleanup_(json_object_putp) json_object *a = json_object_new_array();
        json_object *reply;
        int r;

        if (!a)
                return -ENOMEM;
        for (size_t i = 0; emu && i < emu_platform_get_n_devices(emu); i++) {
                EmuDevice *d = emu_platform_get_device(emu, i);

                int state;

                /* The catalogue is ours; the device's state is the monitor's. */
                if (priv_call_get_device_state(m->channel, emu_device_get_address(d), &state) < 0)
                        state = -1;
                r = add_device(m, a, emu_device_get_address(d), NULL, EMULATED_TSM_NAME, "emulated",
                               guest_tdi_state_to_string(state));
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < inventory_n_devices(inv); i++) {
                const InventoryDevice *d = inventory_device_at(inv, i);
                const InventoryTsm *t;

                if (!d->tdisp_capable)
                        continue;
                t = inventory_device_get_tsm(inv, d);
                r = add_device(m, a, d->address, d->dsm_address, d->connected_tsm, t ? tsm_backend_type_to_string(t->type) : NULL, NULL);
                if (r < 0)
                        return r;
        }

        reply = json_object_new_object();
        if (!reply || json_object_add(reply, "devices", TAKE_PTR(a)) < 0) {
                json_object_put(reply);
                return -ENOMEM;
        }
        return varlink_call_reply(call, reply);
}

static int vl_list_clients(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        _cleanup_(json_object_putp) json_object *a = json_object_new_array();
        json_object *reply;

        if (!a)
                return -ENOMEM;
        for (GuestClient *c = guest_client_next(m, NULL); c; c = guest_client_next(m, c)) {
                const PeerIdentity *id = guest_client_get_identity(c);
                unsigned contexts, vdevices;
                uint64_t calls;
                json_object *o = json_object_new_object();

                guest_client_get_stats(c, &contexts, &vdevices, &calls);
                if (!o || json_object_add(o, "uid", json_object_new_int64(id->uid)) < 0 ||
                    json_object_add(o, "gid", json_object_new_int64(id->gid)) < 0 ||
                    json_object_add(o, "pid", json_object_new_int64(id->pid)) < 0 ||
                    json_object_add_string_or_null(o, "unit", id->unit) < 0 ||
                    json_object_add(o, "contexts", json_object_new_int64(contexts)) < 0 ||
                    json_object_add(o, "vdevices", json_object_new_int64(vdevices)) < 0 ||
                    json_object_add(o, "calls", json_object_new_int64((int64_t) calls)) < 0 ||
                    json_object_array_add(a, o) < 0) {
                        json_object_put(o);
                        return -ENOMEM;
                }
        }
        reply = json_object_new_object();
        if (!reply || json_object_add(reply, "clients", TAKE_PTR(a)) < 0) {
                json_object_put(reply);
                return -ENOMEM;
        }
        return varlink_call_reply(call, reply);
}

/* A QueryAudit whose query runs in a thread of the audit log, answered when it ends. */
struct AdminQuery {
        Manager *manager;
        VarlinkCall *call;
        AuditQuery *query;
        bool capped; /* its limit is MaxQueryRecords=, not the caller's */
        LIST_ENTRY(AdminQuery) entry;
};

static AdminQuery *admin_query_free(AdminQuery *q) {
        if (!q)
                return NULL;
        LIST_REMOVE(q, entry);
        audit_query_cancel(q->query);
        varlink_call_unref(q->call);
        return mfree(q);
}

static void on_query_done(int error, json_object *records, const AuditQueryStats *stats, void *userdata) {
        AdminQuery *q = userdata;
        json_object *reply = NULL;
        uint64_t next;

        q->query = NULL; /* reported: gone */
        /* SECURITY: a reload may have taken the caller's administration away meanwhile. */
        if (error >= 0 && !manager_is_admin(q->manager, varlink_call_get_conn(q->call))) {
                json_object_put(records);
                (void) varlink_call_error(q->call, VARLINK_ERROR_PERMISSION_DENIED, NULL);
                admin_query_free(q);
                return;
        }
        if (error >= 0) {
                reply = json_object_new_object();
                if (!reply)
                        json_object_put(records);
                if (!reply || json_object_add(reply, "records", records) < 0)
                        error = -ENOMEM;
        }
        /* Where tsmd stopped short of the answer, by a bound of its own (MaxQueryScanSize=, or
         * MaxQueryRecords= where the caller asked for more), the caller is told where to go on;
         * at its own limit it knows. */
        next = stats->next_seq ?: q->capped ? stats->seq_past_limit : 0;
        if (error >= 0 && next > 0 &&
            json_object_add(reply, "nextSeq", json_object_new_int64((int64_t) MIN(next, (uint64_t) INT64_MAX))) < 0)
                error = -ENOMEM;
        /* Damage in the files is the administrator's to know of, said where it is seen: in the
         * answer, which would otherwise look whole, and here. */
        if (error >= 0 && stats->n_damaged > 0) {
                log_warning("Audit query passed over %" PRIu64 " damaged line%s of the audit log (not a record, "
                            "or a record whose seq does not fit the sequence around it).",
                            stats->n_damaged, stats->n_damaged == 1 ? "" : "s");
                if (json_object_add(reply, "damaged",
                                    json_object_new_int64((int64_t) MIN(stats->n_damaged, (uint64_t) INT64_MAX))) < 0)
                        error = -ENOMEM;
        }
        if (error < 0) {
                json_object_put(reply);
                (void) varlink_call_error_errno(q->call, error);
        } else
                (void) varlink_call_reply(q->call, reply);
        admin_query_free(q);
}

void admin_forget_queries(Manager *m, VarlinkConn *conn) {
        AdminQuery *next;

        for (AdminQuery *q = LIST_FIRST(&m->admin_queries); q; q = next) {
                next = LIST_NEXT(q, entry);
                if (conn && varlink_call_get_conn(q->call) != conn)
                        continue;
                /* No one hears it; the audit record says how the call ended. */
                q->query = audit_query_cancel(q->query);
                (void) varlink_call_error_errno(q->call, ECANCELED);
                admin_query_free(q);
        }
}

static int reply_too_many_queries(VarlinkCall *call, unsigned max);

/* What QueryAudit's answer holds besides its records' text: {"parameters":{"records":[...],
 * "nextSeq":N,"damaged":N}} and the NUL, with room to spare. */
#define QUERY_REPLY_ENVELOPE 256U

static int vl_query_audit(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        const char *invalid = NULL;
        AuditQueryFilter f;
        AdminQuery *q;
        size_t limit, size;
        bool capped;
        int r;

        /* SECURITY: one answer holds at most MaxQueryRecords= records, which the worker keeps
         * until it is sent. */
        r = audit_query_params_parse(p, m->config.audit_max_query_records, &f, &limit, &capped, &invalid);
        if (r == -EINVAL)
                return varlink_call_error_invalid_parameter(call, invalid);
        if (r < 0)
                return r;
        /* A filter no record can match would answer "none" for a typo: records spell a device
         * as sysfs does, and a scope as its backend names it (a refused request's scope that no
         * backend has, recorded as asked, is found by its result, NoSuchScope). */
        if (f.pci && !pci_address_is_valid(f.pci))
                return varlink_call_error_invalid_parameter(call, "pciAddress");
        if (f.scope && !scope_name_is_known(f.scope))
                return varlink_call_error_invalid_parameter(call, "scope");
        /* SECURITY: nor may one call hold a thread and a MaxQueries= slot for hours: it reads
         * so much, and answers where to go on (nextSeq). */
        f.max_scan_bytes = m->config.audit_max_query_scan;
        /* Nor hold more than its answer can carry: past it, the caller goes on from nextSeq (it
         * was answered ReplyTooLarge, after the worker held up to MaxQueryRecords= records of up
         * to 4 KiB). */
        size = varlink_conn_get_max_message_size(varlink_call_get_conn(call));
        f.max_text_bytes = size > QUERY_REPLY_ENVELOPE ? size - QUERY_REPLY_ENVELOPE : 0;

        q = new0(AdminQuery, 1);
        if (!q)
                return -ENOMEM;
        /* SECURITY: the log may hold terabytes; the loop that serves every client must not
         * read them. The query runs in a thread and answers from the loop when it is done. */
        r = audit_log_query(m->audit, &f, limit, on_query_done, q, &q->query);
        if (r < 0) {
                free(q);
                return r == -EBUSY ? reply_too_many_queries(call, m->config.audit_max_queries) : r;
        }
        q->manager = m;
        q->call = varlink_call_ref(call);
        q->capped = capped;
        LIST_INSERT_HEAD(&m->admin_queries, q, entry);
        return 0;
}

struct AdminFollower {
        VarlinkCall *call;
        AuditListener *listener;
};

typedef AdminFollower Follower;

static void follower_destroy(void *userdata) {
        Follower *f = userdata;

        varlink_call_unref(f->call);
        free(f);
}

/* Frees the listener, whose destroy callback frees the follower. */
static void follower_stop(Manager *m, Follower *f) {
        for (size_t i = 0; i < m->n_followers; i++)
                if (m->followers[i] == f) {
                        m->followers[i] = m->followers[--m->n_followers];
                        break;
                }
        audit_listener_free(f->listener);
}

void admin_forget_followers(Manager *m, VarlinkConn *conn) {
        for (size_t i = m->n_followers; i > 0; i--) {
                Follower *f = m->followers[i - 1];

                if (!conn || varlink_call_get_conn(f->call) == conn)
                        follower_stop(m, f);
        }
        if (!conn) {
                m->followers = mfree(m->followers);
                m->allocated_followers = 0;
        }
}

static void on_audit_record(AuditLog *a, const AuditRecord *record, const char *line, size_t len, void *userdata) {
        Follower *f = userdata;
        Manager *m = varlink_server_get_userdata(varlink_conn_get_server(varlink_call_get_conn(f->call)));
        json_object *o, *reply;

        o = json_tokener_parse(line);
        reply = json_object_new_object();
        if (!o || !reply || json_object_add(reply, "record", TAKE_PTR(o)) < 0) {
                json_object_put(o);
                json_object_put(reply);
                /* A follower that would miss a record is told instead: its call ends. */
                (void) varlink_call_error_errno(f->call, -ENOMEM);
                if (m)
                        follower_stop(m, f);
                return;
        }
        /* A follower that cannot take it any more stops (freeing from the callback is allowed). */
        if (varlink_call_notify(f->call, reply) < 0 && m)
                follower_stop(m, f);
}

static int reply_too_many_followers(VarlinkCall *call, unsigned max) {
        return varlink_call_error_kv(call, "io.tsmd.Admin.TooManyFollowers",
                                     "maxFollowers", json_object_new_int64(max), NULL);
}

static int vl_follow_audit(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        json_object *first;
        Follower *f;
        int r;

        /* SECURITY: each committed record is parsed and queued once per follower: their number
         * must not be what the admin socket's connections times their calls comes to. A reload
         * lowering the limit ends none already following. */
        if (m->n_followers >= m->config.audit_max_followers)
                return reply_too_many_followers(call, m->config.audit_max_followers);
        if (!GREEDY_REALLOC(m->followers, m->allocated_followers, m->n_followers + 1))
                return -ENOMEM;
        f = new0(Follower, 1);
        if (!f)
                return -ENOMEM;
        f->call = varlink_call_ref(call);
        r = audit_log_add_listener(m->audit, on_audit_record, f, follower_destroy, &f->listener);
        if (r < 0) {
                follower_destroy(f);
                return r;
        }
        m->followers[m->n_followers++] = f;
        first = json_object_new_object();
        if (!first || json_object_add_null(first, "record") < 0) {
                json_object_put(first);
                return -ENOMEM;
        }
        r = varlink_call_notify(call, first);
        if (r < 0)
                follower_stop(m, f);
        return r;
}

typedef struct CounterState {
        json_object *counters;
} CounterState;

static int on_counter(AuditCounterDimension d, const char *key, const AuditCounterStats *st, void *userdata) {
        CounterState *s = userdata;
        json_object *o = json_object_new_object(), *b = json_object_new_array();
        int r = 0;

        for (unsigned i = 0; b && r >= 0 && i < AUDIT_LATENCY_BUCKETS; i++)
                r = json_array_append(b, json_object_new_int64((int64_t) st->latency_buckets[i]));
        if (!o || !b || r < 0 ||
            json_object_add(o, "dimension", json_object_new_string(audit_counter_dimension_to_string(d))) < 0 ||
            json_object_add(o, "key", json_object_new_string(key)) < 0 ||
            json_object_add(o, "calls", json_object_new_int64((int64_t) st->n_requests)) < 0 ||
            json_object_add(o, "errors", json_object_new_int64((int64_t) st->n_errors)) < 0 ||
            json_object_add(o, "latencySumUsec", json_object_new_int64((int64_t) st->latency_usec_sum)) < 0 ||
            json_object_add(o, "latencyBuckets", TAKE_PTR(b)) < 0 || json_object_array_add(s->counters, o) < 0) {
                json_object_put(o);
                json_object_put(b);
                return -ENOMEM;
        }
        return 0;
}

static int vl_get_counters(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        CounterState s = { .counters = json_object_new_array() };
        json_object *reply;
        AuditLogStatus st;
        int r = 0;

        if (!s.counters)
                return -ENOMEM;
        for (AuditCounterDimension d = 0; d < _AUDIT_COUNTER_DIMENSION_MAX && r >= 0; d++)
                r = audit_counters_foreach(audit_log_get_counters(m->audit), d, on_counter, &s);
        if (r >= 0)
                r = audit_log_get_status(m->audit, &st);
        if (r < 0) {
                json_object_put(s.counters);
                return r;
        }
        reply = json_object_new_object();
        if (!reply || json_object_add(reply, "counters", s.counters) < 0 ||
            json_object_add(reply, "configurationStale", json_object_new_boolean(m->config_state.stale)) < 0 ||
            json_object_add(reply, "auditWritable", json_object_new_boolean(st.health.state == AUDIT_HEALTH_OK)) < 0 ||
            json_object_add(reply, "auditRefusedCalls", json_object_new_int64((int64_t) st.n_refused_unrecorded)) < 0 ||
            json_object_add(reply, "auditJournalDropped", json_object_new_int64((int64_t) st.n_journal_dropped)) < 0 ||
            json_object_add(reply, "auditRefusalsUnwritten",
                            json_object_new_int64((int64_t) audit_budget_n_unwritten(m->refusal_budget))) < 0 ||
            json_object_add(reply, "auditRefusalShareFull",
                            json_object_new_boolean(!audit_log_refusal_room(m->audit))) < 0) {
                json_object_put(reply);
                return -ENOMEM;
        }
        return varlink_call_reply(call, reply);
}

typedef struct InUse {
        Inventory *inventory;
        const char *pci_address;
        bool found;
} InUse;

/* The device, or a function it is the DSM of (which a disconnect takes from its guest too). */
static void check_in_use(const GuestVDeviceInfo *v, void *userdata) {
        InUse *u = userdata;
        const InventoryDevice *d;

        if (v->gone)
                return;
        d = inventory_get_device(u->inventory, v->pci_address);
        if (streq(v->pci_address, u->pci_address) || (d && d->dsm_address && streq(d->dsm_address, u->pci_address)))
                u->found = true;
}

/* NotDsm: the function is connected and disconnected through its DSM, which it names. */
static int reply_not_dsm(VarlinkCall *call, const char *address, const char *dsm) {
        return varlink_call_error_kv(call, "io.tsmd.Admin.NotDsm", "pciAddress", json_object_new_string(address),
                                     "dsm", json_object_new_string(dsm), NULL);
}

/* DeviceNotListed: no policy rule lists the device for the backend of the TSM its connection
 * is with (no backend: a TSM of a kind tsmd does not recognise, which no rule can list). */
static int reply_not_listed(VarlinkCall *call, Manager *m, const char *address, const char *tsm) {
        TsmDeviceInfo info;
        const char *backend = NULL;

        if (tsm_platform_get_connection(m->platform, address, tsm, &info) >= 0)
                backend = tsm_backend_type_to_string(info.backend);
        if (!backend)
                return varlink_call_error_kv(call, "io.tsmd.Admin.DeviceNotListed", "pciAddress",
                                             json_object_new_string(address), NULL);
        return varlink_call_error_kv(call, "io.tsmd.Admin.DeviceNotListed", "pciAddress",
                                     json_object_new_string(address), "backend", json_object_new_string(backend),
                                     NULL);
}

/* SECURITY: a device no policy rule lists (for the backend of the TSM its connection is with:
 * the one named, or the one it is connected to) is none of tsmd's business: its connect or
 * disconnect is refused here, by name, before the monitor is asked, which refuses it anyway
 * (connection_listed(), monitor-dispatch-device.c). An administrator who wants tsmd to connect
 * it lists it. What the monitor would answer without writing (no such device or TSM, a function,
 * a device connected to nothing disconnected) is left to it. Returns 1 when the call is answered so, 0
 * when it goes on, < 0 when the answer could not be built (the caller returns it). */
static int reply_if_not_listed(VarlinkCall *call, Manager *m, const char *address, const char *tsm) {
        TsmDeviceInfo info;
        int r;

        if (tsm_platform_get_connection(m->platform, address, tsm, &info) < 0 ||
            policy_any_rule_lists_device(m->policy, info.pci_address, info.backend))
                return 0;
        r = reply_not_listed(call, m, address, tsm);
        return r < 0 ? r : 1;
}

/* kernels: r is the kernel's answer through the monitor, where its -ENOMEM is its refusal,
 * ConnectFailed; tsmd's own -ENOMEM (the worker's, or the monitor's: priv_request_monitor_own())
 * is returned, io.tsmd.System. */
static int connect_result(VarlinkCall *call, Manager *m, int r, bool kernels, const char *address, const char *tsm) {
        const InventoryDevice *d = address ? inventory_get_device(tsm_platform_get_inventory(m->platform), address) : NULL;

        /* As the monitor's inventory has it, or (a race with a rescan) as ours does. */
        if ((r == -EXDEV || r == -ENODEV) && d && d->dsm_address)
                return reply_not_dsm(call, address, d->dsm_address);
        if (r == -ENODEV || r == -EXDEV)
                return varlink_call_error_kv(call, "io.tsmd.Admin.NoSuchDevice",
                                             "pciAddress", json_object_new_string(address), NULL);
        if (r == -ENXIO)
                return varlink_call_error_kv(call, "io.tsmd.Admin.NoSuchTsm",
                                             "tsm", json_object_new_string(strna(tsm)), NULL);
        if (r == -EBUSY)
                return varlink_call_error_kv(call, "io.tsmd.Admin.DeviceBusy",
                                             "pciAddress", json_object_new_string(address), NULL);
        if (r == -ENOMEM && !kernels)
                return r;
        if (r < 0)
                return varlink_call_error_kv(call, "io.tsmd.Admin.ConnectFailed",
                                             "errno", json_object_new_int(-r), NULL);
        return varlink_call_reply(call, NULL);
}

/* A ConnectDevice or DisconnectDevice on its way. The kernel's connect is an SPDM session and
 * IDE key setup through the device's DOE mailbox, seconds: the monitor runs it on the device's
 * lane and answers when the kernel is done, and the call waits for that from the loop, as a Bind
 * does, while everyone else is served. An admin who leaves meanwhile does not stop it (the
 * device changes all the same): its record says how it ended, when it has. */
typedef struct AdminConnect {
        Manager *manager;
        VarlinkCall *call;
        PrivRequest *request; /* during its callback */
        char *pci_address, *tsm; /* tsm NULL: a disconnect */
} AdminConnect;

static AdminConnect *admin_connect_free(AdminConnect *ac) {
        if (!ac)
                return NULL;
        varlink_call_unref(ac->call);
        free(ac->pci_address);
        free(ac->tsm);
        return mfree(ac);
}
DEFINE_TRIVIAL_CLEANUP_FUNC(AdminConnect *, admin_connect_free);

static void on_device_connected(int result, const void *response, size_t len, void *userdata) {
        AdminConnect *ac = userdata;
        Manager *m = ac->manager;
        bool kernels = priv_request_answered(ac->request) && !priv_request_monitor_own(ac->request);
        int r;

        /* The monitor looked at the device again; so do we, as connecting emits no uevent. */
        if (result >= 0) {
                result = tsm_platform_refresh_device(m->platform, ac->pci_address);
                kernels = false;
        }
        /* The monitor's gate refused it: a reload reached it before us. */
        if (result == -EPERM && priv_request_monitor_own(ac->request))
                r = reply_not_listed(ac->call, m, ac->pci_address, ac->tsm);
        else
                r = connect_result(ac->call, m, result, kernels, ac->pci_address, ac->tsm);
        if (r < 0 && !varlink_call_is_answered(ac->call))
                (void) varlink_call_error_errno(ac->call, r);
        admin_connect_free(ac);
        /* A draining worker waits for it, as for a guest call: its record must be written. */
        m->n_pending_requests--;
        manager_request_finished(m);
}

static int device_connect(VarlinkCall *call, Manager *m, const char *address, const char *tsm) {
        _cleanup_(admin_connect_freep) AdminConnect *ac = NULL;
        int r;

        ac = new0(AdminConnect, 1);
        if (!ac)
                return -ENOMEM;
        *ac = (AdminConnect){ .manager = m, .call = varlink_call_ref(call), .pci_address = strdup(address),
                              .tsm = tsm ? strdup(tsm) : NULL };
        if (!ac->pci_address || (tsm && !ac->tsm))
                return -ENOMEM;

        r = tsm ? priv_call_connect_device(m->channel, address, tsm, on_device_connected, ac, &ac->request)
                : priv_call_disconnect_device(m->channel, address, on_device_connected, ac, &ac->request);
        if (r < 0)
                return connect_result(call, m, r, false, address, tsm);
        TAKE_PTR(ac);
        m->n_pending_requests++;
        return 0;
}

/* EmulatedDevice: the emulated platform's devices are connected to emu0 from the start and
 * have no connect step; the kernel, which the monitor asks, knows nothing of them, and
 * "NoSuchDevice" for a device ListDevices shows would send the admin looking for the wrong
 * fault. A kernel device at the address comes first, as in tsm_platform_get_device(). Returns
 * 1 when the call is answered so, 0 when the device is no emulated one, < 0 when the answer
 * could not be built (the caller returns it: io.tsmd.System). */
static int reply_if_emulated(VarlinkCall *call, Manager *m, const char *address) {
        TsmDeviceInfo info;
        int r;

        if (tsm_platform_get_device(m->platform, address, &info) < 0 || !info.emulated)
                return 0;
        r = varlink_call_error_kv(call, "io.tsmd.Admin.EmulatedDevice", "pciAddress",
                                  json_object_new_string(address), NULL);
        return r < 0 ? r : 1;
}

static int vl_connect_device(VarlinkCall *call, json_object *p, void *userdata) {
        const char *address = json_get_string(p, "pciAddress"), *tsm = json_get_string(p, "tsm");
        int r;

        r = reply_if_emulated(call, userdata, address);
        if (r == 0)
                r = reply_if_not_listed(call, userdata, address, tsm);
        if (r != 0)
                return MIN(r, 0);
        return device_connect(call, userdata, address, tsm);
}

static int vl_disconnect_device(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        const char *address = json_get_string(p, "pciAddress");
        InUse u = { .inventory = tsm_platform_get_inventory(m->platform), .pci_address = address };
        int r;

        r = reply_if_emulated(call, m, address);
        if (r == 0)
                r = reply_if_not_listed(call, m, address, NULL);
        if (r != 0)
                return MIN(r, 0);
        /* SECURITY: pulling a device from under a guest is not an admin convenience. */
        guest_foreach_vdevice(m, check_in_use, &u);
        if (u.found)
                return connect_result(call, m, -EBUSY, false, address, NULL);
        return device_connect(call, m, address, NULL);
}

static const struct {
        const char *name;
        VarlinkMethodFunc func;
        bool changes_devices; /* made only if it can be recorded */
} admin_methods[] = {
        { "io.tsmd.Admin.ConnectDevice", vl_connect_device, true },
        { "io.tsmd.Admin.DisconnectDevice", vl_disconnect_device, true },
        { "io.tsmd.Admin.ListBackends", vl_list_backends },
        { "io.tsmd.Admin.ListDevices", vl_list_devices },
        { "io.tsmd.Admin.ListClients", vl_list_clients },
        { "io.tsmd.Admin.QueryAudit", vl_query_audit },
        { "io.tsmd.Admin.FollowAudit", vl_follow_audit },
        { "io.tsmd.Admin.GetCounters", vl_get_counters },
};

#define ADMIN_KEPT_MAX 64u

/* Every admin call is recorded, with the answer it got: refusals under their error's name. The
 * record is taken even past the audit queue's bound (admin calls are few, and each waits for its
 * record), and an admin is answered even when the log cannot take it: reloading the log is how
 * it is repaired. Such a record is kept, up to ADMIN_KEPT_MAX at a time, and written once the
 * log takes records again; past that it is lost, logged. Anyone else's call is a refusal like
 * any other (audit_refused()). But a connect or disconnect is not made when the log has no room
 * for its record: the room is reserved before, and held until the answer's record is committed
 * into it, so that a disk that fills while the kernel works cannot leave the host changed
 * unrecorded. While a reload reopens the log, that room cannot be known: the call waits for the
 * reopen, postponed, and is made (if its caller is still an administrator) or refused once it
 * finished. */
typedef struct AdminRecord {
        Manager *manager;
        VarlinkCall *call;
        /* Who asked, copied when the call came: an admin may leave before a connect is answered,
         * and its connection's identity with it. */
        bool identified;
        uid_t uid;
        gid_t gid;
        pid_t pid;
        char *unit;
        /* A device change's device and the backend of the TSM it connects to (or disconnects
         * from), as the call named them: NULL if it named none known. */
        char *pci;
        const char *backend;
        AuditReservation *room; /* a device change's, from before it is made until its record */
        bool made;              /* a device change tried (its room committed): no answer unrecorded */
        bool kept;              /* counted in n_admin_kept until written */
        VarlinkMethodFunc func; /* a device change waiting for its room: made once it has it */
        json_object *answer;    /* held until the record is durable */
} AdminRecord;

static AdminRecord *admin_record_free(AdminRecord *a) {
        if (!a)
                return NULL;
        audit_log_cancel(a->room);
        if (a->answer)
                (void) varlink_call_release(a->call, TAKE_PTR(a->answer));
        varlink_call_unref(a->call);
        free(a->unit);
        free(a->pci);
        return mfree(a);
}

static const char *answer_result(json_object *answer);

/* Why a Reload failed, for its record as for its caller: ReloadFailed's message (file:line),
 * tsmd's own, already cut to a bound and made UTF-8 (service-methods.c); NULL for any other. */
static const char *answer_reason(json_object *answer) {
        json_object *params;

        if (!answer || !streq(answer_result(answer), "io.tsmd.Service.ReloadFailed") ||
            !json_object_object_get_ex(answer, "parameters", &params))
                return NULL;
        return json_get_string(params, "message");
}

static void admin_fill_record(const AdminRecord *a, const char *result, AuditRecord *ret) {
        *ret = AUDIT_RECORD_INIT;
        ret->event = varlink_call_get_method(a->call);
        if (a->identified) {
                ret->uid = a->uid;
                ret->gid = a->gid;
                ret->pid = a->pid;
                ret->unit = a->unit;
        }
        ret->pci = a->pci;
        ret->backend = a->backend;
        ret->result = result;
        ret->reason = answer_reason(a->answer);
}

/* The result an answer records: its error's name, or "ok". */
static const char *answer_result(json_object *answer) {
        json_object *error;

        return json_object_object_get_ex(answer, "error", &error) ? json_object_get_string(error) : "ok";
}

/* NULL without memory. */
static json_object *audit_failed_message(int error) {
        json_object *m = NULL;

        (void) varlink_message_new_error_errno("io.tsmd.Admin.AuditFailed", error, &m);
        return m;
}

/* SECURITY: a device change made, whose record then failed: its answer is not given, as a
 * guest request's is not (guest-op.c). The host may be changed: what was done goes to the
 * journal at critical priority, and the admin gets AuditFailed, not the answer that it worked. */
static void admin_change_unrecorded(AdminRecord *a, int error) {
        _cleanup_free_ char *line = NULL;
        AuditRecord rec;
        size_t len;

        admin_fill_record(a, answer_result(a->answer), &rec);
        rec.realtime_usec = now_realtime_usec(); /* when it was lost; it has no seq */
        rec.monotonic_usec = now_monotonic_usec();
        if (audit_record_serialize(&rec, &line, &len) >= 0 && len > 0)
                line[len - 1] = 0; /* the newline */
        log_full_errno(LOG_CRIT, error, "Audit log failed after %s ran, answering AuditFailed; unrecorded: %s (%m)",
                       rec.event, strna(line));
        json_object_put(TAKE_PTR(a->answer));
        /* Released as the held answer is (the interceptor had its turn); NULL (no memory)
         * drops the connection: its admin must not wait. */
        (void) varlink_call_release(a->call, audit_failed_message(error));
}

static void on_admin_recorded(AuditLog *audit, uint64_t seq, int error, void *userdata) {
        AdminRecord *a = userdata;

        if (a->kept)
                a->manager->n_admin_kept--;
        if (error < 0 && a->made && a->answer)
                admin_change_unrecorded(a, error);
        else if (error < 0)
                log_error_errno(error, "Audit record of %s failed: %m", varlink_call_get_method(a->call));
        admin_record_free(a);
}

/* Records the call (into the room held for it, if any) with result; its answer, if one is held,
 * goes once the record is durable. Takes a. */
static void admin_record_commit(AdminRecord *a, const char *result) {
        AuditRecord rec;
        int r;

        admin_fill_record(a, result, &rec);
        if (a->room) {
                a->made = true;
                r = audit_log_commit(TAKE_PTR(a->room), &rec, on_admin_recorded, a, NULL);
        }
        else if (a->manager->n_admin_kept < ADMIN_KEPT_MAX) {
                uint64_t seq = 0;

                /* Kept while the log cannot take it (full, failed) and written once it can; not
                 * numbered yet (kept, or held for a reopen that may fail and keep it), the answer
                 * goes now: the admin is who repairs the log. Bounded apart from the kept records
                 * of what tsmd did on its own, which an admin's polling must not crowd out. */
                r = audit_log_record_owed_kept(a->manager->audit, &rec, on_admin_recorded, NULL, a, &seq);
                if (r >= 0 && seq == 0) {
                        a->kept = true;
                        a->manager->n_admin_kept++;
                        if (a->answer)
                                (void) varlink_call_release(a->call, TAKE_PTR(a->answer));
                }
        } else
                r = audit_log_record_owed(a->manager->audit, &rec, on_admin_recorded, a, NULL);
        if (r < 0)
                on_admin_recorded(a->manager->audit, 0, r, a);
}

/* A call of someone who is no administrator, refused: as any refusal, recorded by itself within
 * the uid's refusal budget and with room in its pool, else counted in its summary and answered at
 * once (nothing happened). Without this, anyone on the Guest socket could have records owed past
 * every bound by calling Reload. */
static void audit_refused(Manager *m, VarlinkCall *call, const char *result, json_object *message) {
        GuestClient *c = varlink_conn_get_userdata(varlink_call_get_conn(call));
        const PeerIdentity *id = c ? guest_client_get_identity(c) : NULL;
        uid_t uid = varlink_conn_get_peer(varlink_call_get_conn(call))->uid;
        AuditRecord rec = AUDIT_RECORD_INIT;
        AdminRecord *a;
        int r;

        if (audit_budget_take(m->refusal_budget, uid)) {
                a = new0(AdminRecord, 1);
                if (!a) {
                        log_oom();
                        (void) varlink_call_release(call, message);
                        return;
                }
                *a = (AdminRecord){ .manager = m, .call = varlink_call_ref(call), .answer = message };
                rec.event = varlink_call_get_method(call); /* declared: the method ran */
                rec.uid = uid;
                if (id) {
                        rec.gid = id->gid;
                        rec.pid = id->pid;
                        rec.unit = id->unit;
                }
                rec.result = result;
                rec.refusal = true;
                r = audit_log_record_for(m->audit, manager_audit_pool(m, id), &rec, on_admin_recorded, a, NULL);
                if (r >= 0)
                        return;
                log_debug_errno(r, "Refused admin call not recorded by itself: %m");
                message = TAKE_PTR(a->answer);
                admin_record_free(a);
        }
        audit_budget_count(m->refusal_budget, uid, varlink_call_get_method(call), result);
        (void) varlink_call_release(call, message);
}

static void on_admin_answer(VarlinkCall *call, json_object *message, void *userdata) {
        AdminRecord *a = userdata;
        const char *result = answer_result(message);

        /* SECURITY: only an administrator's calls are owed a record past every bound (one that
         * holds room for a device change has its record's place already). A refusal is answered
         * at once, while its caller is there: an answer to a caller that left (a Reload's, after
         * the reopen; any, once tsmd stops and its server is gone) is of a call let run as an
         * administrator's, recorded as who asked, never counted as a refusal. So is one that ran
         * and took its own caller's right away (a Reload of a policy no longer naming them):
         * only PermissionDenied refuses, and it is all anyone else's call is ever answered. */
        if (!a->room && varlink_conn_is_connected(varlink_call_get_conn(call)) &&
            !manager_is_admin(a->manager, varlink_call_get_conn(call)) &&
            streq(result, VARLINK_ERROR_PERMISSION_DENIED)) {
                Manager *m = a->manager;

                admin_record_free(a);
                audit_refused(m, call, result, message);
                return;
        }
        a->answer = message;
        admin_record_commit(a, result);
}

/* The call's record, made when its final answer comes (the interceptor). */
static int admin_record_new(Manager *m, VarlinkCall *call, AdminRecord **ret) {
        GuestClient *c = varlink_conn_get_userdata(varlink_call_get_conn(call));
        const PeerIdentity *id = c ? guest_client_get_identity(c) : NULL;
        AdminRecord *a;

        a = new0(AdminRecord, 1);
        if (!a)
                return -ENOMEM;
        *a = (AdminRecord){ .manager = m, .call = varlink_call_ref(call) };
        if (id) {
                a->identified = true;
                a->uid = id->uid;
                a->gid = id->gid;
                a->pid = id->pid;
                if (id->unit && !(a->unit = strdup(id->unit))) {
                        admin_record_free(a);
                        return -ENOMEM;
                }
        }
        varlink_call_set_interceptor(call, on_admin_answer, a);
        *ret = a;
        return 0;
}

void admin_audit_answer(Manager *m, VarlinkCall *call) {
        AdminRecord *a;

        /* Out of memory: the call goes unrecorded, and the journal says so. */
        if (admin_record_new(m, call, &a) < 0)
                log_oom();
}

void admin_recheck_followers(Manager *m) {
        /* Downwards: follower_stop() moves the last one into the place it frees. */
        for (size_t i = m->n_followers; i > 0; i--) {
                VarlinkCall *call = m->followers[i - 1]->call;
                AdminRecord *a;

                if (manager_is_admin(m, varlink_call_get_conn(call)))
                        continue;
                varlink_call_ref(call);
                follower_stop(m, m->followers[i - 1]);
                /* Its end is recorded as any admin call's answer is, and goes out once it is. */
                if (admin_record_new(m, call, &a) < 0)
                        log_oom();
                (void) varlink_call_error(call, VARLINK_ERROR_PERMISSION_DENIED, NULL);
                varlink_call_unref(call);
        }
}

static int reply_too_many_queries(VarlinkCall *call, unsigned max) {
        return varlink_call_error_kv(call, "io.tsmd.Admin.TooManyQueries",
                                     "maxQueries", json_object_new_int64(max), NULL);
}

static int reply_audit_failed(VarlinkCall *call, int error) {
        return varlink_call_error_kv(call, "io.tsmd.Admin.AuditFailed", "errno", json_object_new_int(-error), NULL);
}

/* The room a postponed device change waited for (a reload reopened the log). */
static void on_admin_room(AuditLog *audit, AuditReservation *room, int error, void *userdata) {
        AdminRecord *a = userdata;
        _cleanup_(varlink_call_unrefp) VarlinkCall *call = varlink_call_ref(a->call);
        int r;

        if (error == -ESHUTDOWN) {
                /* The log is being freed (tsmd stops, its clients are gone): nothing was made,
                 * and nothing of the manager but the log may be touched any more. */
                varlink_call_set_interceptor(call, NULL, NULL);
                admin_record_free(a);
                return;
        }
        if (!varlink_conn_is_connected(varlink_call_get_conn(call))) {
                /* Its caller left while it waited: nothing was made, and nobody is answered.
                 * Recorded so (into its room, if it got one), as who it was when it came; no
                 * refusal (as a guest call that waited, guest-op.c). */
                varlink_call_set_interceptor(call, NULL, NULL);
                if (error < 0)
                        a->room = audit_log_cancel(a->room);
                admin_record_commit(a, VARLINK_ERROR_DISCONNECTED);
                return;
        }
        if (error >= 0 && !manager_is_admin(a->manager, varlink_call_get_conn(call)))
                /* The reload it waited for took the right away. */
                error = -EPERM;
        if (error < 0) {
                /* Answered as if the log had been in that state when it came; recorded as any
                 * answer is (the interceptor), without the room. */
                a->room = audit_log_cancel(a->room);
                if (error == -EPERM)
                        (void) varlink_call_error(call, VARLINK_ERROR_PERMISSION_DENIED, NULL);
                else
                        (void) reply_audit_failed(call, error);
                return;
        }
        r = varlink_call_run(call, a->func, a->manager);
        if (r == -ENOTCONN)
                /* Its caller is being dropped: not made, and recorded so into its room. */
                admin_record_commit(a, VARLINK_ERROR_DISCONNECTED);
}

/* The device a connect or disconnect names, and the backend of the TSM it is connected to, for
 * its record: what changed, not only who changed it. */
static int admin_record_device(AdminRecord *a, json_object *p) {
        const Inventory *inv = tsm_platform_get_inventory(a->manager->platform);
        const char *address = json_get_string(p, "pciAddress"), *tsm_name = json_get_string(p, "tsm");
        const InventoryDevice *d;
        const InventoryTsm *tsm;

        if (!address || !policy_pci_address_is_valid(address))
                return 0;
        a->pci = strdup(address);
        if (!a->pci)
                return -ENOMEM;
        /* As sysfs spells it, which QueryAudit's filter takes: 0000:0A:00.0 is 0000:0a:00.0. */
        for (char *q = a->pci; *q; q++)
                *q = (char) tolower((unsigned char) *q);
        d = inventory_get_device(inv, address);
        tsm = tsm_name ? inventory_get_tsm(inv, tsm_name) : d ? inventory_device_get_tsm(inv, d) : NULL;
        if (tsm && tsm->type >= 0)
                a->backend = tsm_backend_type_to_string(tsm->type);
        return 0;
}

static int admin_dispatch(VarlinkCall *call, json_object *p, void *userdata) {
        Manager *m = userdata;
        AdminRecord *a;
        int r;

        r = admin_record_new(m, call, &a);
        if (r < 0)
                return r;
        if (!manager_is_admin(m, varlink_call_get_conn(call)))
                return varlink_call_error(call, VARLINK_ERROR_PERMISSION_DENIED, NULL);
        for (size_t i = 0; i < ELEMENTSOF(admin_methods); i++) {
                if (!streq(admin_methods[i].name, varlink_call_get_method(call)))
                        continue;
                /* SECURITY: fail closed: no room for the record, no change. The room stays the
                 * record's until the answer, however long the kernel takes (see above). */
                if (admin_methods[i].changes_devices) {
                        r = admin_record_device(a, p);
                        if (r < 0)
                                return r;
                        r = audit_log_reserve_owed_to_act(m->audit, manager_audit_wait_usec(m), on_admin_room, a,
                                                          &a->room);
                        if (r < 0)
                                return reply_audit_failed(call, r);
                        if (r > 0) {
                                a->func = admin_methods[i].func;
                                return varlink_call_postpone(call);
                        }
                }
                r = admin_methods[i].func(call, p, userdata);
                /* A subscription has no final answer to wait for: it is recorded when made. */
                if ((varlink_call_get_flags(call) & VARLINK_CALL_MORE) && !varlink_call_is_answered(call)) {
                        varlink_call_set_interceptor(call, NULL, NULL);
                        admin_record_commit(a, r < 0 ? VARLINK_ERROR_SYSTEM : "ok");
                }
                return r;
        }
        return -EOPNOTSUPP;
}

/* ConnectDevice and DisconnectDevice act: their longest answers. A device address or TSM name
 * the caller made up is echoed only by a call refused before it acted, and is shorter than the
 * call was. */
static int device_change_reply_bound(size_t *ret) {
        size_t max = 0, backend = 0;
        int r;

        for (TsmBackendType b = 0; b < _TSM_BACKEND_TYPE_MAX; b++)
                backend = MAX(backend, strlen(tsm_backend_type_to_string(b)));

        r = reply_bound_reply(NULL, &max);
        if (r >= 0)
                r = reply_bound_common(&max);
        if (r >= 0)
                r = reply_bound_error("io.tsmd.Admin.NoSuchDevice", "pciAddress",
                                      reply_bound_string(POLICY_PCI_ADDRESS_MAX), NULL, NULL, &max);
        if (r >= 0)
                r = reply_bound_error("io.tsmd.Admin.EmulatedDevice", "pciAddress",
                                      reply_bound_string(POLICY_PCI_ADDRESS_MAX), NULL, NULL, &max);
        if (r >= 0)
                r = reply_bound_error("io.tsmd.Admin.DeviceBusy", "pciAddress",
                                      reply_bound_string(POLICY_PCI_ADDRESS_MAX), NULL, NULL, &max);
        if (r >= 0)
                r = reply_bound_error("io.tsmd.Admin.NotDsm", "pciAddress", reply_bound_string(POLICY_PCI_ADDRESS_MAX),
                                      "dsm", reply_bound_string(PCI_ADDRESS_LEN_MAX), &max);
        if (r >= 0)
                r = reply_bound_error("io.tsmd.Admin.DeviceNotListed", "pciAddress",
                                      reply_bound_string(POLICY_PCI_ADDRESS_MAX), "backend",
                                      reply_bound_string(backend), &max);
        if (r >= 0)
                r = reply_bound_error("io.tsmd.Admin.NoSuchTsm", "tsm", reply_bound_string(NAME_MAX), NULL, NULL, &max);
        if (r >= 0)
                r = reply_bound_error("io.tsmd.Admin.ConnectFailed", "errno", reply_bound_int(), NULL, NULL, &max);
        if (r >= 0)
                r = reply_bound_error("io.tsmd.Admin.AuditFailed", "errno", reply_bound_int(), NULL, NULL, &max);
        if (r < 0)
                return r;
        *ret = max;
        return 0;
}

int admin_methods_register(Manager *m) {
        int r;

        r = varlink_server_add_interface(m->server, varlink_builtin_idl_find("io.tsmd.Admin"));
        if (r < 0)
                return r;
        for (size_t i = 0; i < ELEMENTSOF(admin_methods); i++) {
                size_t size;

                r = varlink_server_bind_method(m->server, admin_methods[i].name, admin_dispatch);
                if (r >= 0 && admin_methods[i].changes_devices) {
                        r = device_change_reply_bound(&size);
                        if (r >= 0)
                                r = varlink_server_set_reply_bound(m->server, admin_methods[i].name, size, 0);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}
