/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * seccomp-exec NR[,NR...] PROGRAM [ARG...]: runs PROGRAM under a seccomp filter that allows the
 * system calls numbered NR and fails every other with EPERM, as systemd does for a unit's
 * SystemCallFilter= allow-list with SystemCallErrorNumber=EPERM (test-service-dirs computes the
 * list from tsmd.service). Runs in: tests.
 */

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define MAX_CALLS 1024

int main(int argc, char *argv[]) {
        static struct sock_filter filter[2 * MAX_CALLS + 2];
        struct sock_fprog prog = { .filter = filter };
        size_t n = 0;
        char *list, *word, *save = NULL;

        if (argc < 3) {
                fprintf(stderr, "usage: %s NR[,NR...] PROGRAM [ARG...]\n", argv[0]);
                return 2;
        }
        filter[n++] = (struct sock_filter) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
        list = strdup(argv[1]);
        for (word = strtok_r(list, ",", &save); word; word = strtok_r(NULL, ",", &save)) {
                if (n + 3 > sizeof(filter) / sizeof(filter[0])) {
                        fprintf(stderr, "seccomp-exec: too many system calls\n");
                        return 2;
                }
                filter[n++] = (struct sock_filter) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned) atoi(word), 0, 1);
                filter[n++] = (struct sock_filter) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
        }
        filter[n++] = (struct sock_filter) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
        prog.len = (unsigned short) n;

        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) {
                fprintf(stderr, "seccomp-exec: installing the filter: %s\n", strerror(errno));
                return 1;
        }
        execv(argv[2], argv + 2);
        fprintf(stderr, "seccomp-exec: exec %s: %s\n", argv[2], strerror(errno));
        return 127;
}
