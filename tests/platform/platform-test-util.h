/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Shared setup for the platform tests that need a fake sysfs: a private mount namespace
 * (optionally also a private network namespace for fake uevents), a fixture tree on a private
 * tmpfs, and that tree bound over /sys with
 * discovery_enter_sysfs_root(). Everything disappears with the test's forked child. Tests
 * SKIP (exit 77) when not root or when namespaces are unavailable.
 *
 * Runs in: tests only.
 */
#pragma once

#include <stdbool.h>

/* Private mount namespace (+ network namespace if with_net). SKIPs if impossible. */
void platform_test_sandbox(bool with_net);

/* sd_device_monitor_new() silently listens to no group at all unless udev runs
 * (/run/udev/control) or /dev is devtmpfs (systemd's "no uevents in containers" rule); hotplug
 * tests cannot work there and say so instead of timing out. */
bool platform_test_udev_monitor_possible(void);

/* In the private mount namespace (after platform_test_sandbox()): a fresh /run, with udevd's
 * control socket's name in it when running, as discovery looks for it to know whether the
 * uevents it subscribes to will come at all. */
void platform_test_fake_udevd(bool running);

/* Makes socket(AF_NETLINK, ...) fail with EAFNOSUPPORT in this process from now on, as
 * RestrictAddressFamilies= without AF_NETLINK does: sd_device_monitor_new() fails there. */
void platform_test_deny_netlink(void);

/* True once platform_test_sandbox(true) moved this process to a new network namespace. */
bool platform_test_netns_is_private(void);

/* Builds fixtures/<name>.sysfs (or, with name NULL, the given description text) in a fresh
 * directory (on a private tmpfs), binds it over /sys and returns the directory (static
 * storage), through which the test edits the tree while sd-device sees it as /sys. */
const char *platform_test_fixture(const char *name, const char *text);
