/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libtsm: the C library a virtual machine monitor links to talk to tsmd's io.tsmd.Guest
 * interface (iommufd contexts, vDevices, TDISP binding, forwarding a guest's TSM requests).
 * Runs in: the VMM process.
 *
 * Conventions, everywhere in this header:
 *
 *  - Every function that can fail returns 0 (or a documented non-negative value) on success
 *    and a negative errno on failure. Outputs (ret_*) are written only on success.
 *  - Invalid arguments (NULL where an object is needed, out-of-range values) give -EINVAL;
 *    the library never asserts, aborts or logs.
 *  - A TsmClient is one connection to tsmd and is not thread-safe: use it from one thread at a
 *    time. Separate clients are independent (the library has no global state).
 *  - Everything a connection creates (contexts, attached vDevices, bindings) belongs to that
 *    connection: tsmd releases it when the connection closes (the last copy of its socket, in
 *    whatever process), and no other connection can name it. A VMM that replaces itself
 *    keeping its guest (a live update) hands the connection on: tsm_client_detach_fd(),
 *    tsm_client_new_from_fd().
 *  - Callbacks are registered with (callback, userdata, destroy). destroy, if not NULL, runs
 *    exactly once per successful registration: after the last callback, or from
 *    tsm_client_free() if the call is still pending then (in which case the callback does not
 *    run at all). A registration that fails (returns < 0) calls neither.
 *  - Callbacks run only from inside tsm_client_process(), a blocking call on the same client
 *    (replies arrive in call order, so replies to earlier asynchronous calls are delivered
 *    while a later blocking call waits), tsm_client_reconnect() or the calls that cancel
 *    requests (tsm_device_cancel_requests()). Inside a callback, the
 *    client may be used for asynchronous registrations, the error accessors and
 *    tsm_client_free() (the client is then released once the callback returns); blocking
 *    calls, tsm_client_process() and tsm_client_reconnect() fail with -EDEADLK there.
 *  - Signals: libtsm sends with MSG_NOSIGNAL, so a connection tsmd closed never raises SIGPIPE
 *    (the call fails with -ECONNRESET). A blocking call a signal interrupts goes on waiting
 *    (EINTR is retried): only its reply, the connection's end or its timeout
 *    (tsm_client_set_timeout()) ends it.
 *  - fork(): the child shares the client's socket until it execs (the socket is O_CLOEXEC).
 *    Use a client in one process only. The connection, and everything it holds, lasts until
 *    every process's copy of the socket is closed: a child that lives on without exec should
 *    tsm_client_free() its copy (that closes its fd only: tsmd sees nothing).
 *
 * One connection answers in call order. tsmd serves a connection's calls concurrently, but
 * each reply leaves only after those of every call made before it, and a context, its
 * vDevices and their requests belong to the connection that made the context (handles are per
 * connection). So on one TsmClient a guest request to device B waits behind a slow Bind,
 * Unbind or guest request to device A made before it (a Bind is an SPDM exchange: as long as
 * the TSM takes), and a blocking call waits for every asynchronous call before it. Only guest
 * requests (tsm_guest_request_async()), DescribeConnection (tsm_client_describe_async()),
 * events and the device calls of a hot-plug and unplug (tsm_device_attach_async(),
 * tsm_device_bind_async(), tsm_device_unbind_async(), tsm_device_detach_async(),
 * tsm_device_get_state_async()) and a context's close (tsm_context_close_async()) have an
 * asynchronous form; the other context calls block. A blocking
 * call that times out is abandoned, not its connection: every context on it stays
 * (tsm_client_set_timeout()). A VMM:
 *
 *  - makes no blocking call on a vCPU thread or in its main loop: guest requests and the
 *    device calls go through their asynchronous forms from the loop (tsm_client_get_fd(),
 *    tsm_client_get_events(), tsm_client_process()), and so does a VM's teardown
 *    (tsm_context_close_async()); the other context calls (open, adopt, reclaim), made at a
 *    VM's start or after tsmd restarted, run before the loop or on a thread of their own,
 *    with the client handed over (one thread at a time: the loop neither calls nor
 *    processes a client while another thread has it). A blocking call runs the callbacks of
 *    the client's earlier asynchronous calls whose replies come while it waits (they come
 *    before its own) on the thread that blocks: the completion of a guest request made from
 *    the loop may run on that thread, not the loop's. Make callbacks safe to run there (hand
 *    the result to the loop), or leave no asynchronous call pending on a client handed to
 *    such a thread;
 *  - gives each device that must not wait behind another its own TsmClient (one connection
 *    each), each with a context of its own on the VM's iommufd: tsm_context_adopt() takes the
 *    same iommufd on any number of connections (tsm_context_open() would make a new iommufd,
 *    without the VM's vIOMMU and vDevices). Each such context counts against the limits
 *    (MaxContextsPerClient= per connection, the policy rule's MaxContexts= per process,
 *    MaxContextsPerUid= per uid, MaxContexts= in all; MaxConnectionsPerUid=) and has its own
 *    reclaim token;
 *  - watches events on one more client of their own (tsm_client_watch_events()).
 *
 * Errors. When tsmd answers a call with a Varlink error, the call returns the errno below and
 * tsm_client_get_error_name() / tsm_client_get_error_message() describe it. The mapping is
 * fixed (part of the ABI):
 *
 *   io.tsmd.Guest.NoSuchContext                -ENOENT      unknown or foreign context handle
 *   io.tsmd.Guest.NoSuchVDevice                -ENOENT      no such vDevice in the context
 *   io.tsmd.Guest.NoSuchDevice                 -ENOENT      no TSM-capable device at that address
 *   io.tsmd.Guest.VDeviceExists                -EEXIST      vDevice id already attached
 *   io.tsmd.Guest.NoSuchScope                  -EOPNOTSUPP  the backend has no such scope
 *   io.tsmd.Guest.ScopeUnavailable             -EOPNOTSUPP  the UAPI cannot carry that scope
 *   io.tsmd.Guest.Denied                       -EACCES      the policy does not allow it
 *   org.varlink.service.PermissionDenied       -EACCES      the caller may not use tsmd at all
 *   io.tsmd.Guest.BadFileDescriptor            -EBADF       the fd passed is not what it should be
 *   io.tsmd.Guest.PayloadTooLarge              -E2BIG       request or response limit exceeded
 *   io.tsmd.Guest.DeviceGone                   -ENODEV      the device went away
 *   io.tsmd.Guest.DeviceBusy                   -EBUSY       device or TSM busy; retry later
 *   io.tsmd.Guest.Timeout                      -ETIME       the backend did not answer the request in
 *                                                           time; the connection goes on (not
 *                                                           -ETIMEDOUT, which is libtsm's own, below)
 *   io.tsmd.Guest.InvalidState                 -EBADFD      the TDI state does not allow it
 *   io.tsmd.Guest.BackendError                 -errno       its "errno" parameter (1..4095), else -EIO (*)
 *   io.tsmd.Guest.AuditFailed                  -EIO         nothing was forwarded
 *   io.tsmd.Guest.StateNotSaved                -EIO         nothing was done: tsmd could not save what a
 *                                                           restart needs to know of it; retry later
 *   io.tsmd.Guest.LimitReached                 -EUSERS      a per-client limit, or the total of contexts,
 *                                                           was reached
 *   io.tsmd.TooManyConnections,
 *   io.tsmd.TooManyConnectionsPerUid           -EUSERS      tsmd refused the connection: MaxConnections=
 *                                                           (or the uid's MaxConnectionsPerUid=) are
 *                                                           open. The answer to its first call; tsmd
 *                                                           closed it (see below)
 *   io.tsmd.MalformedMessage,
 *   io.tsmd.NestingTooDeep,
 *   io.tsmd.TooManyJsonValues                  -EINVAL      tsmd refused the call's message (not JSON,
 *                                                           or past its MaxJsonDepth= or MaxJsonValues=:
 *                                                           the parameter names the limit) and closed
 *                                                           the connection (see below)
 *   io.tsmd.MessageTooLarge,
 *   io.tsmd.FileDescriptorsRefused             -E2BIG       the same, past its MaxMessageSize=, or with
 *                                                           more fds than its MaxFdsPerMessage=
 *   io.tsmd.MessageTimeout,
 *   io.tsmd.IdleTimeout                        -ECONNABORTED tsmd closed the connection: a call not
 *                                                           sent whole within MessageTimeoutSec= of its
 *                                                           first byte, none within IdleTimeoutSec=
 *                                                           of connecting, or, tsmd full, idle that
 *                                                           long holding nothing (see below)
 *   io.tsmd.Guest.ReclaimRefused               -ENOENT      no context of the caller's under the token
 *   io.tsmd.System                             -errno       its "errno" parameter (1..4095), else -EIO (*);
 *                                                           -EMFILE: tsmd had no fd left to receive one the
 *                                                           call passed (not the fd's fault; retry later)
 *   io.tsmd.ReplyTooLarge                      -EMSGSIZE    the call ran, but its reply exceeds tsmd's
 *                                                           MaxMessageSize=; the connection goes on
 *   io.tsmd.ReplyMayNotFit                     -E2BIG       refused before it acted: its answer might not
 *                                                           fit tsmd's MaxMessageSize= (or fds its
 *                                                           MaxFdsPerMessage=); nothing was done
 *   org.varlink.service.InvalidParameter       -EINVAL      tsmd rejected a parameter
 *   org.varlink.service.InterfaceNotFound,
 *   org.varlink.service.MethodNotFound,
 *   org.varlink.service.MethodNotImplemented   -EOPNOTSUPP  this tsmd does not offer the call
 *   org.varlink.service.ExpectedMore           -EBADE       the method needs tsm_client_call_more_json()
 *   any other error name                       -EBADR       (io.tsmd.Disconnected, io.tsmd.TimedOut and
 *                                                           io.tsmd.Protocol too, when tsmd sends them)
 *
 * (*) except the errno values libtsm reserves for its own failures (-ECONNRESET, -ENOTCONN,
 * -ETIMEDOUT, -EPROTO, -ECANCELED, -EDEADLK, -EINPROGRESS), which tsmd's errors give as -EIO:
 * the error message still names the errno ("name=EPROTO, errno=71"). So an errno a function's Return:
 * names after an error (-ENOENT NoSuchContext, -EBUSY DeviceBusy, -EACCES Denied, ...) may as
 * well be a backend's or the system's (BackendError errno EBUSY, io.tsmd.System ENOENT): where
 * the difference matters (retry or give up), tsm_client_get_error_name() tells.
 *
 * Local failures, with the error name libtsm reports for them:
 *
 *   connection lost during the call           -ECONNRESET  io.tsmd.Disconnected
 *   no reply within the timeout                -ETIMEDOUT   io.tsmd.TimedOut (the call abandoned;
 *                                                           the connection goes on)
 *   tsmd violated the wire protocol            -EPROTO      io.tsmd.Protocol (connection closed)
 *   call on a connection known to be lost      -ENOTCONN    io.tsmd.Disconnected
 *   a reply that does not match the interface  -EBADMSG     (NULL)
 *   an fd tsmd sent could not be received:     -EMFILE      (NULL; the connection goes on)
 *   the VMM's RLIMIT_NOFILE is reached
 *   a response larger than the buffer          -ENOBUFS     (NULL; tsmd does not send one: a
 *                                                           response too large for it is
 *                                                           PayloadTooLarge, -E2BIG)
 *   the call was not sent: the output queue    -ENOBUFS     (NULL; the connection goes on. tsmd reads
 *   is full                                                 no more calls while MaxPendingCalls= of
 *                                                           the connection's are unanswered: retry
 *                                                           once replies came)
 *   the call was not sent: it is larger than   -E2BIG       (NULL; the connection goes on)
 *   a message may be, or a guest request
 *   larger than any scope takes (64 KiB)
 *   an asynchronous request past the bound on  -EAGAIN      (NULL; nothing sent. See
 *   those outstanding                                       tsm_client_set_max_pending_requests())
 *   a blocking call was not sent: 8 abandoned  -EINPROGRESS (NULL; the connection goes on: call
 *   (timed-out) calls are still unanswered                  again once tsmd answered them, see
 *                                                           tsm_client_set_timeout())
 *   a call while a WatchEvents stream is open  -EDEADLK     (NULL; see tsm_client_watch_events())
 *   tsm_client_detach_fd() with a call or a    -EBUSY       (NULL; the client as it was)
 *   message under way
 *   tsm_client_new_from_fd() of no socket,     -ENOTSOCK,   (NULL; the fd left as it was)
 *   or of no connected AF_UNIX stream socket   -EINVAL
 *   invalid arguments, out of memory           -EINVAL, -ENOMEM (NULL)
 *   a callback freed the client (see below)    -ECANCELED   (the client is gone)
 *
 * A message from tsmd with more than one fd attached is such a violation (no reply carries more:
 * OpenContext's and ReclaimContext's carry their iommufd, the others none); libtsm closes the
 * fds at once, and keeps none of them. Replies tsmd sent before that message are delivered as
 * usual, even those read with it: the call it answers and every call after fail with -EPROTO
 * (a blocking call whose own reply came first still returns it; the violation fails the next
 * call, or tsm_client_process()). A reply with one it does not name has it closed when
 * the call is done. So is an error whose name is not a Varlink error name (an interface name,
 * '.', then [A-Z][A-Za-z0-9]*): no escape sequence or newline reaches the VMM as a name.
 *
 * No error tsmd sends maps to -ECONNRESET, -ENOTCONN, -ETIMEDOUT or -EPROTO. After -ECONNRESET,
 * -ENOTCONN or -EPROTO the connection is gone (and with it every context it held): libtsm has
 * closed its socket, and tsm_client_reconnect() makes a new one. Until then (or
 * tsm_client_free()) a socket whose peer is gone keeps its fd number, which the caller's loop
 * may still watch, so that it is never that of an fd opened meanwhile (poll(2) reports POLLHUP
 * on it). After any other error, -ETIMEDOUT included, the connection goes on, but for the
 * refusal of the connection (-EUSERS named io.tsmd.TooManyConnections or
 * TooManyConnectionsPerUid): tsmd closed it after that answer, and its next call fails as on a
 * lost connection. It held nothing, so nothing is lost; nor did tsmd restart: a new connection
 * is refused the same way until others close, so back off rather than reconnect at once.
 * Likewise after the refusals of a call's message as a whole (MalformedMessage ...
 * IdleTimeout above): tsmd closed the connection after that answer, and with it went every
 * context it held; its next call fails as on a lost connection, and tsm_client_reconnect()
 * makes a new one. libtsm sends no message tsmd's default limits refuse; IdleTimeout does find
 * a VMM that connected and made no call for IdleTimeoutSec= (60 s by default): connect when
 * about to call, or reconnect then.
 *
 * -ECANCELED: the client is gone. A blocking call (and tsm_client_reconnect()) runs the
 * callbacks of earlier asynchronous calls whose replies arrive meanwhile. If one of them calls
 * tsm_client_free(), the client is released before the blocking call returns, and the call
 * returns -ECANCELED (its outputs unwritten; what tsmd did for it is released with the
 * connection). @c is then a dangling pointer: do not pass it to anything, not even
 * tsm_client_get_error_name() or tsm_client_free(). Only a program that frees a client from
 * its own callbacks can get -ECANCELED from a blocking call, and it must check for it before
 * the usual error handling. (tsm_client_process() returns 1 in that case.)
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One connection to tsmd's io.tsmd.Guest interface. */
typedef struct TsmClient TsmClient;
/* What tsm_device_attach() learned about a device: backend, TSM, UAPI and scopes. */
typedef struct TsmDeviceInfo TsmDeviceInfo;
/* One request scope of a device's backend (borrowed from its TsmDeviceInfo). */
typedef struct TsmScope TsmScope;
/* One event of a tsm_client_watch_events() stream (borrowed for the callback). */
typedef struct TsmEvent TsmEvent;
/* What a connection holds, as tsm_client_describe() and tsm_client_new_from_fd() tell it. */
typedef struct TsmConnectionInfo TsmConnectionInfo;
/* One vDevice of a TsmConnectionInfo (borrowed from it). */
typedef struct TsmHeldVDevice TsmHeldVDevice;

/* The TDISP state of a device interface (TDI). */
typedef enum TsmTdiState {
        TSM_TDI_STATE_CONFIG_UNLOCKED,
        TSM_TDI_STATE_CONFIG_LOCKED,
        TSM_TDI_STATE_RUN,
        TSM_TDI_STATE_ERROR,
        _TSM_TDI_STATE_MAX,
        /* Not known: the backend keeps the state between the TSM and the guest. */
        _TSM_TDI_STATE_INVALID = -EINVAL,
} TsmTdiState;

/* What a tsm_client_watch_events() event is about. tsmd sends TSM_EVENT_DEVICE_REMOVED (for a
 * TSM that went away too) and TSM_EVENT_DEVICE_UNBOUND; the other kinds are reserved: no tsmd
 * sends them yet. */
typedef enum TsmEventKind {
        TSM_EVENT_DEVICE_REMOVED,  /* the physical device or its TSM went away */
        TSM_EVENT_BACKEND_REMOVED, /* reserved: the TSM serving the device went away */
        TSM_EVENT_STATE_CHANGED,   /* reserved: the TDI changed state */
        TSM_EVENT_DEVICE_CHANGED,  /* reserved: the device's properties changed */
        /* the kernel ended the vDevice's binding, tsmd not asked (its device disconnected from
         * its TSM by another tool): it is unbound; a Bind binds it again */
        TSM_EVENT_DEVICE_UNBOUND,
        _TSM_EVENT_KIND_MAX,
        /* A kind this libtsm does not know (a newer tsmd): see tsm_event_get_kind_string(). */
        _TSM_EVENT_KIND_INVALID = -EINVAL,
} TsmEventKind;

/**
 * TsmDestroyFunc - releases the userdata of a callback registration
 * @userdata: what was registered
 *
 * Runs exactly once per successful registration (see the conventions above).
 */
typedef void (*TsmDestroyFunc)(void *userdata);

/**
 * TsmGuestRequestFunc - completion of tsm_guest_request_async()
 * @c: the client
 * @error: 0, or the negative errno the call failed with (see the table above; the error name
 *         and message are available from @c during the callback)
 * @response: the response bytes (NULL when @error < 0); borrowed for the callback only
 * @response_len: their number
 * @userdata: what was registered
 *
 * Runs once per request; destroy follows it. tsm_client_get_request_unconsumed() tells, during
 * the callback, what of the request the TSM left unconsumed. -ECANCELED: taken back before it
 * was sent (tsm_device_cancel_requests(), tsm_client_cancel_requests()), or dropped with its
 * connection by tsm_client_reconnect().
 */
typedef void (*TsmGuestRequestFunc)(TsmClient *c, int error, const void *response,
                                    size_t response_len, void *userdata);

/**
 * TsmEventFunc - one reply of a tsm_client_watch_events() stream
 * @c: the client
 * @error: 0 while the stream is open; a negative errno when it ended (the last call; destroy
 *         follows): -ECONNRESET when the connection was lost, -ECONNABORTED when tsmd, full,
 *         closed it as idle (IdleTimeout: a watch whose process holds no context keeps nothing,
 *         tsm_client_connect()), -ECANCELED after
 *         tsm_client_reconnect(), -ENODATA if tsmd ended the stream, a mapped Varlink error
 *         if tsmd refused the subscription or could not tell an event (io.tsmd.System, out of
 *         memory: watch again and read the devices' state anew)
 * @event: NULL for the first reply (the subscription is established) and when @error < 0;
 *         otherwise the event, borrowed for the callback only
 * @userdata: what was registered
 */
typedef void (*TsmEventFunc)(TsmClient *c, int error, const TsmEvent *event, void *userdata);

/**
 * TsmDescribeFunc - completion of tsm_client_describe_async()
 * @c: the client
 * @error: 0, or the negative errno the call failed with (as tsm_client_describe()'s; the error
 *         name and message are available from @c during the callback); -ECANCELED after
 *         tsm_client_reconnect()
 * @info: what the connection holds (NULL when @error < 0); borrowed for the callback only
 * @userdata: what was registered
 *
 * Runs once per call; destroy follows it.
 */
typedef void (*TsmDescribeFunc)(TsmClient *c, int error, const TsmConnectionInfo *info, void *userdata);

/**
 * TsmAttachFunc - completion of tsm_device_attach_async()
 * @c: the client
 * @error: 0, or the negative errno the call failed with (as tsm_device_attach()'s; the error
 *         name and message are available from @c during the callback); -ECONNRESET (or
 *         -EPROTO) when the connection was lost, -ECANCELED after tsm_client_reconnect()
 * @info: what tsmd said about the device (NULL when @error < 0). Unlike the results other
 *        callbacks borrow, it is the callback's: keep it, or release it with
 *        tsm_device_info_free()
 * @userdata: what was registered
 *
 * Runs once per call; destroy follows it.
 */
typedef void (*TsmAttachFunc)(TsmClient *c, int error, TsmDeviceInfo *info, void *userdata);

/**
 * TsmDoneFunc - completion of a call that answers nothing but whether it succeeded
 *               (tsm_device_detach_async(), tsm_context_close_async())
 * @c: the client
 * @error: 0, or the negative errno the call failed with (as its blocking form's);
 *         -ECONNRESET (or -EPROTO) when the connection was lost, -ECANCELED after
 *         tsm_client_reconnect()
 * @userdata: what was registered
 *
 * Runs once per call; destroy follows it.
 */
typedef void (*TsmDoneFunc)(TsmClient *c, int error, void *userdata);

/**
 * TsmStateFunc - completion of tsm_device_bind_async(), tsm_device_unbind_async() and
 *                tsm_device_get_state_async()
 * @c: the client
 * @error: 0, or the negative errno the call failed with (as its blocking form's); -ECONNRESET
 *         (or -EPROTO) when the connection was lost, -ECANCELED after tsm_client_reconnect()
 * @state: the TDI state (as the blocking form's @ret_state); _TSM_TDI_STATE_INVALID when
 *         @error < 0
 * @bound: whether this client has the vDevice bound: GetDeviceState's answer; true after a
 *         Bind, false after an Unbind; false when @error < 0
 * @userdata: what was registered
 *
 * Runs once per call; destroy follows it.
 */
typedef void (*TsmStateFunc)(TsmClient *c, int error, TsmTdiState state, bool bound, void *userdata);

/* ---- the client ----------------------------------------------------------------------- */

/**
 * tsm_client_connect() - connects to tsmd's io.tsmd.Guest socket
 * @address: "unix:/path", "/path", "./relative" or "@abstract"; NULL: $TSMD_GUEST_SOCKET if set
 *           and not empty (ignored in setuid programs), else /run/tsmd/io.tsmd.Guest
 * @ret: the new client, to be released with tsm_client_free()
 *
 * Connects without blocking for long (a full listen backlog is waited for up to 45 s). The
 * default timeout of blocking calls is 45 s (tsm_client_set_timeout()). A connection tsmd
 * refuses (past MaxConnections= or MaxConnectionsPerUid=) is made all the same: its first call
 * fails with -EUSERS, named io.tsmd.TooManyConnections or TooManyConnectionsPerUid.
 *
 * Make the first call soon: tsmd closes a connection that has not sent a complete call
 * within its IdleTimeoutSec= (tsmd.conf(5); 60 s by default) of connecting, telling it
 * io.tsmd.IdleTimeout: the next call on it fails with -ECONNABORTED (tsm_client_reconnect()
 * makes a new one). After the first call no timeout closes it, but once tsmd's MaxConnections=
 * is reached, a connection idle that long (no call in flight but subscriptions) that holds
 * nothing (no context, no request, no event stream of a process holding a context: watch once
 * the contexts are open, or reconnect the watch on -ECONNABORTED) may be closed the same way to
 * make room for a new one: connect when there is something to do, or reconnect on
 * -ECONNABORTED while holding nothing.
 *
 * Return: 0; -EINVAL for a malformed address ("" too); -ENOENT, -ECONNREFUSED, -EACCES ... from
 * connect(2); -ETIMEDOUT if the backlog stayed full for 45 s; -ENOMEM.
 */
int tsm_client_connect(const char *address, TsmClient **ret);

/**
 * tsm_client_free() - closes the connection and releases the client
 * @c: the client, or NULL
 *
 * tsmd releases every context, vDevice and binding the connection held. Asynchronous calls
 * still pending get their destroy function called (not their callback). Called from inside a
 * callback of @c, the client is released once that callback returned; no further callbacks
 * run. The destroy functions it runs are callbacks of @c like any other: tsm_client_free()
 * from one adds nothing (@c is being released already, once, after the last of them),
 * blocking calls, tsm_client_process() and tsm_client_reconnect() fail with -EDEADLK there,
 * and asynchronous calls with -ENOTCONN.
 *
 * Return: NULL.
 */
TsmClient *tsm_client_free(TsmClient *c);

/**
 * tsm_client_set_timeout() - bounds how long blocking calls wait for their reply
 * @c: the client
 * @usec: microseconds; 0 waits forever (as, in effect, does UINT64_MAX: a deadline past the
 *        end of the clock never comes)
 *
 * A blocking call that times out returns -ETIMEDOUT and is abandoned, not the connection
 * (hanging up would make tsmd release every context on it, unbinding the VM's devices): its
 * contexts, vDevices, bindings and pending asynchronous calls stay. What tsmd does for the call
 * goes on (a Bind may complete: tsm_device_get_state() tells), and its reply, which comes in
 * call order, is dropped when it comes (an fd with it closed); later calls wait behind it. A
 * context an abandoned OpenContext or AdoptContext made, unknown to the VMM, is closed when
 * that reply comes (a oneway CloseContext), so that it does not count against the limits
 * (MaxContexts= ...) until the connection ends. One an abandoned ReclaimContext took back
 * stays the connection's, with the guest's vDevices and bindings (a close would end them): a
 * retried tsm_context_reclaim() with the same token gets it, as the call would have (see
 * there), though tsmd renewed that token.
 * Abandoned calls are bounded: while 8 are unanswered, a blocking call is refused, not sent:
 * -EINPROGRESS (no error name; the connection and everything on it stay, asynchronous calls
 * are still made). Behind one call tsmd holds long (a guest request to a device that does not
 * answer waits up to tsmd's RequestTimeoutUSec=) every later call on the connection times out
 * too; hanging up would make tsmd release every context. Each blocking call, and
 * tsm_client_process(), reads the replies that came meanwhile: once one of the abandoned
 * calls is answered, the next call is made. Asynchronous calls have no timeout of their own.
 * Kept across tsm_client_reconnect(), which waits as long (0: for ever) for tsmd's listen
 * backlog to have room.
 *
 * Return: 0 or -EINVAL.
 */
int tsm_client_set_timeout(TsmClient *c, uint64_t usec);

/**
 * tsm_client_set_max_pending_requests() - bounds the asynchronous guest requests outstanding
 * @c: the client
 * @n: how many tsm_guest_request_async() calls may be outstanding (made, their callback not
 *     run yet); at least 1. Default: 64, tsmd's default MaxPendingCalls= (tsmd.conf(5)): what
 *     tsmd itself takes of one connection before it stops reading it
 *
 * Past it tsm_guest_request_async() fails with -EAGAIN at once, nothing copied or sent: the
 * guest drives the requests, and without a bound a guest that never stops would queue them
 * until the output queue is full (16 MiB, some 100000 requests), every later call, the VMM's
 * Unbind and Detach too, waiting behind all of them (one connection answers in call order).
 * On -EAGAIN the VMM completes the guest's request with a busy status of its transport (the
 * guest retries), and does not queue it itself. Blocking calls and tsm_client_watch_events()
 * do not count. A bound below the number outstanding refuses new requests until enough were
 * answered. Kept across tsm_client_reconnect().
 *
 * Only guest requests count: the VMM's own asynchronous calls (tsm_device_attach_async(),
 * tsm_device_detach_async(), tsm_device_bind_async(), tsm_device_unbind_async(),
 * tsm_device_get_state_async(), tsm_context_close_async(), tsm_client_describe_async()) neither
 * count against the bound nor are refused by it, so a guest that filled it never keeps its VMM
 * from unplugging the guest's device. They are the VMM's, not the guest's, to bound.
 *
 * Of the calls outstanding, libtsm sends tsmd 8 at a time (tsm_client_set_max_calls_in_flight();
 * asynchronous and blocking calls together): the others wait, in call order, in libtsm, where
 * tsm_device_cancel_requests() and tsm_client_cancel_requests() can take the guest requests
 * among them back.
 *
 * Return: 0 or -EINVAL (@n is 0).
 */
int tsm_client_set_max_pending_requests(TsmClient *c, unsigned n);

/**
 * tsm_client_set_max_calls_in_flight() - bounds the calls libtsm has at tsmd at a time
 * @c: the client
 * @n: how many calls of @c may be sent and unanswered at once (asynchronous ones, blocking
 *     ones, and blocking ones abandoned after their timeout, together); 1 to 1024. Default: 8
 *
 * Calls past it wait in libtsm, in call order, each sent when a reply makes room, and the
 * guest requests among them can be taken back (tsm_device_cancel_requests()): tsmd answers a
 * connection in call order and runs a device's exchanges one after the other, so the
 * tsm_device_unbind() or tsm_device_detach() of a hot-unplug, made after its guest's requests
 * were taken back, waits behind at most @n calls, however many the guest had queued (8: 1.6 s at
 * 200 ms an exchange). A larger @n keeps more devices of the connection busy at once; a
 * smaller one bounds that wait more tightly (1: an unplug waits behind one call). More than
 * tsmd reads of a connection (its MaxPendingCalls=, 64 by default) buys nothing: the calls past
 * it wait in the socket instead, where nothing takes them back.
 *
 * Raised, calls waiting in libtsm that now fit are sent at once; lowered below the number at
 * tsmd, those stay, and the next is sent once fewer than @n are. Kept across
 * tsm_client_reconnect().
 *
 * Return: 0 or -EINVAL (@n is 0 or more than 1024).
 */
int tsm_client_set_max_calls_in_flight(TsmClient *c, unsigned n);

/**
 * tsm_client_reconnect() - replaces the connection with a new one to the same address
 * @c: the client
 *
 * The old connection is closed first, whether it still works or not. Everything it held is
 * gone: tsmd releases its contexts (their handles are invalid on the new connection), vDevices
 * and bindings; the iommufds the VMM holds stay open but are no longer known to tsmd. tsmd
 * notices the old connection's end asynchronously, so a device attached there may still be
 * busy (-EBUSY) for a moment. Unless tsmd restarted: then its contexts wait to be taken back
 * with tsm_context_reclaim().
 *
 * Asynchronous calls still pending on the old connection get their callback with -ECANCELED
 * (from inside this function), then their destroy function. The fd of tsm_client_get_fd()
 * changes. The error state is cleared.
 *
 * Return: 0; as tsm_client_connect() when the new connection cannot be made (@c then has no
 * working connection: calls fail with -ENOTCONN until a reconnect succeeds), but -ETIMEDOUT
 * after @c's timeout (tsm_client_set_timeout()), not 45 s, of a full backlog; -EDEADLK from a
 * callback.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_client_reconnect(TsmClient *c);

/**
 * tsm_client_get_error_name() - the Varlink error name of the last failed call
 * @c: the client
 *
 * The name ("io.tsmd.Guest.Denied", "io.tsmd.Disconnected", ...) of the error the most recent
 * failed call got. A call that succeeds clears it (NULL after it), as does an asynchronous
 * call's callback with no error; an asynchronous call that fails sets it before its callback
 * runs. Local failures that are not about the connection (-EINVAL, -ENOMEM, -EBADMSG, ...)
 * clear it too. So after a success it is NULL, never an earlier call's. tsmd's names are checked against the Varlink
 * grammar (see above), so the name is safe to print.
 *
 * Return: the name, borrowed until the next call on @c; NULL if there is none or @c is NULL.
 */
const char *tsm_client_get_error_name(const TsmClient *c);

/**
 * tsm_client_get_error_message() - the parameters of the last error as a short human string
 * @c: the client
 *
 * E.g. "scope=debug-read, backend=emulated" for io.tsmd.Guest.NoSuchScope, "reason=scope
 * 'debug-read' not granted" for io.tsmd.Guest.Denied (the policy's reason, as tsmd sends it), a
 * sentence for the local errors, "" for an error without parameters. At most a few hundred
 * bytes (longer ones are cut with "...", between characters). Safe to print to a terminal:
 * valid UTF-8, with '?' for each control character (C0, DEL, C1), each character that shows
 * out of order, as nothing or breaks a line (U+202E, U+200B, U+2028 and their kin) and each
 * byte that is no UTF-8 (the values are tsmd's peer's choice).
 *
 * Return: the text, borrowed like tsm_client_get_error_name(); NULL when that is NULL.
 */
const char *tsm_client_get_error_message(const TsmClient *c);

/**
 * tsm_client_get_fd() - the fd to watch in the caller's event loop
 * @c: the client
 *
 * Return: the connection's socket (owned by @c: do not close or read it); it changes with
 * tsm_client_reconnect(). Once the connection is lost (-ECONNRESET, -EPROTO) the same number
 * and the same socket, shut down (tsmd sees the hang-up; what it sent that was not read is
 * dropped, fds closed): poll(2) reports POLLHUP (and POLLIN) on it, an epoll(7) set it is in
 * keeps it and reports EPOLLHUP, and it stays open until tsm_client_reconnect() or
 * tsm_client_free() (take it out of the event loop, EPOLL_CTL_DEL included, before either).
 * -EINVAL; -ENOTCONN if there is no connection (a reconnect failed).
 */
int tsm_client_get_fd(const TsmClient *c);

/**
 * tsm_client_get_events() - the poll(2) events to wait for on tsm_client_get_fd()
 * @c: the client
 *
 * POLLIN while replies are expected, POLLOUT while output waits to be written (not for calls
 * held in libtsm, see tsm_client_set_max_pending_requests(): a reply makes room for them), 0
 * when there is nothing to wait for (no call pending, or the connection is lost). Keep the fd in the loop
 * while it is >= 0 all the same: poll(2) reports POLLHUP whatever the events when tsmd hangs up
 * (its worker restarted, say), and tsm_client_process() then says the connection is lost.
 *
 * Return: the event mask (>= 0) or -EINVAL.
 */
int tsm_client_get_events(const TsmClient *c);

/**
 * tsm_client_process() - does whatever can be done without blocking
 * @c: the client
 *
 * Writes queued calls, reads replies and runs their callbacks. Call it when the fd is ready
 * for the events of tsm_client_get_events() (calling it at other times is harmless). It reads
 * at most 64 KiB per call (four reads of up to 16 KiB), so that a stream tsmd never stops
 * sending cannot keep the caller's loop here: it runs the callbacks of the replies in what it
 * read, and what is left keeps the fd readable (poll(2) is level-triggered; with EPOLLET, call
 * it again until it returns 0). A blocking call reads until its own reply and, once it has it,
 * as much as one tsm_client_process() more, for the replies to asynchronous calls that came
 * with it.
 *
 * Return: 1 if something was done (also when a callback freed @c: it is gone then), 0 if
 * there was nothing to do; -ECONNRESET (or -EPROTO) when the connection was lost now (every
 * pending callback has then run with that error; also with none pending: tsmd hung up, time to
 * reconnect and reclaim), -ENOTCONN if it was lost before (io.tsmd.Disconnected, as for any
 * call then); -EDEADLK from a callback.
 */
int tsm_client_process(TsmClient *c);

/* ---- handing a connection on (a VMM's live update) -------------------------------------- */

/**
 * tsm_client_detach_fd() - frees the client, keeping its connection open, to hand it on
 * @c: the client
 * @ret_fd: the connection's socket, now the caller's
 *
 * For a VMM that replaces itself without ending its guest: QEMU's CPR live update, cpr-exec
 * (the same process execs the new binary, keeping chosen fds) or cpr-transfer (a new process
 * gets the old one's fds over a Unix socket, then the old one exits). Everything the
 * connection holds at tsmd (contexts, vDevices, bindings) stays as long as some process keeps
 * the socket open: hand it on with SCM_RIGHTS, or keep it across exec(), and adopt it there
 * with tsm_client_new_from_fd(). The socket is O_CLOEXEC (clear FD_CLOEXEC with fcntl(2) for
 * cpr-exec) and non-blocking. Close it only to give everything up: tsmd then releases it all.
 *
 * Only at a message boundary, nothing under way: refused with -EBUSY, nothing changed, while
 * an asynchronous call (a guest request, an open watch: a watching client is never handed
 * on, see below) or a blocking call that timed out (tsm_client_set_timeout()) awaits its
 * reply, a call is not entirely written, or anything tsmd sent is not entirely read (a reply
 * partly read, or read but not yet delivered): the next owner would read or write from the
 * middle of a message, or take a reply of this one's calls for its own. Run the event loop
 * (tsm_client_process()) until tsm_client_get_events() is 0 and try again.
 *
 * What does not go with the fd, because it is libtsm's own: the reclaim tokens
 * (tsm_context_get_reclaim_token(): take and hand on those the new process needs, or it cannot
 * reclaim after a restart of tsmd), the late reclaims kept for a retry (their iommufds closed:
 * their contexts stay the connection's), the timeout and the error state.
 *
 * Return: 0 (@c is gone); -EBUSY; -ENOTCONN (the connection is lost, or there is none);
 * -EDEADLK from a callback; -EINVAL.
 */
int tsm_client_detach_fd(TsmClient *c, int *ret_fd);

/**
 * tsm_client_new_from_fd() - adopts a connection to tsmd another client handed on
 * @fd: the socket, from tsm_client_detach_fd() (in this process, across exec(), or received
 *      with SCM_RIGHTS)
 * @ret_info: what the connection holds (free with tsm_connection_info_free()); may be NULL
 * @ret: the new client, to be released with tsm_client_free()
 *
 * Checks that @fd is a connected AF_UNIX stream socket and asks tsmd what the connection holds
 * (io.tsmd.Guest.DescribeConnection, with a nonce that proves the reply answers this call: the
 * stream is at a message boundary), before it takes @fd. Context handles are the
 * connection's, so those the old process used are valid here. tsm_client_reconnect() connects
 * to the address @fd's peer is bound to (if it has a path or an abstract name), else as
 * tsm_client_connect(NULL); the timeout is the default.
 *
 * What the connection is, is fixed at its connect: tsmd knows its peer as the process that
 * connected (SO_PEERCRED: uid, gid, pid, its unit), as for any socket handed on. Its calls are
 * audited and authorised under that identity, its contexts count against that process's
 * limits (the policy rule's MaxContexts=), and tsm_client_watch_events() on it or on any other
 * connection of that process hears of its devices. Events are per process: after cpr-exec the
 * process is the same (a connection it makes anew hears of the adopted contexts too), after
 * cpr-transfer it is not (one the new process makes hears nothing of them). A watching client
 * cannot be handed on (its stream never ends: -EBUSY): for cpr-transfer, let the old process
 * make one more connection before it goes (tsm_client_connect(), then tsm_client_detach_fd()
 * within IdleTimeoutSec=, or the adopting call comes too late), hand that on, adopt it and
 * watch on it.
 *
 * Until tsmd answered, the call works on a duplicate of @fd; then the client's socket is @fd
 * itself: the number stays valid (QEMU's CPR keeps fds by name and number), and it is
 * O_CLOEXEC from then on, as libtsm's other fds (clear FD_CLOEXEC again before a later
 * cpr-exec).
 *
 * Return: 0 (@fd is the client's: tsm_client_get_fd() returns @fd, tsm_client_free() closes
 * it, tsm_client_detach_fd() hands it on again; the duplicate is closed); otherwise @fd is
 * left open and as it was, still the caller's, and with it the connection and all it
 * holds: -EBADF (@fd < 0 or not open), -ENOTSOCK (not a socket), -EINVAL (not a connected
 * AF_UNIX stream socket; @ret NULL), -EMFILE, -ENOMEM; and as tsm_client_describe(): -EBADMSG
 * for a reply not this call's (another nonce: a previous owner left a reply unread) or not
 * DescribeConnection's, -EOPNOTSUPP from a tsmd that has no DescribeConnection, -ETIMEDOUT,
 * -ECONNRESET (tsmd is gone), the table's. Once the call was made (-EBADMSG, -ETIMEDOUT) the
 * connection is no longer at a message boundary: keep @fd open for the guest's devices' sake,
 * but no client can take it over.
 */
int tsm_client_new_from_fd(int fd, TsmConnectionInfo **ret_info, TsmClient **ret);

/**
 * tsm_client_describe() - io.tsmd.Guest.DescribeConnection: what this connection holds
 * @c: the client
 * @ret: its contexts and their vDevices, as tsmd has them (free with tsm_connection_info_free())
 *
 * Only this connection's: nothing of another connection, of this process's or uid's either.
 * Answered whatever the policy in force says (it tells only what the connection holds). A
 * Bind or Unbind still being answered (one that timed out) shows as changing. The reply may
 * be larger than any other of io.tsmd.Guest's: a connection may hold up to 4096 contexts and
 * 65536 vDevices (tsmd.conf's MaxContextsPerClient= and MaxVDevicesPerClient= at their
 * largest), and libtsm takes a reply that large while one is to come (until it came, late or
 * not: a call that timed out keeps it so until its reply, or a reconnect): some 8 MiB, and no
 * more JSON values than that holds, some 540 thousand (with room for a newer tsmd's fields,
 * guest-limits.h). As tsmd sends it, that costs the VMM some 75 MiB of parsed objects; a peer
 * sending what tsmd never would (empty objects) can make them cost some 400 MiB, no more. The
 * bound is no tighter because what a connection may hold is the host's tsmd.conf's to say,
 * which libtsm cannot know before it reads the reply, and a reply past the bound costs the
 * connection: it is a protocol violation, -EPROTO (io.tsmd.Protocol), the connection closed
 * and everything it held released. To keep a reply small, keep MaxContextsPerClient= and
 * MaxVDevicesPerClient= small: tsmd never sends more than they allow.
 *
 * Return: 0; -EBADMSG (a reply that is not this call's: another nonce; or not
 * DescribeConnection's); -EOPNOTSUPP (a tsmd without it); -EMSGSIZE (io.tsmd.ReplyTooLarge:
 * more than tsmd's MaxMessageSize=); -EPROTO (a reply past the bound above); see the table.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_client_describe(TsmClient *c, TsmConnectionInfo **ret);

/**
 * tsm_client_describe_async() - tsm_client_describe() without waiting
 * @c: the client
 * @callback: runs once with the result (see TsmDescribeFunc)
 * @userdata: passed to @callback and @destroy
 * @destroy: runs once after @callback, or from tsm_client_free(); may be NULL
 *
 * As tsm_guest_request_async(): sent at once if the socket takes it, its reply read and the
 * callback run by tsm_client_process() (or a later blocking call), never from here, in call
 * order with the other calls' (so what it tells is the state once the calls made before it
 * were taken: a Bind still being answered shows as changing). The reply is checked as
 * tsm_client_describe()'s (its nonce, its fields): the callback gets -EBADMSG for one that is
 * not this call's. Until it came, replies may be as large as DescribeConnection's, and
 * tsm_client_detach_fd() is refused (-EBUSY), as for any call under way. A connection lost
 * meanwhile gives the callback -ECONNRESET (or -EPROTO), tsm_client_reconnect() -ECANCELED.
 *
 * Return: 0 (queued); -EINVAL; -ENOTCONN; -EDEADLK (a watch is open); -ENOBUFS (the output
 * queue is full, see the table); -ENOMEM.
 */
int tsm_client_describe_async(TsmClient *c, TsmDescribeFunc callback, void *userdata, TsmDestroyFunc destroy);

/* Releases a TsmConnectionInfo; NULL is fine. Returns NULL. */
TsmConnectionInfo *tsm_connection_info_free(TsmConnectionInfo *info);
/* Its contexts, by handle on the connection (0 for an index out of range). */
size_t tsm_connection_info_get_n_contexts(const TsmConnectionInfo *info);
uint64_t tsm_connection_info_get_context(const TsmConnectionInfo *info, size_t index);
/* Its vDevices, those of every context, in the order of their contexts (NULL out of range). */
size_t tsm_connection_info_get_n_vdevices(const TsmConnectionInfo *info);
const TsmHeldVDevice *tsm_connection_info_get_vdevice(const TsmConnectionInfo *info, size_t index);
/* Accessors of a vDevice; 0 / NULL / false for NULL. The context's handle, the vDevice id, the
 * physical device ("DDDD:BB:DD.F", borrowed), whether this connection bound it, whether a Bind
 * or Unbind of it is still being answered (bound is then what it was before), and whether its
 * device went away (only tsm_device_detach() is left to do). */
uint64_t tsm_held_vdevice_get_context(const TsmHeldVDevice *v);
uint32_t tsm_held_vdevice_get_id(const TsmHeldVDevice *v);
const char *tsm_held_vdevice_get_pci_address(const TsmHeldVDevice *v);
bool tsm_held_vdevice_is_bound(const TsmHeldVDevice *v);
bool tsm_held_vdevice_is_changing(const TsmHeldVDevice *v);
bool tsm_held_vdevice_is_gone(const TsmHeldVDevice *v);

/* ---- contexts ------------------------------------------------------------------------- */

/**
 * tsm_context_open() - io.tsmd.Guest.OpenContext: tsmd opens an iommufd for the VMM
 * @c: the client
 * @ret_context: the context's handle, valid on this connection only
 * @ret_iommufd: the iommufd (received with SCM_RIGHTS, O_CLOEXEC); the caller owns it and must
 *               close it. tsmd keeps its own reference until the context is closed. May be
 *               NULL (the fd is closed at once).
 *
 * Return: 0; -EUSERS (LimitReached); -EBADMSG if no fd came with the reply; -EMFILE if it
 * came but the process has no fd left for it (RLIMIT_NOFILE; libtsm closes the context then);
 * see the table.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_context_open(TsmClient *c, uint64_t *ret_context, int *ret_iommufd);

/**
 * tsm_context_adopt() - io.tsmd.Guest.AdoptContext: registers an iommufd the VMM opened
 * @c: the client
 * @iommufd: the iommufd; a duplicate is sent, the caller keeps (and still owns) @iommufd
 * @ret_context: the context's handle, valid on this connection only
 *
 * Return: 0; -EBADF if @iommufd is not an open fd, or tsmd found it is not an iommufd
 * (BadFileDescriptor); -EMFILE if tsmd had no fd left to receive it (io.tsmd.System: retry
 * later); -EUSERS; see the table.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_context_adopt(TsmClient *c, int iommufd, uint64_t *ret_context);

/**
 * tsm_context_get_reclaim_token() - the token that takes a context back after tsmd restarts
 * @c: the client
 * @context: a context opened, adopted or reclaimed on this connection
 * @ret_token: a copy of the token (free() it)
 *
 * When tsmd's worker restarts (after a crash; or tsmd itself, under a service manager that
 * keeps its file descriptors), the connection fails (-ECONNRESET) but the contexts stay,
 * with their vDevices and bindings, for a while (ReclaimTimeoutSec): after
 * tsm_client_reconnect(), tsm_context_reclaim() with this token gets one back. Copy it right
 * after opening the context, and again after every tsm_context_reclaim(): each reclaim renews
 * the token (the one reclaimed with is void from then on), and a reconnect forgets the tokens
 * of the old connection.
 *
 * Only a restart of tsmd: a restart of the VMM itself (a crash, an exec()) loses its contexts.
 * Its connections close with it (the socket is O_CLOEXEC), and tsmd releases at once what a
 * closed connection held, unbinding its devices (their TDIs back in config_unlocked): the new
 * process's tsm_context_reclaim() with the old token fails with -ENOENT (ReclaimRefused), and
 * it attaches and binds anew, the guest accepting the devices again. A live update that keeps
 * the guest running (QEMU's cpr-exec or cpr-transfer) keeps them by handing the connection on
 * (tsm_client_detach_fd()); the tokens do not go with it: pass them on too.
 *
 * libtsm wipes its own copies of a token before freeing them (explicit_bzero()); wipe and free
 * the copy returned alike once it is stored.
 *
 * Return: 0; -ENOENT if the context is not one of this connection's, tsmd gave it no token, or
 * memory ran out keeping it; -ENOMEM.
 */
int tsm_context_get_reclaim_token(TsmClient *c, uint64_t context, char **ret_token);

/**
 * tsm_context_reclaim() - io.tsmd.Guest.ReclaimContext: takes a context back after a restart
 * @c: the client, reconnected
 * @reclaim_token: from tsm_context_get_reclaim_token() before the restart
 * @ret_context: the context's handle on this connection (the old one is void)
 * @ret_iommufd: a duplicate of the context's iommufd (O_CLOEXEC), owned by the caller; may be
 *               NULL (closed at once)
 *
 * The vDevices and bindings come back with it (tsm_device_get_state() says whether each is
 * bound; one whose Bind or Unbind the TSM had not answered when tsmd restarted is busy until
 * it has). After a restart of tsmd only (its worker, or tsmd under a service manager that
 * keeps its fds): a context whose connection closed (the VMM exited, crashed or exec'd without
 * handing it on, or called tsm_client_free() or tsm_client_reconnect() while tsmd ran) was
 * released then, and its token is refused (-ENOENT); see tsm_context_get_reclaim_token().
 *
 * The token is renewed: @reclaim_token is void once this returns 0 (tsmd refuses it as an
 * unknown one, -ENOENT), and the new token, the one to keep for the next restart, is
 * tsm_context_get_reclaim_token() of the returned context; take it before the next reconnect.
 * So a token that leaked (a log, a core dump) works at most until its VMM reclaims once more.
 * Should tsmd die before its answer reached the VMM (this fails -ECONNRESET then), it keeps
 * @reclaim_token valid too: reclaim with the old token if there is no new one. A tsmd older
 * than renewal gives no new token: @reclaim_token stays the context's, and is what
 * tsm_context_get_reclaim_token() gives. With -EMFILE, @ret_context is set and the new token
 * kept for it all the same.
 *
 * A reclaim that timed out (-ETIMEDOUT: abandoned, see tsm_client_set_timeout()) may still
 * succeed when tsmd answers: the context is this connection's then, and @reclaim_token void at
 * tsmd. libtsm keeps that context (and its iommufd, open and O_CLOEXEC, and its new token, which
 * tsm_context_get_reclaim_token() gives as soon as the answer came) for a retry: a
 * tsm_context_reclaim() with the same @reclaim_token returns it, as the call would have (0,
 * @ret_context, @ret_iommufd; or -EMFILE as above), without asking tsmd, whether the answer came
 * before the retry or while it waits. Once: after that (or after a tsm_context_close() of that
 * context) the token is tsmd's to refuse (-ENOENT). If the late answer is an error, the retry
 * goes to tsmd as any reclaim. libtsm keeps the last 8 such contexts and forgets older ones
 * (their iommufds closed, their contexts not). Keep retrying after -ETIMEDOUT rather than
 * reconnect, which would release the context and unbind the guest's devices. Where the
 * connection is lost before the retry all the same (tsmd restarting), the context went with it,
 * and tsmd knows it by the new token only: after tsm_client_reconnect(), a tsm_context_reclaim()
 * with @reclaim_token sends the new token in its place, until tsmd answers for it (a context,
 * or -ENOENT). tsm_client_free() forgets them all.
 *
 * Return: 0; -ENOENT (ReclaimRefused: no context of this uid waits under the token: unknown,
 * reclaimed already, released with its connection or after ReclaimTimeoutSec, or another
 * uid's; or it holds a vDevice
 * whose device the policy in force does not let this client use, which the error's reason
 * names; tsm_client_get_error_name() is "io.tsmd.Guest.ReclaimRefused" then, not a system
 * error of the same errno); -EUSERS; -EMFILE if the process has no fd left for the iommufd (RLIMIT_NOFILE):
 * the context is this connection's then, without its fd (it is not closed, so that the
 * guest's state is not lost with it); see the table.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_context_reclaim(TsmClient *c, const char *reclaim_token, uint64_t *ret_context, int *ret_iommufd);

/**
 * tsm_context_close() - io.tsmd.Guest.CloseContext: unbinds, detaches and releases a context
 * @c: the client
 * @context: its handle
 *
 * The iommufd the VMM holds stays open; tsmd drops its own reference.
 *
 * Return: 0; -ENOENT (NoSuchContext); -EBUSY (a Bind or Unbind of one of its vDevices is still
 * being answered); see the table.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_context_close(TsmClient *c, uint64_t context);

/**
 * tsm_context_close_async() - tsm_context_close() without waiting
 * @c: the client
 * @context: its handle
 * @callback: runs once with the result (see TsmDoneFunc)
 * @userdata: passed to @callback and @destroy
 * @destroy: runs once after @callback, or from tsm_client_free(); may be NULL
 *
 * For a VM's teardown from the event loop (the close unbinds the context's devices: a TDISP
 * exchange each). As the asynchronous device calls (see tsm_device_attach_async() and above
 * it); once it succeeded, the context's reclaim token is forgotten, as after tsm_context_close().
 *
 * Return: 0 (queued); -EINVAL; -ENOTCONN; -EDEADLK (a watch is open on @c); -ENOBUFS; -ENOMEM.
 */
int tsm_context_close_async(TsmClient *c, uint64_t context, TsmDoneFunc callback, void *userdata,
                            TsmDestroyFunc destroy);

/* ---- devices -------------------------------------------------------------------------- */

/**
 * tsm_device_attach() - io.tsmd.Guest.AttachDevice: registers a vDevice of a context
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the id IOMMU_VDEVICE_ALLOC gave (1..UINT32_MAX), unique within the context
 * @pci_address: the physical device behind it, "DDDD:BB:DD.F"
 * @vfio_fd: the VFIO device fd proving the VMM holds that device (its cdev
 *           /dev/vfio/devices/vfioN, opened; a duplicate is sent, the caller keeps its own), or
 *           -1. A kernel TSM's device needs it, unless tsmd.conf has [Guest]
 *           RequireVfioFileDescriptor=no (then the policy alone decides); the emulated
 *           platform's devices do not
 * @ret: what tsmd said about the device (free with tsm_device_info_free()); may be NULL
 *
 * Return: 0; -ENOENT (NoSuchContext, NoSuchDevice); -EEXIST (VDeviceExists); -EBUSY (the
 * device is attached elsewhere, or its last guest's release is not done yet); -EBADF (the VFIO fd is not that device, or
 * -1 for a device that needs one: BadFileDescriptor, reason "missing"); -EACCES; -EUSERS;
 * -EINVAL; -EMFILE if tsmd had no fd left to receive @vfio_fd (io.tsmd.System: retry later);
 * see the table. io.tsmd.System passes its errno through: tsm_client_get_error_name() tells
 * NoSuchDevice or DeviceBusy from a system error of the same errno.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_device_attach(TsmClient *c, uint64_t context, uint32_t vdevice_id, const char *pci_address,
                      int vfio_fd, TsmDeviceInfo **ret);

/**
 * tsm_device_detach() - io.tsmd.Guest.DetachDevice: unregisters a vDevice (unbinding it first)
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 *
 * Its guest requests still in flight fail with -ENODEV (DeviceGone).
 *
 * Return: 0; -ENOENT (NoSuchContext, NoSuchVDevice); -EBUSY (a Bind or Unbind of it is still
 * being answered); see the table.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_device_detach(TsmClient *c, uint64_t context, uint32_t vdevice_id);

/**
 * tsm_device_bind() - io.tsmd.Guest.Bind: binds the device to the TSM (TDISP LOCK_INTERFACE)
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 * @ret_state: the TDI state afterwards (config_locked), _TSM_TDI_STATE_INVALID when the
 *             backend does not show it to the host; may be NULL
 *
 * An SPDM exchange with the device: tsmd answers when the TSM is done, however long that
 * takes, and serves other devices meanwhile; tsm_client_set_timeout() still bounds the wait.
 * The TSM keeps the START_INTERFACE nonce: the guest accepts the device (config_locked -> run)
 * with a START_INTERFACE_REQUEST in scope "state-change", which the TSM completes with it; a
 * guest's LOCK_INTERFACE or STOP_INTERFACE is refused in every scope. A Bind of a vDevice bound
 * already is 0, nothing sent, whatever the TDI's state (@ret_state tells it).
 *
 * Blocks: every later call on @c waits for it, guest requests to other devices included (see
 * "One connection answers in call order" above).
 *
 * Return: 0; -EBADFD (InvalidState); -ENODEV; -EBUSY (another Bind or Unbind of it is still
 * being answered); -ETIME (Timeout: the TSM did not answer); -EACCES (Denied: the policy in force does not let this client use
 * the device, a reload may have taken it away); see the table. The TSM's own failures are
 * BackendError, whose errno is passed through (-EBUSY, -EACCES, -ENODEV among them): check
 * tsm_client_get_error_name() before retrying or giving up.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_device_bind(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmTdiState *ret_state);

/**
 * tsm_device_unbind() - io.tsmd.Guest.Unbind: TDISP STOP_INTERFACE (back to config_unlocked)
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 * @ret_state: as for tsm_device_bind(); may be NULL
 *
 * Return: 0; see tsm_device_bind(). The policy is not asked: giving the device up needs no grant.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_device_unbind(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmTdiState *ret_state);

/**
 * tsm_device_get_state() - io.tsmd.Guest.GetDeviceState
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 * @ret_state: the TDI state, or _TSM_TDI_STATE_INVALID when the backend does not show it to the
 *             host (the kernel's TSMs); may be NULL
 * @ret_bound: whether this client bound the device; may be NULL
 *
 * Return: 0; -ENOENT; -ENODEV; -EACCES (Denied, as for tsm_device_bind()); see the table.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_device_get_state(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmTdiState *ret_state,
                         bool *ret_bound);

/*
 * The device calls without waiting, for a VMM's event loop (a Bind or Unbind takes as long as
 * the TSM's TDISP exchange). Each is its blocking form's call, with the same arguments checked
 * the same way, sent as tsm_guest_request_async() is: at once if the socket takes it and fewer
 * calls than tsm_client_set_max_calls_in_flight() allows are at tsmd, else in its turn, in call
 * order with every other call of @c. Its reply is read and the callback run by
 * tsm_client_process() (or a later blocking call), never from the registration, in call order
 * with the other calls' callbacks; destroy follows it. The callback gets what the blocking
 * form would have returned: its errno (the error name and message from @c meanwhile) and its
 * outputs. A connection lost meanwhile gives it -ECONNRESET (or -EPROTO),
 * tsm_client_reconnect() -ECANCELED (what was done at tsmd went with the old connection);
 * tsm_client_free() runs destroy alone. They may be made from any callback of @c, and their
 * callbacks may free @c (tsm_client_free(): no callback runs after it).
 * As every asynchronous call, they have no timeout of their own (tsm_client_set_timeout() bounds
 * blocking calls). tsmd refuses a Detach, or another Bind or Unbind, of a vDevice while a Bind
 * or Unbind of it is being answered (-EBUSY): make the next step of a hot-plug or unplug from
 * the callback of the one before.
 *
 * They are the VMM's own: tsm_client_set_max_pending_requests() does not count or refuse them
 * (a guest that filled its bound never holds up its unplug), and tsm_device_cancel_requests()
 * does not take them back. As for any call, tsmd answers them in call order: an Unbind made
 * after a guest's requests waits behind those of them at tsmd (tsm_device_cancel_requests()
 * first takes back the others). A call of the blocking forms made after one of them waits for
 * it.
 *
 * Return: 0 (queued); -EINVAL; -EBADF (tsm_device_attach_async(): @vfio_fd is not open);
 * -ENOTCONN; -EDEADLK (a watch is open on @c); -ENOBUFS (the output queue is full, see the
 * table); -ENOMEM. A failed registration calls neither @callback nor @destroy.
 */

/**
 * tsm_device_attach_async() - tsm_device_attach() without waiting
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 * @pci_address: the physical device behind it
 * @vfio_fd: as tsm_device_attach()'s, or -1: a duplicate goes with the call (the caller may
 *           close its own once this returned)
 * @callback: runs once with the result (see TsmAttachFunc)
 * @userdata: passed to @callback and @destroy
 * @destroy: runs once after @callback, or from tsm_client_free(); may be NULL
 *
 * Return: see above.
 */
int tsm_device_attach_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, const char *pci_address,
                            int vfio_fd, TsmAttachFunc callback, void *userdata, TsmDestroyFunc destroy);

/**
 * tsm_device_detach_async() - tsm_device_detach() without waiting
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 * @callback: runs once with the result (see TsmDoneFunc)
 * @userdata: passed to @callback and @destroy
 * @destroy: runs once after @callback, or from tsm_client_free(); may be NULL
 *
 * Return: see above.
 */
int tsm_device_detach_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmDoneFunc callback,
                            void *userdata, TsmDestroyFunc destroy);

/**
 * tsm_device_bind_async() - tsm_device_bind() without waiting
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 * @callback: runs once with the result (see TsmStateFunc)
 * @userdata: passed to @callback and @destroy
 * @destroy: runs once after @callback, or from tsm_client_free(); may be NULL
 *
 * Guest requests to the vDevice made after it are answered after it (tsmd answers in call
 * order): the guest may make them before the callback ran.
 *
 * Return: see above.
 */
int tsm_device_bind_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmStateFunc callback,
                          void *userdata, TsmDestroyFunc destroy);

/**
 * tsm_device_unbind_async() - tsm_device_unbind() without waiting
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 * @callback: runs once with the result (see TsmStateFunc)
 * @userdata: passed to @callback and @destroy
 * @destroy: runs once after @callback, or from tsm_client_free(); may be NULL
 *
 * Return: see above.
 */
int tsm_device_unbind_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmStateFunc callback,
                            void *userdata, TsmDestroyFunc destroy);

/**
 * tsm_device_get_state_async() - tsm_device_get_state() without waiting
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 * @callback: runs once with the result (see TsmStateFunc); a reply without "bound" is -EBADMSG
 * @userdata: passed to @callback and @destroy
 * @destroy: runs once after @callback, or from tsm_client_free(); may be NULL
 *
 * Return: see above.
 */
int tsm_device_get_state_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, TsmStateFunc callback,
                               void *userdata, TsmDestroyFunc destroy);

/**
 * tsm_device_info_free() - releases what tsm_device_attach() returned
 * @info: the info, or NULL
 *
 * Return: NULL.
 */
TsmDeviceInfo *tsm_device_info_free(TsmDeviceInfo *info);

/**
 * tsm_device_info_get_backend() - the backend type serving the device
 * @info: the info
 *
 * Return: "tdx-connect", "sev-tio", "arm-cca", "devsec-sample" or "emulated" (borrowed from
 * @info); NULL if @info is NULL.
 */
const char *tsm_device_info_get_backend(const TsmDeviceInfo *info);

/**
 * tsm_device_info_get_tsm() - the TSM's name ("tsm0"; "emu0" on the emulated platform)
 * @info: the info
 *
 * Return: the name (borrowed from @info); NULL if @info is NULL.
 */
const char *tsm_device_info_get_tsm(const TsmDeviceInfo *info);

/**
 * tsm_device_info_get_uapi() - the kernel UAPI requests go through ("v4", "v5", "emulated")
 * @info: the info
 *
 * Return: the name (borrowed from @info); NULL if @info is NULL.
 */
const char *tsm_device_info_get_uapi(const TsmDeviceInfo *info);

/**
 * tsm_device_info_get_n_scopes() - how many request scopes the device offers
 * @info: the info
 *
 * Return: the number (0 if @info is NULL).
 */
size_t tsm_device_info_get_n_scopes(const TsmDeviceInfo *info);

/**
 * tsm_device_info_get_scope() - a scope by index
 * @info: the info
 * @index: 0 .. tsm_device_info_get_n_scopes() - 1
 *
 * Return: the scope (borrowed from @info); NULL if out of range.
 */
const TsmScope *tsm_device_info_get_scope(const TsmDeviceInfo *info, size_t index);

/**
 * tsm_device_info_find_scope() - a scope by name
 * @info: the info
 * @name: "info", "state-change", "debug-read", "debug-write"
 *
 * Return: the scope (borrowed from @info); NULL if the device offers none of that name.
 */
const TsmScope *tsm_device_info_find_scope(const TsmDeviceInfo *info, const char *name);

/* Accessors of a scope; NULL / 0 / false for a NULL scope. Strings are borrowed. */
/* The scope's name, as tsm_guest_request() takes it. */
const char *tsm_scope_get_name(const TsmScope *s);
/* What the scope may do, in one line. */
const char *tsm_scope_get_description(const TsmScope *s);
/* Its number in the UAPI the backend is reached through (informational). */
uint32_t tsm_scope_get_number(const TsmScope *s);
/* Largest request payload accepted, in bytes. */
uint64_t tsm_scope_get_max_request_size(const TsmScope *s);
/* Largest response returned, in bytes. */
uint64_t tsm_scope_get_max_response_size(const TsmScope *s);
/* Whether the policy lets this client use the scope on this device. */
bool tsm_scope_is_allowed(const TsmScope *s);

/* ---- guest requests ------------------------------------------------------------------- */

/**
 * tsm_guest_request() - io.tsmd.Guest.GuestRequest: forwards one guest request and waits
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 * @scope: the scope by name ("info", "state-change", "debug-read", "debug-write")
 * @req: the request payload (NULL only if @req_len is 0)
 * @req_len: its length
 * @resp: where the response goes (NULL only if @resp_size is 0)
 * @resp_size: its size; also the largest response tsmd is asked for
 * @ret_resp_len: the response's length; may be NULL
 *
 * tsmd offers the backend at most @resp_size bytes of response (less where the scope,
 * MaxResponseSize= or the reply's room allow less), so a response that does not fit is
 * refused by tsmd: -E2BIG, PayloadTooLarge, its message "field=maxResponseSize, limit=N" with
 * the room that was offered (the emulated TSM refuses before it acts; whether a kernel TSM
 * acted first is its own). A request larger than the scope takes is -E2BIG as well, with
 * "field=request" (one larger than any scope takes, 64 KiB, libtsm refuses itself before
 * reading it: -E2BIG without an error name). @resp_size 0 asks for no response: a backend with one to give refuses it
 * so (-E2BIG, limit=0), and a kernel TSM takes it for a request that wants none, and may
 * consume only part of it: tsm_client_get_request_unconsumed() says how much it left. Waits behind
 * every call made on @c before it (see "One connection answers in call order" above): from a
 * vCPU thread, use tsm_guest_request_async().
 *
 * Return: 0; -EOPNOTSUPP (NoSuchScope, ScopeUnavailable); -EACCES (Denied: e.g. a debug scope
 * the policy does not grant); -E2BIG (PayloadTooLarge, above); -ENODEV (DeviceGone); -EBUSY
 * (DeviceBusy: retry later); -ETIME (Timeout); -EIO (AuditFailed); see the table. A backend's
 * errno is passed through (BackendError): before acting on -EBUSY, -ENODEV or -EACCES, check
 * tsm_client_get_error_name(). -ENXIO (BackendError DeviceNotBound): the vDevice is not bound
 * (tsm_device_bind() first; one made before this call counts, answered or not), from the
 * emulated platform as from a kernel TSM. -ENOBUFS (more than @resp_size came) only from a tsmd that
 * broke its side of the protocol.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_guest_request(TsmClient *c, uint64_t context, uint32_t vdevice_id, const char *scope,
                      const void *req, size_t req_len, void *resp, size_t resp_size,
                      size_t *ret_resp_len);

/**
 * tsm_guest_request_async() - tsm_guest_request() without waiting
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 * @scope: the scope by name
 * @req: the request payload (copied; NULL only if @req_len is 0)
 * @req_len: its length
 * @max_response_size: the largest response the guest can take (as @resp_size of
 *                     tsm_guest_request(): a larger response is -E2BIG, PayloadTooLarge)
 * @callback: runs once with the result (see TsmGuestRequestFunc)
 * @userdata: passed to @callback and @destroy
 * @destroy: runs once after @callback, or from tsm_client_free(); may be NULL
 *
 * Sends the call at once if the socket takes it (else it waits in the queue, and
 * tsm_client_get_events() asks for POLLOUT) and fewer than 8 calls of @c are at tsmd; else it
 * waits in libtsm, in call order, until replies make room, and can be taken back
 * (tsm_device_cancel_requests()). Its reply is read and the callback run by
 * tsm_client_process() (or a later blocking call), never from here. Callbacks of several
 * requests run in the order the requests were made.
 *
 * Return: 0 (queued); -EINVAL; -ENOTCONN; -EDEADLK (a watch is open); -EAGAIN (as many
 * requests as tsm_client_set_max_pending_requests() allows are outstanding: complete the
 * guest's request with a busy status); -ENOBUFS (the output queue is full, see the table);
 * -E2BIG (@req_len larger than any scope takes, 64 KiB: refused at once, before it is copied);
 * -ENOMEM.
 */
int tsm_guest_request_async(TsmClient *c, uint64_t context, uint32_t vdevice_id, const char *scope,
                            const void *req, size_t req_len, size_t max_response_size,
                            TsmGuestRequestFunc callback, void *userdata, TsmDestroyFunc destroy);

/**
 * tsm_client_get_request_unconsumed() - the request bytes a kernel TSM left of the last guest request
 * @c: the client
 *
 * Offered no response buffer (a response size of 0), a kernel TSM may consume only part of a
 * request: this is how many bytes of it it left (the kernel's residue, GuestRequest's
 * requestUnconsumed). 0 when it took all of it, and for a request with a response buffer or to
 * the emulated platform. Of the guest request done last on @c:
 * right after tsm_guest_request() returned (0 when it failed), or, in a TsmGuestRequestFunc,
 * the request it reports (0 when @error < 0). Callbacks of asynchronous requests replace it,
 * tsm_client_process() and blocking calls included, so read it then. A reply that gives more
 * than the request had fails the request with -EBADMSG.
 *
 * Return: the number of bytes, at most the request's length; 0 if @c is NULL.
 */
size_t tsm_client_get_request_unconsumed(const TsmClient *c);

/**
 * tsm_device_cancel_requests() - takes back a vDevice's guest requests not sent yet
 * @c: the client
 * @context: the context's handle
 * @vdevice_id: the vDevice
 *
 * For a hot-unplug or a reset (unbind, then bind again): the guest's requests to the vDevice
 * that still wait in libtsm (see tsm_guest_request_async()) are dropped, never sent; each one's
 * callback runs with -ECANCELED, then its destroy, from inside this call, in call order. Those
 * tsmd has already are its own: they are answered as usual (but at most 8 calls of @c are at
 * tsmd), so a tsm_device_unbind() or tsm_device_detach() made next waits behind at most 8 calls,
 * however many the guest had queued. A message is taken back whole, never one partly
 * written. Does not block: callable from a callback of @c, a cancelled one's too (requests
 * that callback makes are not taken back by this call).
 *
 * Return: the number of requests taken back (0: none was waiting, or the connection is lost:
 * its requests failed already); -EINVAL; -ENOMEM (none taken back).
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_device_cancel_requests(TsmClient *c, uint64_t context, uint32_t vdevice_id);

/**
 * tsm_client_cancel_requests() - takes back every guest request of the client not sent yet
 * @c: the client
 *
 * tsm_device_cancel_requests() for every vDevice of @c: before a VM's reset or teardown.
 *
 * Return: as tsm_device_cancel_requests().
 */
int tsm_client_cancel_requests(TsmClient *c);

/* ---- events --------------------------------------------------------------------------- */

/**
 * tsm_client_watch_events() - io.tsmd.Guest.WatchEvents: streams events about the devices of
 *                             the calling process
 * @c: the client; use one of its own for the watch (see below)
 * @callback: runs for the first reply (event NULL: subscribed), every event, and once more
 *            with an error when the stream ends (see TsmEventFunc)
 * @userdata: passed to @callback and @destroy
 * @destroy: runs once after the last callback, or from tsm_client_free(); may be NULL
 *
 * tsmd sends the events about every context the calling process holds, on any of its
 * connections (only this connection's where tsmd cannot tell the process: a PID namespace it
 * does not see, on a kernel without pidfs); match them to devices by PCI address (see
 * tsm_event_get_context()). So far tsmd sends two kinds, with no state (see TsmEventKind):
 * "device-removed" (the device or its TSM went away: requests in flight to it fail with
 * -ENODEV, only a detach is left to do) and "device-unbound" (the kernel ended the vDevice's
 * binding outside tsmd: its guest requests fail as on a vDevice not bound until a Bind). A Varlink connection answers its calls strictly in order
 * and a WatchEvents call does not finish while tsmd serves it, so once it was made no later
 * call on the same connection could be answered: watch on a TsmClient of its own (a second tsm_client_connect()), and keep
 * using the first one for contexts, devices and requests. libtsm refuses every further call on
 * @c with -EDEADLK while the stream is open (calls made before it are answered normally); the
 * stream ends with tsm_client_free() or tsm_client_reconnect(), or when tsmd ends it (the
 * callback's @error: the connection lost, or an event tsmd could not tell).
 *
 * Return: 0 (queued); -EINVAL; -ENOTCONN; -EDEADLK (a watch is already open on @c); -ENOMEM.
 */
int tsm_client_watch_events(TsmClient *c, TsmEventFunc callback, void *userdata, TsmDestroyFunc destroy);

/* Accessors of an event (borrowed for the callback). NULL / 0 / invalid for a NULL event. */
/* What the event is about; _TSM_EVENT_KIND_INVALID for a kind this libtsm does not know. */
TsmEventKind tsm_event_get_kind(const TsmEvent *e);
/* The kind as tsmd named it ("device-removed", ...). */
const char *tsm_event_get_kind_string(const TsmEvent *e);
/* The context and vDevice the event is about, by the handles of the connection that holds
 * the context: not the watching one's, and two connections of the process may both have a
 * context 1. Use them only where the process has a single connection with contexts; else tell
 * the device by tsm_event_get_pci_address() (a device is attached in one context at a time). */
uint64_t tsm_event_get_context(const TsmEvent *e);
uint32_t tsm_event_get_vdevice_id(const TsmEvent *e);
/* The physical device, "DDDD:BB:DD.F": what names it unambiguously. */
const char *tsm_event_get_pci_address(const TsmEvent *e);
/* The TDI state after the event; _TSM_TDI_STATE_INVALID (-EINVAL) when not known, which is
 * always the case for "device-removed" and "device-unbound", the kinds tsmd sends so far. */
TsmTdiState tsm_event_get_state(const TsmEvent *e);

/* ---- names ---------------------------------------------------------------------------- */

/* "config_unlocked", "config_locked", "run", "error" (as the IDL names them); "unknown" for
 * _TSM_TDI_STATE_INVALID (what Bind and GetDeviceState give where the backend does not show the
 * state, as kernel TSMs do), so that it prints; NULL for any other value. */
const char *tsm_tdi_state_to_string(TsmTdiState s);
/* The reverse; _TSM_TDI_STATE_INVALID for NULL or an unknown name. */
TsmTdiState tsm_tdi_state_from_string(const char *s);
/* "device-removed", "backend-removed", "state-changed", "device-changed", "device-unbound";
 * NULL if invalid. */
const char *tsm_event_kind_to_string(TsmEventKind k);
/* The reverse; _TSM_EVENT_KIND_INVALID for NULL or an unknown name. */
TsmEventKind tsm_event_kind_from_string(const char *s);

/**
 * tsm_client_call_json() - any Varlink method, with JSON text in and out (for tools)
 * @c: the client
 * @method: "interface.Method", e.g. "io.tsmd.Admin.ListDevices"
 * @parameters: a JSON object as text, or NULL for none
 * @ret_reply: the reply's parameters as JSON text, malloc'd, the caller's to free
 *
 * A client takes replies no larger and no deeper than io.tsmd.Guest's largest (a 64 KiB
 * guest response), so that a compromised tsmd cannot make a VMM parse 16 MiB of JSON: a reply
 * beyond that is a protocol violation (-EPROTO, the connection closed). Calling a method of
 * another interface here (io.tsmd.Admin.ListDevices, ...) gives this client Varlink's limits
 * from then on (16 MiB, depth 64), as tools need: a VMM should not. Whatever the interface, a
 * reply holds at most 1048576 JSON values, so that 16 MiB of "0," cannot cost a tool 1.2 GiB of
 * parsed objects: beyond, -EPROTO as well. A QueryAudit page of 10000 records holds some 200000;
 * a tool that would take more at once (no limit, where tsmd's [Audit] MaxQueryRecords= is set
 * far above its default) gives a limit and goes on from the reply's nextSeq.
 *
 * Return: 0; -EINVAL, and nothing sent, for a @method that is no Varlink method name
 * ("interface.Method") or @parameters that are not exactly one JSON object by RFC 8259 (no
 * trailing text, comments, NaN, invalid UTF-8 or duplicate keys: tsmd would hang up); for an
 * error reply, its errno from the table above, with tsm_client_get_error_name() naming it.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_client_call_json(TsmClient *c, const char *method, const char *parameters, char **ret_reply);

/**
 * typedef TsmJsonReplyFunc - one reply of tsm_client_call_more_json()
 * @c: the client
 * @reply: the reply's parameters as JSON text, valid during the call only
 * @continues: true while more replies follow
 * @userdata: as passed
 *
 * Return: < 0 to stop (the connection is dropped; tsm_client_call_more_json() returns it), else 0.
 * Not -ECANCELED, which tsm_client_call_more_json() returns only when @c is gone.
 */
typedef int (*TsmJsonReplyFunc)(TsmClient *c, const char *reply, bool continues, void *userdata);

/**
 * tsm_client_call_more_json() - a call with "more": @callback for every reply until the last
 * @c: the client
 * @method: "interface.Method"
 * @parameters: a JSON object as text, or NULL
 * @callback: runs for each reply, from inside this function
 * @userdata: passed to @callback
 *
 * Blocks until the final reply, an error reply (returned as with tsm_client_call_json()), or
 * the connection ends. Reply limits as for tsm_client_call_json(). With tsm_client_set_timeout(c, 0) it can follow a stream forever.
 *
 * Return: 0 after the final reply; -EINVAL, and nothing sent, for @method or @parameters as
 * tsm_client_call_json() refuses them; a negative errno otherwise.
 * -ECANCELED: a callback freed @c meanwhile; @c is gone (see the top of this file).
 */
int tsm_client_call_more_json(TsmClient *c, const char *method, const char *parameters,
                              TsmJsonReplyFunc callback, void *userdata);


#ifdef __cplusplus
}
#endif
