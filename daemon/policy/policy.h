/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The authorisation policy: which clients may use which devices, on which backends, in which
 * request scopes, with which limits; and who is an administrator. Loaded from
 * /etc/tsmd/policy.conf and the *.conf files in /etc/tsmd/policy.d into an immutable,
 * reference-counted Policy; a reload builds a new one and the caller swaps pointers, so a
 * broken file never replaces a working policy. User documentation: daemon/policy/POLICY.md.
 *
 * Runs in: monitor and worker. Each loads and validates the files (trusted, root-owned; NSS
 * lookups happen there, once per load) and evaluates decisions (pure functions, no I/O): the
 * worker for every call, the monitor at its gates on devices and scopes.
 *
 * File syntax (INI, systemd-unit-file style, see daemon/ini.h): comments only on lines of
 * their own ('#' or ';' first), values are whitespace-separated lists, sections:
 *
 *   [Defaults]        Scopes=, MaxContexts=, MaxVDevices=
 *   [Admin]           Users=, Groups=
 *   [Client:NAME]     Users=, Groups=, Units=, Devices=, Backends=, Scopes=, MaxContexts=,
 *                     MaxVDevices=       (NAME: letters, digits and - _ . : @)
 *
 * Merging: the main file is read first, then the drop-ins in lexical (strcmp) order of their
 * file names. A section may appear several times, in one file or in several; all occurrences
 * of [Client:NAME] form one rule, ordered by its first appearance. Assigning a key again in a
 * later file replaces the earlier value completely (lists are not appended). Assigning a key
 * twice in one file is an error, so a list is never silently cut to its last line. An empty
 * assignment ("Devices=") resets the key to unset; in [Defaults], an empty Scopes= means no
 * scopes (as an empty assignment empties a list in systemd).
 *
 * Decisions:
 *   - A client matches a rule when every identity key the rule sets matches: Users= (uid is
 *     one of them), Groups= (primary or a supplementary group is one of them), Units= (the
 *     peer's verified system unit matches one of the fnmatch globs). A rule must set at least
 *     one identity key, and Users= or Groups= if its Units= has a glob (logins are in
 *     session-N.scope, user managers in user@UID.service). Unset keys do not constrain.
 *   - A request for device D on backend B in scope S is allowed iff some matching rule lists
 *     D in Devices= (fnmatch globs over "DDDD:BB:DD.F"), allows B (Backends= unset: any
 *     backend), and grants S: its own Scopes= if set, else [Defaults] Scopes=. A scope that
 *     some backend marks as not allowed by default (debug-read, debug-write) is granted only
 *     when named in the rule's own Scopes=, never through [Defaults], which refuses to list
 *     them. S must also exist in B's scope table.
 *   - No matching rule: denied. Root is not a client unless a rule says so.
 *   - Limits (MaxContexts=, MaxVDevices=) come from the first matching rule in rule order,
 *     the rule's unset keys from [Defaults].
 *   - Administrators: uid 0 always; else uid in [Admin] Users= OR any group in [Admin]
 *     Groups= (an OR, unlike the AND across a client rule's keys).
 */
#pragma once

#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>

#include "config.h"
#include "macro.h"
#include "peer-identity.h"
#include "tsm-types.h"

#define POLICY_FILE_DEFAULT SYSCONFDIR "/tsmd/policy.conf"
#define POLICY_DROPIN_DIR_DEFAULT SYSCONFDIR "/tsmd/policy.d"

#define POLICY_FILE_MAX (1024U * 1024U) /* per file */
#define POLICY_DROPINS_MAX 1024U
#define POLICY_RULES_MAX 4096U
#define POLICY_RULE_NAME_MAX 128U
#define POLICY_LIMIT_MAX 65536U /* MaxContexts=/MaxVDevices= accept 1..POLICY_LIMIT_MAX */
#define POLICY_LIST_MAX 256U    /* values per list key: keeps every dumped line reloadable */

#define POLICY_DEFAULT_MAX_CONTEXTS 4U
#define POLICY_DEFAULT_MAX_VDEVICES 16U

typedef struct Policy Policy;

/*
 * Loads main_file, then every "*.conf" in dropin_dir (names starting with '.' are ignored; a
 * symlink to /dev/null masks a name). Either path may be NULL; a missing main file or
 * directory counts as empty, so the result denies every client (root stays admin).
 * Files must be regular, owned by root or the calling euid, and not world-writable, nor
 * writable by another user or group named in a POSIX ACL (policy_load_full() below names whom
 * else to refuse).
 *
 * On success returns 0 and a new Policy (one reference) in *ret. On failure returns
 *   -EBADMSG   syntax error;  -EINVAL  bad section, key or value;  -ENOENT  unknown user or
 *   group;  -E2BIG  a size limit;  -EPERM  unsafe file ownership, mode or ACL;  other -errno
 *   for I/O;
 * and, if ret_error is non-NULL, a newly allocated "file:line: message" (or "file: message")
 * in *ret_error (NULL only if even that allocation failed). ret is untouched on failure.
 */
int policy_load(const char *main_file, const char *dropin_dir, Policy **ret, char **ret_error);

/* Whether a drop-in directory's entry of this name is read as a drop-in ("*.conf", not hidden). */
bool policy_dropin_name_is_valid(const char *name);

/* Who may have written the files policy_load_full() trusts, besides root. */
typedef struct PolicyFileTrust {
        uid_t owner;      /* the one other user who may own them (0: nobody else) */
        gid_t worker_gid; /* files and directories writable through this group are refused
                           * (the unprivileged worker's group; GID_INVALID: none) */
        bool wait_settled; /* a file read in the middle of a write is read again once whole,
                            * or fails -EBUSY (file-settle.h): tsmd's loads, not a check's */
} PolicyFileTrust;

/* policy_load() trusts root and the calling euid; tsmd's two processes name the trust so that
 * neither takes a file the worker could have written. */
int policy_load_full(const char *main_file, const char *dropin_dir, const PolicyFileTrust *trust,
                     Policy **ret, char **ret_error);

/* Called with every file policy_load_capture() parses, in order, with its text exactly as
 * parsed: policy_load_from_text() given the same (name, text) pairs makes the same policy. st
 * is the fstat() of the fd the text was read from, taken before it was. Returning < 0 fails the load with that error. */
typedef int (*PolicyFileFunc)(const char *name, const char *text, const struct stat *st, void *userdata);

/* policy_load_full(), handing on_file every file it parses (the monitor keeps the bytes of the
 * last policy that loaded, last-good.h). */
int policy_load_capture(const char *main_file, const char *dropin_dir, const PolicyFileTrust *trust,
                        PolicyFileFunc on_file, void *userdata, Policy **ret, char **ret_error);

/* In-memory file, for policy_load_from_text(). */
typedef struct PolicySource {
        const char *name; /* shown in messages and in policy_dump() */
        const char *text; /* NUL-terminated contents */
} PolicySource;

/* The same as policy_load() for files already in memory, merged in array order (tests,
 * fuzzing, and a parent that read the files itself). */
int policy_load_from_text(const PolicySource *sources, size_t n_sources, Policy **ret,
                          char **ret_error);

/*
 * policy_load_from_text() resolving Users=/Groups= names only as resolved_names says, the text
 * of policy_resolved_names() of a load of the same sources: the same policy again, without asking
 * the name services, who may answer otherwise by now (a user deleted, or recreated under another
 * uid) or answer another process otherwise (a sandboxed worker, LDAP). A name it does not list is
 * unknown; a text not as written there is -EBADMSG, "(resolved names):line: ..." in *ret_error.
 * NULL: a set kept by a tsmd before resolved names were kept, read with that tsmd's meanings,
 * names through NSS, an empty [Defaults] Scopes= the built-in ones, and a rule whose Units= globs
 * stand without Users= or Groups= dropped with a warning (refusing the set would stop the first
 * start after an upgrade, and release the contexts in the fd store).
 */
int policy_load_resolved(const PolicySource *sources, size_t n_sources, const char *resolved_names,
                         Policy **ret, char **ret_error);

/* The Users=/Groups= names the load of p resolved, each once, one "user NAME ID" or
 * "group NAME ID" a line ("" for none), for policy_load_resolved(). Owned by p. */
const char *policy_resolved_names(const Policy *p);

/* Reference counting. Not atomic: a Policy is shared within one thread (the event loop). */
Policy *policy_ref(Policy *p);
Policy *policy_unref(Policy *p);
DEFINE_TRIVIAL_CLEANUP_FUNC(Policy *, policy_unref);

/* May this peer call io.tsmd.Admin? */
bool policy_is_admin(const Policy *p, const PeerIdentity *id);

/* Does any client rule match this peer (so it is worth serving at all)? */
bool policy_is_client(const Policy *p, const PeerIdentity *id);
/* Whether uid is 0 or one a Users= names (a rule's or [Admin]'s): by its uid alone, not its
 * groups. */
bool policy_names_uid(const Policy *p, uid_t uid);

/*
 * May this peer use device pci_address ("DDDD:BB:DD.F") served by backend?
 * Returns 0 if allowed, -EPERM if denied, -EINVAL for a NULL argument, an invalid backend or a
 * malformed address. If ret_reason is non-NULL it always receives a static string: why the
 * request was denied (for the audit record and the error reply), or "allowed".
 */
int policy_check_device(const Policy *p, const PeerIdentity *id, const char *pci_address,
                        TsmBackendType backend, const char **ret_reason);

/* The same, and may it send requests in scope scope_name ("info", "debug-read", ...)? */
int policy_check_scope(const Policy *p, const PeerIdentity *id, const char *pci_address,
                       TsmBackendType backend, const char *scope_name, const char **ret_reason);

/* The two, and the NAME of a [Client:NAME] rule in *ret_rule (p's, so valid while p is), for the
 * audit record: allowed, the rule whose grant was used; denied (-EPERM), the first of the client's
 * rules that came closest, whose grant was missing (the one the reason speaks of), NULL when no
 * rule matches the client or the request was refused before any rule was asked. */
int policy_check_device_full(const Policy *p, const PeerIdentity *id, const char *pci_address,
                             TsmBackendType backend, const char **ret_reason, const char **ret_rule);
int policy_check_scope_full(const Policy *p, const PeerIdentity *id, const char *pci_address,
                            TsmBackendType backend, const char *scope_name, const char **ret_reason,
                            const char **ret_rule);

/* Whether some rule, whoever it is for, grants scope_name on the device on backend as it would
 * to a client it matches (its own Scopes=, or [Defaults] Scopes= when it has none; debug scopes
 * only through its own): the monitor's check, which cannot trust who the worker says the client
 * is (monitor-files.c). */
bool policy_any_rule_grants_scope(const Policy *p, const char *pci_address, TsmBackendType backend,
                                  const char *scope_name);

/* Whether some rule, whoever it is for, lists the device and allows backend: what
 * policy_check_device() asks of a rule besides its identities. The monitor's check on attaching
 * and binding (monitor-files.c), as policy_any_rule_grants_scope() is on guest requests. */
bool policy_any_rule_lists_device(const Policy *p, const char *pci_address, TsmBackendType backend);

/* The limits for this peer: its first matching rule's, else [Defaults]. Never fails. */
void policy_get_limits(const Policy *p, const PeerIdentity *id, unsigned *ret_max_contexts,
                       unsigned *ret_max_vdevices);

/*
 * The name of the rule that decides, for the audit record: with pci_address NULL, the first
 * rule matching the peer (the one whose limits apply); else the first rule that allows the
 * device on backend (and scope_name, if non-NULL). NULL when there is none. The string lives
 * as long as the Policy.
 */
const char *policy_get_rule_name(const Policy *p, const PeerIdentity *id, const char *pci_address,
                                 TsmBackendType backend, const char *scope_name);

/* The gids the decisions ask a client's groups about: every Groups= (rules and [Admin]). A
 * PeerIdentity read with them (peer_identity_from_socket()) gets the decisions it would get with
 * all its groups; one read with another policy's is read again (peer_identity_reread_groups())
 * unless these are a subset of those. NULL p: none. Lives as long as the Policy. */
const GidSet *policy_groups_of_interest(const Policy *p);

/* The names of the client rules that match on Units= with neither Users= nor Groups=, in rule
 * order and ", "-separated, in *ret (NULL when there is none); returns how many, or -ENOMEM.
 * SECURITY: such a rule trusts the unit alone, which without SO_PEERPIDFD (Linux < 6.5) is read
 * through the pid SO_PEERCRED gives: a client that exits before tsmd accepts its connection
 * lends it the unit of whichever process takes that pid next, if that one runs as the client's
 * uid (peer-identity.c checks that much), so the rule may admit any process of a uid one of the
 * unit's processes runs as. */
int policy_unit_only_rules(const Policy *p, char **ret);

/* Warns, on a kernel without SO_PEERPIDFD, of the rules policy_unit_only_rules() names: at each
 * load of the worker, and at --check-config. */
void policy_warn_unit_only_rules(const Policy *p);

/* Number of client rules, for status output. */
size_t policy_n_rules(const Policy *p);

/*
 * Writes the effective policy in policy-file syntax (tsmd --dump-config): ids are written as
 * numbers, with what the file said in a comment, and inherited values are shown as comments.
 * Loading the output yields the same decisions, and dumping that again yields the same text.
 * Returns 0 or -EIO.
 */
int policy_dump(const Policy *p, FILE *f);

/* "DDDD:BB:DD.F" with a 4..7 digit hex domain (TSM_PRIV_PCI_DOMAIN_DIGITS_MAX), device <= 0x1f,
 * function <= 7. */
bool policy_pci_address_is_valid(const char *s);
/* Whether some backend declares a scope of that name (the loader's, and QueryAudit's, check). */
bool scope_name_is_known(const char *name);
/* The longest address that is: a 7 digit domain. */
#define POLICY_PCI_ADDRESS_MAX (sizeof("fffffff:ff:1f.7") - 1)

/* The length of the longest reason policy_check_device() or policy_check_scope() gives. */
size_t policy_reason_max_length(void);
