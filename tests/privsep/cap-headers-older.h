/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Capability headers older than the kernel that runs the build: they know capabilities 0 to 30
 * (CAP_LAST_CAP), the kernel more. Forced ahead of worker-spawn.c in test-worker-bounding-set,
 * which checks that the worker's bounding set is empty all the same. Runs in: tests only.
 */
#pragma once

#include <sys/capability.h>

#undef CAP_LAST_CAP
#define CAP_LAST_CAP 30
