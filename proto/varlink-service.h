/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* org.varlink.service (GetInfo, GetInterfaceDescription) and the IDL texts built into the
 * binary. Runs in: worker. */
#pragma once

#include "varlink-server.h"

/* Registers org.varlink.service and io.tsmd (the shared errors) on a new server. */
int varlink_service_register(VarlinkServer *s);

/* The IDL text of a built-in interface (from proto/\*.varlink), or NULL. */
const char *varlink_builtin_idl_find(const char *interface);
