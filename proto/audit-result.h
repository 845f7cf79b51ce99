/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The results of audit records: what QueryAudit checks a result filter against, and what tsmctl
 * expands a short one ("Denied") to. A record's result is "ok"; the full name of an error one of
 * the interfaces built in declares (proto/\*.varlink, all of which tsmd serves); one of the few
 * tsmd records that no interface declares (audit_result_is_known()); or the kernel's errno on a
 * late answer, as it came ("EIO", "errno-N"). Runs in: worker, clients.
 */
#pragma once

#include <stdbool.h>

/* An errno's name ("EIO") or "errno-N": a late answer of the kernel's, recorded as it came. */
bool audit_result_is_errno(const char *s);

/* Whether a record can have this result, as above. Returns 1 if so, 0 if not, -ENOMEM. */
int audit_result_is_known(const char *name);

/* The full names of the results that end in ".<short_name>" (an error several interfaces declare
 * has several), as a NULL-terminated array of strings the caller frees (each, then it), empty
 * when there are none. Returns their number, or -ENOMEM. */
int audit_result_expand(const char *short_name, char ***ret);
