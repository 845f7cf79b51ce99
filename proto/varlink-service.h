/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.varlink.service (GetInfo, GetInterfaceDescription) and the IDL texts built into the
 * binary. Runs in: worker. */
#pragma once

#include "varlink-idl.h"
#include "varlink-server.h"

/* Registers org.varlink.service and io.tsmd (the shared errors) on a new server. */
int varlink_service_register(VarlinkServer *s);

/* The IDL text of a built-in interface (from proto/\*.varlink), or NULL. */
const char *varlink_builtin_idl_find(const char *interface);

/* The built-in interface that a qualified name ("io.tsmd.Guest.Denied") is a member of, parsed
 * (*ret, the caller's), and the member's name (*ret_member, within name): 1; 0 (*ret NULL) where
 * the name has no dot or no built-in interface has that name; -ENOMEM. */
int varlink_builtin_interface_of(const char *name, VarlinkInterface **ret, const char **ret_member);
