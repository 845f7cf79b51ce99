/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Builds directory trees that look like sysfs (device directories with uevent files,
 * relative subsystem/driver symlinks, /sys/class and /sys/bus registration links, TSM and
 * PCI attributes) from a compact line-based description, so that the unmodified sd-device
 * code can enumerate them once they are bind-mounted over /sys. Also edits such trees while a
 * test runs (add/remove devices, write attributes) to model hotplug.
 *
 * Description format, one entry per line ('#' starts a comment):
 *   <kind> <devpath> [key=value ...]
 * devpath is relative to the sysfs root and starts with "/devices/". Kinds:
 *   device   a device directory with an empty uevent and no subsystem (pci0000:00, faux)
 *   pci      a PCI function: keys vendor, device, class, subsys_vendor, subsys_device,
 *            driver; tsm=<connect contents> creates tsm/{connect,disconnect} (value may be
 *            empty = not connected); auth=<contents> overrides the authenticated file, which
 *            otherwise mirrors tsm= (the kernel's authenticated_show() is connect_show());
 *            physfn=<devpath> makes it a virtual function of that PF (the kernel's physfn link);
 *            dsm=<contents> and bound=<contents> create tsm/dsm and tsm/bound (mainline kernels
 *            since the sub-function attributes: a DSM has all four, a function it manages only
 *            these two, and auth= then says what its authenticated reads)
 *   faux     a faux-bus device (driver faux_driver)
 *   busdev   a device on bus=<name> with optional driver=<name> (auxiliary, arm_smccc, ...)
 *   tsm      a tsm class device; key pci_mode=<link|devsec> (absent: no attribute)
 *   class    creates an empty /class/<devpath> directory (devpath is then the class name)
 *
 * Runs in: tests only.
 */
#pragma once

#include <stddef.h>

/* All functions return 0 or a negative errno; root is the directory standing in for /sys. */
int sysfs_fixture_apply_line(const char *root, const char *line);
int sysfs_fixture_apply_text(const char *root, const char *text);
int sysfs_fixture_apply_file(const char *root, const char *path);

/* Removes a device directory and everything below it, including the class/bus links of every
 * device in that subtree (what the kernel does on device_del()). */
int sysfs_fixture_remove(const char *root, const char *devpath);

/* Writes "<value>\n" to <root><devpath>/<attr>, creating intermediate directories. */
int sysfs_fixture_write_attr(const char *root, const char *devpath, const char *attr,
                             const char *value);

/*
 * A description with two TSMs (tsm0 on a SEV-TIO PSP, tsm1 on tdx_host) and n_devices PCI
 * endpoint functions spread over emulated root ports and domains, 8 to a device; every function
 * 0 has tsm/ (the DSM of its device's functions), and a third of those are connected,
 * alternating tsm0/tsm1. For the discovery benchmark.
 * Returns a malloc'd string or NULL on OOM.
 */
char *sysfs_fixture_generate_scaled(unsigned n_devices);

/* What sysfs_fixture_generate_scaled() produced, for assertions. */
typedef struct SysfsFixtureCounts {
        unsigned n_pci;        /* all PCI functions, root ports and PSP included */
        unsigned n_dsm;        /* functions with tsm/: function 0 of each endpoint */
        unsigned n_tdisp;      /* TDIs: the endpoint functions, each behind its function 0 */
        unsigned n_connected;  /* of those, behind a connected function 0 */
} SysfsFixtureCounts;
void sysfs_fixture_scaled_counts(unsigned n_devices, SysfsFixtureCounts *ret);
