/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The worker's side of the channel (daemon/priv-call.h), against a test playing the monitor:
 * one client slot gets at most an eighth of what the monitor holds, the rest of its guest
 * requests wait in the worker, and they leave in the order they were made, even when the slot
 * makes another request the moment an answer frees room (from the answer's callback).
 * Runs in: tests.
 */

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "harness.h"
#include "log-capture.h"
#include "macro.h"
#include "priv-call.h"
#include "priv-payload.h"
#include "priv-reader.h"
#include "tsm-priv-batch.h"
#include "tsm-priv.h"

#define SLOT 7
#define CONTEXT 3
#define RECLAIM_ID "0123456789abcdef0123456789abcdef"
#define SLOT_MAX (TSM_PRIV_REQUESTS_MAX / 8)

typedef struct Fixture {
        struct event_base *base;
        PrivChannel *channel;
        int monitor;
        unsigned n_answered;
        unsigned n_failed;
        bool gone_ok; /* the test cuts the channel on purpose */
        bool gone;
        unsigned n_late;
        struct tsm_priv_late late;
        unsigned n_signal_reload;
        struct tsm_priv_signal_reload signal_reload;
        unsigned n_files_changed;
        uint32_t files_changed_n;
        char files_changed[256]; /* the paths, NULs made '|' */
        uint8_t buf[TSM_PRIV_DATAGRAM_MAX];
        TsmPrivReader reader; /* what the worker sent, a message at a time */
} Fixture;

static Fixture *fixture;

/* Lets a test make the next allocation of a given size fail, as test-priv-batch does, and count
 * them: glibc's allocator underneath, so not where AddressSanitizer owns malloc and free. */
static size_t fail_alloc_of_size;
static unsigned n_allocs;
#ifndef HAVE_ASAN
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t n, size_t size);

static bool alloc_fails(size_t size) {
        n_allocs++;
        if (size == 0 || size != fail_alloc_of_size)
                return false;
        fail_alloc_of_size = 0;
        errno = ENOMEM;
        return true;
}

void *malloc(size_t size) {
        return alloc_fails(size) ? NULL : __libc_malloc(size);
}

void *calloc(size_t n, size_t size) {
        return alloc_fails(size > 0 && n <= SIZE_MAX / size ? n * size : 0) ? NULL : __libc_calloc(n, size);
}
#endif

/* Lets a test make the next batch the worker sends fail with an errno of the kernel's (ENOMEM:
 * no memory for the datagram), as its channel's socket would. */
static int fail_sendmmsg_errno;

int sendmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags) {
        if (fail_sendmmsg_errno != 0) {
                errno = fail_sendmmsg_errno;
                fail_sendmmsg_errno = 0;
                return -1;
        }
        return (int) syscall(SYS_sendmmsg, fd, vec, n, flags);
}

/* What priv-channel.c keeps of a LATE or SIGNAL_RELOAD, and of another call's answer, that come
 * while a call waits for its reply, laid out as there: the sizes of the allocations to fail. A
 * layout that drifts shows: the tests check that the allocation was asked for. */
struct late_queued_layout {
        void *next;
        struct {
                uint32_t type;
                union {
                        struct tsm_priv_late late;
                        struct tsm_priv_signal_reload reload;
                };
        } notice;
};
struct reply_queued_layout {
        void *next;
        struct tsm_priv_reply reply;
        size_t payload_len;
        uint8_t payload[];
};

static void on_gone(void *userdata) {
        if (!fixture->gone_ok)
                TEST_FAIL("the worker says the monitor is gone");
        fixture->gone = true;
}

/* The worker's channel (blocking: as in tsmd, else non-blocking) with the test as the monitor. */
static void fixture_start(Fixture *f, bool blocking) {
        int sv[2];

        fixture = f;
        ASSERT_OK(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK), 0, sv));
        f->monitor = sv[0];
        f->base = event_base_new();
        ASSERT_NOT_NULL(f->base);
        ASSERT_OK(priv_channel_new(f->base, sv[1], on_gone, NULL, &f->channel));
}

static void fixture_stop(Fixture *f) {
        priv_channel_free(f->channel);
        close(f->monitor);
        event_base_free(f->base);
}

/* Request number id (its vDevice) of slot; submit(): of SLOT. */
static void submit_in(uint32_t slot, uint32_t id, PrivRequestCallback cb) {
        ASSERT_OK(priv_call_guest_request(fixture->channel, slot, CONTEXT, id, TSM_BACKEND_EMULATED, "info",
                                          priv_payload_of("x", 1), 1, 16, cb, (void *) (uintptr_t) id,
                                          NULL));
}

static void submit(uint32_t id, PrivRequestCallback cb) {
        submit_in(SLOT, id, cb);
}

/* Runs the worker's loop long enough for queued requests to leave (they go once it is idle,
 * or 1 ms after the first). */
static void run_worker(void) {
        for (unsigned i = 0; i < 5; i++) {
                ASSERT_OK(event_base_loop(fixture->base, EVLOOP_NONBLOCK));
                usleep(2000);
        }
}

/* The next message the monitor received, its first size bytes (at least that many) into ret;
 * false once none is waiting. */
static bool monitor_receive_next(void *ret, size_t size) {
        size_t n_fds;
        ssize_t k = priv_reader_receive(&fixture->reader, fixture->monitor, fixture->buf, NULL, 0, &n_fds);

        if (k == -EAGAIN)
                return false;
        ASSERT_TRUE(k >= (ssize_t) size);
        memcpy(ret, fixture->buf, size);
        return true;
}

/* The requests the monitor received, in order: their slots into slots (NULL: each must be
 * SLOT's), vDevice ids into ids, their cookies into cookies; returns how many. */
static size_t monitor_receive_slots(uint32_t *slots, uint32_t *ids, uint32_t *cookies, size_t max) {
        struct tsm_priv_guest_request m;
        size_t n = 0;

        while (monitor_receive_next(&m, sizeof(m))) {
                ASSERT_EQ(m.hdr.type, (uint32_t) TSM_PRIV_GUEST_REQUEST);
                ASSERT_TRUE(n < max);
                if (slots)
                        slots[n] = m.slot;
                else
                        ASSERT_EQ(m.slot, (uint32_t) SLOT);
                ids[n] = m.vdevice;
                cookies[n++] = m.hdr.cookie;
        }
        return n;
}

static size_t monitor_receive(uint32_t *ids, uint32_t *cookies, size_t max) {
        return monitor_receive_slots(NULL, ids, cookies, max);
}

static void monitor_answer(uint32_t cookie) {
        struct tsm_priv_reply rep;

        tsm_priv_init(&rep, TSM_PRIV_REPLY, cookie, 0);
        rep.result = 0;
        ASSERT_OK(tsm_priv_send(fixture->monitor, &rep, NULL, 0, -EBADF));
}

static void on_answer(int result, const void *response, size_t len, void *userdata) {
        ASSERT_OK(result);
        fixture->n_answered++;
}

/* The first answer's callback makes a request at once, as a client would. */
static void on_answer_then_submit(int result, const void *response, size_t len, void *userdata) {
        on_answer(result, response, len, userdata);
        submit(1000, on_answer);
}

TEST(slot_quota_keeps_order) {
        uint32_t ids[TSM_PRIV_REQUESTS_MAX], cookies[TSM_PRIV_REQUESTS_MAX];
        Fixture f = {};

        fixture_start(&f, false);

        /* Two more than the slot's share: those two wait in the worker. */
        submit(1, on_answer_then_submit);
        for (uint32_t id = 2; id <= SLOT_MAX + 2; id++)
                submit(id, on_answer);
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), (size_t) SLOT_MAX);
        for (size_t i = 0; i < SLOT_MAX; i++)
                ASSERT_EQ(ids[i], (uint32_t) i + 1);

        /* An answer makes room for one: the oldest waiting goes, not the request its callback
         * made, which waits behind the other. */
        monitor_answer(cookies[0]);
        run_worker();
        ASSERT_EQ(f.n_answered, 1u);
        ASSERT_EQ(monitor_receive(ids, cookies + SLOT_MAX, 4), 1u);
        ASSERT_EQ(ids[0], (uint32_t) SLOT_MAX + 1);

        monitor_answer(cookies[1]);
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies + SLOT_MAX + 1, 4), 1u);
        ASSERT_EQ(ids[0], (uint32_t) SLOT_MAX + 2);

        monitor_answer(cookies[2]);
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies + SLOT_MAX + 2, 4), 1u);
        ASSERT_EQ(ids[0], 1000u);

        /* Everything answered: nothing is left over. */
        for (size_t i = 3; i < SLOT_MAX + 3; i++)
                monitor_answer(cookies[i]);
        run_worker();
        ASSERT_EQ(f.n_answered, (unsigned) SLOT_MAX + 3);
        ASSERT_EQ(monitor_receive(ids, cookies, 4), 0u);

        fixture_stop(&f);
}

/* A request that waits in the worker keeps its message and payload in one block: two allocations
 * (that and the request), and the payload reaches the monitor as it was given. */
TEST(a_waiting_request_keeps_its_payload) {
        static const char payload[] = "the waiting one's payload";
        uint32_t ids[TSM_PRIV_REQUESTS_MAX], cookies[TSM_PRIV_REQUESTS_MAX];
        struct tsm_priv_guest_request m;
        size_t n_fds;
        ssize_t k;
        Fixture f = {};

        fixture_start(&f, false);
        for (uint32_t id = 1; id <= SLOT_MAX; id++)
                submit(id, on_answer);
        n_allocs = 0;
        ASSERT_OK(priv_call_guest_request(f.channel, SLOT, CONTEXT, 500, TSM_BACKEND_EMULATED, "info",
                                          priv_payload_of(payload, sizeof(payload)), sizeof(payload), 16,
                                          on_answer, NULL, NULL));
#ifndef HAVE_ASAN
        ASSERT_EQ(n_allocs, 2u);
#endif
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), (size_t) SLOT_MAX);

        monitor_answer(cookies[0]);
        run_worker();
        k = priv_reader_receive(&f.reader, f.monitor, f.buf, NULL, 0, &n_fds);
        ASSERT_EQ(k, (ssize_t) (sizeof(m) + sizeof(payload)));
        memcpy(&m, f.buf, sizeof(m));
        ASSERT_EQ(m.vdevice, 500u);
        ASSERT_EQ(m.hdr.payload_len, (uint32_t) sizeof(payload));
        ASSERT_MEMEQ(f.buf + sizeof(m), payload, sizeof(payload));

        for (size_t i = 1; i < SLOT_MAX; i++)
                monitor_answer(cookies[i]);
        monitor_answer(m.hdr.cookie);
        run_worker();
        ASSERT_EQ(f.n_answered, (unsigned) SLOT_MAX + 1);
        fixture_stop(&f);
}

static void on_failed(int result, const void *response, size_t len, void *userdata) {
        ASSERT_TRUE(result < 0);
        fixture->n_failed++;
}

/* On the first answer: a full outbox of slot 8's requests, one more of slot 8 waiting behind
 * it, and the next send failing. */
static void on_answer_fill_the_outbox(int result, const void *response, size_t len, void *userdata) {
        on_answer(result, response, len, userdata);
        for (uint32_t id = 1; id <= SLOT_MAX; id++)
                submit_in(SLOT + 1, 100 + id, on_failed);
        submit_in(SLOT + 1, 200, on_answer);
        fail_sendmmsg_errno = EPIPE;
}

/* A reply makes room for a waiting request; sending it flushes a full outbox, which the kernel
 * refuses, and each refused request's failure makes room in its own slot, for another waiting
 * one. That one was sent from inside the failure while the run that sent the first went on
 * with it as waiting: taken off the wrong list and sent again, the worker aborted (or used a
 * freed request, had a callback cancelled it). */
TEST(requests_freed_by_a_failed_flush_are_sent_once) {
        uint32_t ids[TSM_PRIV_REQUESTS_MAX], cookies[TSM_PRIV_REQUESTS_MAX];
        struct tsm_priv_guest_request m;
        unsigned n_slot = 0, n_other = 0;
        Fixture f = {};

        fixture_start(&f, false);
        submit(1, on_answer_fill_the_outbox);
        for (uint32_t id = 2; id <= SLOT_MAX + 1; id++)
                submit(id, on_answer);
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), (size_t) SLOT_MAX);

        monitor_answer(cookies[0]);
        run_worker();
        ASSERT_EQ(f.n_answered, 1u);
        ASSERT_EQ(f.n_failed, (unsigned) SLOT_MAX);
        ASSERT_FALSE(priv_channel_is_gone(f.channel));

        /* What the monitor gets after the refused batch: the waiting one of each slot, once. */
        while (monitor_receive_next(&m, sizeof(m))) {
                if (m.slot == SLOT) {
                        ASSERT_EQ(m.vdevice, (uint32_t) SLOT_MAX + 1);
                        n_slot++;
                } else {
                        ASSERT_EQ(m.vdevice, 200u);
                        n_other++;
                }
        }
        ASSERT_EQ(n_slot, 1u);
        ASSERT_EQ(n_other, 1u);
        fixture_stop(&f);
}

/* The waiting request the failures below cancel (once). */
static PrivRequest *to_cancel;

static void on_failed_cancel(int result, const void *response, size_t len, void *userdata) {
        on_failed(result, response, len, userdata);
        priv_request_cancel(TAKE_PTR(to_cancel));
}

static void on_cancelled(int result, const void *response, size_t len, void *userdata) {
        TEST_FAIL("a cancelled request's callback ran (%s)", strerror(-result));
}

/* On the first answer: a full outbox of slot 8's requests, whose failures cancel to_cancel,
 * and the next send failing. */
static void on_answer_fill_the_outbox_to_cancel(int result, const void *response, size_t len, void *userdata) {
        on_answer(result, response, len, userdata);
        for (uint32_t id = 1; id <= SLOT_MAX; id++)
                submit_in(SLOT + 1, 100 + id, on_failed_cancel);
        fail_sendmmsg_errno = EPIPE;
}

/* A reply makes room for a waiting request; sending it flushes a full outbox, which the kernel
 * refuses, and a refused request's failure cancels the one being sent. That one is no longer
 * waiting: cancelled, it goes all the same (the monitor answers it to nobody), and is freed once.
 * Taken for a waiting one, it was unlinked from a list it was not on and freed under its send. */
TEST(a_request_cancelled_while_its_send_flushes_is_freed_once) {
        uint32_t ids[TSM_PRIV_REQUESTS_MAX], cookies[TSM_PRIV_REQUESTS_MAX];
        Fixture f = {};

        fixture_start(&f, false);
        submit(1, on_answer_fill_the_outbox_to_cancel);
        for (uint32_t id = 2; id <= SLOT_MAX; id++)
                submit(id, on_answer);
        ASSERT_OK(priv_call_guest_request(f.channel, SLOT, CONTEXT, SLOT_MAX + 1, TSM_BACKEND_EMULATED,
                                          "info", priv_payload_of("x", 1), 1, 16, on_cancelled, NULL,
                                          &to_cancel));
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), (size_t) SLOT_MAX);

        monitor_answer(cookies[0]);
        run_worker();
        ASSERT_NULL(to_cancel); /* the first failure cancelled it */
        ASSERT_EQ(f.n_answered, 1u);
        ASSERT_EQ(f.n_failed, (unsigned) SLOT_MAX);
        ASSERT_FALSE(priv_channel_is_gone(f.channel));

        /* It went, once; its answer finds nobody waiting, and the slot's counts are right: the
         * slot's last answers make room for a full share again. */
        ASSERT_EQ(monitor_receive(ids, cookies + SLOT_MAX, ELEMENTSOF(ids) - SLOT_MAX), 1u);
        ASSERT_EQ(ids[0], (uint32_t) SLOT_MAX + 1);
        for (size_t i = 1; i <= SLOT_MAX; i++)
                monitor_answer(cookies[i]);
        run_worker();
        ASSERT_EQ(f.n_answered, (unsigned) SLOT_MAX);
        ASSERT_FALSE(priv_call_slot_busy(f.channel, SLOT));
        for (uint32_t id = 1; id <= SLOT_MAX; id++)
                submit(500 + id, on_answer);
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), (size_t) SLOT_MAX);
        fixture_stop(&f);
}

static void on_failed_cancel_any(int result, const void *response, size_t len, void *userdata) {
        on_failed(result, response, len, userdata);
        priv_request_cancel(TAKE_PTR(to_cancel));
}

/* Behind a full share of SLOT's: two waiting, the first's failure cancelling the second. */
static void fill_share_and_wait_two(Fixture *f, uint32_t vdevice) {
        uint32_t ids[TSM_PRIV_REQUESTS_MAX], cookies[TSM_PRIV_REQUESTS_MAX];

        for (uint32_t id = 1; id <= SLOT_MAX; id++)
                submit(id, on_failed);
        ASSERT_OK(priv_call_guest_request(f->channel, SLOT, CONTEXT, vdevice, TSM_BACKEND_EMULATED, "info",
                                          priv_payload_of("x", 1), 1, 16, on_failed_cancel_any, NULL, NULL));
        ASSERT_OK(priv_call_guest_request(f->channel, SLOT, CONTEXT, vdevice, TSM_BACKEND_EMULATED, "info",
                                          priv_payload_of("x", 1), 1, 16, on_cancelled, NULL, &to_cancel));
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), (size_t) SLOT_MAX);
}

/* A detach fails the vDevice's waiting requests; a failure's callback may cancel another of
 * them (a client that goes on the first error): that one is no longer waiting, its callback
 * does not run, and it is freed once. Taken for a waiting one, it was uncounted twice (an
 * abort) and freed twice. */
TEST(a_request_failed_with_others_may_cancel_them) {
        Fixture f = {};

        fixture_start(&f, false);
        fill_share_and_wait_two(&f, 100);
        /* The monitor is gone: the detach itself fails, after the waiting ones did. */
        f.gone_ok = true;
        ASSERT_OK(shutdown(f.monitor, SHUT_RDWR));
        ASSERT_TRUE(priv_call_detach_vdevice(f.channel, SLOT, CONTEXT, 100) < 0);
        ASSERT_NULL(to_cancel);
        ASSERT_EQ(f.n_failed, 1u);
        fixture_stop(&f);
}

/* At the worker's end every request still waiting fails; a failure's callback may cancel the
 * next one. The run went on with the one cancelled, freed. */
TEST(requests_failed_at_the_end_may_cancel_the_next) {
        Fixture f = {};

        fixture_start(&f, false);
        fill_share_and_wait_two(&f, 100);
        priv_channel_finish(f.channel, 1000, UINT64_MAX);
        ASSERT_NULL(to_cancel);
        ASSERT_EQ(f.n_failed, (unsigned) SLOT_MAX + 1);
        fixture_stop(&f);
}

static void on_answer_or_timeout(int result, const void *response, size_t len, void *userdata) {
        if (result == 0)
                fixture->n_answered++;
        else {
                ASSERT_EQ(result, -ETIMEDOUT);
                fixture->n_failed++;
        }
}

/* At the worker's end, a monitor that answers one by one, each well within the silence window,
 * does not carry the wait past its deadline (the worker's stop time, after which the monitor
 * kills it): the rest fail then. */
TEST(the_end_waits_for_answers_until_its_deadline_only) {
        uint32_t ids[8], cookies[8];
        uint64_t start, took;
        Fixture f = {};
        size_t n;
        pid_t pid;
        int status;

        fixture_start(&f, false);
        for (uint32_t id = 1; id <= ELEMENTSOF(ids); id++)
                submit(id, on_answer_or_timeout);
        run_worker();
        n = monitor_receive(ids, cookies, ELEMENTSOF(ids));
        ASSERT_EQ(n, ELEMENTSOF(ids));

        /* The monitor: an answer every 200 ms, 1.6 s for all. */
        pid = fork();
        ASSERT_TRUE(pid >= 0);
        if (pid == 0) {
                for (size_t i = 0; i < n; i++) {
                        usleep(200 * 1000);
                        monitor_answer(cookies[i]);
                }
                _exit(EXIT_SUCCESS);
        }

        start = now_monotonic_usec();
        priv_channel_finish(f.channel, 1000 * 1000, start + 500 * 1000);
        took = now_monotonic_usec() - start;
        ASSERT_EQ(waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

        ASSERT_GE(took, 500 * 1000ULL);
        ASSERT_LE(took, 1200 * 1000ULL);
        ASSERT_LE(f.n_answered, (unsigned) n - 1);
        ASSERT_EQ(f.n_answered + f.n_failed, (unsigned) n);
        fixture_stop(&f);
}

/* What the monitor received, in order, of any type that names a vDevice (a GUEST_REQUEST and the
 * vDevice messages start alike): types, vDevice ids and cookies; returns how many. */
static size_t monitor_receive_any(uint32_t *types, uint32_t *ids, uint32_t *cookies, size_t max) {
        struct tsm_priv_vdevice m;
        size_t n = 0;

        while (monitor_receive_next(&m, sizeof(m))) {
                ASSERT_EQ(m.slot, (uint32_t) SLOT);
                ASSERT_TRUE(n < max);
                types[n] = m.hdr.type;
                ids[n] = m.vdevice;
                cookies[n++] = m.hdr.cookie;
        }
        return n;
}

static void submit_to(uint32_t vdevice, PrivRequestCallback cb) {
        ASSERT_OK(priv_call_guest_request(fixture->channel, SLOT, CONTEXT, vdevice, TSM_BACKEND_EMULATED,
                                          "info", priv_payload_of("x", 1), 1, 16, cb, NULL, NULL));
}

/* A bind of a vDevice whose guest requests wait in the worker waits behind them (it overtook
 * them to the device's lane, which then ran them in the state it made), outside the quota: it
 * goes right after the last of them, the share full or not. One of another vDevice goes at
 * once; a guest request made after either waits its turn. */
TEST(a_bind_waits_behind_the_waiting_requests_of_its_vdevice) {
        uint32_t types[TSM_PRIV_REQUESTS_MAX], ids[TSM_PRIV_REQUESTS_MAX], cookies[TSM_PRIV_REQUESTS_MAX];
        Fixture f = {};

        fixture_start(&f, false);
        for (size_t i = 0; i < SLOT_MAX + 2; i++)
                submit_to(1, on_answer);
        ASSERT_OK(priv_call_set_bound(f.channel, SLOT, CONTEXT, 1, true, on_answer, NULL, NULL));
        ASSERT_OK(priv_call_set_bound(f.channel, SLOT, CONTEXT, 2, true, on_answer, NULL, NULL));
        submit_to(2, on_answer);
        run_worker();
        ASSERT_EQ(monitor_receive_any(types, ids, cookies, ELEMENTSOF(ids)), (size_t) SLOT_MAX + 1);
        for (size_t i = 0; i < SLOT_MAX; i++) {
                ASSERT_EQ(types[i], (uint32_t) TSM_PRIV_GUEST_REQUEST);
                ASSERT_EQ(ids[i], 1u);
        }
        ASSERT_EQ(types[SLOT_MAX], (uint32_t) TSM_PRIV_BIND_VDEVICE);
        ASSERT_EQ(ids[SLOT_MAX], 2u);

        /* Room for one: the first waiting request goes, the bind still behind the second. */
        monitor_answer(cookies[0]);
        run_worker();
        ASSERT_EQ(monitor_receive_any(types, ids, cookies + SLOT_MAX + 1, 4), 1u);
        ASSERT_EQ(types[0], (uint32_t) TSM_PRIV_GUEST_REQUEST);
        ASSERT_EQ(ids[0], 1u);

        /* Room for one more: the last waiting request, and the bind right behind it. */
        monitor_answer(cookies[1]);
        run_worker();
        ASSERT_EQ(monitor_receive_any(types, ids, cookies + SLOT_MAX + 2, 4), 2u);
        ASSERT_EQ(types[0], (uint32_t) TSM_PRIV_GUEST_REQUEST);
        ASSERT_EQ(ids[0], 1u);
        ASSERT_EQ(types[1], (uint32_t) TSM_PRIV_BIND_VDEVICE);
        ASSERT_EQ(ids[1], 1u);

        /* The share is full: the request after them waits for the next answer. */
        monitor_answer(cookies[2]);
        run_worker();
        ASSERT_EQ(monitor_receive_any(types, ids, cookies + SLOT_MAX + 4, 4), 1u);
        ASSERT_EQ(types[0], (uint32_t) TSM_PRIV_GUEST_REQUEST);
        ASSERT_EQ(ids[0], 2u);

        for (size_t i = 3; i < SLOT_MAX + 5; i++)
                monitor_answer(cookies[i]);
        run_worker();
        ASSERT_EQ(f.n_answered, (unsigned) SLOT_MAX + 5);
        ASSERT_EQ(monitor_receive_any(types, ids, cookies, 4), 0u);
        fixture_stop(&f);
}

static uint32_t taken_cookie;

/* As on_answer(), and takes on saying its kept answer recorded (userdata: where its request is). */
static void on_answer_take_kept(int result, const void *response, size_t len, void *userdata) {
        on_answer(result, response, len, NULL);
        taken_cookie = priv_request_take_kept(*(PrivRequest **) userdata);
}

static void monitor_answer_kept(uint32_t cookie) {
        struct tsm_priv_reply rep;

        tsm_priv_init(&rep, TSM_PRIV_REPLY, cookie, 0);
        rep.hdr.flags = TSM_PRIV_REPLY_KEPT;
        ASSERT_OK(tsm_priv_send(fixture->monitor, &rep, NULL, 0, -EBADF));
}

/* The next message, a RECORDED (the worker's loop runs until it comes: an idle worker sends one
 * PRIV_RECORDED_LINGER_USEC after the first it owes): its cookies into cookies; returns how
 * many. */
static size_t monitor_receive_recorded(uint32_t *cookies, size_t max, bool *ret_late) {
        const char *reason = NULL;
        const void *payload = NULL;
        struct tsm_priv_recorded m;
        size_t n_fds;
        ssize_t k;

        for (unsigned i = 0; i < 1000; i++) {
                struct pollfd p = { .fd = fixture->monitor, .events = POLLIN };

                if (tsm_priv_reader_has_message(&fixture->reader) || poll(&p, 1, 0) > 0)
                        break;
                ASSERT_OK(event_base_loop(fixture->base, EVLOOP_NONBLOCK));
                usleep(1000);
        }
        k = priv_reader_receive(&fixture->reader, fixture->monitor, fixture->buf, NULL, 0, &n_fds);
        ASSERT_GE(k, 1);
        ASSERT_OK(tsm_priv_check(fixture->buf, (size_t) k, n_fds, TSM_PRIV_FROM_WORKER, &m, sizeof(m), &payload,
                                 &reason));
        ASSERT_EQ(m.hdr.type, TSM_PRIV_RECORDED);
        ASSERT_EQ(m.hdr.cookie, 0u);
        ASSERT_EQ(m.hdr.payload_len % sizeof(uint32_t), 0u);
        ASSERT_LE(m.hdr.payload_len / sizeof(uint32_t), max);
        memcpy(cookies, payload, m.hdr.payload_len);
        *ret_late = m.late;
        return m.hdr.payload_len / sizeof(uint32_t);
}

/* A kept answer (TSM_PRIV_REPLY_KEPT) is said recorded (RECORDED) once its callback's owner says
 * so, or at once if the callback did not take that on, all of those since the last in one
 * message; one nobody waited for any more is said unrecorded (late). An answer not kept is not. */
TEST(kept_answers_are_said_recorded_together) {
        uint32_t types[8], ids[8], cookies[8], recorded[8];
        PrivRequest *a = NULL, *c = NULL;
        Fixture f = {};
        bool late;

        fixture_start(&f, false);
        ASSERT_OK(priv_call_set_bound(f.channel, SLOT, CONTEXT, 1, true, on_answer_take_kept, &a, &a));
        ASSERT_OK(priv_call_set_bound(f.channel, SLOT, CONTEXT, 2, true, on_answer, NULL, NULL));
        ASSERT_OK(priv_call_set_bound(f.channel, SLOT, CONTEXT, 3, true, on_answer, NULL, &c));
        ASSERT_OK(priv_call_set_bound(f.channel, SLOT, CONTEXT, 4, true, on_answer, NULL, NULL));
        run_worker();
        ASSERT_EQ(monitor_receive_any(types, ids, cookies, ELEMENTSOF(ids)), 4u);
        priv_request_cancel(c); /* its caller left */
        monitor_answer_kept(cookies[0]);
        monitor_answer_kept(cookies[1]);
        monitor_answer_kept(cookies[2]);
        monitor_answer(cookies[3]);
        run_worker();
        ASSERT_EQ(f.n_answered, 3u);
        ASSERT_EQ(taken_cookie, cookies[0]);
        ASSERT_EQ(monitor_receive_recorded(recorded, ELEMENTSOF(recorded), &late), 1u);
        ASSERT_FALSE(late);
        ASSERT_EQ(recorded[0], cookies[1]);
        /* The cancelled one's: nobody recorded it, the monitor is to send it back as a LATE. */
        ASSERT_EQ(monitor_receive_recorded(recorded, ELEMENTSOF(recorded), &late), 1u);
        ASSERT_TRUE(late);
        ASSERT_EQ(recorded[0], cookies[2]);
        ASSERT_FALSE(monitor_receive_next(types, sizeof(struct tsm_priv_hdr)));

        /* Owed, it goes with what goes next, at once, in order. */
        submit_to(5, on_answer);
        priv_answer_recorded(f.channel, cookies[3], false); /* (not one kept: the monitor would object) */
        ASSERT_OK(priv_send_ready(f.channel));
        {
                struct tsm_priv_hdr h;

                ASSERT_TRUE(monitor_receive_next(&h, sizeof(h)));
                ASSERT_EQ(h.type, TSM_PRIV_GUEST_REQUEST);
                ASSERT_EQ(monitor_receive_recorded(recorded, ELEMENTSOF(recorded), &late), 1u);
                ASSERT_EQ(recorded[0], cookies[3]);
                ASSERT_TRUE(monitor_receive_next(&h, sizeof(h)));
                ASSERT_EQ(h.type, TSM_PRIV_READY);
        }

        /* The one taken on, when its record is durable. */
        priv_answer_recorded(f.channel, taken_cookie, false);
        run_worker();
        ASSERT_EQ(monitor_receive_recorded(recorded, ELEMENTSOF(recorded), &late), 1u);
        ASSERT_FALSE(late);
        ASSERT_EQ(recorded[0], cookies[0]);
        ASSERT_FALSE(monitor_receive_next(types, sizeof(struct tsm_priv_hdr)));
        fixture_stop(&f);
}

/* A detach of a vDevice whose release's unbind waits behind its waiting requests: those fail,
 * and the unbind goes before the DETACH, not after it (naming a vDevice the monitor no longer
 * has: a violation, for which it kills the worker). */
TEST(a_detach_sends_the_unbind_waiting_behind_the_requests_it_fails) {
        uint32_t types[TSM_PRIV_REQUESTS_MAX], ids[TSM_PRIV_REQUESTS_MAX], cookies[TSM_PRIV_REQUESTS_MAX];
        struct tsm_priv_reply rep;
        Fixture f = {};

        fixture_start(&f, false);
        for (size_t i = 0; i < SLOT_MAX + 2; i++)
                submit_to(1, i < SLOT_MAX ? on_answer : on_failed);
        ASSERT_OK(priv_call_set_bound(f.channel, SLOT, CONTEXT, 1, false, on_answer, NULL, NULL));
        run_worker();
        ASSERT_EQ(monitor_receive_any(types, ids, cookies, ELEMENTSOF(ids)), (size_t) SLOT_MAX);

        /* Cookies are numbered from 1: the requests', the unbind's, the detach's. */
        tsm_priv_init(&rep, TSM_PRIV_REPLY, SLOT_MAX + 4, 0);
        ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
        ASSERT_OK(priv_call_detach_vdevice(f.channel, SLOT, CONTEXT, 1));
        ASSERT_EQ(f.n_failed, 2u);
        ASSERT_EQ(monitor_receive_any(types, ids, cookies + SLOT_MAX, 4), 2u);
        ASSERT_EQ(types[0], (uint32_t) TSM_PRIV_UNBIND_VDEVICE);
        ASSERT_EQ(cookies[SLOT_MAX], (uint32_t) SLOT_MAX + 3);
        ASSERT_EQ(types[1], (uint32_t) TSM_PRIV_DETACH_VDEVICE);

        for (size_t i = 0; i < SLOT_MAX + 1; i++)
                monitor_answer(cookies[i]);
        run_worker();
        ASSERT_EQ(f.n_answered, (unsigned) SLOT_MAX + 1);
        fixture_stop(&f);
}

/* The slots of the test below: eight full shares, the monitor's whole TSM_PRIV_REQUESTS_MAX. */
#define FULL_SLOT_FIRST 101U
#define WAITING_SLOT (FULL_SLOT_FIRST + 8) /* two shares, waiting */
#define WAITING_SLOT_2 (WAITING_SLOT + 1) /* one more, waiting */
#define NEW_SLOT (WAITING_SLOT + 2)

/* On the answer that leaves one place free, with a full outbox of WAITING_SLOT's requests: the
 * next send fails, and a request of a new slot takes the place, its send flushing that outbox. */
static void on_answer_then_submit_on_a_failing_flush(int result, const void *response, size_t len, void *userdata) {
        on_answer(result, response, len, userdata);
        fail_sendmmsg_errno = EPIPE;
        submit_in(NEW_SLOT, 1, on_answer);
}

/* A request takes the last place the monitor has; its send (from an answer's callback, not
 * under requests_flush()) flushes a full outbox, which the kernel refuses: each refused request
 * makes room, and its failure sends what waits. The request whose send it is holds its place
 * meanwhile: the monitor never gets more than TSM_PRIV_REQUESTS_MAX (beyond them it answers
 * -EBUSY, which a correct worker never sees). It got one more. */
TEST(a_failed_flush_under_a_send_keeps_the_requests_limit) {
        uint32_t slots[2 * TSM_PRIV_REQUESTS_MAX], ids[2 * TSM_PRIV_REQUESTS_MAX], cookies[2 * TSM_PRIV_REQUESTS_MAX];
        size_t n, n_answered, n_held;
        Fixture f = {};

        fixture_start(&f, false);
        /* The monitor holds as many as it takes. */
        for (uint32_t slot = FULL_SLOT_FIRST; slot < WAITING_SLOT; slot++)
                for (uint32_t id = 1; id <= SLOT_MAX; id++)
                        submit_in(slot, id, slot == FULL_SLOT_FIRST + 1 && id == 1 ? on_answer_then_submit_on_a_failing_flush
                                                                                   : on_answer);
        run_worker();
        ASSERT_EQ(monitor_receive_slots(slots, ids, cookies, ELEMENTSOF(ids)), (size_t) TSM_PRIV_REQUESTS_MAX);
        /* Behind them: two shares of one slot (the first of them refused, below), one of another. */
        for (uint32_t id = 1; id <= 2 * SLOT_MAX; id++)
                submit_in(WAITING_SLOT, id, id <= SLOT_MAX ? on_failed : on_answer);
        submit_in(WAITING_SLOT_2, 1, on_answer);
        run_worker();
        ASSERT_EQ(monitor_receive_slots(slots, ids, cookies, ELEMENTSOF(ids)), 0u);

        /* A share's answers: WAITING_SLOT's first share goes to the outbox, filling it; the next
         * answer's callback makes the request that flushes it. */
        n_answered = SLOT_MAX + 1;
        for (size_t i = 0; i < n_answered; i++)
                monitor_answer(cookies[i]);
        run_worker();
        ASSERT_EQ(f.n_answered, (unsigned) n_answered);
        ASSERT_EQ(f.n_failed, (unsigned) SLOT_MAX);
        ASSERT_FALSE(priv_channel_is_gone(f.channel));

        n = monitor_receive_slots(slots, ids, cookies, ELEMENTSOF(ids));
        n_held = TSM_PRIV_REQUESTS_MAX - n_answered + n;
        ASSERT_LE(n_held, (size_t) TSM_PRIV_REQUESTS_MAX);
        /* Every place taken: WAITING_SLOT's second share and the new request, in that order
         * (the one of WAITING_SLOT_2 waits on). */
        ASSERT_EQ(n, n_answered);
        for (size_t i = 0; i < SLOT_MAX; i++) {
                ASSERT_EQ(slots[i], WAITING_SLOT);
                ASSERT_EQ(ids[i], (uint32_t) (SLOT_MAX + 1 + i));
        }
        ASSERT_EQ(slots[SLOT_MAX], NEW_SLOT);

        /* An answer, and the last one waiting goes. */
        monitor_answer(cookies[0]);
        run_worker();
        ASSERT_EQ(monitor_receive_slots(slots, ids, cookies, ELEMENTSOF(ids)), 1u);
        ASSERT_EQ(slots[0], WAITING_SLOT_2);
        fixture_stop(&f);
}

/* Requests that waited in the worker and then cannot be sent (the monitor stopped reading,
 * while its last answer is still on its way) fail one by one, and the slot's counts stay
 * right: each waiting one was uncounted twice, which aborted the worker at the second. */
TEST(waiting_requests_that_cannot_be_sent_fail) {
        uint32_t ids[TSM_PRIV_REQUESTS_MAX], cookies[TSM_PRIV_REQUESTS_MAX];
        static char big[8192]; /* over 4 KiB: sent at once, not batched */
        Fixture f = {};

        fixture_start(&f, false);

        for (uint32_t id = 1; id <= SLOT_MAX; id++)
                submit(id, on_answer);
        for (uint32_t id = 100; id < 103; id++)
                ASSERT_OK(priv_call_guest_request(f.channel, SLOT, CONTEXT, id, TSM_BACKEND_EMULATED, "info",
                                                  priv_payload_of(big, sizeof(big)), sizeof(big), 16,
                                                  on_failed, NULL, NULL));
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), (size_t) SLOT_MAX);

        f.gone_ok = true;
        ASSERT_OK(shutdown(f.monitor, SHUT_RD));
        monitor_answer(cookies[0]);
        run_worker();
        ASSERT_EQ(f.n_answered, 1u);
        ASSERT_EQ(f.n_failed, 3u);

        fixture_stop(&f);
}

/* How a request ended, as its callback saw it. */
typedef struct Ended {
        PrivRequest *request;
        int result;
        bool answered;
        bool monitor_own;
        bool called;
} Ended;

static void on_ended(int result, const void *response, size_t len, void *userdata) {
        Ended *e = userdata;

        e->called = true;
        e->result = result;
        e->answered = priv_request_answered(e->request);
        e->monitor_own = priv_request_monitor_own(e->request);
}

/* A guest request the worker could not send (its channel's ENOMEM) fails with -ENOMEM said to
 * be the worker's own, not the monitor's answer: the worker's caller must not take it for the
 * TSM's out of memory (BackendError OutOfMemory) when it is tsmd's (io.tsmd.System). The
 * monitor's own -ENOMEM answer is told apart. */
TEST(a_request_not_sent_is_no_answer_of_the_monitor) {
        uint32_t ids[4], cookies[4];
        Ended sent = {}, answered = {};
        Fixture f = {};

        fixture_start(&f, false);
        ASSERT_OK(priv_call_guest_request(f.channel, SLOT, CONTEXT, 1, TSM_BACKEND_EMULATED, "info",
                                          priv_payload_of("x", 1), 1, 16, on_ended, &sent, &sent.request));
        fail_sendmmsg_errno = ENOMEM;
        run_worker();
        ASSERT_EQ(fail_sendmmsg_errno, 0); /* it was tried, and refused */
        ASSERT_TRUE(sent.called);
        ASSERT_EQ(sent.result, -ENOMEM);
        ASSERT_FALSE(sent.answered);
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), 0u);

        ASSERT_OK(priv_call_guest_request(f.channel, SLOT, CONTEXT, 2, TSM_BACKEND_EMULATED, "info",
                                          priv_payload_of("x", 1), 1, 16, on_ended, &answered,
                                          &answered.request));
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), 1u);
        {
                struct tsm_priv_reply rep;

                tsm_priv_init(&rep, TSM_PRIV_REPLY, cookies[0], 0);
                rep.result = -ENOMEM;
                ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
        }
        run_worker();
        ASSERT_TRUE(answered.called);
        ASSERT_EQ(answered.result, -ENOMEM);
        ASSERT_TRUE(answered.answered);
        ASSERT_FALSE(answered.monitor_own);
        ASSERT_FALSE(sent.monitor_own);

        fixture_stop(&f);
}

/* A failure the monitor says is its own (TSM_PRIV_REPLY_MONITOR_OWN: its policy gate, its own
 * memory) is told apart from the TSM's same errno, which a kernel TSM may answer too; the other
 * bits of such a value are ignored, and a success is never the monitor's own failure. */
TEST(the_monitors_own_failure_is_told_apart) {
        static const struct {
                int32_t result;
                uint32_t value;
                bool own;
        } cases[] = {
                { -ENOMEM, TSM_PRIV_REPLY_MONITOR_OWN, true },
                { -ENOMEM, 0, false },
                { -EPERM, TSM_PRIV_REPLY_MONITOR_OWN | 1U, true },
                { -EPERM, 1U, false },
                { 0, TSM_PRIV_REPLY_MONITOR_OWN, false },
        };
        Fixture f = {};

        fixture_start(&f, false);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct tsm_priv_reply rep;
                uint32_t ids[2], cookies[2];
                Ended e = {};

                ASSERT_OK(priv_call_guest_request(f.channel, SLOT, CONTEXT, 1, TSM_BACKEND_EMULATED, "info",
                                                  priv_payload_of("x", 1), 1, 16, on_ended, &e, &e.request));
                run_worker();
                ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), 1u);
                tsm_priv_init(&rep, TSM_PRIV_REPLY, cookies[0], 0);
                rep.result = cases[i].result;
                rep.value = cases[i].value;
                ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
                run_worker();
                ASSERT_TRUE(e.called);
                ASSERT_TRUE(e.answered);
                if (cases[i].result < 0)
                        ASSERT_EQ(e.result, cases[i].result);
                ASSERT_EQ(e.monitor_own, cases[i].own);
        }
        ASSERT_FALSE(priv_request_monitor_own(NULL));
        fixture_stop(&f);
}

/* A monitor that takes nothing (both directions full under load, or a monitor stuck): the
 * worker's sends give up after a second each, well before the monitor would end a worker
 * that does not take its replies, and the requests fail rather than block the worker. */
TEST(sends_to_a_monitor_that_does_not_read_give_up) {
        static char big[60 * 1024]; /* over 4 KiB: sent at once; three fill the socket */
        unsigned n_failed = 0;
        uint64_t start;
        Fixture f = {};

        fixture_start(&f, true); /* blocking, as the worker's is */
        f.gone_ok = true;
        alarm(30); /* without the send timeout this blocks for good */

        start = now_monotonic_usec();
        for (uint32_t id = 1; id <= 8; id++) {
                int r = priv_call_guest_request(f.channel, SLOT, CONTEXT, id, TSM_BACKEND_EMULATED, "info",
                                                priv_payload_of(big, sizeof(big)), sizeof(big), 16,
                                                on_failed, NULL, NULL);
                if (r < 0) {
                        ASSERT_EQ(r, -EAGAIN);
                        n_failed++;
                }
        }
        run_worker();
        alarm(0);
        ASSERT_GE(n_failed + f.n_failed, 1u);
        ASSERT_LE(now_monotonic_usec() - start, 15 * 1000 * 1000ULL);

        fixture_stop(&f);
}

static void on_late(const struct tsm_priv_late *late, void *userdata) {
        fixture->n_late++;
        fixture->late = *late;
}

static struct tsm_priv_late late_msg(void) {
        struct tsm_priv_late l;

        tsm_priv_init(&l, TSM_PRIV_LATE, 0, 0);
        l.op = TSM_PRIV_LATE_GUEST_REQUEST;
        l.request_cookie = 5;
        l.context = CONTEXT;
        l.vdevice = 11;
        l.uid = 1000;
        l.backend = TSM_BACKEND_SEV_TIO;
        l.response_size = 4;
        l.scope_number = 1;
        l.latency_usec = 31000000;
        strcpy(l.pci_address, "0000:01:00.0");
        strcpy(l.scope, "state-change");
        l.id = 9;
        return l;
}

/* The count of late answers the monitor had no room for. */
static struct tsm_priv_late lost_msg(void) {
        struct tsm_priv_late l;

        tsm_priv_init(&l, TSM_PRIV_LATE, 0, 0);
        l.op = TSM_PRIV_LATE_LOST;
        l.uid = l.backend = TSM_PRIV_LATE_NONE;
        l.id = 10;
        l.count = 3;
        return l;
}

/* A LATE from the monitor reaches the audit log's callback from the loop, also one that came
 * while a call waited for its own reply. */
TEST(late_answers_are_delivered) {
        struct tsm_priv_late l = late_msg();
        Fixture f = {};

        fixture_start(&f, false);
        priv_channel_set_late_callback(f.channel, on_late, NULL);
        ASSERT_OK(tsm_priv_send(f.monitor, &l, NULL, 0, -EBADF));
        run_worker();
        ASSERT_EQ(f.n_late, 1u);
        ASSERT_EQ(memcmp(&f.late, &l, sizeof(l)), 0);

        /* Before the reply to a call that waits: kept for the loop, the call answered. */
        l.result = -EIO;
        l.response_size = 0;
        ASSERT_OK(tsm_priv_send(f.monitor, &l, NULL, 0, -EBADF));
        {
                struct tsm_priv_reply rep;

                tsm_priv_init(&rep, TSM_PRIV_REPLY, 1, 0); /* the commit's cookie: the first */
                ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
        }
        ASSERT_OK(priv_call_reload_commit(f.channel));
        ASSERT_EQ(f.n_late, 1u);
        run_worker();
        ASSERT_EQ(f.n_late, 2u);
        ASSERT_EQ(f.late.result, -EIO);

        /* A request its TSM, offered no response buffer, consumed in part: what it left, at
         * most a payload's worth, comes with it. */
        l = late_msg();
        l.response_size = 0;
        l.request_unconsumed = TSM_PRIV_PAYLOAD_MAX;
        ASSERT_OK(tsm_priv_send(f.monitor, &l, NULL, 0, -EBADF));
        run_worker();
        ASSERT_EQ(f.n_late, 3u);
        ASSERT_EQ(memcmp(&f.late, &l, sizeof(l)), 0);

        /* The count of those the monitor had no room for, also after a worker before said it
         * was recording it. */
        l = lost_msg();
        l.recorded_seq = 12;
        ASSERT_OK(tsm_priv_send(f.monitor, &l, NULL, 0, -EBADF));
        run_worker();
        ASSERT_EQ(f.n_late, 4u);
        ASSERT_EQ(memcmp(&f.late, &l, sizeof(l)), 0);
        fixture_stop(&f);
}

static void on_signal_reload(const struct tsm_priv_signal_reload *s, void *userdata) {
        fixture->n_signal_reload++;
        fixture->signal_reload = *s;
}

static struct tsm_priv_signal_reload signal_reload_msg(void) {
        struct tsm_priv_signal_reload s;

        tsm_priv_init(&s, TSM_PRIV_SIGNAL_RELOAD, 0, 0);
        s.pid = 4242;
        s.uid = 1000;
        strcpy(s.unit, "session-3.scope");
        return s;
}

/* A SIGHUP the monitor passes on (SIGNAL_RELOAD) reaches the manager's callback from the loop,
 * sender and all, also one that came while a call waited for its own reply; so does one the
 * kernel sent (no pid, no uid, no unit). */
TEST(signalled_reloads_are_delivered) {
        struct tsm_priv_signal_reload s = signal_reload_msg();
        Fixture f = {};

        fixture_start(&f, false);
        priv_channel_set_signal_reload_callback(f.channel, on_signal_reload, NULL);
        ASSERT_OK(tsm_priv_send(f.monitor, &s, NULL, 0, -EBADF));
        run_worker();
        ASSERT_EQ(f.n_signal_reload, 1u);
        ASSERT_EQ(memcmp(&f.signal_reload, &s, sizeof(s)), 0);

        /* Before the reply to a call that waits: kept for the loop, the call answered. */
        s.pid = 0;
        s.uid = TSM_PRIV_LATE_NONE;
        memset(s.unit, 0, sizeof(s.unit));
        ASSERT_OK(tsm_priv_send(f.monitor, &s, NULL, 0, -EBADF));
        {
                struct tsm_priv_reply rep;

                tsm_priv_init(&rep, TSM_PRIV_REPLY, 1, 0); /* the commit's cookie: the first */
                ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
        }
        ASSERT_OK(priv_call_reload_commit(f.channel));
        ASSERT_EQ(f.n_signal_reload, 1u);
        run_worker();
        ASSERT_EQ(f.n_signal_reload, 2u);
        ASSERT_EQ(memcmp(&f.signal_reload, &s, sizeof(s)), 0);
        fixture_stop(&f);
}

/* A SIGNAL_RELOAD that breaks its rules is a monitor the worker no longer trusts: nothing of it is
 * handed on (nor recorded), whether the loop reads it or a call that waits for its own reply. */
TEST(malformed_signalled_reloads_end_the_channel) {
        for (unsigned i = 0; i < 10; i++) {
                struct tsm_priv_signal_reload s = signal_reload_msg();
                Fixture f = {};

                switch (i % 5) {
                case 0: s.hdr.cookie = 1; break; /* as if it were answered */
                case 1: s.pid = (uint32_t) INT32_MAX + 1; break;
                case 2: s.pid = 0; break; /* a unit without a pid */
                case 3: memset(s.unit, 'a', sizeof(s.unit)); break; /* no NUL */
                case 4: s.__reserved[1] = 1; break;
                }
                fixture_start(&f, false);
                f.gone_ok = true;
                priv_channel_set_signal_reload_callback(f.channel, on_signal_reload, NULL);
                ASSERT_OK(tsm_priv_send(f.monitor, &s, NULL, 0, -EBADF));
                if (i >= 5) {
                        struct tsm_priv_reply rep;

                        tsm_priv_init(&rep, TSM_PRIV_REPLY, 1, 0);
                        ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
                        ASSERT_ERRNO(priv_call_reload_commit(f.channel), ECONNRESET);
                }
                run_worker();
                if (f.n_signal_reload != 0 || !f.gone)
                        TEST_FAIL("malformed SIGNAL_RELOAD %u was taken", i);
                fixture_stop(&f);
        }
}

static void on_files_changed(uint32_t n_changed, const char *paths, size_t size, void *userdata) {
        fixture->n_files_changed++;
        fixture->files_changed_n = n_changed;
        ASSERT_TRUE(size < sizeof(fixture->files_changed));
        ASSERT_TRUE((size == 0) == (paths == NULL));
        ASSERT_TRUE(size == 0 || n_changed > 0);
        memcpy(fixture->files_changed, paths ?: "", size);
        fixture->files_changed[size] = 0;
        for (size_t i = 0; i < size; i++)
                if (fixture->files_changed[i] == 0)
                        fixture->files_changed[i] = '|';
}

static void send_files_changed(int fd, uint32_t n_changed, const char *paths, size_t size) {
        struct tsm_priv_files_changed m;

        tsm_priv_init(&m, TSM_PRIV_FILES_CHANGED, 0, (uint32_t) size);
        m.n_changed = n_changed;
        ASSERT_OK(tsm_priv_send(fd, &m, size > 0 ? paths : NULL, size, -EBADF));
}

/* The files in force that differ on disk (FILES_CHANGED) reach the callback as they are read: by
 * the loop, and at once while a call waits for its reply, before it returns (a reload's list
 * comes before its REPLY, and the last list is the truth); the monitor may name fewer than
 * differ, and none. */
TEST(files_changed_are_delivered_in_order) {
        static const char two[] = "/etc/tsmd/tsmd.conf\0/etc/tsmd/policy.d/20-b.conf";
        Fixture f = {};

        fixture_start(&f, false);
        priv_channel_set_files_changed_callback(f.channel, on_files_changed, NULL);
        send_files_changed(f.monitor, 3, two, sizeof(two));
        run_worker();
        ASSERT_EQ(f.n_files_changed, 1u);
        ASSERT_EQ(f.files_changed_n, 3u);
        ASSERT_STREQ(f.files_changed, "/etc/tsmd/tsmd.conf|/etc/tsmd/policy.d/20-b.conf|");

        /* Two differ, none named (their paths too long for the channel). */
        send_files_changed(f.monitor, 2, NULL, 0);
        run_worker();
        ASSERT_EQ(f.n_files_changed, 2u);
        ASSERT_EQ(f.files_changed_n, 2u);
        ASSERT_STREQ(f.files_changed, "");

        /* Before the reply to a call that waits: taken then, in order, not after the call. */
        send_files_changed(f.monitor, 1, "/a", 3);
        send_files_changed(f.monitor, 0, NULL, 0);
        {
                struct tsm_priv_reply rep;

                tsm_priv_init(&rep, TSM_PRIV_REPLY, 1, 0); /* the commit's cookie: the first */
                ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
        }
        ASSERT_OK(priv_call_reload_commit(f.channel));
        ASSERT_EQ(f.n_files_changed, 4u);
        ASSERT_EQ(f.files_changed_n, 0u);
        ASSERT_STREQ(f.files_changed, "");
        run_worker();
        ASSERT_EQ(f.n_files_changed, 4u);
        fixture_stop(&f);
}

/* A FILES_CHANGED that breaks its rules is a monitor the worker no longer trusts: nothing of it
 * is taken, whether the loop reads it or a call that waits for its own reply. */
TEST(malformed_files_changed_end_the_channel) {
        static char long_path[TSM_PRIV_PATH_MAX + 1];

        memset(long_path, 'a', TSM_PRIV_PATH_MAX);
        for (unsigned i = 0; i < 18; i++) {
                struct tsm_priv_files_changed m;
                const char *paths = "/a";
                size_t size = 3;
                Fixture f = {};

                tsm_priv_init(&m, TSM_PRIV_FILES_CHANGED, 0, 0);
                m.n_changed = 1;
                switch (i % 9) {
                case 0: m.hdr.cookie = 1; break; /* as if it were answered */
                case 1: m.__reserved = 1; break;
                case 2: m.n_changed = TSM_PRIV_FILES_MAX + 1; break;
                case 3: m.n_changed = 0; break; /* paths, yet none differ */
                case 4: m.n_changed = 2; paths = "/a\0"; size = 4; break; /* an empty path after one */
                case 5: paths = "/a\0/b"; size = 6; break; /* more than differ */
                case 6: paths = "\0"; size = 1; break; /* an empty path */
                case 7: size = 2; break; /* no NUL */
                case 8: paths = long_path; size = sizeof(long_path); break; /* longer than PATH_MAX */
                }
                m.hdr.payload_len = (uint32_t) size;
                fixture_start(&f, false);
                f.gone_ok = true;
                priv_channel_set_files_changed_callback(f.channel, on_files_changed, NULL);
                ASSERT_OK(tsm_priv_send(f.monitor, &m, size > 0 ? paths : NULL, size, -EBADF));
                if (i >= 9) {
                        struct tsm_priv_reply rep;

                        tsm_priv_init(&rep, TSM_PRIV_REPLY, 1, 0);
                        ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
                        ASSERT_ERRNO(priv_call_reload_commit(f.channel), ECONNRESET);
                }
                run_worker();
                if (f.n_files_changed != 0 || !f.gone)
                        TEST_FAIL("malformed FILES_CHANGED %u was taken", i);
                fixture_stop(&f);
        }
}

/* What the worker tells the monitor of a LATE: that it is being recorded under a seq goes at
 * once (before the record can reach the disk); that it is recorded, with what goes next. */
TEST(late_answers_are_acknowledged) {
        struct tsm_priv_late_ack a;
        const char *reason = NULL;
        Fixture f = {};
        size_t n_fds;
        int fds[1];
        ssize_t n;

        fixture_start(&f, false);
        ASSERT_OK(priv_send_late_ack(f.channel, 9, 17, false));
        n = priv_reader_receive(&f.reader, f.monitor, f.buf, fds, 1, &n_fds);
        ASSERT_GE(n, 1);
        ASSERT_OK(tsm_priv_check(f.buf, (size_t) n, n_fds, TSM_PRIV_FROM_WORKER, &a, sizeof(a), NULL, &reason));
        ASSERT_EQ(a.hdr.type, TSM_PRIV_LATE_ACK);
        ASSERT_EQ(a.hdr.cookie, 0u);
        ASSERT_EQ(a.id, 9u);
        ASSERT_EQ(a.seq, 17u);
        ASSERT_EQ(a.durable, 0u);

        ASSERT_OK(priv_send_late_ack(f.channel, 9, 17, true));
        run_worker();
        n = priv_reader_receive(&f.reader, f.monitor, f.buf, fds, 1, &n_fds);
        ASSERT_GE(n, 1);
        ASSERT_OK(tsm_priv_check(f.buf, (size_t) n, n_fds, TSM_PRIV_FROM_WORKER, &a, sizeof(a), NULL, &reason));
        ASSERT_EQ(a.id, 9u);
        ASSERT_EQ(a.durable, 1u);
        fixture_stop(&f);
}

/* The RELOAD the monitor received: commit, or load. */
static uint32_t monitor_receive_reload(void) {
        struct tsm_priv_reload m;
        size_t n_fds;
        ssize_t k = priv_reader_receive(&fixture->reader, fixture->monitor, fixture->buf, NULL, 0, &n_fds);

        ASSERT_EQ(k, (ssize_t) sizeof(m));
        memcpy(&m, fixture->buf, sizeof(m));
        ASSERT_EQ(m.hdr.type, (uint32_t) TSM_PRIV_RELOAD);
        ASSERT_EQ(m.__reserved, 0u);
        return m.commit;
}

/* A reload's load hands over the monitor's memfd of the files, or its error and nothing; the
 * commit goes as its own RELOAD. A load answered 0 without the fd is a monitor that broke the
 * rules: the worker stops trusting the channel. */
TEST(reload_takes_the_files_of_the_monitor) {
        _cleanup_close_ int files = memfd_create("test-reload", MFD_CLOEXEC);
        struct tsm_priv_reply rep;
        struct stat a, b;
        Fixture f = {};
        char *reason = NULL;
        bool policy = true;
        int fd = -EBADF;

        ASSERT_OK(files);
        fixture_start(&f, false);

        tsm_priv_init(&rep, TSM_PRIV_REPLY, 1, 0);
        ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, files));
        ASSERT_OK(priv_call_reload(f.channel, &fd, &reason, &policy));
        ASSERT_EQ(monitor_receive_reload(), 0u);
        ASSERT_OK(fstat(fd, &a));
        ASSERT_OK(fstat(files, &b));
        ASSERT_EQ(a.st_ino, b.st_ino);
        ASSERT_NULL(reason);
        ASSERT_FALSE(policy);
        fd = safe_close(fd);

        tsm_priv_init(&rep, TSM_PRIV_REPLY, 2, 0);
        ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
        ASSERT_OK(priv_call_reload_commit(f.channel));
        ASSERT_EQ(monitor_receive_reload(), 1u);

        tsm_priv_init(&rep, TSM_PRIV_REPLY, 3, 0);
        rep.result = -ENOENT;
        ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
        ASSERT_ERRNO(priv_call_reload(f.channel, &fd, &reason, &policy), ENOENT);
        ASSERT_EQ(fd, -EBADF);
        ASSERT_NULL(reason); /* it gave none */
        ASSERT_EQ(monitor_receive_reload(), 0u);

        f.gone_ok = true;
        tsm_priv_init(&rep, TSM_PRIV_REPLY, 4, 0);
        ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
        ASSERT_ERRNO(priv_call_reload(f.channel, &fd, &reason, &policy), ECONNRESET);
        ASSERT_EQ(fd, -EBADF);
        ASSERT_TRUE(priv_channel_is_gone(f.channel));
        fixture_stop(&f);
}

/* The monitor's answer to a load it refused: result, value (1: the policy failed) and reason
 * (len bytes as they are, NUL or not; none if len is 0), as call number cookie's. */
static void monitor_refuse(uint32_t cookie, int result, uint32_t value, const void *reason, size_t len, int fd) {
        struct tsm_priv_reply rep;

        tsm_priv_init(&rep, TSM_PRIV_REPLY, cookie, (uint32_t) len);
        rep.result = result;
        rep.value = value;
        ASSERT_OK(tsm_priv_send(fixture->monitor, &rep, len > 0 ? reason : NULL, len, fd));
}

/* A refused load says why in the monitor's words, which the worker answers with: it may not be
 * able to read the files or make the monitor's checks itself. Up to TSM_PRIV_REASON_MAX
 * characters, as it sent them. */
TEST(a_refused_load_says_why_in_the_monitors_words) {
        static const char why[] = "/etc/tsmd/policy.conf:3: unknown key 'Bogus' in [Client:a]";
        char longest[TSM_PRIV_REASON_MAX + 1];
        Fixture f = {};
        char *reason = NULL;
        bool policy = false;
        int fd = -EBADF;

        fixture_start(&f, false);
        monitor_refuse(1, -EINVAL, 1, why, sizeof(why), -EBADF);
        ASSERT_ERRNO(priv_call_reload(f.channel, &fd, &reason, &policy), EINVAL);
        ASSERT_EQ(fd, -EBADF);
        ASSERT_STREQ(reason, why);
        ASSERT_TRUE(policy);
        reason = mfree(reason);

        memset(longest, 'x', sizeof(longest) - 1);
        longest[sizeof(longest) - 1] = 0;
        monitor_refuse(2, -EPERM, 0, longest, sizeof(longest), -EBADF);
        ASSERT_ERRNO(priv_call_reload(f.channel, &fd, &reason, &policy), EPERM);
        ASSERT_STREQ(reason, longest);
        ASSERT_FALSE(policy);
        reason = mfree(reason);
        ASSERT_FALSE(priv_channel_is_gone(f.channel));
        fixture_stop(&f);
}

/* SECURITY: the reason is text for an administrator's client and the journal: checked like any
 * field the monitor sends. One too long, not a single NUL-terminated string, with a control
 * character (a new line in the journal, a terminal's escape) or where no load was refused, is a
 * monitor that broke the rules: the channel ends (the worker exits), never a crash, never the
 * text passed on. */
TEST(malformed_reasons_end_the_channel) {
        static const struct {
                const char *data;
                size_t len; /* 0: the longest plus one */
                int result;
                uint32_t value;
        } cases[] = {
                { NULL, 0, -EINVAL, 0 },                      /* TSM_PRIV_REASON_MAX + 1 characters */
                { "abc", 3, -EINVAL, 0 },                     /* no NUL */
                { "ab\0cd", 6, -EINVAL, 0 },                  /* two strings */
                { "ab\0\0", 4, -EINVAL, 0 },                  /* zeros after the NUL */
                { "", 1, -EINVAL, 0 },                         /* empty: none is 0 bytes */
                { "line\nForged: entry", sizeof("line\nForged: entry"), -EINVAL, 0 }, /* a new line */
                { "\x1b[2Jcleared", sizeof("\x1b[2Jcleared"), -EINVAL, 0 }, /* a terminal's escape */
                { "tab\there", sizeof("tab\there"), -EINVAL, 0 },
                { "del\x7f", sizeof("del\x7f"), -EINVAL, 0 },
                { "why", 4, -EINVAL, 2 },                      /* value neither 0 nor 1 */
                { "why", 4, 0, 0 },                            /* a reason for a load it did */
                { NULL, 0, 0, 1 },                             /* the policy failed, yet loaded */
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char longer[TSM_PRIV_REASON_MAX + 2];
                _cleanup_close_ int files = -EBADF;
                const void *data = cases[i].data;
                size_t len = cases[i].len;
                char *reason = NULL;
                bool policy = false;
                Fixture f = {};
                int fd = -EBADF;

                if (i == 0) {
                        memset(longer, 'x', sizeof(longer) - 1);
                        longer[sizeof(longer) - 1] = 0;
                        data = longer;
                        len = sizeof(longer);
                }
                if (cases[i].result >= 0) {
                        files = memfd_create("test-reload", MFD_CLOEXEC);
                        ASSERT_OK(files);
                }
                fixture_start(&f, false);
                f.gone_ok = true;
                monitor_refuse(1, cases[i].result, cases[i].value, data, len, files);
                ASSERT_ERRNO(priv_call_reload(f.channel, &fd, &reason, &policy), ECONNRESET);
                if (fd != -EBADF || reason || !priv_channel_is_gone(f.channel))
                        TEST_FAIL("malformed reason %zu was taken", i);
                run_worker();
                ASSERT_TRUE(f.gone);
                fixture_stop(&f);
        }
}

/* The start sequence up to LAST_GOOD, announced by HELLO's last_good, with a stale set and reason
 * (len bytes; none if 0). */
static void monitor_hello_last_good_as(uint32_t last_good, uint32_t stale, const void *reason, size_t len) {
        _cleanup_close_ int files = memfd_create("test-last-good", MFD_CLOEXEC);
        struct tsm_priv_last_good lg;
        struct tsm_priv_hello h;

        ASSERT_OK(files);
        tsm_priv_init(&h, TSM_PRIV_HELLO, 0, 0);
        h.version = TSM_PRIV_VERSION;
        h.last_good = last_good;
        ASSERT_OK(tsm_priv_send(fixture->monitor, &h, NULL, 0, -EBADF));
        tsm_priv_init(&lg, TSM_PRIV_LAST_GOOD, 0, (uint32_t) len);
        lg.stale = stale;
        ASSERT_OK(tsm_priv_send(fixture->monitor, &lg, len > 0 ? reason : NULL, len, files));
}

static void monitor_hello_last_good(uint32_t stale, const void *reason, size_t len) {
        monitor_hello_last_good_as(1, stale, reason, len);
}

/* HELLO's last_good is a flag: any other value is a monitor that breaks the rules, even with a
 * LAST_GOOD after it. */
TEST(hello_last_good_is_a_flag) {
        static const uint32_t values[] = { 2, UINT32_MAX };

        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                _cleanup_(priv_hello_done) PrivHello h = { .last_good_fd = -EBADF };
                Fixture f = {};

                fixture_start(&f, false);
                monitor_hello_last_good_as(values[i], 0, NULL, 0);
                ASSERT_ERRNO(priv_channel_read_hello(f.channel, &h), EPROTO);
                ASSERT_EQ(h.last_good_fd, -EBADF);
                fixture_stop(&f);
        }
}

/* A worker started while the files on disk do not load gets the last set that did, and why the
 * disk's did not, in the monitor's words (GetStatus says it), under the same rules. */
TEST(last_good_says_why_in_the_monitors_words) {
        static const char why[] = "/etc/tsmd/tsmd.conf:5: unknown section or key";
        static const struct {
                uint32_t stale;
                const char *data;
                size_t len;
        } bad[] = {
                { 1, "a\nb", 4 },  /* a control character */
                { 1, "abc", 3 },    /* no NUL */
                { 0, "why", 4 },    /* why what failed, when nothing did? */
        };

        for (size_t i = 0; i <= ELEMENTSOF(bad); i++) {
                _cleanup_(priv_hello_done) PrivHello h = { .last_good_fd = -EBADF };
                Fixture f = {};

                fixture_start(&f, false);
                if (i == ELEMENTSOF(bad)) {
                        monitor_hello_last_good(1, why, sizeof(why));
                        ASSERT_OK(priv_channel_read_hello(f.channel, &h));
                        ASSERT_TRUE(h.last_good_fd >= 0);
                        ASSERT_TRUE(h.last_good_stale);
                        ASSERT_STREQ(h.last_good_reason, why);
                } else {
                        monitor_hello_last_good(bad[i].stale, bad[i].data, bad[i].len);
                        ASSERT_ERRNO(priv_channel_read_hello(f.channel, &h), EPROTO);
                        ASSERT_EQ(h.last_good_fd, -EBADF);
                }
                fixture_stop(&f);
        }

        /* None given: "". */
        {
                _cleanup_(priv_hello_done) PrivHello h = { .last_good_fd = -EBADF };
                Fixture f = {};

                fixture_start(&f, false);
                monitor_hello_last_good(1, NULL, 0);
                ASSERT_OK(priv_channel_read_hello(f.channel, &h));
                ASSERT_STREQ(h.last_good_reason, "");
                fixture_stop(&f);
        }
}

/* HELLO carries the settings read at start as one string (its payload, len bytes), which the
 * worker keeps; one without its NUL, or with a second, is no start. */
TEST(hello_carries_the_settings_read_at_start) {
        static const char settings[] = "[Audit]\nDirectory=/var/log/tsmd\n";
        static const struct {
                const char *data;
                size_t len;
        } bad[] = {
                { settings, sizeof(settings) - 1 }, /* no NUL */
                { "a\0b", 4 },                      /* two strings */
        };

        for (size_t i = 0; i <= ELEMENTSOF(bad); i++) {
                _cleanup_(priv_hello_done) PrivHello h = { .last_good_fd = -EBADF };
                bool good = i == ELEMENTSOF(bad);
                const void *data = good ? settings : bad[i].data;
                size_t len = good ? sizeof(settings) : bad[i].len;
                struct tsm_priv_hello hello;
                Fixture f = {};

                fixture_start(&f, false);
                tsm_priv_init(&hello, TSM_PRIV_HELLO, 0, (uint32_t) len);
                hello.version = TSM_PRIV_VERSION;
                ASSERT_OK(tsm_priv_send(fixture->monitor, &hello, data, len, -EBADF));
                if (good) {
                        ASSERT_OK(priv_channel_read_hello(f.channel, &h));
                        ASSERT_STREQ(h.start_settings, settings);
                } else {
                        ASSERT_ERRNO(priv_channel_read_hello(f.channel, &h), EPROTO);
                        ASSERT_NULL(h.start_settings);
                }
                fixture_stop(&f);
        }
}

/* SECURITY: a LATE is checked like every message from the monitor: one that breaks a rule is
 * never recorded, and the worker stops trusting the channel. */
TEST(malformed_late_answers_end_the_channel) {
        for (unsigned i = 0; i < 20; i++) {
                struct tsm_priv_late l = i < 12 || i >= 15 ? late_msg() : lost_msg();
                Fixture f = {};

                switch (i) {
                case 0: l.op = 0; break;
                case 1: l.op = _TSM_PRIV_LATE_OP_MAX; break;
                case 2: l.request_unconsumed = 1; break; /* a residue of the response buffer's */
                case 3: l.result = 1; break;
                case 4: memset(l.pci_address, 'a', sizeof(l.pci_address)); break;
                case 5: /* of the right characters, but no address: the address check refuses it */
                        memset(l.pci_address, 0, sizeof(l.pci_address));
                        strcpy(l.pci_address, "../../etc");
                        break;
                case 6: l.result = -EIO; break; /* a response from a failure */
                case 7: l.backend = _TSM_BACKEND_TYPE_MAX; break;
                case 8: strcpy(l.tsm, "tsm0"); break; /* not a connect */
                case 9: l.id = 0; break; /* nothing to acknowledge it by */
                case 10: l.count = 1; break; /* a count, not a call */
                case 11: l.hdr.cookie = 1; break; /* as if it were answered */
                case 12: l.count = 0; break; /* lost none */
                case 13: strcpy(l.pci_address, "0000:01:00.0"); break; /* a count, not a call */
                case 14: l.request_unconsumed = 1; break; /* a count, not a call */
                case 15: /* more than a request crosses the channel with */
                        l.response_size = 0;
                        l.request_unconsumed = TSM_PRIV_PAYLOAD_MAX + 1;
                        break;
                case 16: /* a residue of a failure */
                        l.response_size = 0;
                        l.result = -EIO;
                        l.request_unconsumed = 4;
                        break;
                case 17: /* not a guest request */
                        l.op = TSM_PRIV_LATE_BIND;
                        l.response_size = l.scope_number = 0;
                        memset(l.scope, 0, sizeof(l.scope));
                        l.request_unconsumed = 4;
                        break;
                case 18: /* a result that is no errno, where no response could refuse it first */
                        l.op = TSM_PRIV_LATE_BIND;
                        l.response_size = l.scope_number = 0;
                        memset(l.scope, 0, sizeof(l.scope));
                        l.result = 1;
                        break;
                case 19: /* an address of the right form but short */
                        memset(l.pci_address, 0, sizeof(l.pci_address));
                        strcpy(l.pci_address, "0000:01:00");
                        break;
                }
                fixture_start(&f, false);
                f.gone_ok = true;
                priv_channel_set_late_callback(f.channel, on_late, NULL);
                ASSERT_OK(tsm_priv_send(f.monitor, &l, NULL, 0, -EBADF));
                run_worker();
                if (f.n_late != 0 || !f.gone)
                        TEST_FAIL("malformed LATE %u was taken", i);
                fixture_stop(&f);
        }
}

/* A REPLY's result is 0 or -errno, as a LATE's: any other is a monitor that breaks the rules, not
 * a result to hand on (the worker negates and logs it as an errno; INT32_MIN has no negation),
 * whether the loop reads it or a call that waits for its own. */
TEST(replies_whose_result_is_no_errno_end_the_channel) {
        static const int32_t results[] = { 1, -4096, INT32_MIN };

        for (size_t i = 0; i < ELEMENTSOF(results); i++) {
                struct tsm_priv_reply rep;
                uint32_t ids[2], cookies[2];
                Ended e = {};
                Fixture f = {};
                int state = -1;

                fixture_start(&f, false);
                f.gone_ok = true;
                ASSERT_OK(priv_call_guest_request(f.channel, SLOT, CONTEXT, 1, TSM_BACKEND_EMULATED, "info",
                                                  priv_payload_of("x", 1), 1, 16, on_ended, &e, &e.request));
                run_worker();
                ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), 1u);
                tsm_priv_init(&rep, TSM_PRIV_REPLY, cookies[0], 0);
                rep.result = results[i];
                ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
                run_worker();
                if (e.called || !f.gone)
                        TEST_FAIL("result %" PRIi32 " was taken", results[i]);
                priv_channel_finish(f.channel, 0, 0);
                ASSERT_TRUE(e.called);
                ASSERT_EQ(e.result, -ECONNRESET);
                ASSERT_FALSE(e.answered);
                fixture_stop(&f);

                /* The call's reply, there before the call (cookie 1: its first message). */
                fixture_start(&f, false);
                f.gone_ok = true;
                tsm_priv_init(&rep, TSM_PRIV_REPLY, 1, 0);
                rep.result = results[i];
                ASSERT_OK(tsm_priv_send(f.monitor, &rep, NULL, 0, -EBADF));
                ASSERT_ERRNO(priv_call_get_vdevice_state(f.channel, SLOT, CONTEXT, 1, &state), ECONNRESET);
                ASSERT_TRUE(priv_channel_is_gone(f.channel));
                ASSERT_EQ(state, -1);
                fixture_stop(&f);
        }
}

static ino_t inode_of(int fd) {
        struct stat st;

        ASSERT_OK(fstat(fd, &st));
        return st.st_ino;
}

/* The monitor's answer to the worker's next call (cookie: the channel's count of calls), with
 * an fd as RECLAIM_CONTEXT's carries one. */
static void monitor_reply(uint32_t cookie, int fd) {
        struct tsm_priv_reply rep;

        tsm_priv_init(&rep, TSM_PRIV_REPLY, cookie, 0);
        ASSERT_OK(tsm_priv_send(fixture->monitor, &rep, NULL, 0, fd));
}

static void never_fails(int error, void *userdata) {
        TEST_FAIL("unexpected send failure: %s", strerror(-error));
}

/* The monitor's replies travel packed (tsm-priv.h): a call that waits for its own takes it out of
 * the datagram it came in, and what came with it, before and after, reaches the loop. */
TEST(a_call_takes_its_reply_out_of_a_packed_datagram) {
        _cleanup_(tsm_priv_outbox_freep) TsmPrivOutbox *o = NULL;
        uint32_t ids[2], cookies[2], sent[] = { 0, 0, 0 };
        Fixture f = {};

        fixture_start(&f, false);
        ASSERT_OK(tsm_priv_outbox_new(never_fails, &o));
        submit(1, on_answer);
        submit(2, on_answer);
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), 2u);
        sent[0] = cookies[0];
        sent[1] = cookies[1] + 1; /* the reload commit's, the channel's next */
        sent[2] = cookies[1];
        for (size_t i = 0; i < ELEMENTSOF(sent); i++) {
                struct tsm_priv_reply rep;
                uint8_t payload[3] = { 1, 2, 3 };

                tsm_priv_init(&rep, TSM_PRIV_REPLY, sent[i], i == 0 ? sizeof(payload) : 0);
                rep.value = i == 0 ? sizeof(payload) : 0;
                ASSERT_OK(tsm_priv_outbox_add(o, f.monitor, &rep, payload, rep.hdr.payload_len, NULL));
        }
        tsm_priv_outbox_flush(o, f.monitor); /* one datagram */

        ASSERT_OK(priv_call_reload_commit(f.channel));
        ASSERT_FALSE(priv_channel_is_gone(f.channel));
        ASSERT_EQ(f.n_answered, 0u); /* the loop's, after the call */
        run_worker();
        ASSERT_EQ(f.n_answered, 2u);
        fixture_stop(&f);
}

/*
 * A LATE comes while the worker waits for the monitor's reply to RECLAIM_CONTEXT, and the
 * worker has no memory to keep it: the LATE is not acknowledged (logged; the monitor keeps it for
 * the next worker), and the call reads on to its own
 * reply, the context's fd with it. Returning there (-ENOMEM) told the reclaim the monitor had
 * not renamed the context when it had, and left the reply to be taken for another call's.
 */
TEST(a_late_answer_without_memory_leaves_the_call_its_reply) {
        struct tsm_priv_late l = late_msg();
        _cleanup_free_ char *log = NULL;
        int p[2], fd = -EBADF, saved;
        Fixture f = {};

#ifdef HAVE_ASAN
        SKIP("AddressSanitizer's malloc cannot be made to fail");
#endif
        fixture_start(&f, false);
        priv_channel_set_late_callback(f.channel, on_late, NULL);
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        ASSERT_OK(tsm_priv_send(f.monitor, &l, NULL, 0, -EBADF));
        monitor_reply(1, p[1]); /* the first call's */

        fail_alloc_of_size = sizeof(struct late_queued_layout);
        saved = log_capture_begin();
        ASSERT_OK(priv_call_reclaim_context(f.channel, SLOT, CONTEXT, RECLAIM_ID, "", &fd));
        log = log_capture_end(saved);
        ASSERT_EQ(fail_alloc_of_size, 0u); /* it was asked for, and refused */
        ASSERT_TRUE(fd >= 0);
        ASSERT_EQ(inode_of(fd), inode_of(p[1]));
        ASSERT_NOT_NULL(strstr(log, "A late answer of the kernel to a call on 0000:01:00.0 (op 1) is not recorded by this worker"));
        ASSERT_FALSE(priv_channel_is_gone(f.channel));
        run_worker();
        ASSERT_EQ(f.n_late, 0u);

        /* In step with the monitor: the next call gets its own reply, and a LATE gets through. */
        monitor_reply(2, -EBADF);
        ASSERT_OK(priv_call_reload_commit(f.channel));
        ASSERT_OK(tsm_priv_send(f.monitor, &l, NULL, 0, -EBADF));
        run_worker();
        ASSERT_EQ(f.n_late, 1u);
        safe_close(fd);
        safe_close(p[0]);
        safe_close(p[1]);
        fixture_stop(&f);
}

/*
 * Another call's answer (a guest request's) comes while the worker waits for its reply to
 * RECLAIM_CONTEXT, and the worker has no memory to keep it for its caller, who would wait for it
 * forever. The channel ends (the worker exits, its clients' contexts kept by the monitor), and
 * the call fails saying so: the monitor may have renamed the context or not, and the reclaim
 * keeps both state files (guest-restore.c). It told an -ENOMEM before, the channel still up,
 * which the reclaim took for a rename that did not happen.
 */
TEST(another_answer_without_memory_ends_the_channel) {
        uint32_t ids[4], cookies[4];
        int p[2], fd = -EBADF;
        Fixture f = {};

#ifdef HAVE_ASAN
        SKIP("AddressSanitizer's malloc cannot be made to fail");
#endif
        fixture_start(&f, false);
        submit(1, on_failed);
        run_worker();
        ASSERT_EQ(monitor_receive(ids, cookies, ELEMENTSOF(ids)), 1u);
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        {
                struct tsm_priv_reply rep;
                uint8_t payload[16] = { 1, 2, 3 };

                tsm_priv_init(&rep, TSM_PRIV_REPLY, cookies[0], sizeof(payload));
                rep.value = sizeof(payload);
                ASSERT_OK(tsm_priv_send(f.monitor, &rep, payload, sizeof(payload), -EBADF));
                fail_alloc_of_size = offsetof(struct reply_queued_layout, payload) + sizeof(payload);
        }
        monitor_reply(cookies[0] + 1, p[1]);

        f.gone_ok = true;
        ASSERT_ERRNO(priv_call_reclaim_context(f.channel, SLOT, CONTEXT, RECLAIM_ID, "", &fd), ECONNRESET);
        ASSERT_EQ(fail_alloc_of_size, 0u);
        ASSERT_EQ(fd, -EBADF);
        ASSERT_TRUE(priv_channel_is_gone(f.channel));
        run_worker();
        ASSERT_TRUE(f.gone);
        safe_close(p[0]);
        safe_close(p[1]);
        fixture_stop(&f);
}

TEST_MAIN();
