/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tsmctl: the administration tool. tsmctl.c parses global options and dispatches to one
 * verb; each verb lives in verb-<name>.c and is described by one TsmctlVerb. Help text and
 * shell completion come from the same table. Runs in: the admin's shell.
 */
#pragma once

#include <getopt.h>
#include <stdio.h>
#include <json-c/json.h>

#include "config.h"
#include "escape.h"
#include "macro.h"
#include "tsm.h"

#define TSMD_SOCKET_DEFAULT RUNSTATEDIR "/tsmd/io.tsmd.Admin"

/* Exit codes, as LSB defines them for status tools: scripts can tell failures apart. */
enum {
        EXIT_GENERIC = 1,
        EXIT_USAGE = 2,
        EXIT_UNIMPLEMENTED = 3,
        EXIT_PERMISSION = 4,
        EXIT_NOT_RUNNING = 7,
};

DEFINE_TRIVIAL_CLEANUP_FUNC(TsmClient *, tsm_client_free);

/* How long a call waits for tsmd's answer unless --timeout= says otherwise: libtsm's default. */
#define TSMCTL_TIMEOUT_USEC_DEFAULT (45 * 1000000ULL)

typedef struct TsmctlOptions {
        const char *socket;
        bool socket_default; /* neither --socket= nor $TSMD_SOCKET named it */
        bool json;
        uint64_t timeout_usec; /* 0: no limit */
} TsmctlOptions;

typedef struct TsmctlVerb {
        const char *name;
        const char *usage;   /* arguments, for the help text */
        const char *summary; /* one line */
        unsigned min_args, max_args; /* positional arguments, options not counted */
        /* The verb's own options (getopt_long(), NULL-terminated), or NULL for none. tsmctl.c
         * checks them and counts the arguments left; run() parses them again for their values. */
        const struct option *options;
        int (*run)(const TsmctlOptions *o, int argc, char *argv[]);
} TsmctlVerb;

extern const TsmctlVerb verb_call, verb_info, verb_introspect, verb_status, verb_backends, verb_devices,
        verb_clients, verb_audit, verb_monitor, verb_metrics, verb_connect, verb_disconnect, verb_reload;

/* Connects to tsmd; prints why on failure and returns an exit code (> 0). */
int tsmctl_connect(const TsmctlOptions *o, TsmClient **ret);
/* Makes a call; on an error reply prints it and returns the matching exit code (> 0). */
int tsmctl_call(TsmClient *c, const char *method, json_object *params, json_object **ret);
/* Both: connects to o->socket unless *c is connected already, and makes the call (takes
 * params). *c stays connected for more calls, and owns *ret until the next one. */
int tsmctl_fetch(const TsmctlOptions *o, TsmClient **c, const char *method, json_object *params,
                 json_object **ret);
/* Says in the verb's words why tsmd refused a call (the error is c's last): true if it did, and
 * the error reply itself is not printed. */
typedef bool (*TsmctlExplainFunc)(TsmClient *c, void *userdata);
/* tsmctl_fetch(), an error reply explained by explain (NULL: none) if it can. */
int tsmctl_fetch_explained(const TsmctlOptions *o, TsmClient **c, const char *method, json_object *params,
                           TsmctlExplainFunc explain, void *userdata, json_object **ret);
/* The number after "key=" in libtsm's rendering of an error's parameters ("size=5012,
 * maxMessageSize=4096"), or 0. */
unsigned long long tsmctl_error_number(const char *message, const char *key);
/* Whether libtsm's error r means tsmd could not be talked to. */
bool tsmctl_is_connection_error(int r);
/* Says that the answer to what broke the protocol (libtsm's -EPROTO); returns EXIT_GENERIC. */
int tsmctl_protocol_error(const char *what);
/* Maps a Varlink error name to an exit code. */
int tsmctl_exit_code_for_error(const char *error);
/* After a call of method failed with the Varlink error: why, where the error alone does not say
 * (an administrator's method refused by the policy, the guest socket given for the admin one). */
void tsmctl_explain_access(TsmClient *c, const char *method, const char *error);
/* The array under key in method's reply; if there is none, says so and returns EXIT_GENERIC. */
int tsmctl_reply_array(json_object *reply, const char *method, const char *key, json_object **ret);

/* What tsmctl prints of a reply (print-escape.c). The strings of one table row or printf(),
 * escaped for the terminal (escape.h), held until tsmctl_escapes_done(). */
typedef struct TsmctlEscapes {
        char *strings[16];
        size_t n;
} TsmctlEscapes;
void tsmctl_escapes_done(TsmctlEscapes *e);
/* s as it may be printed: itself if nothing in it needs escaping (NULL for NULL, so that
 * `?: "-"` works), else an escaped copy that e holds ("?" if there is no memory for it). */
const char *tsmctl_esc(TsmctlEscapes *e, const char *s);
/* The same for a table cell: spaces escaped too (\x20, and the Unicode ones as \xNN), so that
 * a value others chose ("debug read", a scope as a VMM sent it) reads as one cell, never as
 * more columns. */
const char *tsmctl_esc_cell(TsmctlEscapes *e, const char *s);
/* Table cells. printf()'s "%-14s" pads by bytes: an escaped or non-ASCII value shifts every
 * column after it. These count what the terminal shows (tsmctl_display_width()). */
size_t tsmctl_display_width(const char *s);
/* Prints s (text to be shown as it is: tsmctl_esc()'s) and spaces up to width display
 * columns, at least one: the next column starts width columns on. A wider s is printed whole
 * (a cut escape would hide what tsmd said) and pushes the rest of its row right. */
void tsmctl_print_padded(FILE *f, const char *s, size_t width);
/* Prints s (NULL: nothing) escaped. */
void tsmctl_fputs_escaped(const char *s, EscapeFlags flags, FILE *f);
/* Prints tsmd's names of settings ("Audit.SyncMode") as tsmd.conf spells them, escaped:
 * "[Audit] SyncMode=, [Guest] MaxContexts=" (nothing for none). */
void tsmctl_print_settings(json_object *names, FILE *f);
/* Prints o as JSON text with json-c's flags, and a newline: valid JSON that a terminal takes
 * as text (no control character, valid UTF-8). */
void tsmctl_print_json_ext(json_object *o, int flags);
/* The same, pretty. */
void tsmctl_print_json(json_object *o);

/* Audit records as table rows (audit-format.c), their times in local time with its offset
 * from UTC. The header and rows one at a time (monitor), in columns wide enough for any event;
 * or the first n of records as a table whose columns are as wide as their widest cell. */
void tsmctl_print_audit_header(void);
void tsmctl_print_audit_row(json_object *record);
void tsmctl_print_audit_table(json_object *records, size_t n);
