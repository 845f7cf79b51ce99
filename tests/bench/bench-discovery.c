/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Discovery cost: how long tsmd's sysfs scan (daemon/platform/discovery.c, sd-device) takes for
 * fixture trees of 10, 100 and 1,000 devices, in process. Each size runs in a child of its own
 * that gets a private mount namespace, builds sysfs_fixture_generate_scaled(n) (two TSMs, n
 * endpoint functions behind root ports, a third of them connected; tests/platform/) on a tmpfs
 * and binds it over /sys, the way tsmd --sysfs-root does. Then, timed:
 *
 *   first   the first scan: inventory_new() + discovery_new() + discovery_scan(), what tsmd does
 *           at start (the tree's dentries are warm: it was just written);
 *   fresh   the same again with new objects, repeated (median);
 *   rescan  discovery_scan() on the filled inventory, nothing changed (median): what every
 *           TSM add/change/remove uevent costs (SYSFS.md);
 *
 * each per PCI function found (root ports and the PSP included), and as ratios to the 10-device
 * tree: a per-device cost that stays flat is linear scaling. Needs root (mount namespace, bind
 * over /sys); SKIPs (exit 77) without. Prints; never asserts on times.
 *
 *   bench-discovery [--quick]
 *
 * Runs in: benchmarks (and, with --quick, as a bench-smoke test).
 */

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench-util.h"
#include "discovery.h"
#include "harness.h"
#include "inventory.h"
#include "macro.h"
#include "platform-test-util.h"
#include "sysfs-fixture.h"

/* libharness's test_main() refers to these; this program has no TEST()s. */
TestCase test_cases[TEST_MAX];
size_t test_n_cases;

static const unsigned sizes[] = { 10, 100, 1000 };

typedef struct Params {
        unsigned max_reps;
        uint64_t phase_nsec; /* per size and kind of scan */
} Params;

static const Params params_full = { .max_reps = 1000, .phase_nsec = 3 * NSEC_PER_SEC };
static const Params params_quick = { .max_reps = 5, .phase_nsec = NSEC_PER_SEC / 10 };

typedef struct Result {
        unsigned n_devices;
        SysfsFixtureCounts counts;
        double build_ms;
        double first_us;
        Stats fresh, rescan;
} Result;

static Inventory *scan_fresh(Discovery **ret_d) {
        Inventory *inv;

        ASSERT_OK(inventory_new(&inv));
        ASSERT_OK(discovery_new(inv, NULL, ret_d));
        ASSERT_OK(discovery_scan(*ret_d));
        return inv;
}

/* In the child: everything for one tree size. */
static Result measure(const Params *P, unsigned n) {
        _cleanup_free_ char *text = sysfs_fixture_generate_scaled(n);
        _cleanup_free_ uint64_t *ns = new0(uint64_t, P->max_reps);
        Result r = { .n_devices = n };
        uint64_t t0, deadline;
        Discovery *d;
        Inventory *inv;
        size_t k;

        ASSERT_NOT_NULL(text);
        ASSERT_NOT_NULL(ns);
        sysfs_fixture_scaled_counts(n, &r.counts);
        platform_test_sandbox(false);
        t0 = now_nsec();
        platform_test_fixture(NULL, text);
        r.build_ms = (double) (now_nsec() - t0) / 1e6;

        t0 = now_nsec();
        inv = scan_fresh(&d);
        r.first_us = (double) (now_nsec() - t0) / 1e3;
        if (inventory_n_devices(inv) != r.counts.n_pci || inventory_n_tsms(inv) != 2)
                TEST_FAIL("%u devices: discovered %zu PCI functions and %zu TSMs, expected %u and 2", n,
                          inventory_n_devices(inv), inventory_n_tsms(inv), r.counts.n_pci);

        deadline = now_nsec() + P->phase_nsec;
        for (k = 0; k < P->max_reps && (k == 0 || now_nsec() < deadline); k++) {
                t0 = now_nsec();
                ASSERT_OK(discovery_scan(d));
                ns[k] = now_nsec() - t0;
        }
        r.rescan = stats_of(ns, k);
        ASSERT_EQ(inventory_n_devices(inv), r.counts.n_pci);
        discovery_free(d);
        inventory_free(inv);

        deadline = now_nsec() + P->phase_nsec;
        for (k = 0; k < P->max_reps && (k == 0 || now_nsec() < deadline); k++) {
                t0 = now_nsec();
                inv = scan_fresh(&d);
                ns[k] = now_nsec() - t0;
                discovery_free(d);
                inventory_free(inv);
        }
        r.fresh = stats_of(ns, k);
        return r;
}

/* Runs measure() in a child (its mount namespace goes with it); returns its exit status. */
static int run_child(const Params *P, unsigned n, Result *ret) {
        int fds[2], status;
        pid_t pid;
        ssize_t k;

        ASSERT_OK(pipe2(fds, O_CLOEXEC));
        ASSERT_OK(pid = fork());
        if (pid == 0) {
                Result r;

                close(fds[0]);
                r = measure(P, n);
                _exit(write(fds[1], &r, sizeof(r)) == (ssize_t) sizeof(r) ? 0 : 1);
        }
        close(fds[1]);
        k = read(fds[0], ret, sizeof(*ret));
        close(fds[0]);
        ASSERT_OK(waitpid(pid, &status, 0));
        test_remove_now(); /* the fixture's mount point, empty outside the child's namespace */
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0 && k != (ssize_t) sizeof(*ret))
                TEST_FAIL("%u devices: no result from the child", n);
        return status;
}

int main(int argc, char *argv[]) {
        const Params *P = &params_full;
        Result res[ELEMENTSOF(sizes)];

        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--quick"))
                        P = &params_quick;
                else {
                        fprintf(stderr, "usage: %s [--quick]\n", argv[0]);
                        return 2;
                }
        }
        setvbuf(stdout, NULL, _IOLBF, 0);

        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                int status = run_child(P, sizes[i], &res[i]);

                if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
                        return 77; /* said why */
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                        TEST_FAIL("%u devices: the measuring child failed", sizes[i]);
        }

        printf("# bench-discovery%s: discovery_scan() in process over sysfs fixture trees bound over /sys\n"
               "# (sysfs_fixture_generate_scaled(n): 2 TSMs, n endpoint functions; times per PCI function found)\n"
               "# %ld CPUs online, load average %s at the end.\n\n",
               P == &params_quick ? " --quick (numbers not meaningful)" : "", sysconf(_SC_NPROCESSORS_ONLN),
               loadavg());
        printf("%7s %6s %6s %9s | %10s %8s | %7s %10s %8s | %7s %10s %8s\n", "devices", "pci", "tdisp", "build ms",
               "first us", "/pci us", "fresh n", "median us", "/pci us", "rescan", "median us", "/pci us");
        for (size_t i = 0; i < ELEMENTSOF(sizes); i++) {
                const Result *r = &res[i];
                double n = r->counts.n_pci;

                printf("%7u %6u %6u %9.1f | %10.0f %8.1f | %7zu %10.0f %8.1f | %7zu %10.0f %8.1f\n", r->n_devices,
                       r->counts.n_pci, r->counts.n_tdisp, r->build_ms, r->first_us, r->first_us / n, r->fresh.n,
                       r->fresh.p50_us, r->fresh.p50_us / n, r->rescan.n, r->rescan.p50_us, r->rescan.p50_us / n);
        }
        printf("\nper-PCI-function cost relative to the %u-device tree (1.0x: linear)\n", sizes[0]);
        for (size_t i = 1; i < ELEMENTSOF(sizes); i++) {
                const Result *r = &res[i], *b = &res[0];
                double n = r->counts.n_pci, nb = b->counts.n_pci;

                printf("  %4u devices: first %.2fx, fresh %.2fx, rescan %.2fx\n", r->n_devices,
                       (r->first_us / n) / (b->first_us / nb), (r->fresh.p50_us / n) / (b->fresh.p50_us / nb),
                       (r->rescan.p50_us / n) / (b->rescan.p50_us / nb));
        }
        return EXIT_SUCCESS;
}
