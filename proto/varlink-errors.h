/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Names of the standard Varlink errors, and the one place where errno values and error
 * names meet. Runs in: worker, clients.
 *
 * General format (what a negative errno means wherever tsmd code returns one):
 *   EINVAL      a field has a value that is never acceptable
 *   ENOENT      an id or name does not exist (or is not yours: ownership is not revealed)
 *   EEXIST      the object already exists
 *   EPERM       the policy forbids it; EACCES: the peer's identity is not allowed at all
 *   EOPNOTSUPP  a known field with a value this build or kernel does not support
 *   E2BIG       a payload or extension larger than the limit
 *   EBUSY       the device or object is in use or transitioning; retry later
 *   ENODEV      the device vanished
 *   ETIMEDOUT   the backend did not answer in time
 *   ENOBUFS     a reply or queue would exceed its bound
 *   EPROTO      the peer violated the wire protocol
 */
#pragma once

#include "macro.h"

#define VARLINK_ERROR_INTERFACE_NOT_FOUND "org.varlink.service.InterfaceNotFound"
#define VARLINK_ERROR_METHOD_NOT_FOUND "org.varlink.service.MethodNotFound"
#define VARLINK_ERROR_METHOD_NOT_IMPLEMENTED "org.varlink.service.MethodNotImplemented"
#define VARLINK_ERROR_INVALID_PARAMETER "org.varlink.service.InvalidParameter"
#define VARLINK_ERROR_PERMISSION_DENIED "org.varlink.service.PermissionDenied"
#define VARLINK_ERROR_EXPECTED_MORE "org.varlink.service.ExpectedMore"

/* A handler that fails with an errno it did not name gets this, with errno and errnoName. */
#define VARLINK_ERROR_SYSTEM "io.tsmd.System"

/* A reply larger than the connection's MaxMessageSize=, sent in its place (io.tsmd). */
#define VARLINK_ERROR_REPLY_TOO_LARGE "io.tsmd.ReplyTooLarge"

/* A call of a method that acts, refused before it ran: its answer might not fit the
 * connection's MaxMessageSize= or MaxFdsPerMessage= (io.tsmd). */
#define VARLINK_ERROR_REPLY_MAY_NOT_FIT "io.tsmd.ReplyMayNotFit"

/* Local-only errors (never sent): what a client library reports when the connection broke. */
#define VARLINK_ERROR_DISCONNECTED "io.tsmd.Disconnected"
#define VARLINK_ERROR_TIMEOUT "io.tsmd.TimedOut"
#define VARLINK_ERROR_PROTOCOL "io.tsmd.Protocol"

/* Refusals of a connection past a limit: sent as the answer to its first call, then it is
 * closed (conn_admit()); the daemon's audit record of the refusal names them too (declared in
 * io.tsmd). */
#define VARLINK_REFUSED_TOO_MANY_CONNECTIONS "io.tsmd.TooManyConnections"
#define VARLINK_REFUSED_TOO_MANY_CONNECTIONS_PER_UID "io.tsmd.TooManyConnectionsPerUid"

/* Refusals that end a connection: nothing after them is read (sd-varlink hangs up the same
 * way, without a word). The daemon's audit record of the refusal names them (declared in
 * io.tsmd). Those of a message, or of a timeout, are told the peer by name before the close,
 * where that costs one nonblocking send (conn_tell_refusal()): MessageTooLarge to IdleTimeout
 * below. The others never are: they refuse what a client holds, not what it sent. */
#define VARLINK_REFUSED_MESSAGE_TOO_LARGE "io.tsmd.MessageTooLarge"
#define VARLINK_REFUSED_MALFORMED_MESSAGE "io.tsmd.MalformedMessage"
#define VARLINK_REFUSED_NESTING_TOO_DEEP "io.tsmd.NestingTooDeep"
#define VARLINK_REFUSED_TOO_MANY_JSON_VALUES "io.tsmd.TooManyJsonValues"
#define VARLINK_REFUSED_FILE_DESCRIPTORS "io.tsmd.FileDescriptorsRefused"
#define VARLINK_REFUSED_MESSAGE_TIMEOUT "io.tsmd.MessageTimeout"
#define VARLINK_REFUSED_IDLE_TIMEOUT "io.tsmd.IdleTimeout"
#define VARLINK_REFUSED_REPLIES_NOT_READ "io.tsmd.RepliesNotRead"
#define VARLINK_REFUSED_TOO_MUCH_BUFFERED_PER_UID "io.tsmd.TooMuchBufferedPerUid"
#define VARLINK_REFUSED_TOO_MUCH_BUFFERED "io.tsmd.TooMuchBuffered"
#define VARLINK_REFUSED_TOO_MANY_FDS_PER_UID "io.tsmd.TooManyFileDescriptorsPerUid"
#define VARLINK_REFUSED_TOO_MANY_FDS "io.tsmd.TooManyFileDescriptors"
#define VARLINK_REFUSED_CONNECTION_SETUP_FAILED "io.tsmd.ConnectionSetupFailed"

/* Maps a received error name to an errno, as systemd's sd-varlink does (any other: EBADR). */
int varlink_error_to_errno(const char *error);

/* The symbolic name of an errno value ("ENOENT"), or NULL if unknown. */
const char *errno_to_name(int error);
/* The errno errno_to_name() names so; -ENOENT for a name it never gives. */
int errno_from_name(const char *name);
