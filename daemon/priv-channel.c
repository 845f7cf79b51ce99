/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The channel to the monitor, the worker's end: the outbox and inbox, the requests sent and those
 * waiting their turn, the delivery of replies and LATEs (also of those that come while a call
 * waits for its own), and the start (HELLO). The typed calls over it are priv-call.c's.
 * Runs in: worker. */

#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <sys/queue.h>

#include "idle-flush.h"
#include "inventory.h"
#include "log.h"
#include "priv-channel-internal.h"
#include "priv-slots.h"
#include "tsm-priv-batch.h"

/* What one client may hold in the monitor at once: an eighth of what it holds in all, so a
 * client whose device hangs fills only its share until the requests time out, and the others
 * keep getting through. */
#define PRIV_SLOT_REQUESTS_MAX (TSM_PRIV_REQUESTS_MAX / 8)

/* See priv_channel_new(): well below the monitor's 5 s (MONITOR_SEND_TIMEOUT_USEC). */
#define PRIV_SEND_TIMEOUT_USEC (1000 * 1000ULL)

/* What the monitor tells unasked: a LATE, a SIGNAL_RELOAD or a FILES_CHANGED (type). */
typedef struct PrivNotice {
        uint32_t type;
        union {
                struct tsm_priv_late late;
                struct tsm_priv_signal_reload reload;
                struct {
                        struct tsm_priv_files_changed msg;
                        const char *paths; /* in the received message: delivered at once, never queued */
                } files;
        };
} PrivNotice;

/* A LATE or SIGNAL_RELOAD that came while a call waited for its reply. */
typedef struct PrivLateQueued {
        STAILQ_ENTRY(PrivLateQueued) entry;
        PrivNotice notice;
} PrivLateQueued;

/* A reply to a guest request that came while a call waited for its own. */
typedef struct PrivQueued {
        STAILQ_ENTRY(PrivQueued) entry;
        struct tsm_priv_reply reply;
        size_t payload_len;
        uint8_t payload[];
} PrivQueued;

void priv_hello_done(PrivHello *h) {
        for (size_t i = 0; i < h->n_sockets; i++)
                safe_close(h->socket_fds[i]);
        free(h->socket_fds);
        free(h->socket_kinds);
        free(h->restored);
        free(h->restored_vdevices);
        free(h->start_settings);
        safe_close(h->last_good_fd);
        *h = (PrivHello) { .last_good_fd = -EBADF };
}

/* The monitor hung up or sent something it never would: tell the owner, once, from the loop. */
void priv_channel_gone(PrivChannel *c, const char *why) {
        if (c->gone)
                return;
        c->gone = true;
        log_error("Lost the monitor: %s. Exiting.", why);
        event_del(c->ev_read);
        event_active(c->ev_deferred, EV_TIMEOUT, 0);
}

void priv_request_free(PrivRequest *r) {
        free(r->queued);
        free(r);
}

/* Sends r (off any list; taken from the waiting ones if was_waiting) to the monitor, which then
 * holds it. */
static int request_send(PrivChannel *c, PrivRequest *r, bool was_waiting) {
        struct tsm_priv_hdr *block;
        int k;

        /* From waiting to sent in one step: the slot's entry exists, nothing to allocate. */
        if (r->counted || was_waiting) {
                k = priv_slots_add(c->slots, r->slot, r->counted, was_waiting ? -1 : 0);
                if (k < 0)
                        return k;
        }
        /* Off every list while the outbox may flush (and run failure callbacks): a callback that
         * cancels r must not take it for a waiting one (priv_request_cancel()). Counted as sent
         * though: the failures make room, and what they send then (requests_flush(), a
         * callback's request) must leave r its place, or the monitor gets one too many. */
        c->n_requests += r->counted;
        block = TAKE_PTR(r->queued);
        k = tsm_priv_outbox_add_owned(c->outbox, c->fd, block, r);
        if (k < 0) {
                r->queued = block; /* still ours */
                /* Back to where it was: the caller unlinks a waiting one, counts and all. */
                c->n_requests -= r->counted;
                if (r->counted || was_waiting)
                        (void) priv_slots_add(c->slots, r->slot, -(int) r->counted, was_waiting ? 1 : 0);
                return k;
        }
        idle_flush_schedule(c->flush);
        TAILQ_INSERT_TAIL(&c->requests, r, entry);
        return 0;
}

/* r's answer came, or will not: the monitor no longer holds it. */
static void request_unlink_sent(PrivChannel *c, PrivRequest *r) {
        TAILQ_REMOVE(&c->requests, r, entry);
        c->n_requests -= r->counted;
        if (r->counted)
                (void) priv_slots_add(c->slots, r->slot, -1, 0);
}

static void request_unlink_waiting(PrivChannel *c, PrivRequest *r) {
        TAILQ_REMOVE(&c->waiting, r, entry);
        c->n_waiting_uncounted -= !r->counted;
        (void) priv_slots_add(c->slots, r->slot, 0, -1);
}

static void requests_flush(PrivChannel *c);

/* The kept answers said recorded since the last, in as few RECORDEDs as they fit, with what goes
 * to the monitor next (the next calls of a busy worker): a guest request's costs no message, nor
 * send, of its own. */
static void recorded_queue(PrivChannel *c) {
        if (c->n_recorded[0] + c->n_recorded[1] == 0)
                return;
        if (c->ev_recorded)
                (void) evtimer_del(c->ev_recorded);
        for (unsigned late = 0; late < 2; late++) {
                size_t sent = 0;

                while (sent < c->n_recorded[late]) {
                        size_t n = MIN(c->n_recorded[late] - sent, (size_t) TSM_PRIV_RECORDED_MAX);
                        struct tsm_priv_recorded m;
                        int r;

                        tsm_priv_init(&m, TSM_PRIV_RECORDED, 0, (uint32_t) (n * sizeof(uint32_t)));
                        m.late = late;
                        r = tsm_priv_outbox_add(c->outbox, c->fd, &m, c->recorded[late] + sent, n * sizeof(uint32_t),
                                                NULL);
                        if (r < 0)
                                /* The monitor keeps them for the next worker, which records them
                                 * late (again, for those recorded here). */
                                log_debug_errno(r, "Failed to tell the monitor of %zu recorded answers: %m", n);
                        sent += n;
                }
                c->n_recorded[late] = 0;
        }
}

void priv_answer_recorded(PrivChannel *c, uint32_t cookie, bool late) {
        size_t *n = &c->n_recorded[late];

        if (!c || c->gone || cookie == 0)
                return;
        /* Without memory, the monitor keeps it for the next worker, which records it late. */
        if (!GREEDY_REALLOC(c->recorded[late], c->allocated_recorded[late], *n + 1)) {
                log_oom();
                return;
        }
        c->recorded[late][(*n)++] = cookie;
        /* An idle worker's go by themselves, soon: should it end, the next would record them
         * again. */
        if (!evtimer_pending(c->ev_recorded, NULL))
                (void) evtimer_add(c->ev_recorded, &(struct timeval){ .tv_usec = PRIV_RECORDED_LINGER_USEC });
}

static void outbox_flush(void *userdata);

static void on_recorded_timer(evutil_socket_t fd, short what, void *userdata) {
        PrivChannel *c = userdata;

        if (!c->gone)
                outbox_flush(c);
}

uint32_t priv_request_take_kept(PrivRequest *r) {
        if (!r || !r->kept)
                return 0;
        r->kept = false;
        return r->cookie;
}

/* The kernel refused a queued request: it fails like one the monitor refused. */
static void on_send_failed(int error, void *userdata) {
        PrivRequest *r = userdata;
        PrivChannel *c;

        /* A LATE_ACK or RECORDED (no request): the monitor keeps the LATE or answers, and sends
         * them to the next worker. Or a CANCEL_REQUEST: its request runs, answered as it ends. */
        if (!r) {
                log_debug_errno(error, "Failed to send a LATE_ACK, RECORDED or CANCEL_REQUEST to the monitor: %m");
                return;
        }
        c = r->channel;

        request_unlink_sent(c, r);
        if (r->callback)
                r->callback(error, NULL, 0, r->userdata);
        priv_request_free(r);
        requests_flush(c);
}

/* Also before anything sent directly: the monitor sees the worker's messages in the order they
 * were made. */
static void outbox_flush(void *userdata) {
        PrivChannel *c = userdata;

        recorded_queue(c);
        tsm_priv_outbox_flush(c->outbox, c->fd);
}

/* Whether a request of slot may go to the monitor now (rather than wait here). */
static bool may_send(PrivChannel *c, uint32_t slot) {
        const PrivSlotCounts *e = priv_slots_find(c->slots, slot);

        return c->n_requests < TSM_PRIV_REQUESTS_MAX && (!e || e->n_sent < PRIV_SLOT_REQUESTS_MAX);
}

static bool slot_has_waiting(PrivChannel *c, uint32_t slot) {
        const PrivSlotCounts *e = priv_slots_find(c->slots, slot);

        return e && e->n_waiting > 0;
}

/* Whether a request of r's vDevice waits here ahead of r (r not waiting: at all). A walk, for
 * binds, unbinds and settles only, and only while their slot has requests waiting. */
static bool vdevice_waits_ahead(PrivChannel *c, const PrivRequest *r) {
        const PrivRequest *w;

        if (r->vdevice == 0 || !slot_has_waiting(c, r->slot))
                return false;
        TAILQ_FOREACH(w, &c->waiting, entry) {
                if (w == r)
                        return false;
                if (w->slot == r->slot && w->context == r->context && w->vdevice == r->vdevice)
                        return true;
        }
        return false;
}

bool priv_channel_is_gone(const PrivChannel *c) {
        return c->gone;
}

bool priv_call_slot_busy(PrivChannel *c, uint32_t slot) {
        return c && priv_slots_find(c->slots, slot);
}

/* A reply made room in the monitor: the oldest queued requests that may go now, go. A slot's
 * guest requests keep their order: once one of them must wait, so do those after it. A bind,
 * unbind or settle goes once nothing of its vDevice is ahead of it, whatever the quota. */
static void requests_flush(PrivChannel *c) {
        PrivRequest *r, *next;

        /* Re-entered from a callback run below (a send that fills the outbox flushes it, and
         * each message the kernel refuses fails its request): the run below starts over. */
        if (c->flushing_requests) {
                c->requests_changed = true;
                return;
        }
        c->flushing_requests = true;
        for (r = TAILQ_FIRST(&c->waiting); r && (c->n_requests < TSM_PRIV_REQUESTS_MAX || c->n_waiting_uncounted > 0);
             r = next) {
                int k;

                next = TAILQ_NEXT(r, entry);
                if (r->counted ? !may_send(c, r->slot) : vdevice_waits_ahead(c, r))
                        continue;
                TAILQ_REMOVE(&c->waiting, r, entry);
                c->n_waiting_uncounted -= !r->counted;
                c->requests_changed = false;
                k = request_send(c, r, true);
                if (k < 0) {
                        (void) priv_slots_add(c->slots, r->slot, 0, -1);
                        if (r->callback) /* else cancelled */
                                r->callback(k, NULL, 0, r->userdata);
                        priv_request_free(r);
                        c->requests_changed = true;
                }
                /* A callback may have sent, failed, cancelled or queued any request, next too. */
                if (c->requests_changed)
                        next = TAILQ_FIRST(&c->waiting);
        }
        c->flushing_requests = false;
}

static void deliver(PrivChannel *c, const struct tsm_priv_reply *reply, const void *payload, size_t len) {
        PrivRequest *r;

        TAILQ_FOREACH(r, &c->requests, entry)
                if (r->cookie == reply->hdr.cookie) {
                        request_unlink_sent(c, r);
                        r->answered = true;
                        r->monitor_own = reply->result < 0 && (reply->value & TSM_PRIV_REPLY_MONITOR_OWN);
                        r->kept = reply->hdr.flags & TSM_PRIV_REPLY_KEPT;
                        if (r->callback) /* else cancelled: nobody waits for it any more */
                                r->callback(reply->result < 0 ? reply->result : (int) MIN(reply->value, (uint32_t) INT_MAX),
                                            payload, len, r->userdata);
                        else if (r->kept) {
                                /* Its caller left, and its record said so: what the device did
                                 * is recorded late, as for a call given up on. */
                                priv_answer_recorded(c, r->cookie, true);
                                r->kept = false;
                        }
                        /* A callback that records nothing of it (a release's unbind, a restore's):
                         * the monitor may forget it now. */
                        if (r->kept)
                                priv_answer_recorded(c, r->cookie, false);
                        priv_request_free(r);
                        requests_flush(c);
                        return;
                }
}

/* Validates a message from the monitor as a REPLY. */
static int parse_reply(const void *buf, size_t len, size_t n_fds, struct tsm_priv_reply *ret, const void **ret_payload) {
        const char *reason = NULL;
        int r;

        r = tsm_priv_check(buf, len, n_fds, TSM_PRIV_FROM_MONITOR, ret, sizeof(*ret), ret_payload, &reason);
        if (r < 0 || ret->hdr.type != TSM_PRIV_REPLY) {
                log_error("Monitor sent a malformed message: %s.", reason ?: "not a reply");
                return -EPROTO;
        }
        /* SECURITY: 0 or -errno, as a LATE's (late_valid()): the result is returned and logged
         * as an errno, whose negation must exist (INT_MIN's does not). */
        if (ret->result > 0 || ret->result <= -4096) {
                log_error("Monitor sent a reply whose result is no errno: %" PRIi32 ".", ret->result);
                return -EPROTO;
        }
        return 0;
}

static bool late_valid(const struct tsm_priv_late *l) {
        bool request = l->op == TSM_PRIV_LATE_GUEST_REQUEST;

        if (l->id == 0 || l->hdr.cookie != 0)
                return false;
        /* A count, and nothing of any call. */
        if (l->op == TSM_PRIV_LATE_LOST)
                return l->count > 0 && l->request_cookie == 0 && l->context == 0 && l->vdevice == 0 &&
                       l->uid == TSM_PRIV_LATE_NONE && l->backend == TSM_PRIV_LATE_NONE && l->result == 0 &&
                       l->response_size == 0 && l->scope_number == 0 && l->request_unconsumed == 0 &&
                       l->latency_usec == 0 &&
                       tsm_priv_check_string(l->pci_address, sizeof(l->pci_address)) &&
                       !l->pci_address[0] && tsm_priv_check_string(l->scope, sizeof(l->scope)) && !l->scope[0] &&
                       tsm_priv_check_string(l->tsm, sizeof(l->tsm)) && !l->tsm[0];
        return l->op >= TSM_PRIV_LATE_GUEST_REQUEST && l->op < _TSM_PRIV_LATE_OP_MAX && l->count == 0 &&
               l->hdr.cookie == 0 && l->result <= 0 && l->result > -4096 &&
               l->response_size <= TSM_PRIV_PAYLOAD_MAX && (l->response_size == 0 || (request && l->result == 0)) &&
               /* A residue counts the request's bytes only where no response buffer was offered. */
               l->request_unconsumed <= TSM_PRIV_PAYLOAD_MAX &&
               (l->request_unconsumed == 0 || (request && l->result == 0 && l->response_size == 0)) &&
               (l->backend < _TSM_BACKEND_TYPE_MAX || l->backend == TSM_PRIV_LATE_NONE) &&
               tsm_priv_check_string(l->pci_address, sizeof(l->pci_address)) &&
               pci_address_is_valid(l->pci_address) &&
               tsm_priv_check_string(l->scope, sizeof(l->scope)) && (request || (!l->scope[0] && l->scope_number == 0)) &&
               tsm_priv_check_string(l->tsm, sizeof(l->tsm)) && (l->op == TSM_PRIV_LATE_CONNECT || !l->tsm[0]);
}

static bool signal_reload_valid(const struct tsm_priv_signal_reload *s) {
        /* A unit only with a pid: the monitor looks one up by pid alone. */
        return s->hdr.cookie == 0 && s->pid <= INT32_MAX && s->__reserved[0] == 0 && s->__reserved[1] == 0 &&
               tsm_priv_check_string(s->unit, sizeof(s->unit)) && (s->pid > 0 || !s->unit[0]);
}

/* The paths of a FILES_CHANGED: as many as it says at most, each non-empty, shorter than
 * TSM_PRIV_PATH_MAX and NUL-terminated, the last NUL ending the payload. */
static bool files_changed_valid(const struct tsm_priv_files_changed *f, const char *paths, size_t size) {
        uint32_t n = 0;

        if (f->hdr.cookie != 0 || f->__reserved != 0 || f->n_changed > TSM_PRIV_FILES_MAX)
                return false;
        for (size_t i = 0; i < size;) {
                const char *nul = memchr(paths + i, 0, size - i);
                size_t len = nul ? (size_t) (nul - (paths + i)) : 0;

                if (!nul || len == 0 || len >= TSM_PRIV_PATH_MAX || ++n > f->n_changed)
                        return false;
                i += len + 1;
        }
        return true;
}

/* Whether a message from the monitor is a LATE, a SIGNAL_RELOAD or a FILES_CHANGED (checked,
 * into ret), rather than a REPLY: -EPROTO for one that breaks a rule. */
static int parse_notice(const void *buf, size_t len, size_t n_fds, PrivNotice *ret) {
        struct tsm_priv_hdr h;
        const char *reason = NULL;
        bool valid;
        int r;

        if (len < sizeof(h))
                return 0;
        memcpy(&h, buf, sizeof(h));
        /* SECURITY: the monitor's word is checked like any message's: a worker never writes a
         * record from a message it would not send itself. */
        if (h.type == TSM_PRIV_LATE) {
                r = tsm_priv_check(buf, len, n_fds, TSM_PRIV_FROM_MONITOR, &ret->late, sizeof(ret->late), NULL,
                                   &reason);
                valid = r >= 0 && late_valid(&ret->late);
        } else if (h.type == TSM_PRIV_SIGNAL_RELOAD) {
                r = tsm_priv_check(buf, len, n_fds, TSM_PRIV_FROM_MONITOR, &ret->reload, sizeof(ret->reload), NULL,
                                   &reason);
                valid = r >= 0 && signal_reload_valid(&ret->reload);
        } else if (h.type == TSM_PRIV_FILES_CHANGED) {
                const void *payload = NULL;

                r = tsm_priv_check(buf, len, n_fds, TSM_PRIV_FROM_MONITOR, &ret->files.msg, sizeof(ret->files.msg),
                                   &payload, &reason);
                ret->files.paths = r >= 0 && ret->files.msg.hdr.payload_len > 0 ? payload : NULL;
                valid = r >= 0 && files_changed_valid(&ret->files.msg, ret->files.paths, ret->files.msg.hdr.payload_len);
        } else
                return 0;
        if (!valid) {
                log_error("Monitor sent a malformed %s: %s.", tsm_priv_type_to_string(h.type),
                          reason ?: "a field out of range");
                return -EPROTO;
        }
        ret->type = h.type;
        return 1;
}

static void deliver_notice(PrivChannel *c, const PrivNotice *n) {
        if (n->type == TSM_PRIV_LATE && c->on_late)
                c->on_late(&n->late, c->late_userdata);
        else if (n->type == TSM_PRIV_SIGNAL_RELOAD && c->on_signal_reload)
                c->on_signal_reload(&n->reload, c->signal_reload_userdata);
        else if (n->type == TSM_PRIV_FILES_CHANGED && c->on_files_changed)
                c->on_files_changed(n->files.msg.n_changed, n->files.paths, n->files.msg.hdr.payload_len,
                                    c->files_changed_userdata);
}

void priv_channel_set_files_changed_callback(PrivChannel *c, PrivFilesChangedCallback cb, void *userdata) {
        c->on_files_changed = cb;
        c->files_changed_userdata = userdata;
}

void priv_channel_set_signal_reload_callback(PrivChannel *c, PrivSignalReloadCallback cb, void *userdata) {
        c->on_signal_reload = cb;
        c->signal_reload_userdata = userdata;
}

void priv_channel_set_late_callback(PrivChannel *c, PrivLateCallback cb, void *userdata) {
        c->on_late = cb;
        c->late_userdata = userdata;
}

static void on_readable(evutil_socket_t fd, short what, void *userdata) {
        PrivChannel *c = userdata;
        int k;

        do {
                k = tsm_priv_inbox_receive(c->inbox, c->fd);
                if (k == -EAGAIN)
                        return;
                if (k < 0)
                        return priv_channel_gone(c, "receive failed");

                for (size_t i = 0; i < (size_t) k; i++) {
                        TsmPrivReceived *d = tsm_priv_inbox_get(c->inbox, i);
                        struct tsm_priv_reply reply;
                        PrivNotice notice;
                        const void *payload;
                        int r;

                        /* Asynchronous replies never carry fds: the next receive closes any. */
                        if (d->len <= 0)
                                return priv_channel_gone(c, d->len == 0 ? "it hung up" : "receive failed");
                        r = parse_notice(d->buf, (size_t) d->len, d->n_fds, &notice);
                        if (r < 0)
                                return priv_channel_gone(c, "malformed message");
                        if (r > 0) {
                                deliver_notice(c, &notice);
                                /* A reload's callback may have read on, and found the end. */
                                if (c->gone)
                                        return;
                                continue;
                        }
                        if (parse_reply(d->buf, (size_t) d->len, d->n_fds, &reply, &payload) < 0)
                                return priv_channel_gone(c, "malformed message");
                        deliver(c, &reply, payload, reply.hdr.payload_len);
                        if (c->gone)
                                return;
                }
        } while (tsm_priv_inbox_more(c->inbox)); /* else the socket is empty */
}

static void on_deferred(evutil_socket_t fd, short what, void *userdata) {
        PrivChannel *c = userdata;
        PrivLateQueued *l;
        PrivQueued *q;

        if (c->gone) {
                if (c->on_gone)
                        c->on_gone(c->userdata);
                return;
        }
        while ((q = STAILQ_FIRST(&c->queued))) {
                STAILQ_REMOVE_HEAD(&c->queued, entry);
                deliver(c, &q->reply, q->payload_len ? q->payload : NULL, q->payload_len);
                free(q);
        }
        while ((l = STAILQ_FIRST(&c->late_queued))) {
                STAILQ_REMOVE_HEAD(&c->late_queued, entry);
                deliver_notice(c, &l->notice);
                free(l);
                if (c->gone)
                        return;
        }
}

int priv_channel_new(struct event_base *base, int fd, void (*on_gone)(void *userdata), void *userdata,
                     PrivChannel **ret) {
        /* Sends to the monitor block (the monitor reads at once), but never for as long as the
         * monitor waits for the worker to take a reply (MONITOR_SEND_TIMEOUT_USEC) before it
         * ends the worker as unresponsive: when both directions are full under load, the
         * worker gives up its send first (that request fails, -EAGAIN) and goes back to read. */
        static const struct timeval send_timeout = { .tv_sec = PRIV_SEND_TIMEOUT_USEC / 1000000 };
        PrivChannel *c;

        if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout)) < 0)
                return negative_errno();

        c = new0(PrivChannel, 1);
        if (!c)
                return -ENOMEM;
        c->base = base;
        c->fd = fd;
        c->next_cookie = 1;
        c->on_gone = on_gone;
        c->userdata = userdata;
        TAILQ_INIT(&c->requests);
        TAILQ_INIT(&c->waiting);
        STAILQ_INIT(&c->queued);
        STAILQ_INIT(&c->late_queued);
        c->ev_read = event_new(base, fd, EV_READ | EV_PERSIST, on_readable, c);
        c->ev_deferred = event_new(base, -1, 0, on_deferred, c);
        c->ev_recorded = evtimer_new(base, on_recorded_timer, c);
        if (!c->ev_read || !c->ev_deferred || !c->ev_recorded || priv_slots_new(&c->slots) < 0 ||
            idle_flush_new(base, outbox_flush, c, &c->flush) < 0 ||
            tsm_priv_outbox_new(on_send_failed, &c->outbox) < 0 || tsm_priv_inbox_new(&c->inbox) < 0 ||
            event_add(c->ev_read, NULL) < 0) {
                c->fd = -EBADF; /* the caller keeps it on failure */
                priv_channel_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

PrivChannel *priv_channel_free(PrivChannel *c) {
        PrivLateQueued *l;
        PrivRequest *r;
        PrivQueued *q;

        if (!c)
                return NULL;
        while ((r = TAILQ_FIRST(&c->requests))) {
                TAILQ_REMOVE(&c->requests, r, entry);
                priv_request_free(r);
        }
        while ((r = TAILQ_FIRST(&c->waiting))) {
                TAILQ_REMOVE(&c->waiting, r, entry);
                priv_request_free(r);
        }
        while ((q = STAILQ_FIRST(&c->queued))) {
                STAILQ_REMOVE_HEAD(&c->queued, entry);
                free(q);
        }
        while ((l = STAILQ_FIRST(&c->late_queued))) {
                STAILQ_REMOVE_HEAD(&c->late_queued, entry);
                free(l);
        }
        free(c->recorded[0]);
        free(c->recorded[1]);
        if (c->ev_recorded)
                event_free(c->ev_recorded);
        if (c->ev_read)
                event_free(c->ev_read);
        if (c->ev_deferred)
                event_free(c->ev_deferred);
        idle_flush_free(c->flush);
        tsm_priv_outbox_free(c->outbox);
        tsm_priv_inbox_free(c->inbox);
        priv_slots_free(c->slots);
        safe_close(c->fd);
        return mfree(c);
}

static bool anyone_waits(PrivChannel *c) {
        PrivRequest *r;

        TAILQ_FOREACH(r, &c->requests, entry)
                if (r->callback)
                        return true;
        TAILQ_FOREACH(r, &c->waiting, entry)
                if (r->callback)
                        return true;
        return false;
}

void priv_channel_finish(PrivChannel *c, uint64_t timeout_usec, uint64_t deadline_usec) {
        PrivRequest *r;

        if (!c->gone) {
                outbox_flush(c);
                on_deferred(-1, EV_TIMEOUT, c); /* replies that came during a call */
        }
        /* Until the monitor has been silent for the timeout: each answer shows it still works,
         * but answers one by one must not carry the wait past the deadline. */
        while (!c->gone && anyone_waits(c)) {
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                uint64_t now = now_monotonic_usec(), wait_usec;
                int k;

                if (now >= deadline_usec)
                        break;
                wait_usec = MIN(timeout_usec, deadline_usec - now);
                k = poll(&p, 1, (int) MIN(DIV_ROUND_UP(wait_usec, 1000), (uint64_t) INT_MAX));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        break;
                on_readable(c->fd, EV_READ, c);
        }

        /* Nobody will answer the rest. */
        TAILQ_FOREACH(r, &c->requests, entry)
                if (r->callback) {
                        PrivRequestCallback cb = TAKE_PTR(r->callback);
                        cb(c->gone ? -ECONNRESET : -ETIMEDOUT, NULL, 0, r->userdata);
                }
        /* Each off the list before its callback, which may cancel the next. */
        while ((r = TAILQ_FIRST(&c->waiting))) {
                request_unlink_waiting(c, r);
                if (r->callback)
                        r->callback(c->gone ? -ECONNRESET : -ETIMEDOUT, NULL, 0, r->userdata);
                priv_request_free(r);
        }
        /* What was recorded: else the next worker records it again, late. */
        if (!c->gone)
                outbox_flush(c);
}

/* Waits for one message (the channel is non-blocking for the loop's sake); *ret_msg is valid
 * until the next. */
static ssize_t receive_wait(PrivChannel *c, const uint8_t **ret_msg, int *fds, size_t max_fds, size_t *ret_n_fds) {
        for (;;) {
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                ssize_t n;

                n = tsm_priv_reader_receive(&c->reader, c->fd, ret_msg, fds, max_fds, ret_n_fds);
                if (n != -EAGAIN)
                        return n;
                if (poll(&p, 1, -1) < 0 && errno != EINTR)
                        return negative_errno();
        }
}

int priv_channel_read_hello(PrivChannel *c, PrivHello *ret) {
        _cleanup_(priv_hello_done) PrivHello h = { .last_good_fd = -EBADF };
        struct tsm_priv_hello hello;
        const char *reason = NULL;
        const void *settings = NULL;
        size_t n_fds, allocated_fds = 0, allocated_kinds = 0, allocated_restored = 0, allocated_vdevices = 0;
        uint32_t n_vdevices_due = 0; /* of the last RESTORED_CONTEXT, still to come */
        const uint8_t *msg;
        ssize_t n;
        int fd, r;

        n = receive_wait(c, &msg, &fd, 1, &n_fds);
        if (n <= 0)
                return n < 0 ? (int) n : -ECONNRESET;
        r = tsm_priv_check(msg, (size_t) n, n_fds, TSM_PRIV_FROM_MONITOR, &hello, sizeof(hello), &settings, &reason);
        if (r < 0 || hello.hdr.type != TSM_PRIV_HELLO || hello.version != TSM_PRIV_VERSION || hello.last_good > 1)
                return log_error_errno(-EPROTO, "Monitor did not start with a HELLO of version %u: %s.",
                                       TSM_PRIV_VERSION, reason ?: "wrong type or version");
        /* One string: text, a NUL ending it and nothing after. */
        if (hello.hdr.payload_len > 0) {
                if (memchr(settings, 0, hello.hdr.payload_len) != (const char *) settings + hello.hdr.payload_len - 1)
                        return log_error_errno(-EPROTO, "Monitor sent the settings read at start without their end.");
                h.start_settings = strdup(settings);
                if (!h.start_settings)
                        return -ENOMEM;
        }
        h.uapi = hello.uapi;
        h.emulated = hello.emulated;
        h.fdstore = hello.fdstore;
        h.previous_end = hello.previous_end < _TSM_PRIV_WORKER_END_MAX ? hello.previous_end : TSM_PRIV_WORKER_FIRST;
        h.previous_status = hello.previous_status;
        h.max_contexts = hello.max_contexts;
        /* The same clock in both processes; one from the future would make the uptime negative. */
        h.started_usec = MIN(hello.started_usec, now_monotonic_usec());

        /* Sockets, the files to start from, then the contexts kept from before with their
         * vDevices, then it waits for READY. */
        for (;;) {
                struct tsm_priv_listen_socket ls;
                struct tsm_priv_last_good lg;
                struct tsm_priv_restored_context rc;
                struct tsm_priv_restored_vdevice rv;
                bool last_good_due = hello.last_good && h.last_good_fd < 0;
                const void *payload = NULL;

                if (h.n_sockets == hello.n_sockets && !last_good_due && h.n_restored == hello.n_restored &&
                    n_vdevices_due == 0)
                        break;
                n = receive_wait(c, &msg, &fd, 1, &n_fds);
                if (n <= 0)
                        return n < 0 ? (int) n : -ECONNRESET;
                if (tsm_priv_check(msg, (size_t) n, n_fds, TSM_PRIV_FROM_MONITOR, &ls, sizeof(ls), NULL, &reason) >= 0 &&
                    ls.hdr.type == TSM_PRIV_LISTEN_SOCKET && h.n_sockets < hello.n_sockets && n_fds == 1 &&
                    (ls.kind == TSM_PRIV_SOCKET_ALL || ls.kind == TSM_PRIV_SOCKET_GUEST)) {
                        if (!GREEDY_REALLOC(h.socket_fds, allocated_fds, h.n_sockets + 1) ||
                            !GREEDY_REALLOC(h.socket_kinds, allocated_kinds, h.n_sockets + 1)) {
                                safe_close(fd);
                                return -ENOMEM;
                        }
                        h.socket_fds[h.n_sockets] = fd;
                        h.socket_kinds[h.n_sockets++] = ls.kind;
                        continue;
                }
                if (tsm_priv_check(msg, (size_t) n, n_fds, TSM_PRIV_FROM_MONITOR, &lg, sizeof(lg), &payload,
                                   &reason) >= 0 &&
                    lg.hdr.type == TSM_PRIV_LAST_GOOD && h.n_sockets == hello.n_sockets && last_good_due &&
                    n_fds == 1 && lg.stale <= 1 && lg.__reserved == 0 &&
                    (lg.hdr.payload_len == 0 || (lg.stale && tsm_priv_check_reason(payload, lg.hdr.payload_len)))) {
                        h.last_good_fd = fd;
                        h.last_good_stale = lg.stale;
                        if (lg.hdr.payload_len > 0)
                                memcpy(h.last_good_reason, payload, lg.hdr.payload_len);
                        continue;
                }
                if (tsm_priv_check(msg, (size_t) n, n_fds, TSM_PRIV_FROM_MONITOR, &rc, sizeof(rc), NULL, &reason) >= 0 &&
                    rc.hdr.type == TSM_PRIV_RESTORED_CONTEXT && h.n_sockets == hello.n_sockets && !last_good_due &&
                    h.n_restored < hello.n_restored && n_vdevices_due == 0 &&
                    tsm_priv_check_string(rc.reclaim_id, sizeof(rc.reclaim_id)) && rc.partial <= 1 &&
                    tsm_priv_check_string(rc.previous_reclaim_id, sizeof(rc.previous_reclaim_id))) {
                        if (!GREEDY_REALLOC(h.restored, allocated_restored, h.n_restored + 1))
                                return -ENOMEM;
                        h.restored[h.n_restored++] = rc;
                        n_vdevices_due = rc.n_vdevices;
                        continue;
                }
                if (tsm_priv_check(msg, (size_t) n, n_fds, TSM_PRIV_FROM_MONITOR, &rv, sizeof(rv), NULL, &reason) >= 0 &&
                    rv.hdr.type == TSM_PRIV_RESTORED_VDEVICE && n_vdevices_due > 0 &&
                    rv.context == h.restored[h.n_restored - 1].context && rv.vdevice != 0 &&
                    (rv.state & ~TSM_PRIV_VDEVICE_FLAGS_ALL) == 0 && rv.__reserved == 0 &&
                    tsm_priv_check_string(rv.pci_address, sizeof(rv.pci_address))) {
                        if (!GREEDY_REALLOC(h.restored_vdevices, allocated_vdevices, h.n_restored_vdevices + 1))
                                return -ENOMEM;
                        h.restored_vdevices[h.n_restored_vdevices++] = rv;
                        n_vdevices_due--;
                        continue;
                }
                close_many(&fd, n_fds);
                return log_error_errno(-EPROTO, "Monitor sent an unexpected message at start.");
        }

        *ret = h;
        h = (PrivHello) { .last_good_fd = -EBADF };
        return 0;
}

int priv_channel_send_now(PrivChannel *c, void *msg) {
        if (c->gone)
                return -ECONNRESET;
        outbox_flush(c);
        return tsm_priv_send(c->fd, msg, NULL, 0, -EBADF);
}

uint32_t priv_channel_next_cookie(PrivChannel *c) {
        uint32_t cookie = c->next_cookie++;

        if (c->next_cookie == 0)
                c->next_cookie = 1; /* 0 means "no reply" */
        return cookie;
}

/* One message that came while a call waited: 1 if it is the reply with cookie (into ret, its
 * payload in msg), else kept for the loop, after the call (0); -ECONNRESET if the channel is
 * gone. The fds of a message kept are closed: asynchronous replies carry none. */
static int take_or_keep(PrivChannel *c, const uint8_t *msg, size_t len, size_t n_fds, int *fds, uint32_t cookie,
                        struct tsm_priv_reply *ret, const void **ret_payload) {
        struct tsm_priv_reply reply;
        PrivNotice notice;
        const void *payload;
        PrivQueued *q;
        int r;

        r = parse_notice(msg, len, n_fds, &notice);
        if (r < 0) {
                close_many(fds, n_fds);
                priv_channel_gone(c, "malformed message");
                return -ECONNRESET;
        }
        /* In the monitor's order, as it is read: a reload's REPLY comes after the list of its
         * load, and the last list is the truth. */
        if (r > 0 && notice.type == TSM_PRIV_FILES_CHANGED) {
                deliver_notice(c, &notice);
                return 0;
        }
        if (r > 0) { /* for the loop, after this call */
                PrivLateQueued *l = new0(PrivLateQueued, 1);

                /* Our reply is still to come: read on, whatever this one costs. */
                if (!l) {
                        log_oom();
                        if (notice.type == TSM_PRIV_SIGNAL_RELOAD)
                                log_error("A SIGHUP the monitor passed on (from pid %" PRIu32 ") is lost: out of "
                                          "memory. Nothing was reloaded.", notice.reload.pid);
                        else
                                log_error("A late answer of the kernel to a call on %s (op %u) is not recorded by "
                                          "this worker: out of memory. The monitor keeps it for the next one.",
                                          notice.late.pci_address, (unsigned) notice.late.op);
                        return 0;
                }
                l->notice = notice;
                STAILQ_INSERT_TAIL(&c->late_queued, l, entry);
                event_active(c->ev_deferred, EV_TIMEOUT, 0);
                return 0;
        }
        if (parse_reply(msg, len, n_fds, &reply, &payload) < 0) {
                close_many(fds, n_fds);
                priv_channel_gone(c, "malformed message");
                return -ECONNRESET;
        }
        if (reply.hdr.cookie == cookie) {
                *ret = reply;
                *ret_payload = payload;
                return 1;
        }
        close_many(fds, n_fds);
        q = malloc(offsetof(PrivQueued, payload) + reply.hdr.payload_len);
        if (!q) {
                /* Another call's answer, which it would wait for forever; and ours is still to
                 * come, or just came, so no return would say what the monitor did. */
                priv_channel_gone(c, "out of memory for an answer");
                return -ECONNRESET;
        }
        *q = (PrivQueued) { .reply = reply, .payload_len = reply.hdr.payload_len };
        if (reply.hdr.payload_len > 0) /* payload is NULL then */
                memcpy(q->payload, payload, reply.hdr.payload_len);
        STAILQ_INSERT_TAIL(&c->queued, q, entry);
        event_active(c->ev_deferred, EV_TIMEOUT, 0);
        return 0;
}

/* Sends msg and waits for its reply; keeps replies to guest requests for the loop. The reply's
 * payload, if ret_payload: valid until the next receive (ret->hdr.payload_len bytes). */
int priv_channel_call(PrivChannel *c, void *msg, int fd, struct tsm_priv_reply *ret, int *ret_fd,
                      const void **ret_payload) {
        struct tsm_priv_hdr *h = msg;
        struct tsm_priv_reply reply;
        const void *payload;
        size_t n_fds;
        int fds[1], r;

        if (c->gone)
                return -ECONNRESET;
        h->cookie = priv_channel_next_cookie(c);
        outbox_flush(c);
        r = tsm_priv_send(c->fd, msg, NULL, 0, fd);
        if (r < 0)
                return r;

        do {
                const uint8_t *m;
                ssize_t n;

                n = receive_wait(c, &m, fds, ELEMENTSOF(fds), &n_fds);
                if (n <= 0) {
                        priv_channel_gone(c, n == 0 ? "it hung up" : "receive failed");
                        return -ECONNRESET;
                }
                r = take_or_keep(c, m, (size_t) n, n_fds, fds, h->cookie, &reply, &payload);
                if (r < 0)
                        return r;
        } while (r == 0);

        /* What came with it in its datagram is the loop's, as what came before: read now, or
         * nobody would (cookies are never 0). The reply's payload stays where it is. */
        while (tsm_priv_reader_has_message(&c->reader)) {
                struct tsm_priv_reply other;
                const void *other_payload;
                const uint8_t *m;
                size_t other_n_fds;
                ssize_t n;

                n = receive_wait(c, &m, NULL, 0, &other_n_fds);
                assert(n > 0);
                r = take_or_keep(c, m, (size_t) n, other_n_fds, NULL, 0, &other, &other_payload);
                if (r < 0) {
                        close_many(fds, n_fds);
                        return r;
                }
        }

        if (ret_fd && n_fds == 1 && reply.result >= 0)
                *ret_fd = fds[0];
        else
                close_many(fds, n_fds);
        if (ret_fd && reply.result >= 0 && n_fds != 1) {
                priv_channel_gone(c, "reply without the fd it owes");
                return -ECONNRESET;
        }
        *ret = reply;
        if (ret_payload)
                *ret_payload = payload;
        return reply.result;
}

static bool waiting_of(const PrivRequest *r, uint32_t slot, uint32_t context, uint32_t vdevice) {
        return r->slot == slot && r->context == context && (vdevice == 0 || r->vdevice == vdevice);
}

/* The guest requests of slot's context (and of its vDevice, unless 0: all of the context's)
 * that still wait here fail -ENODEV, as the monitor fails those it holds when the vDevice or
 * context goes. Before the DETACH or CLOSE leaves: sent after it, they would name what the
 * monitor no longer knows (a violation, for which it kills the worker), or, the vDevice id
 * attached again meanwhile, run on a device they were never checked against. A bind or unbind
 * waiting behind them (a release's unbind) has nothing ahead of it then: it goes now, before
 * the DETACH, after which it would name a vDevice the monitor no longer knows. */
void priv_channel_fail_waiting(PrivChannel *c, uint32_t slot, uint32_t context, uint32_t vdevice) {
        TAILQ_HEAD(, PrivRequest) failed = TAILQ_HEAD_INITIALIZER(failed);
        PrivRequest *r, *next;

        for (r = TAILQ_FIRST(&c->waiting); r; r = next) {
                next = TAILQ_NEXT(r, entry);
                if (!r->counted || !waiting_of(r, slot, context, vdevice))
                        continue;
                request_unlink_waiting(c, r);
                /* Not waiting any more: a callback below that cancels it only forgets it. */
                r->queued = mfree(r->queued);
                TAILQ_INSERT_TAIL(&failed, r, entry);
        }
        /* Then what waited behind them, in order, before any of their callbacks can send
         * anything; the walk starts over after each, as a failure's callback may change the
         * list. One the outbox cannot take fails as one the kernel refused. */
        for (;;) {
                int k;

                TAILQ_FOREACH(r, &c->waiting, entry)
                        if (waiting_of(r, slot, context, vdevice))
                                break;
                if (!r)
                        break;
                request_unlink_waiting(c, r);
                k = request_send(c, r, false);
                if (k < 0) {
                        if (r->callback) /* else cancelled */
                                r->callback(k, NULL, 0, r->userdata);
                        priv_request_free(r);
                }
        }
        /* Off the list first: a callback may submit or cancel other requests. */
        while ((r = TAILQ_FIRST(&failed))) {
                TAILQ_REMOVE(&failed, r, entry);
                if (r->callback) /* else cancelled */
                        r->callback(-ENODEV, NULL, 0, r->userdata);
                priv_request_free(r);
        }
}

/* Sends r (taking it), unless it must wait: the monitor holds a bounded number of guest
 * requests, each client a share of it; the rest wait here, each client's in order, and a bind,
 * unbind or settle behind those of its vDevice. */
int priv_channel_submit(PrivChannel *c, PrivRequest *r, PrivRequest **ret) {
        int k;

        if (r->counted ? !may_send(c, r->slot) || slot_has_waiting(c, r->slot) : vdevice_waits_ahead(c, r)) {
                k = priv_slots_add(c->slots, r->slot, 0, 1);
                if (k < 0) {
                        priv_request_free(r);
                        return k;
                }
                TAILQ_INSERT_TAIL(&c->waiting, r, entry);
                c->n_waiting_uncounted += !r->counted;
        } else {
                k = request_send(c, r, false);
                if (k < 0) {
                        priv_request_free(r);
                        return k;
                }
        }
        if (ret)
                *ret = r;
        return 0;
}

void priv_request_cancel(PrivRequest *r) {
        PrivChannel *c;

        if (!r)
                return;
        c = r->channel;
        if (!r->queued) {
                /* The monitor still works on it, and it counts against what the monitor holds
                 * until its answer comes; that answer will find nobody waiting. */
                r->callback = NULL;
                r->userdata = NULL;
                return;
        }
        request_unlink_waiting(c, r);
        priv_request_free(r);
}

bool priv_request_is_waiting(const PrivRequest *r) {
        return r && r->queued;
}

uint32_t priv_request_get_cookie(const PrivRequest *r) {
        return r ? r->cookie : 0;
}

bool priv_request_answered(const PrivRequest *r) {
        return r && r->answered;
}

bool priv_request_monitor_own(const PrivRequest *r) {
        return r && r->monitor_own;
}
