/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libFuzzer target for the worker's end of the channel (daemon/priv-channel.c, priv-call.c):
 * arbitrary datagrams from a monitor, fed through a SOCK_SEQPACKET socketpair into the worker's
 * real PrivChannel, as tsmd-worker reads them: from the event loop (on_readable(): REPLYs to
 * the guest requests, binds, settles, connects and disconnects in flight, and LATEs), while a
 * call waits for its own reply (take_or_keep(): other answers and LATEs kept for the loop), and
 * as the start sequence (priv_channel_read_hello()). A monitor that breaks a rule ends the
 * channel (the worker exits then), never the worker by a crash. A LATE the channel takes goes
 * on to the worker's real recording of it (guest-late.c: guest_audit_late()), with the state that
 * needs of a Manager: an audit log (in a scratch directory, kept from input to input as a
 * worker's is from one to the next), its budget of late answers and the emulated platform's view;
 * the worker's clients and contexts are none. Checks what the worker hands on, not only the
 * absence of crashes: every request's callback runs exactly once, with a result and response a
 * monitor may give; a LATE handed on is one late_valid() takes, a SIGNAL_RELOAD one
 * signal_reload_valid() takes, a FILES_CHANGED's paths as many and as well formed as it says;
 * what the worker sends is well
 * formed, and acknowledges only LATEs it was sent; a blocking call's reason is checked text.
 * Runs in: tests (fuzzing builds only).
 *
 * The requests in flight at the start, by cookie (the channel numbers from 1, seeds name them):
 *   1-4  guest requests of slot 1, context 1, vDevices 1-4 (max_response 4096)
 *   5    a bind (slot 1, context 1, vDevice 1)   6  a settle (vDevice 2)
 *   7    a connect of 0000:01:00.0 to tsm0       8  a disconnect of 0000:01:00.0
 *
 * Input: a mode byte (bit 0: the datagrams are the start sequence, read by
 * priv_channel_read_hello() up to the monitor's hang-up), then records, each a flags byte, a u16
 * length (little-endian) and that many bytes, sent as one datagram. Flags:
 *   bit 0  frame it: size and payload_len in the header made to fit the type and the length,
 *          flags and __reserved cleared (so inputs get past the shape checks)
 *   bit 1  attach an fd (a pipe's)            bit 2  attach another
 *   bit 3  its cookie: that of the blocking call bit 4 makes (after framing)
 *   bit 4  a blocking call reads it (and what is queued before it), instead of the loop; the
 *          call is chosen by bits 5-7 (blocking_call()) and always ends: a refusal with its
 *          cookie follows the datagram
 */

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <event2/event.h>

#include "audit-budget.h"
#include "audit-defaults.h"
#include "audit-log.h"
#include "daemon-config.h"
#include "fuzz.h"
#include "guest.h"
#include "log.h"
#include "manager.h"
#include "priv-call.h"
#include "priv-payload.h"
#include "priv-datagram.h"
#include "priv-reader.h"
#include "tsm-platform.h"
#include "tsm-priv.h"


#define N_REQUESTS 8U
#define MAX_RESPONSE 4096U
/* LATE ids sent that an acknowledgement may name (past this many, acknowledgements go unchecked). */
#define LATE_IDS_MAX 64U

typedef struct Request {
        unsigned n_callbacks;
        int result;
} Request;

typedef struct Fuzz {
        struct event_base *base;
        PrivChannel *channel;
        int monitor;
        unsigned n_gone;
        uint32_t next_cookie; /* the cookie the channel gives its next message */
        Request requests[N_REQUESTS];
        uint64_t late_ids[LATE_IDS_MAX];
        size_t n_late_ids; /* LATE_IDS_MAX + 1: too many to check */
        Manager *manager; /* what guest_audit_late() needs of one */
        uint8_t buf[TSM_PRIV_DATAGRAM_MAX];
        TsmPrivReader reader; /* what the worker sent, a message at a time */
} Fuzz;

/* In memory where there is some: the audit log syncs its records. */
static char dir[] = "/dev/shm/tsmd-fuzz-priv-worker-XXXXXX";
static TsmPlatform *platform;

static void on_gone(void *userdata) {
        Fuzz *f = userdata;

        CHECK(priv_channel_is_gone(f->channel));
        f->n_gone++;
}

static void on_answer(int result, const void *response, size_t response_len, void *userdata) {
        Request *r = userdata;

        r->n_callbacks++;
        r->result = result;
        /* An errno or a value (priv-channel.c's parse_reply() refuses any other result); the
         * response is what the payload held, at most a payload's worth, there iff it has bytes. */
        CHECK(result > -4096);
        CHECK(response_len <= TSM_PRIV_PAYLOAD_MAX);
        CHECK(!response == (response_len == 0));
}

static void on_late(const struct tsm_priv_late *l, void *userdata) {
        Fuzz *f = userdata;

        /* What late_valid() lets through: priv-channel.c never hands on more. */
        CHECK(l->id != 0 && l->hdr.cookie == 0);
        CHECK(l->op >= TSM_PRIV_LATE_GUEST_REQUEST && l->op < _TSM_PRIV_LATE_OP_MAX);
        CHECK(l->result <= 0 && l->result > -4096);
        CHECK(l->response_size <= TSM_PRIV_PAYLOAD_MAX);
        CHECK(l->request_unconsumed <= TSM_PRIV_PAYLOAD_MAX);
        CHECK(l->request_unconsumed == 0 ||
              (l->op == TSM_PRIV_LATE_GUEST_REQUEST && l->result == 0 && l->response_size == 0));
        CHECK(tsm_priv_check_string(l->pci_address, sizeof(l->pci_address)));
        CHECK(tsm_priv_check_string(l->scope, sizeof(l->scope)));
        CHECK(tsm_priv_check_string(l->tsm, sizeof(l->tsm)));
        /* As the worker's own callback does (manager.c). */
        guest_audit_late(f->manager, l);
}

/* A SIGNAL_RELOAD handed on: what signal_reload_valid() lets through. (The worker's own callback
 * reloads through the monitor, which this target does not play: see test-priv-call.) */
static void on_signal_reload(const struct tsm_priv_signal_reload *s, void *userdata) {
        CHECK(s->hdr.cookie == 0 && s->__reserved[0] == 0 && s->__reserved[1] == 0);
        CHECK(s->pid <= INT32_MAX);
        CHECK(tsm_priv_check_string(s->unit, sizeof(s->unit)));
        CHECK(s->pid > 0 || !s->unit[0]);
}

/* A FILES_CHANGED handed on: at most as many paths as differ, each non-empty, shorter than a
 * path may be and NUL-terminated, the last ending the payload. */
static void on_files_changed(uint32_t n_changed, const char *paths, size_t size, void *userdata) {
        uint32_t n = 0;

        CHECK(n_changed <= TSM_PRIV_FILES_MAX);
        CHECK((size == 0) == !paths);
        CHECK(size == 0 || paths[size - 1] == 0);
        for (size_t i = 0; i < size; i += strlen(paths + i) + 1, n++)
                CHECK(strlen(paths + i) > 0 && strlen(paths + i) < TSM_PRIV_PATH_MAX);
        CHECK(n <= n_changed);
}

static void late_sent(Fuzz *f, const uint8_t *msg, size_t len) {
        struct tsm_priv_late l;
        struct tsm_priv_hdr h;

        if (len < sizeof(l))
                return;
        memcpy(&h, msg, sizeof(h));
        if (h.type != TSM_PRIV_LATE)
                return;
        memcpy(&l, msg, sizeof(l));
        if (f->n_late_ids < LATE_IDS_MAX)
                f->late_ids[f->n_late_ids++] = l.id;
        else
                f->n_late_ids = LATE_IDS_MAX + 1;
}

/* SECURITY: the worker makes the monitor forget only what it was told (the monitor kills a worker
 * that acknowledges anything else). */
static void check_late_ack(Fuzz *f, const struct tsm_priv_late_ack *a) {
        if (f->n_late_ids > LATE_IDS_MAX)
                return;
        for (size_t i = 0; i < f->n_late_ids; i++)
                if (f->late_ids[i] == a->id)
                        return;
        CHECK(false);
}

/* Reads what the worker sent: each a well-formed message of its own, never an fd. */
static void drain(Fuzz *f) {
        for (;;) {
                _Alignas(8) uint8_t msg[TSM_PRIV_FIXED_MAX];
                const struct tsm_priv_hdr *h = (const struct tsm_priv_hdr *) msg;
                const TsmPrivTypeDesc *d;
                const char *reason = NULL;
                size_t n_fds;
                int fds[1];
                ssize_t n;

                n = priv_reader_receive(&f->reader, f->monitor, f->buf, fds, ELEMENTSOF(fds), &n_fds);
                if (n <= 0)
                        return;
                CHECK((size_t) n >= sizeof(struct tsm_priv_hdr));
                memcpy(msg, f->buf, sizeof(struct tsm_priv_hdr));
                d = tsm_priv_type_desc(h->type);
                CHECK(d);
                CHECK(tsm_priv_check(f->buf, (size_t) n, n_fds, TSM_PRIV_FROM_WORKER, msg, d->size, NULL, &reason) >= 0);
                if (h->type == TSM_PRIV_LATE_ACK)
                        check_late_ack(f, (const struct tsm_priv_late_ack *) msg);
                close_many(fds, n_fds);
        }
}

static void run_loop(Fuzz *f) {
        /* Queued requests leave once the loop is idle (idle-flush.h), answers kept during a
         * call are delivered from a deferred event: a few rounds see both through. */
        for (unsigned i = 0; i < 3; i++) {
                CHECK(event_base_loop(f->base, EVLOOP_NONBLOCK) >= 0);
                drain(f);
        }
}

static void send_datagram(Fuzz *f, const void *dgram, size_t len, size_t n_fds) {
        int p[2] = { -EBADF, -EBADF };

        /* The LATEs in it, as the worker will split it (a datagram with fds is one message). */
        if (n_fds > 0 || len == 0)
                late_sent(f, dgram, len);
        else {
                TsmPrivSpan spans[TSM_PRIV_PACK_MAX];
                size_t n = tsm_priv_unpack(dgram, len, spans);

                for (size_t i = 0; i < n; i++)
                        late_sent(f, (const uint8_t *) dgram + spans[i].offset, spans[i].len);
        }
        if (n_fds > 0)
                CHECK(pipe2(p, O_CLOEXEC) >= 0);
        priv_datagram_send(f->monitor, dgram, len, p, n_fds);
        safe_close(p[0]);
        safe_close(p[1]);
}

/* What a call's caller may get: the monitor's word, or the channel's end. */
static void check_result(Fuzz *f, int r) {
        CHECK(r > -4096);
        if (r == -ECONNRESET)
                return;
        CHECK(!priv_channel_is_gone(f->channel));
}

/* One of the calls that wait for their reply (its cookie f->next_cookie). */
static void blocking_call(Fuzz *f, unsigned which) {
        _cleanup_free_ char *reason = NULL;
        bool policy_failed = false;
        uint32_t context = 0;
        int fd = -EBADF, state = -1, r;

        switch (which) {
        case 0:
                r = priv_call_reload(f->channel, &fd, &reason, &policy_failed);
                CHECK(r < 0 || (fd >= 0 && !reason && !policy_failed));
                /* SECURITY: the monitor's reason is shown to administrators: checked text. */
                CHECK(!reason || tsm_priv_check_reason(reason, strlen(reason) + 1));
                break;
        case 1:
                r = priv_call_open_context(f->channel, 1, 0, "0123456789abcdef0123456789abcdef", &context, &fd);
                CHECK(r < 0 || fd >= 0);
                break;
        case 2:
                r = priv_call_get_vdevice_state(f->channel, 1, 1, 1, &state);
                break;
        case 3:
                /* Fails the guest requests of the context that still wait in the worker too. */
                r = priv_call_close_context(f->channel, 1, 1);
                break;
        case 4:
                r = priv_call_detach_vdevice(f->channel, 1, 1, 2);
                break;
        case 5:
                r = priv_call_reclaim_context(f->channel, 1, 1, "0123456789abcdef0123456789abcdef",
                                              "fedcba9876543210fedcba9876543210", &fd);
                CHECK(r < 0 || fd >= 0);
                break;
        case 6:
                r = priv_call_reload_commit(f->channel);
                break;
        default:
                r = priv_call_get_device_state(f->channel, "0000:01:00.0", &state);
                break;
        }
        check_result(f, r);
        safe_close(fd);
        drain(f);
}

static void submit_requests(Fuzz *f) {
        for (uint32_t i = 0; i < 4; i++)
                CHECK(priv_call_guest_request(f->channel, 1, 1, i + 1, TSM_BACKEND_EMULATED, "info",
                                              priv_payload_of("req", 3), 3, MAX_RESPONSE, on_answer,
                                              &f->requests[i], NULL) >= 0);
        CHECK(priv_call_set_bound(f->channel, 1, 1, 1, true, on_answer, &f->requests[4], NULL) >= 0);
        CHECK(priv_call_settle_vdevice(f->channel, 1, 1, 2, on_answer, &f->requests[5], NULL) >= 0);
        CHECK(priv_call_connect_device(f->channel, "0000:01:00.0", "tsm0", on_answer, &f->requests[6], NULL) >= 0);
        CHECK(priv_call_disconnect_device(f->channel, "0000:01:00.0", on_answer, &f->requests[7], NULL) >= 0);
        f->next_cookie = N_REQUESTS + 1;
        run_loop(f);
}

static void read_hello(Fuzz *f) {
        _cleanup_(priv_hello_done) PrivHello h = { .last_good_fd = -EBADF };
        int r;

        /* The end of what the monitor says: a start sequence cut short is the monitor's end. */
        CHECK(shutdown(f->monitor, SHUT_WR) >= 0);
        r = priv_channel_read_hello(f->channel, &h);
        if (r < 0)
                return;
        for (size_t i = 0; i < h.n_sockets; i++)
                CHECK(h.socket_fds[i] >= 0);
        CHECK(!h.start_settings || strlen(h.start_settings) < TSM_PRIV_PAYLOAD_MAX);
        CHECK(strlen(h.last_good_reason) <= TSM_PRIV_REASON_MAX);
        CHECK(h.last_good_fd >= 0 || !h.last_good_stale);
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

static void dir_remove(void) {
        (void) nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void setup(void) {
        static struct event_base *base;
        DaemonConfig config;
        const char *message = NULL;
        unsigned line = 0;

        /* Every malformed message is logged as an error: not what a fuzzer should print. */
        log_set_max_level(LOG_CRIT);
        if (access("/dev/shm", W_OK) < 0)
                memcpy(dir, "/tmp/////", strlen("/dev/shm/"));
        CHECK(mkdtemp(dir));
        CHECK(atexit(dir_remove) == 0);
        /* The worker's view of the emulated platform, as manager_new() makes it. */
        base = event_base_new();
        CHECK(base);
        CHECK(daemon_config_init(&config) >= 0);
        CHECK(daemon_config_load_text(&config, "[Platform]\nMode=emulated\n", &line, &message) >= 0);
        CHECK(tsm_platform_new_view(base, &config.platform, true, 0, &platform) >= 0);
        daemon_config_done(&config);
}

/* What guest_audit_late() needs of a Manager, the audit log opened as manager.c opens it. */
static Manager *manager_new_for_late(struct event_base *base, PrivChannel *channel) {
        AuditLogStatus status;
        AuditConfig ac;
        Manager *m;

        m = new0(Manager, 1);
        CHECK(m);
        m->base = base;
        m->channel = channel;
        m->platform = platform;
        audit_config_init(&ac);
        ac.directory = dir;
        ac.max_file_size = 16384;
        ac.n_files = 2;
        ac.journal = false;
        CHECK(audit_log_open(base, &ac, &m->audit) >= 0);
        if (audit_log_get_status(m->audit, &status) >= 0)
                m->audit_seq_at_open = status.last_committed_seq;
        CHECK(audit_budget_new(m->audit, base, AUDIT_REFUSALS_PER_UID_DEFAULT,
                               AUDIT_REFUSAL_INTERVAL_SEC_DEFAULT * 1000000ULL, /* refusals= */ false, &m->late_budget) >= 0);
        return m;
}

/* In manager_free()'s order (audit_log_stop() first, then priv_channel_finish()): the log's
 * pending callbacks run while the channel is there. */
static void manager_free_for_late(Manager *m) {
        m->late_budget = audit_budget_free(m->late_budget);
        guest_late_free_unrecorded(m);
        m->audit = audit_log_free(m->audit);
        free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static bool initialized;
        Fuzz *f;
        uint8_t *dgram;
        bool hello;
        int sv[2];

        if (size < 1 || size > 256 * 1024)
                return 0;
        if (!initialized) {
                setup();
                initialized = true;
        }

        hello = data[0] & 1;
        data++;
        size--;

        f = new0(Fuzz, 1);
        dgram = malloc(UINT16_MAX + 1);
        CHECK(f && dgram);
        f->base = event_base_new();
        CHECK(f->base);
        /* The worker's end blocks, as tsmd gives it; the test's never. */
        CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) >= 0);
        f->monitor = sv[0];
        CHECK(fcntl(f->monitor, F_SETFL, O_NONBLOCK) >= 0);
        CHECK(priv_channel_new(f->base, sv[1], on_gone, f, &f->channel) >= 0);
        f->manager = manager_new_for_late(f->base, f->channel);
        priv_channel_set_late_callback(f->channel, on_late, f);
        priv_channel_set_signal_reload_callback(f->channel, on_signal_reload, f);
        priv_channel_set_files_changed_callback(f->channel, on_files_changed, f);
        if (!hello)
                submit_requests(f);

        while (size >= 3 && !priv_channel_is_gone(f->channel)) {
                uint8_t flags = data[0];
                size_t len = MIN((size_t) (data[1] | data[2] << 8), size - 3);

                memcpy(dgram, data + 3, len);
                data += 3 + len;
                size -= 3 + len;

                if (flags & 1)
                        priv_datagram_frame(dgram, len);
                if ((flags & 8) && len >= sizeof(struct tsm_priv_hdr))
                        memcpy(dgram + offsetof(struct tsm_priv_hdr, cookie), &f->next_cookie, sizeof(uint32_t));
                send_datagram(f, dgram, len, !!(flags & 2) + !!(flags & 4));
                if (hello)
                        continue;
                if (flags & 16) {
                        struct tsm_priv_reply refusal;

                        tsm_priv_init(&refusal, TSM_PRIV_REPLY, f->next_cookie, 0);
                        refusal.result = -EIO;
                        send_datagram(f, &refusal, sizeof(refusal), 0);
                        blocking_call(f, flags >> 5);
                        f->next_cookie++;
                        if (f->next_cookie == 0)
                                f->next_cookie = 1;
                }
                run_loop(f);
        }
        if (hello)
                read_hello(f);
        else
                run_loop(f);

        /* The rest fail now, as when the worker exits: every callback runs exactly once. */
        audit_log_stop(f->manager->audit);
        priv_channel_finish(f->channel, 0, 0);
        manager_free_for_late(f->manager);
        drain(f);
        for (size_t i = 0; i < N_REQUESTS && !hello; i++)
                CHECK(f->requests[i].n_callbacks == 1);
        CHECK(f->n_gone <= 1);
        CHECK(f->n_gone == 0 || priv_channel_is_gone(f->channel));

        priv_channel_free(f->channel);
        safe_close(f->monitor);
        event_base_free(f->base);
        free(dgram);
        free(f);
        return 0;
}
