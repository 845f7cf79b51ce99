/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The kernel's late answers in the audit log. A call tsmd gave up on while the kernel ran it (a
 * guest request past RequestTimeoutUSec=, a bind or unbind whose device went, a bind, unbind or
 * connect whose worker ended first) still did what the kernel says when it returns: the monitor
 * tells the worker (LATE), which records it under the call's own event with "-late" appended
 * ("bind-undo" for the unbind that undid a bind the kernel did after all), naming the call as the
 * monitor knows it, and the record of the call itself ("originalSeq") when this worker wrote it.
 * The monitor keeps each until the worker says it is recorded (LATE_ACK), and gives those a
 * worker that ended had not to the next one: each is recorded once, whichever worker does it
 * (the seq it is written under goes to the monitor before it can reach the disk, a reopen of the
 * log pending or not, and the record carries the LATE's id, "lateId": the next worker reads back
 * the record at that seq, and writes the LATE's unless it is that one). Those the monitor had no
 * room for are counted ("late-lost"). One whose record cannot be queued (a failed
 * log, a full disk, no memory) is not acknowledged: the worker tries it again, and the monitor
 * keeps it for the next worker should this one end first. Bounded: a hung TSM answers as many
 * calls late as it was given, and the monitor keeps at most MONITOR_LATE_KEPT_MAX. Runs in:
 * worker.
 */

#include <inttypes.h>
#include <stdio.h>

#include "audit-budget.h"
#include "guest-internal.h"
#include "guest.h"
#include "json-raw.h"
#include "log.h"
#include "priv-call.h"
#include "tsm-platform.h"
#include "varlink-errors.h"

static const AuditEvent late_events[_TSM_PRIV_LATE_OP_MAX] = {
        [TSM_PRIV_LATE_GUEST_REQUEST] = AUDIT_EVENT_GUEST_REQUEST_LATE,
        [TSM_PRIV_LATE_BIND] = AUDIT_EVENT_BIND_LATE,
        [TSM_PRIV_LATE_UNBIND] = AUDIT_EVENT_UNBIND_LATE,
        [TSM_PRIV_LATE_BIND_UNDO] = AUDIT_EVENT_BIND_UNDO,
        [TSM_PRIV_LATE_CONNECT] = AUDIT_EVENT_CONNECT_DEVICE_LATE,
        [TSM_PRIV_LATE_DISCONNECT] = AUDIT_EVENT_DISCONNECT_DEVICE_LATE,
        [TSM_PRIV_LATE_LOST] = AUDIT_EVENT_LATE_LOST,
};

/* A LATE whose record could not be queued, to be tried again. */
struct LateUnrecorded {
        LateUnrecorded *next;
        struct tsm_priv_late late;
        bool checked; /* the record at its recorded_seq is another's */
};

/* A LATE a worker before said it was writing under a seq the files have: the record at that seq
 * is read back, one LATE at a time, in a query thread (the loop never waits for the disk). */
struct LateCheck {
        LateCheck *next;
        Manager *m;
        struct tsm_priv_late late;
        AuditQuery *query; /* the oldest's, while it runs */
};

/* How long a check waits for a query slot the administrators' queries all hold. */
#define LATE_CHECK_RETRY_USEC (200U * 1000U)

/* The record of a LATE on its way to the disk. */
typedef struct LateRecording {
        Manager *m;
        uint64_t id;
} LateRecording;

static LateOrigin *late_origin_find(Manager *m, uint32_t cookie) {
        if (cookie == 0)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(m->late_origins); i++)
                if (m->late_origins[i].cookie == cookie)
                        return &m->late_origins[i];
        return NULL;
}

void guest_late_remember(Manager *m, uint32_t cookie, uint64_t seq) {
        LateOrigin *o;

        if (cookie == 0)
                return;
        /* Numbered after a reopen: the entry it had while held gets its seq. */
        o = late_origin_find(m, cookie);
        if (!o) {
                o = &m->late_origins[m->next_late_origin];
                m->next_late_origin = (m->next_late_origin + 1) % ELEMENTSOF(m->late_origins);
        }
        *o = (LateOrigin){ .cookie = cookie, .seq = seq };
}

/* The seq of the record this worker wrote of the call it asked with cookie, or 0. */
static uint64_t late_origin(Manager *m, uint32_t cookie) {
        LateOrigin *o = late_origin_find(m, cookie);

        return o ? o->seq : 0;
}

/* Whether the record of the call asked with cookie is held for a reopen of the log still pending:
 * numbered when it finishes, before guest_late_retry() runs. Once it finished, a record still
 * without its seq (its link had no memory) is named by none. */
static bool late_origin_held(Manager *m, uint32_t cookie) {
        LateOrigin *o = late_origin_find(m, cookie);
        AuditLogStatus st;

        return o && o->seq == 0 && m->audit && audit_log_get_status(m->audit, &st) >= 0 && st.reopen_pending;
}

/* The monitor forgets a LATE once durable; until then it keeps it for the next worker. */
static void late_ack(Manager *m, uint64_t id, uint64_t seq, bool durable) {
        int r = priv_send_late_ack(m->channel, id, seq, durable);

        if (r < 0)
                log_debug_errno(r, "Cannot acknowledge late answer %" PRIu64 " to the monitor, which keeps it for "
                                "the next worker: %m", id);
}

static void late_take(Manager *m, const struct tsm_priv_late *l, bool checked);
static int late_check(Manager *m, const struct tsm_priv_late *l);

static void on_late_recorded(AuditLog *a, uint64_t seq, int error, void *userdata) {
        LateRecording *lr = userdata;

        /* A failed write fails the log (tsmd refuses every call then, loudly): the record may be
         * in the file or not, and its seq may be another's after a reopen, so it is not given
         * to the next worker. */
        if (error < 0)
                log_error_errno(error, "Audit record of a late kernel answer failed: %m");
        late_ack(lr->m, lr->id, seq, true);
        free(lr);
}

/* Its record was held for a reopen of the log, and is numbered now, to be written after this round
 * of the loop: the monitor hears the seq first, as of one numbered at once (late_record()). */
static void on_late_numbered(AuditLog *a, uint64_t seq, void *userdata) {
        LateRecording *lr = userdata;

        late_ack(lr->m, lr->id, seq, false);
}

/* Records l, or says why it cannot: < 0 if its record was neither queued nor counted in a
 * summary, and then nothing is acknowledged. checked: the record at l's recorded_seq was read
 * back, and is another's. */
static int late_record(Manager *m, const struct tsm_priv_late *l, bool checked) {
        bool request = l->op == TSM_PRIV_LATE_GUEST_REQUEST, lost = l->op == TSM_PRIV_LATE_LOST,
             connect = l->op == TSM_PRIV_LATE_CONNECT || l->op == TSM_PRIV_LATE_DISCONNECT;
        AuditRecord rec = AUDIT_RECORD_INIT;
        GuestContext *ctx = l->context > 0 ? guest_find_context_by_id(m, l->context) : NULL;
        LateRecording *lr;
        TsmDeviceInfo info;
        char unknown[32];
        uint64_t seq = 0;
        int r;

        /* SECURITY: once, whichever worker writes it: a worker before this one said it was writing
         * the record under a seq the files had when this one opened them. It is there if the
         * record at that seq is this LATE's: another worker's may have taken the seq, should the
         * one that said it end before writing it (late_check()). */
        if (!checked && m->audit && l->recorded_seq > 0 && l->recorded_seq <= m->audit_seq_at_open)
                return late_check(m, l);
        /* It names its call's record, which has no seq yet: it waits with those the log did not
         * take, for the reopen (guest_late_retry()). */
        if (!lost && late_origin_held(m, l->request_cookie))
                return -EAGAIN;

        rec.event = audit_event_to_string(late_events[l->op]);
        rec.late_id = l->id;
        if (lost) {
                /* The monitor had no room for them (kept for a worker, unacknowledged): who and
                 * what they were is in tsmd's log, as far as its rate limit let it say. */
                rec.count = l->count;
                goto record;
        }
        /* The context's owner as the worker knows it (as for a release); after a restart of the
         * worker, a context it has not restored is the monitor's word alone. */
        if (ctx) {
                rec.uid = ctx->uid;
                rec.gid = ctx->gid;
                rec.pid = ctx->pid;
                rec.context_id = ctx->handle > 0 ? ctx->handle : AUDIT_U64_NONE;
        } else if (l->uid != TSM_PRIV_LATE_NONE)
                rec.uid = (uid_t) l->uid;
        rec.vdevice_id = l->vdevice > 0 ? l->vdevice : AUDIT_U64_NONE;
        rec.pci = l->pci_address;
        if (l->backend != TSM_PRIV_LATE_NONE)
                rec.backend = tsm_backend_type_to_string((TsmBackendType) l->backend);
        else if (tsm_platform_get_device(m->platform, l->pci_address, &info) >= 0)
                rec.backend = tsm_backend_type_to_string(info.backend);
        if (request) {
                rec.scope = l->scope;
                rec.scope_number = l->scope_number;
                if (l->result == 0) {
                        rec.response_size = l->response_size;
                        /* As a request's on time: what its TSM left of it, recorded where it left any. */
                        rec.request_unconsumed = l->request_unconsumed;
                }
        }
        if (l->result == 0)
                rec.result = "ok";
        else if (!(rec.result = errno_to_name(l->result))) {
                snprintf(unknown, sizeof(unknown), "errno-%d", -l->result);
                rec.result = unknown;
        }
        rec.latency_usec = l->latency_usec;
        rec.original_seq = late_origin(m, l->request_cookie);

record:
        /* SECURITY: a hung TSM answers every call late, as many as it was given: one by one
         * within the budget of the context's owner, the rest in its summaries, none left out. A
         * connect has no owner tsmd knows, and needs no budget: one per device is on its way at
         * a time, and is late only if its worker ended first. Nor does the count of those lost:
         * one at a time is on its way. */
        if (!m->audit || !m->late_budget) {
                log_warning("Kernel TSM %s of %s answered late (%s), unrecorded: no audit log.", rec.event,
                            l->pci_address, strna(rec.result));
                late_ack(m, l->id, 0, true);
                return 0;
        }
        if (!connect && !lost && !audit_budget_take(m->late_budget, rec.uid)) {
                audit_budget_count(m->late_budget, rec.uid, rec.event, rec.result);
                late_ack(m, l->id, 0, true);
                return 0;
        }
        /* What tsmd owes whatever the load: the device changed behind the call's record. */
        lr = new(LateRecording, 1);
        if (lr) {
                *lr = (LateRecording){ .m = m, .id = l->id };
                r = audit_log_record_owed_full(m->audit, &rec, on_late_recorded, on_late_numbered, lr, &seq);
        } else
                r = -ENOMEM;
        if (r < 0) {
                free(lr);
                /* SECURITY: not acknowledged, so not forgotten: a summary would be written to the
                 * log that refused this record, and lost with the worker. */
                return log_error_errno(r, "Cannot record yet that the kernel TSM %s of %s answered late (%s), "
                                       "trying again when the audit log takes records: %m", rec.event,
                                       l->pci_address, strna(rec.result));
        }
        /* Numbered now, written after this round of the loop: the monitor hears the seq first.
         * (0 while a reopen of the log is pending: on_late_numbered() tells it once numbered.) */
        if (seq > 0)
                late_ack(m, l->id, seq, false);
        return 0;
}

/* ---- the record a worker before said it wrote ---------------------------------------------- */

static void late_check_next(Manager *m);

static LateCheck *late_check_pop(Manager *m) {
        LateCheck *c = m->late_checks;

        m->late_checks = c->next;
        return c;
}

/* Whether record is the one of LATE id. */
static bool record_is_late(json_object *record, uint64_t id) {
        json_object *v;

        return record && json_object_object_get_ex(record, "lateId", &v) && json_object_is_type(v, json_type_int) &&
               json_object_get_uint64(v) == id;
}

static void on_late_checked(int error, json_object *records, const AuditQueryStats *stats, void *userdata) {
        _cleanup_free_ LateCheck *c = userdata;
        _cleanup_json_ json_object *tree = NULL;
        Manager *m = c->m;
        const struct tsm_priv_late *l = &c->late;
        bool recorded;

        if (error >= 0)
                error = json_raw_array_parse(records, &tree);
        recorded = error >= 0 && json_object_array_length(tree) == 1 &&
                   record_is_late(json_object_array_get_idx(tree, 0), l->id);
        json_object_put(records);
        /* Off the queue before anything is recorded, which may queue more. */
        assert(c == m->late_checks);
        (void) late_check_pop(m);
        if (error == -ECANCELED) /* the log goes: the monitor keeps it for the next worker */
                return;

        if (recorded) {
                log_debug("Late answer %" PRIu64 " was recorded by the worker before, as seq %" PRIu64 ".", l->id,
                          l->recorded_seq);
                late_ack(m, l->id, l->recorded_seq, true);
        } else {
                /* SECURITY: better twice than never: a record read back in error may have been
                 * this one, and a reader tells the two apart by their lateId. */
                if (error < 0)
                        log_warning_errno(error, "Cannot read back audit record %" PRIu64 " to see whether the worker "
                                          "before recorded late answer %" PRIu64 " there, recording it: %m",
                                          l->recorded_seq, l->id);
                else
                        log_notice("Late answer %" PRIu64 " was not recorded by the worker before: audit record %"
                                   PRIu64 ", which it said it wrote it as, is another's. Recording it.", l->id,
                                   l->recorded_seq);
                late_take(m, l, true);
        }
        late_check_next(m);
}

static void on_late_check_retry(evutil_socket_t fd, short what, void *userdata) {
        late_check_next(userdata);
}

/* Starts the query of the oldest check, unless it runs. */
static void late_check_next(Manager *m) {
        LateCheck *c = m->late_checks;
        AuditQueryFilter f = AUDIT_QUERY_FILTER_INIT;
        int r;

        if (!c || c->query)
                return;
        f.seq_from = f.seq_to = c->late.recorded_seq;
        r = audit_log_query(m->audit, &f, 1, on_late_checked, c, &c->query);
        if (r >= 0)
                return;
        /* -EBUSY: QueryAudit calls hold every slot (MaxQueries=); or no memory, or thread, now.
         * Bounded: one timer, for the head of the queue. */
        log_debug_errno(r, "Cannot read back audit record %" PRIu64 " yet, trying again: %m", c->late.recorded_seq);
        if (!m->late_check_retry)
                m->late_check_retry = evtimer_new(m->base, on_late_check_retry, m);
        if (!m->late_check_retry ||
            evtimer_add(m->late_check_retry, &(struct timeval){ .tv_usec = LATE_CHECK_RETRY_USEC }) < 0)
                /* Cannot wait either: record it (a duplicate a reader tells by its lateId). */
                on_late_checked(r, NULL, NULL, c);
}

/* Queues l for late_check_next(). Bounded by what the monitor keeps for this worker, each sent
 * once. */
static int late_check(Manager *m, const struct tsm_priv_late *l) {
        LateCheck *c = new(LateCheck, 1), **tail;

        if (!c)
                return log_oom();
        *c = (LateCheck){ .m = m, .late = *l };
        for (tail = &m->late_checks; *tail; tail = &(*tail)->next)
                ;
        *tail = c;
        late_check_next(m);
        return 0;
}

/* ---- entry points ---------------------------------------------------------------------------- */

void guest_late_retry(Manager *m) {
        /* Oldest first, until the log refuses one again. */
        while (m->late_unrecorded) {
                LateUnrecorded *u = m->late_unrecorded;

                if (late_record(m, &u->late, u->checked) < 0)
                        return;
                m->late_unrecorded = u->next;
                m->n_late_unrecorded--;
                free(u);
        }
}

void guest_audit_late(Manager *m, const struct tsm_priv_late *l) {
        int r;

        assert(l->op > 0 && l->op < _TSM_PRIV_LATE_OP_MAX); /* priv-channel.c checked it */

        /* A connect or disconnect whose worker ended before the kernel was done: this worker
         * looked at the device while the kernel changed it (and took it for unconnected, or
         * could not read it), and connecting emits no uevent. It looks again now that the
         * kernel is done, as the worker that asked would have at the answer (admin.c). */
        if (l->op == TSM_PRIV_LATE_CONNECT || l->op == TSM_PRIV_LATE_DISCONNECT) {
                r = tsm_platform_refresh_device(m->platform, l->pci_address);
                if (r < 0)
                        log_debug_errno(r, "Failed to look at %s again after its late %s, ignoring: %m",
                                        l->pci_address, l->op == TSM_PRIV_LATE_CONNECT ? "connect" : "disconnect");
        }
        late_take(m, l, false);
}

static void late_take(Manager *m, const struct tsm_priv_late *l, bool checked) {
        LateUnrecorded *u, **tail;

        guest_late_retry(m);
        if (!m->late_unrecorded && late_record(m, l, checked) >= 0)
                return;
        /* Bounded by what the monitor keeps for this worker, each sent once. Without memory for it,
         * the monitor still has it for the next worker. */
        u = new(LateUnrecorded, 1);
        if (!u) {
                log_oom();
                return;
        }
        *u = (LateUnrecorded){ .late = *l, .checked = checked };
        for (tail = &m->late_unrecorded; *tail; tail = &(*tail)->next)
                ;
        *tail = u;
        m->n_late_unrecorded++;
        log_warning("%zu late answers of the kernel wait for the audit log to take their records.",
                    m->n_late_unrecorded);
}

void guest_late_free_unrecorded(Manager *m) {
        /* Not acknowledged: the monitor keeps them for the next worker. */
        while (m->late_checks) {
                LateCheck *c = late_check_pop(m);

                audit_query_cancel(c->query);
                free(c);
        }
        if (m->late_check_retry) {
                event_free(m->late_check_retry);
                m->late_check_retry = NULL;
        }
        while (m->late_unrecorded) {
                LateUnrecorded *u = m->late_unrecorded;

                m->late_unrecorded = u->next;
                free(u);
        }
        m->n_late_unrecorded = 0;
}
