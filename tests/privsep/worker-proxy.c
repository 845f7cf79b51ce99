/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * worker-proxy: sits in the worker's seat for test-privsep-daemon (tsmd --worker=<this>). The
 * monitor starts it as it would tsmd-worker, with the channel on fd 3; it starts the real
 * worker ($TSMD_PROXY_WORKER, with our own arguments) behind a channel of its own and relays
 * every message both ways unchanged, fds included (each in a datagram of its own: the proxy
 * looks at each one, whatever datagram it came in). On SIGUSR1 it reads an attack name from
 * the file $TSMD_PROXY_CONTROL and sends the monitor one hostile datagram, so the test can
 * see what the monitor does with a compromised worker while a real one serves clients; or,
 * for "stall", large requests whose replies it then never reads; or, for "flood-contexts",
 * new contexts until the monitor refuses one. After "empty" (a datagram of no bytes) or
 * "hangup" (it shuts its end of the channel) it clings on: when the monitor lets go of it, it
 * stays, and so does the real worker behind it, serving clients on the sockets, its messages
 * to the monitor dropped. Started while the control file says "hold-ready" (which it then
 * empties), it never passes the worker's READY on: a worker that hangs before READY, as the
 * monitor sees it.
 *
 * Each ATTACH_VDEVICE the worker sends, the proxy looks at the control file: "attach-unlisted"
 * names another device in it, one the test's policy does not list (then it empties the file).
 * Each BIND_VDEVICE likewise: "bind-vdevice-2" names vDevice 2 in it instead (the test took the
 * device of vDevice 2 out of the policy by a reload); "bind-own-enomem" drops it and answers the
 * worker -ENOMEM as the monitor does when it has no memory to take it (TSM_PRIV_REPLY_MONITOR_OWN).
 * Each GUEST_REQUEST likewise: "request-debug-read" names scope debug-read in it instead, which
 * the test's policy does not grant. Each CONNECT_DEVICE likewise: "connect-own-enomem" drops it
 * and answers the worker as the monitor does out of memory, as for a bind; "connect-own-eperm" as
 * the monitor's gate does a device no policy rule lists (a reload reached the monitor first).
 *
 * Each RECLAIM_CONTEXT the worker sends, the proxy looks at the control file: "cut-reclaim-request"
 * drops it, "cut-reclaim-reply" passes it on and drops the monitor's reply; either way the proxy
 * then hangs up on the worker (which sees the channel break mid-call, and exits), empties the
 * control file, and exits with the worker. test-restart uses it to break a renewal of a reclaim
 * token before, and after, the monitor renamed the context.
 *
 * The real worker is our child, not the monitor's: the monitor's PR_SET_PDEATHSIG does not
 * reach it, so when the monitor kills us, the end of file on its channel is what must end it.
 * That is left so on purpose (the test checks it).
 *
 * Runs in: tests only, as the worker's user with no capabilities.
 */

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>

#include "macro.h"
#include "tsm-priv.h"
#include "tsm-types.h"

#define MONITOR TSM_PRIV_CHANNEL_FD
#define RELAY_FDS_MAX 8
/* Cookies of injected requests: far from the worker's, which count up from 1. */
#define INJECT_COOKIE UINT32_C(0xfffff000)

/* One byte more than any message, so that a longer datagram reaches the monitor still too long. */
static _Alignas(TSM_PRIV_PACK_ALIGN) uint8_t relay_buf[TSM_PRIV_DATAGRAM_MAX + 1];
/* Aligned: the messages are built in place. */
static _Alignas(uint64_t) uint8_t inject_buf[TSM_PRIV_FIXED_MAX + TSM_PRIV_PAYLOAD_MAX];

/* Set by the attack "stall": the monitor's replies are no longer read (nor relayed). */
static bool monitor_paused;
/* Set by "empty" and "hangup": the end of the monitor's channel does not end us. */
static bool cling;
/* "hold-ready" in the control file at our start: READY is dropped. */
static bool hold_ready;

/* "cut-reclaim-reply" seen: the monitor's reply with this cookie is dropped, and the worker cut off. */
static bool cut_reply;
static uint32_t cut_reply_cookie;
static const char *control_file;

/* relay_one(): the worker is to be cut off (its channel closed). */
#define RELAY_CUT 2

/* What the worker last named on a client's behalf: the injected requests name it too. */
static uint32_t last_slot, last_context;
static bool seen_context;

static void plog(const char *format, ...) _printf_(1, 2);
static void plog(const char *format, ...) {
        int saved_errno = errno;
        va_list ap;

        fprintf(stderr, "worker-proxy[%d]: ", (int) getpid());
        errno = saved_errno; /* for %m */
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);
}

static int send_datagram(int fd, const void *data, size_t len, const int *fds, size_t n_fds) {
        union {
                struct cmsghdr cmsg;
                uint8_t buf[CMSG_SPACE(sizeof(int) * RELAY_FDS_MAX)];
        } control = {};
        struct iovec iov = { .iov_base = (void *) data, .iov_len = len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        ssize_t n;

        assert(n_fds <= RELAY_FDS_MAX);
        if (n_fds > 0) {
                mh.msg_control = &control;
                mh.msg_controllen = CMSG_SPACE(sizeof(int) * n_fds);
                control.cmsg.cmsg_level = SOL_SOCKET;
                control.cmsg.cmsg_type = SCM_RIGHTS;
                control.cmsg.cmsg_len = CMSG_LEN(sizeof(int) * n_fds);
                memcpy(CMSG_DATA(&control.cmsg), fds, sizeof(int) * n_fds);
        }
        do
                n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        return (size_t) n == len ? 0 : -EIO;
}

/* Remembers the slot and context a worker->monitor message names (all such types have them at
 * the same offsets; OPEN/ADOPT_CONTEXT name a slot only). */
static void snoop(const uint8_t *p, size_t len) {
        struct tsm_priv_hdr h;
        uint32_t slot, context;

        _Static_assert(offsetof(struct tsm_priv_context, context) == offsetof(struct tsm_priv_vdevice, context) &&
                       offsetof(struct tsm_priv_attach_vdevice, context) == offsetof(struct tsm_priv_vdevice, context) &&
                       offsetof(struct tsm_priv_guest_request, context) == offsetof(struct tsm_priv_vdevice, context) &&
                       offsetof(struct tsm_priv_new_context, slot) == offsetof(struct tsm_priv_vdevice, slot),
                       "slot and context at the same offsets");

        if (len < sizeof(struct tsm_priv_vdevice))
                return;
        memcpy(&h, p, sizeof(h));
        memcpy(&slot, p + offsetof(struct tsm_priv_vdevice, slot), sizeof(slot));
        memcpy(&context, p + offsetof(struct tsm_priv_vdevice, context), sizeof(context));
        switch (h.type) {
        case TSM_PRIV_OPEN_CONTEXT:
        case TSM_PRIV_ADOPT_CONTEXT:
                last_slot = slot;
                break;
        case TSM_PRIV_RECLAIM_CONTEXT:
        case TSM_PRIV_CLOSE_CONTEXT:
        case TSM_PRIV_ATTACH_VDEVICE:
        case TSM_PRIV_DETACH_VDEVICE:
        case TSM_PRIV_BIND_VDEVICE:
        case TSM_PRIV_UNBIND_VDEVICE:
        case TSM_PRIV_GET_VDEVICE_STATE:
        case TSM_PRIV_GUEST_REQUEST:
                last_slot = slot;
                last_context = context;
                seen_context = true;
                break;
        default:
                break;
        }
}

static bool message_is(const uint8_t *p, size_t len, uint32_t type, uint32_t *ret_cookie) {
        struct tsm_priv_hdr h;

        if (len < sizeof(h))
                return false;
        memcpy(&h, p, sizeof(h));
        if (ret_cookie)
                *ret_cookie = h.cookie;
        return h.type == type;
}

/* The control file's word on a RECLAIM_CONTEXT passing with cookie: whether to drop it and cut
 * the worker off now (else it may be its reply that is to go). Acted on once. */
static bool cut_at_reclaim(uint32_t cookie) {
        char word[32] = {};
        int fd = control_file ? open(control_file, O_RDWR | O_CLOEXEC) : -EBADF;
        bool request;

        if (fd < 0 || read(fd, word, sizeof(word) - 1) < 0) {
                safe_close(fd);
                return false;
        }
        word[strcspn(word, "\n")] = 0;
        request = streq(word, "cut-reclaim-request");
        if (request || streq(word, "cut-reclaim-reply")) {
                if (ftruncate(fd, 0) < 0)
                        plog("ftruncate %s: %m", control_file);
                plog("'%s': cutting the worker off at RECLAIM_CONTEXT (cookie %u)", word, cookie);
                cut_reply = !request;
                cut_reply_cookie = cookie;
        }
        safe_close(fd);
        return request;
}

/* The control file's word on an ATTACH_VDEVICE passing: "attach-unlisted" names UNLISTED_DEVICE
 * in it instead of the device the worker checked against the policy, so that the monitor's own
 * gate, not the worker, refuses it (as when a reload reached the monitor first). Acted on once. */
#define UNLISTED_DEVICE "0000:03:00.0"
static void rewrite_attach(uint8_t *p, size_t len) {
        struct tsm_priv_attach_vdevice a;
        char word[32] = {};
        _cleanup_close_ int fd = control_file ? open(control_file, O_RDWR | O_CLOEXEC) : -EBADF;

        if (fd < 0 || len < sizeof(a) || read(fd, word, sizeof(word) - 1) < 0)
                return;
        word[strcspn(word, "\n")] = 0;
        if (!streq(word, "attach-unlisted"))
                return;
        if (ftruncate(fd, 0) < 0)
                plog("ftruncate %s: %m", control_file);
        memcpy(&a, p, sizeof(a));
        plog("'%s': attaching %s in place of %s", word, UNLISTED_DEVICE, a.pci_address);
        memset(a.pci_address, 0, sizeof(a.pci_address));
        memcpy(a.pci_address, UNLISTED_DEVICE, strlen(UNLISTED_DEVICE));
        memcpy(p, &a, sizeof(a));
}

/* The control file's word on a BIND_VDEVICE passing: "bind-vdevice-2" names vDevice 2 of the
 * same context in it instead of the one the worker checked against the policy, so that the
 * monitor's own gate refuses a device the worker would have let be bound; "bind-own-enomem"
 * answers it in the monitor's place, which it does not reach: the monitor's own -ENOMEM.
 * Acted on once. Returns whether it is dropped. */
#define BIND_OTHER_VDEVICE 2U
static bool control_bind(uint8_t *p, size_t len, int worker) {
        struct tsm_priv_vdevice v;
        char word[32] = {};
        _cleanup_close_ int fd = control_file ? open(control_file, O_RDWR | O_CLOEXEC) : -EBADF;

        if (fd < 0 || len < sizeof(v) || read(fd, word, sizeof(word) - 1) < 0)
                return false;
        word[strcspn(word, "\n")] = 0;
        if (!streq(word, "bind-vdevice-2") && !streq(word, "bind-own-enomem"))
                return false;
        if (ftruncate(fd, 0) < 0)
                plog("ftruncate %s: %m", control_file);
        memcpy(&v, p, sizeof(v));
        if (streq(word, "bind-own-enomem")) {
                struct tsm_priv_reply rep;
                int r;

                tsm_priv_init(&rep, TSM_PRIV_REPLY, v.hdr.cookie, 0);
                rep.result = -ENOMEM;
                rep.value = TSM_PRIV_REPLY_MONITOR_OWN;
                plog("'%s': answering the bind of vDevice %u as a monitor out of memory", word, v.vdevice);
                r = send_datagram(worker, &rep, sizeof(rep), NULL, 0);
                if (r < 0)
                        plog("answering the worker failed: %s", strerror(-r));
                return true;
        }
        plog("'%s': binding vDevice %u in place of %u", word, BIND_OTHER_VDEVICE, v.vdevice);
        v.vdevice = BIND_OTHER_VDEVICE;
        memcpy(p, &v, sizeof(v));
        return false;
}

/* The control file's word on a CONNECT_DEVICE passing: "connect-own-enomem" ("connect-own-eperm")
 * answers it in the monitor's place, which it does not reach: the monitor's own -ENOMEM (its
 * gate's -EPERM). Acted on once. Returns whether it is dropped. */
static bool control_connect(uint32_t cookie, int worker) {
        struct tsm_priv_reply rep;
        char word[32] = {};
        _cleanup_close_ int fd = control_file ? open(control_file, O_RDWR | O_CLOEXEC) : -EBADF;
        bool eperm;
        int r;

        if (fd < 0 || read(fd, word, sizeof(word) - 1) < 0)
                return false;
        word[strcspn(word, "\n")] = 0;
        eperm = streq(word, "connect-own-eperm");
        if (!eperm && !streq(word, "connect-own-enomem"))
                return false;
        if (ftruncate(fd, 0) < 0)
                plog("ftruncate %s: %m", control_file);
        tsm_priv_init(&rep, TSM_PRIV_REPLY, cookie, 0);
        rep.result = eperm ? -EPERM : -ENOMEM;
        rep.value = TSM_PRIV_REPLY_MONITOR_OWN;
        plog("'%s': answering the connect as %s", word,
             eperm ? "the monitor's gate refusing a device no rule lists" : "a monitor out of memory");
        r = send_datagram(worker, &rep, sizeof(rep), NULL, 0);
        if (r < 0)
                plog("answering the worker failed: %s", strerror(-r));
        return true;
}

/* The control file's word on a GUEST_REQUEST passing: "request-debug-read" names scope
 * debug-read in it instead of the one the worker checked against the policy, so that the
 * monitor's own gate refuses a scope the worker granted. Acted on once. */
static void rewrite_request(uint8_t *p, size_t len) {
        struct tsm_priv_guest_request g;
        char word[32] = {};
        _cleanup_close_ int fd = control_file ? open(control_file, O_RDWR | O_CLOEXEC) : -EBADF;

        if (fd < 0 || len < sizeof(g) || read(fd, word, sizeof(word) - 1) < 0)
                return;
        word[strcspn(word, "\n")] = 0;
        if (!streq(word, "request-debug-read"))
                return;
        if (ftruncate(fd, 0) < 0)
                plog("ftruncate %s: %m", control_file);
        memcpy(&g, p, sizeof(g));
        plog("'%s': asking in scope debug-read in place of %s", word, g.scope);
        memset(g.scope, 0, sizeof(g.scope));
        memcpy(g.scope, "debug-read", strlen("debug-read"));
        memcpy(p, &g, sizeof(g));
}

/* One message (or what came as a datagram: empty, too long) from one end: looked at, changed or
 * dropped as the control file says, else relayed to the other with its fds (the caller's, which
 * it closes). 1, RELAY_CUT, or the error. */
static int relay_message(int from, int to, bool from_worker, uint8_t *buf, size_t n, int *fds, size_t n_fds) {
        int r;

        if (from_worker)
                snoop(buf, n);
        {
                uint32_t cookie;

                if (from_worker && message_is(buf, n, TSM_PRIV_ATTACH_VDEVICE, &cookie))
                        rewrite_attach(buf, n);
                if (from_worker && message_is(buf, n, TSM_PRIV_GUEST_REQUEST, &cookie))
                        rewrite_request(buf, n);
                if (from_worker && message_is(buf, n, TSM_PRIV_BIND_VDEVICE, &cookie) &&
                    control_bind(buf, n, from))
                        return 1;
                if (from_worker && message_is(buf, n, TSM_PRIV_CONNECT_DEVICE, &cookie) && control_connect(cookie, from))
                        return 1;

                if ((from_worker && message_is(buf, n, TSM_PRIV_RECLAIM_CONTEXT, &cookie) &&
                     cut_at_reclaim(cookie)) ||
                    (!from_worker && cut_reply && message_is(buf, n, TSM_PRIV_REPLY, &cookie) &&
                     cookie == cut_reply_cookie)) {
                        plog("dropping the %s, hanging up on the worker", from_worker ? "request" : "monitor's reply");
                        cut_reply = false;
                        return RELAY_CUT;
                }
        }
        if (from_worker && hold_ready && (size_t) n >= sizeof(struct tsm_priv_hdr) &&
            ((struct tsm_priv_hdr *) memcpy(&(struct tsm_priv_hdr){}, buf, sizeof(struct tsm_priv_hdr)))->type ==
                    TSM_PRIV_READY) {
                plog("holding the worker's READY back");
                return 1;
        }
        r = send_datagram(to, buf, n, fds, n_fds);
        /* A test that kills the proxy waits for this: unread, the worker's end would read a
         * reset, not the end of file. */
        if (from_worker && r >= 0 && message_is(buf, n, TSM_PRIV_RECORDED, NULL))
                plog("relayed a RECORDED");
        return r < 0 ? r : 1;
}

/* Moves one datagram, with its fds, from one end to the other. Returns 1 if one moved, 0 at
 * end of file, -EAGAIN if none is there, RELAY_CUT if it was dropped and the worker is to be
 * cut off, or the error. */
static int relay_one(int from, int to, bool from_worker) {
        union {
                struct cmsghdr cmsg;
                uint8_t buf[CMSG_SPACE(sizeof(int) * RELAY_FDS_MAX)];
        } control;
        struct iovec iov = { .iov_base = relay_buf, .iov_len = sizeof(relay_buf) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control.buf) };
        int fds[RELAY_FDS_MAX];
        size_t n_fds = 0;
        ssize_t n;
        int r;

        do
                n = recvmsg(from, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return errno == EWOULDBLOCK ? -EAGAIN : negative_errno();

        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                        continue;
                for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) && n_fds < RELAY_FDS_MAX; i++)
                        memcpy(&fds[n_fds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        }
        /* An empty datagram reads like end of file (neither end sends one). */
        if (n == 0 && n_fds == 0)
                return 0;
        if (mh.msg_flags & MSG_CTRUNC)
                plog("more than %d fds on one datagram, relaying the first ones", RELAY_FDS_MAX);

        /* A datagram without fds may carry several messages (tsm-priv.h): each is looked at, and
         * relayed, on its own. */
        if (n > 0 && n_fds == 0 && (size_t) n <= TSM_PRIV_DATAGRAM_MAX) {
                TsmPrivSpan spans[TSM_PRIV_PACK_MAX];
                size_t k = tsm_priv_unpack(relay_buf, (size_t) n, spans);

                for (size_t i = 0; i < k; i++) {
                        r = relay_message(from, to, from_worker, relay_buf + spans[i].offset, spans[i].len, NULL, 0);
                        if (r != 1)
                                return r;
                }
                return 1;
        }
        r = relay_message(from, to, from_worker, relay_buf, (size_t) n, fds, n_fds);
        close_many(fds, n_fds);
        return r;
}

/* Relays what is there; 0 at end of file or failure of either end, RELAY_CUT if the worker is
 * to be cut off, 1 otherwise. */
static int relay(int from, int to, bool from_worker) {
        for (;;) {
                int r = relay_one(from, to, from_worker);

                if (r == -EAGAIN)
                        return 1;
                if (r == RELAY_CUT)
                        return r;
                if (r < 0)
                        plog("relaying from the %s failed: %s", from_worker ? "worker" : "monitor", strerror(-r));
                if (r <= 0)
                        return 0;
        }
}

/* ---- attacks ----------------------------------------------------------------------------- */

static size_t build_vdevice(uint32_t type) {
        struct tsm_priv_vdevice v;

        tsm_priv_init(&v, type, INJECT_COOKIE, 0);
        v.slot = last_slot;
        v.context = last_context;
        v.vdevice = 1;
        memcpy(inject_buf, &v, sizeof(v));
        return sizeof(v);
}

static size_t build_guest_request(const char *scope, size_t payload_len) {
        struct tsm_priv_guest_request g;

        assert(strlen(scope) < sizeof(g.scope));
        tsm_priv_init(&g, TSM_PRIV_GUEST_REQUEST, INJECT_COOKIE, (uint32_t) payload_len);
        g.slot = last_slot;
        g.context = last_context;
        g.vdevice = 1;
        g.max_response = 4096;
        g.backend = TSM_BACKEND_EMULATED; /* the daemon it runs in emulates */
        memcpy(g.scope, scope, strlen(scope));
        memcpy(inject_buf, &g, sizeof(g));
        /* Filler: the monitor must refuse on the scope or the size, before it reads a byte. */
        memset(inject_buf + sizeof(g), 0x10, payload_len);
        return sizeof(g) + payload_len;
}

static struct tsm_priv_hdr *inject_hdr(void) {
        return (struct tsm_priv_hdr *) inject_buf;
}

/* Builds the named hostile datagram in inject_buf; returns its length, or 0 if there is no
 * such attack. *ret_fd: an fd to attach, or -EBADF. */
static size_t build_attack(const char *name, int *ret_fd) {
        *ret_fd = -EBADF;

        if (streq(name, "short")) {
                struct tsm_priv_ready m;

                /* The start of a valid READY, cut off inside the header. */
                tsm_priv_init(&m, TSM_PRIV_READY, 0, 0);
                memcpy(inject_buf, &m, 10);
                return 10;
        }
        if (streq(name, "long")) {
                size_t n = build_vdevice(TSM_PRIV_BIND_VDEVICE);

                /* copy_struct_from_user(): an extension byte we do not know, and not zero. */
                inject_buf[n] = 0x5a;
                inject_hdr()->size = (uint32_t) n + 1;
                return n + 1;
        }
        if (streq(name, "reserved")) {
                size_t n = build_vdevice(TSM_PRIV_BIND_VDEVICE);

                inject_hdr()->__reserved = 1;
                return n;
        }
        if (streq(name, "flags")) {
                size_t n = build_vdevice(TSM_PRIV_BIND_VDEVICE);

                inject_hdr()->flags = 1;
                return n;
        }
        if (streq(name, "unknown")) {
                *inject_hdr() = (struct tsm_priv_hdr){ .size = sizeof(struct tsm_priv_hdr), .type = 999,
                                                       .cookie = INJECT_COOKIE };
                return sizeof(struct tsm_priv_hdr);
        }
        if (streq(name, "direction")) {
                struct tsm_priv_reply rep;

                tsm_priv_init(&rep, TSM_PRIV_REPLY, INJECT_COOKIE, 0);
                memcpy(inject_buf, &rep, sizeof(rep));
                return sizeof(rep);
        }
        if (streq(name, "foreign-slot")) {
                struct tsm_priv_vdevice *v = (struct tsm_priv_vdevice *) inject_buf;
                size_t n = build_vdevice(TSM_PRIV_BIND_VDEVICE);

                v->slot = last_slot + 1;
                return n;
        }
        if (streq(name, "no-context")) {
                struct tsm_priv_vdevice *v = (struct tsm_priv_vdevice *) inject_buf;
                size_t n = build_vdevice(TSM_PRIV_BIND_VDEVICE);

                v->context = 99999;
                return n;
        }
        if (streq(name, "bad-scope"))
                return build_guest_request("no-such-scope", 8);
        if (streq(name, "bind"))
                /* As the worker sends it: the test took the device out of every rule first. */
                return build_vdevice(TSM_PRIV_BIND_VDEVICE);
        if (streq(name, "debug-read") || streq(name, "debug-write"))
                /* A debug scope the policy grants nobody: the worker would never ask. */
                return build_guest_request(name, 36);
        if (streq(name, "oversize-payload"))
                /* Within the channel's limit, far beyond the few bytes scope info takes. */
                return build_guest_request("info", TSM_PRIV_PAYLOAD_MAX);
        if (streq(name, "stray-fd")) {
                struct tsm_priv_status s;

                tsm_priv_init(&s, TSM_PRIV_STATUS, 0, 0);
                memcpy(inject_buf, &s, sizeof(s));
                *ret_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                if (*ret_fd < 0)
                        plog("open /dev/null: %m");
                return sizeof(s);
        }
        if (streq(name, "ready-twice")) {
                struct tsm_priv_ready m;

                tsm_priv_init(&m, TSM_PRIV_READY, 0, 0);
                memcpy(inject_buf, &m, sizeof(m));
                return sizeof(m);
        }
        return 0;
}

/* "stall": STALL_REQUESTS debug-read requests (the test writes the payload, a MEM_READ of
 * 64 KiB, to <control>.payload), each with room for the full response; then the proxy stops
 * reading the channel, as a compromised worker would to block the monitor on its replies. */
#define STALL_REQUESTS 16U

static void inject_stall(const char *control_path) {
        _cleanup_close_ int fd = -EBADF;
        char path[PATH_MAX];
        ssize_t n;
        int r;

        snprintf(path, sizeof(path), "%s.payload", control_path);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                plog("open %s: %m", path);
                return;
        }
        n = read(fd, inject_buf + sizeof(struct tsm_priv_guest_request), TSM_PRIV_PAYLOAD_MAX);
        if (n <= 0) {
                plog("read %s: %m", path);
                return;
        }
        monitor_paused = true;
        plog("injecting 'stall' (%u debug-read requests of %zd bytes, slot %u, context %u), reading no more",
             STALL_REQUESTS, n, last_slot, last_context);
        for (uint32_t i = 0; i < STALL_REQUESTS; i++) {
                struct tsm_priv_guest_request g;

                tsm_priv_init(&g, TSM_PRIV_GUEST_REQUEST, INJECT_COOKIE + i, (uint32_t) n);
                g.slot = last_slot;
                g.context = last_context;
                g.vdevice = 1;
                g.max_response = TSM_PRIV_PAYLOAD_MAX;
                g.backend = TSM_BACKEND_EMULATED;
                strcpy(g.scope, "debug-read");
                memcpy(inject_buf, &g, sizeof(g));
                r = send_datagram(MONITOR, inject_buf, sizeof(g) + (size_t) n, NULL, 0);
                if (r < 0)
                        plog("sending 'stall' failed: %s", strerror(-r));
        }
}

/* Receives one datagram and its fds from fd, waiting up to 5 s. Returns its length, 0 at end of
 * file, or the error. */
static ssize_t receive_datagram(int fd, int *fds, size_t *ret_n_fds) {
        union {
                struct cmsghdr cmsg;
                uint8_t buf[CMSG_SPACE(sizeof(int) * RELAY_FDS_MAX)];
        } control;
        struct iovec iov = { .iov_base = relay_buf, .iov_len = sizeof(relay_buf) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &control,
                             .msg_controllen = sizeof(control.buf) };
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t n;

        *ret_n_fds = 0;
        if (poll(&p, 1, 5000) <= 0)
                return -ETIMEDOUT;
        do
                n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return negative_errno();
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
                        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) && *ret_n_fds < RELAY_FDS_MAX; i++)
                                memcpy(&fds[(*ret_n_fds)++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        return n;
}

/* "flood-contexts": OPEN_CONTEXT under fresh reclaim ids, on behalf of the last client seen, until the
 * monitor refuses one: what a compromised worker does to take every fd the monitor has. The
 * replies and their fds are the proxy's (it closes them: the monitor keeps its own reference);
 * whatever else comes from the monitor meanwhile goes on to the worker. */
static void inject_flood(int worker) {
        uint32_t n_opened = 0;

        for (uint32_t i = 0;; i++) {
                struct tsm_priv_new_context m;
                struct tsm_priv_reply rep;
                int r;

                tsm_priv_init(&m, TSM_PRIV_OPEN_CONTEXT, INJECT_COOKIE + i, 0);
                m.slot = last_slot;
                m.uid = 0;
                snprintf(m.reclaim_id, sizeof(m.reclaim_id), "f100d000%08x%016x", i, 0U);
                r = send_datagram(MONITOR, &m, sizeof(m), NULL, 0);
                if (r < 0) {
                        plog("flood: sending failed after %u contexts: %s", n_opened, strerror(-r));
                        return;
                }
                for (;;) {
                        int fds[RELAY_FDS_MAX];
                        size_t n_fds;
                        ssize_t n = receive_datagram(MONITOR, fds, &n_fds);

                        if (n <= 0) {
                                plog("flood: no reply after %u contexts: %s", n_opened, n < 0 ? strerror((int) -n) : "EOF");
                                return;
                        }
                        memcpy(&rep, relay_buf, MIN((size_t) n, sizeof(rep)));
                        if ((size_t) n < sizeof(rep) || rep.hdr.type != TSM_PRIV_REPLY ||
                            rep.hdr.cookie != INJECT_COOKIE + i) {
                                if (worker >= 0)
                                        (void) send_datagram(worker, relay_buf, (size_t) n, fds, n_fds);
                                close_many(fds, n_fds);
                                continue;
                        }
                        close_many(fds, n_fds);
                        break;
                }
                if (rep.result < 0) {
                        plog("flood: %u contexts opened, then refused: %s", n_opened, strerror(-rep.result));
                        return;
                }
                n_opened++;
        }
}

static void inject(const char *control_path, int worker) {
        _cleanup_close_ int fd = -EBADF, attach = -EBADF;
        char name[64] = {};
        ssize_t n;
        size_t len;
        int r;

        fd = open(control_path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                plog("open %s: %m", control_path);
                return;
        }
        n = read(fd, name, sizeof(name) - 1);
        if (n < 0) {
                plog("read %s: %m", control_path);
                return;
        }
        name[strcspn(name, "\n")] = 0;

        if (streq(name, "stall")) {
                inject_stall(control_path);
                return;
        }
        if (streq(name, "hangup")) {
                cling = true;
                plog("injecting 'hangup': shutting our end of the channel, staying");
                if (shutdown(MONITOR, SHUT_WR) < 0)
                        plog("shutdown: %m");
                return;
        }
        if (streq(name, "empty")) {
                cling = true;
                plog("injecting 'empty' (0 bytes), staying");
                r = send_datagram(MONITOR, inject_buf, 0, NULL, 0);
                if (r < 0)
                        plog("sending 'empty' failed: %s", strerror(-r));
                return;
        }
        if (streq(name, "flood-contexts")) {
                inject_flood(worker);
                return;
        }
        len = build_attack(name, &attach);
        if (len == 0) {
                plog("no attack '%s'", name);
                return;
        }
        if (!seen_context)
                plog("no context seen yet: '%s' names slot %u, context %u", name, last_slot, last_context);
        plog("injecting '%s' (%zu bytes%s, slot %u, context %u)", name, len, attach >= 0 ? ", with an fd" : "",
             last_slot, last_context);
        r = send_datagram(MONITOR, inject_buf, len, &attach, attach >= 0 ? 1 : 0);
        if (r < 0)
                plog("sending '%s' failed: %s", name, strerror(-r));
}

/* ---- the real worker --------------------------------------------------------------------- */

static pid_t start_worker(const char *path, char *argv[], int channel) {
        sigset_t none;
        pid_t pid;

        fflush(NULL);
        pid = fork();
        if (pid != 0)
                return pid;

        /* As the monitor would have started it: the channel on fd 3, the audit directory the
         * monitor passed (--audit-directory-fd=, if it did) on fd 5, and nothing else. The
         * monitor's end, which sits at fd 3 here, is not the worker's to hold. */
        if (dup2(channel, TSM_PRIV_CHANNEL_FD) < 0)
                _exit(126);
        if (channel == TSM_PRIV_CHANNEL_FD + 2)
                (void) close(channel);
        if (syscall(SYS_close_range, TSM_PRIV_CHANNEL_FD + 1, TSM_PRIV_CHANNEL_FD + 1, 0) < 0 ||
            syscall(SYS_close_range, TSM_PRIV_CHANNEL_FD + 3, ~0U, 0) < 0)
                _exit(126);
        /* A blocked signal mask survives execve(). */
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        argv[0] = (char *) path;
        execv(path, argv);
        plog("exec %s: %m", path);
        _exit(127);
}

static _noreturn_ void exit_like(int status) {
        if (WIFSIGNALED(status)) {
                sigset_t s;

                /* Die the way the worker died, so the monitor logs what it would have. */
                (void) signal(WTERMSIG(status), SIG_DFL);
                sigemptyset(&s);
                sigaddset(&s, WTERMSIG(status));
                (void) sigprocmask(SIG_UNBLOCK, &s, NULL);
                (void) raise(WTERMSIG(status));
        }
        _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

int main(int argc, char *argv[]) {
        const char *worker_path = getenv("TSMD_PROXY_WORKER"), *control_path = getenv("TSMD_PROXY_CONTROL");
        _cleanup_close_ int sfd = -EBADF, worker = -EBADF;
        int pair[2], size = (int) TSM_PRIV_DATAGRAM_MAX * 4, status;
        bool monitor_open = true;
        sigset_t mask;
        pid_t pid;

        control_file = control_path;
        if (!worker_path || !control_path) {
                plog("TSMD_PROXY_WORKER and TSMD_PROXY_CONTROL must be set");
                return 1;
        }
        {
                /* Once: the proxy after us passes READY on again (the test makes the file ours). */
                char name[32] = {};
                int fd = open(control_path, O_RDWR | O_CLOEXEC);

                if (fd >= 0 && read(fd, name, sizeof(name) - 1) >= 0)
                        hold_ready = strneq(name, "hold-ready", strlen("hold-ready"));
                if (hold_ready && ftruncate(fd, 0) < 0)
                        plog("ftruncate %s: %m", control_path);
                safe_close(fd);
        }
        if (fcntl(MONITOR, F_SETFD, FD_CLOEXEC) < 0) {
                plog("no channel on fd %d: %m", MONITOR);
                return 1;
        }

        sigemptyset(&mask);
        sigaddset(&mask, SIGUSR1);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0 || (sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0) {
                plog("signalfd: %m");
                return 1;
        }

        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) < 0) {
                plog("socketpair: %m");
                return 1;
        }
        /* Room for full guest requests, as on the monitor's channel (capped for non-root). */
        for (size_t i = 0; i < 2; i++) {
                (void) setsockopt(pair[i], SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
                (void) setsockopt(pair[i], SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        }
        worker = pair[0];
        pid = start_worker(worker_path, argv, pair[1]);
        safe_close(pair[1]);
        if (pid < 0) {
                plog("fork: %m");
                return 1;
        }
        plog("started %s as pid %d", worker_path, (int) pid);

        for (;;) {
                struct pollfd p[] = {
                        { .fd = sfd, .events = POLLIN },
                        { .fd = worker, .events = POLLIN },
                        { .fd = monitor_open && !monitor_paused ? MONITOR : -1, .events = POLLIN },
                };
                struct signalfd_siginfo si;

                if (poll(p, ELEMENTSOF(p), -1) < 0) {
                        if (errno == EINTR)
                                continue;
                        plog("poll: %m");
                        (void) kill(pid, SIGKILL);
                        break;
                }

                if (p[1].revents && worker >= 0) {
                        int k = monitor_open ? relay(worker, MONITOR, true) : 0;

                        if (k == RELAY_CUT)
                                /* It sees the channel break; SIGCHLD tells how it ends. */
                                worker = safe_close(worker);
                        else if (k <= 0) {
                                /* The worker closed its channel: it is exiting; SIGCHLD tells how.
                                 * Or the monitor's is gone, and clinging on, we drop what the
                                 * worker says. */
                                if (!cling || recv(worker, relay_buf, sizeof(relay_buf), MSG_DONTWAIT) == 0)
                                        worker = safe_close(worker);
                                else
                                        monitor_open = false;
                        }
                }
                if (p[2].revents && monitor_open && !monitor_paused) {
                        int k = relay(MONITOR, worker, false);

                        if (k == RELAY_CUT)
                                worker = safe_close(worker);
                        else if (k == 0) {
                                /* The monitor let go of us (or the worker is cut off): so must the
                                 * worker, by end of file (unless we cling on, as a compromised
                                 * worker would). */
                                monitor_open = false;
                                if (!cling)
                                        worker = safe_close(worker);
                                else
                                        plog("the monitor let go of us, staying");
                        }
                }

                while (read(sfd, &si, sizeof(si)) == (ssize_t) sizeof(si))
                        switch (si.ssi_signo) {
                        case SIGUSR1:
                                inject(control_path, worker);
                                break;
                        case SIGTERM:
                        case SIGINT:
                        case SIGHUP:
                                (void) kill(pid, (int) si.ssi_signo);
                                break;
                        case SIGCHLD:
                                if (waitpid(pid, &status, WNOHANG) != pid)
                                        break;
                                /* What it said last goes on before we go. */
                                if (worker >= 0 && monitor_open)
                                        (void) relay(worker, MONITOR, true);
                                plog("worker %d exited (status 0x%x)", (int) pid, status);
                                exit_like(status);
                        }
        }

        (void) waitpid(pid, &status, 0);
        return 1;
}
