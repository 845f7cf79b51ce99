/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Loading tsmd.conf as the policy files are loaded: it names them, the iommu device and the
 * directories root hands the worker, so it must earn the same trust (file-trust.h, path-trust.h).
 */
#pragma once

#include <stdbool.h>

#include "daemon-config.h"
#include "policy.h"

/* daemon_config_load() of a file read with file_trust_read(): *ret_error as there (then
 * *ret_line and *ret_message are not set), else as daemon_config_load(). */
int daemon_config_load_trusted(DaemonConfig *c, const char *path, const PolicyFileTrust *trust, unsigned *ret_line,
                               const char **ret_message, char **ret_error);

/* daemon_config_load_logged() with daemon_config_load_trusted(). */
int daemon_config_load_trusted_logged(DaemonConfig *c, const char *path, bool optional,
                                      const PolicyFileTrust *trust);
