/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Runner for tests/harness.h: one forked child per test, TAP-like output. */

#include <dirent.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>

#include "harness.h"

#ifdef HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#ifdef HAVE_GCOV
/* libgcov's (gcc and clang alike): writes the counters out, which _exit() would not. */
void __gcov_dump(void);
#endif

/* Runs in the test's child once the test returned. The child ends with _exit(), which skips
 * LeakSanitizer's check at exit, so ask for it here: memory the test's code lost is a failure
 * of that test. Returns true when LeakSanitizer found leaks (it printed them). */
static bool test_leaked(void) {
#ifdef HAVE_LSAN
        return __lsan_do_recoverable_leak_check() != 0;
#else
        return false;
#endif
}

/* Shared with the case's child, which fills it: the parent removes the trees after the child
 * is gone, so that a tree the child made a mount point in its own mount namespace (a sysfs
 * fixture) is an empty directory again by then. Not on the heap: the leak check ignores it. */
typedef struct RemoveList {
        size_t n;
        char paths[TEST_REMOVE_MAX][PATH_MAX];
} RemoveList;
static RemoveList *remove_at_end;

static double seconds_now(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Before main(), so that a program with its own fork loop (a benchmark) has it too. */
static void __attribute__((constructor)) remove_list_map(void) {
        remove_at_end = mmap(NULL, sizeof(RemoveList), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (remove_at_end == MAP_FAILED)
                remove_at_end = NULL;
}

void test_remove_at_end(const char *path) {
        size_t i;

        /* A case and a process it forked may both register: each takes its own slot. */
        if (!remove_at_end || strlen(path) >= PATH_MAX ||
            (i = __atomic_fetch_add(&remove_at_end->n, 1, __ATOMIC_SEQ_CST)) >= TEST_REMOVE_MAX)
                TEST_FAIL("cannot remember %s for removal", path);
        strcpy(remove_at_end->paths[i], path);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        (void) remove(path);
        return 0;
}

void test_remove_now(void) {
        if (!remove_at_end)
                return;
        for (size_t i = 0; i < remove_at_end->n && i < TEST_REMOVE_MAX; i++)
                (void) nftw(remove_at_end->paths[i], remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
        remove_at_end->n = 0;
}

size_t test_count_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        size_t n = 0;

        ASSERT_NOT_NULL(d);
        while (readdir(d))
                n++;
        closedir(d);
        return n;
}

static bool selected(const char *name, int argc, char *argv[]) {
        if (argc <= 1)
                return true;
        for (int i = 1; i < argc; i++)
                if (strcmp(argv[i], name) == 0)
                        return true;
        return false;
}

int test_main(int argc, char *argv[]) {
        unsigned passed = 0, failed = 0, skipped = 0;

        /* The cases' tsmd.conf and policy files take the umask's mode, and tsmd rightly refuses
         * them writable by others. */
        umask(022);
        if (test_n_cases > TEST_MAX) {
                printf("Bail out! %zu test cases, more than TEST_MAX (%d)\n", test_n_cases, TEST_MAX);
                return 1;
        }
        /* A name that is no case's (misspelt, or a case renamed under a list that names it) would
         * run nothing and pass. */
        for (int i = 1; i < argc; i++) {
                size_t j = 0;

                while (j < test_n_cases && strcmp(test_cases[j].name, argv[i]) != 0)
                        j++;
                if (j == test_n_cases) {
                        printf("Bail out! no test case named '%s'\n", argv[i]);
                        return 1;
                }
        }

        /* SIGPIPE stays at its default, as in a VMM that links libtsm: code that writes to a
         * socket whose peer may be gone must say MSG_NOSIGNAL, or the test dies of it. */
        if (!remove_at_end) {
                perror("mmap");
                return 1;
        }

        for (size_t i = 0; i < test_n_cases; i++) {
                const TestCase *t = &test_cases[i];
                double started;
                int status;
                pid_t pid;

                if (!selected(t->name, argc, argv))
                        continue;

                fflush(NULL);
                started = seconds_now();
                pid = fork();
                if (pid < 0) {
                        perror("fork");
                        return 1;
                }
                if (pid == 0) {
                        alarm(120);
                        t->func();
                        fflush(NULL);
                        if (test_leaked()) {
                                fprintf(stderr, "%s: LeakSanitizer found memory leaked (above)\n",
                                        t->name);
                                _exit(1);
                        }
#ifdef HAVE_GCOV
                        /* The case's child is where the code under test ran: with -Db_coverage=true
                         * what it executed counts. __gcov_dump() writes the program's counters
                         * only: a shared library's (libtsm.so) are its own, written by its
                         * destructor, which exit() runs (the program's are not written twice). */
                        __gcov_dump();
                        exit(0);
#endif
                        _exit(0);
                }
                if (waitpid(pid, &status, 0) < 0) {
                        perror("waitpid");
                        return 1;
                }

                /* A failed case's trees stay for a look; a passed or skipped one's go. */
                if (WIFEXITED(status) && (WEXITSTATUS(status) == 0 || WEXITSTATUS(status) == 77))
                        test_remove_now();
                remove_at_end->n = 0;

                if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                        printf("ok - %s\n", t->name);
                        passed++;
                } else if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
                        printf("ok - %s # SKIP\n", t->name);
                        skipped++;
                } else {
                        if (WIFSIGNALED(status))
                                printf("not ok - %s (killed by signal %d)\n", t->name,
                                       WTERMSIG(status));
                        else
                                printf("not ok - %s (exit %d)\n", t->name, WEXITSTATUS(status));
                        failed++;
                }
                /* Where a suite's time goes, for keeping CI short: a TAP comment, which parsers
                 * skip. */
                double took = seconds_now() - started;
                if (took >= 1.0)
                        printf("# %s took %.1f s\n", t->name, took);
        }

        printf("1..%u\n", passed + failed + skipped);
        printf("# %u passed, %u failed, %u skipped\n", passed, failed, skipped);
        /* TAP carries the skips; meson's TAP parser treats exit status 77 as an error. */
        return failed > 0 ? 1 : 0;
}
