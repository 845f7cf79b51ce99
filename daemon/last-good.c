/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The files that loaded well last, kept by the monitor for the next worker (last-good.h).
 * Runs in: monitor and worker. */

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "file-trust.h"
#include "ini.h"
#include "last-good.h"
#include "log.h"

#define LAST_GOOD_SEALS (F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE)
/* tsmd.conf and every policy file at their largest, with their names. */
#define LAST_GOOD_SIZE_MAX ((uint64_t) (POLICY_DROPINS_MAX + 2) * (POLICY_FILE_MAX + PATH_MAX + 2))

typedef struct Capture {
        int fd;               /* the memfd */
        LastGoodReads *reads; /* NULL: not wanted */
} Capture;

void last_good_reads_done(LastGoodReads *reads) {
        if (!reads)
                return;
        for (size_t i = 0; i < reads->n_files; i++)
                free(reads->files[i].name);
        free(reads->files);
        *reads = (LastGoodReads) {};
}

/* A PolicyFileFunc: the entry of one file, as parsed, and how it was found (st; NULL: no file). */
static int append_entry(const char *name, const char *text, const struct stat *st, void *userdata) {
        Capture *c = userdata;
        LastGoodReads *reads = c->reads;
        int r;

        r = write_all(c->fd, name, strlen(name) + 1);
        if (r >= 0)
                r = write_all(c->fd, text, strlen(text) + 1);
        if (r < 0 || !reads || !st)
                return r;
        if (!GREEDY_REALLOC(reads->files, reads->allocated_files, reads->n_files + 1))
                return -ENOMEM;
        reads->files[reads->n_files] = (LastGoodRead) { .name = strdup(name), .st = *st };
        if (!reads->files[reads->n_files].name)
                return -ENOMEM;
        reads->n_files++;
        return 0;
}

/* A failed load, logged already unless it is the policy's: why in *ret_error (text, taken). */
static int load_failed(int error, char *text, bool policy, char **ret_error, bool *ret_policy_failed) {
        if (ret_error)
                *ret_error = text;
        else
                free(text);
        if (ret_policy_failed)
                *ret_policy_failed = policy;
        return error;
}

/* "what: <errno's text>", as the log says it with "%m". */
static int load_failed_errno(int error, const char *what, char **ret_error, bool *ret_policy_failed) {
        char *text;

        if (asprintf(&text, "%s: %s", what, strerror(-error)) < 0)
                text = NULL;
        log_error_errno(error, "%s: %m", what);
        return load_failed(error, text, false, ret_error, ret_policy_failed);
}

/* tsmd.conf did not load: the log as ever (daemon_config_log_load_error()), the text naming it. */
static int config_failed(const char *path, int error, unsigned line, const char *message, char **ret_error,
                         bool *ret_policy_failed) {
        char *text = NULL;

        (void) daemon_config_log_load_error(path, error, line, message);
        (void) daemon_config_format_load_error(path, error, line, message, &text);
        return load_failed(error, text, false, ret_error, ret_policy_failed);
}

int last_good_load(const char *config_path, bool optional, const PolicyFileTrust *trust, DaemonConfig *ret_config,
                   Policy **ret_policy, int *ret_fd, LastGoodReads *ret_reads, char **ret_error,
                   bool *ret_policy_failed) {
        _cleanup_(policy_unrefp) Policy *policy = NULL;
        _cleanup_(last_good_reads_done) LastGoodReads reads = { .start_usec = now_realtime_usec() };
        _cleanup_free_ char *text = NULL;
        _cleanup_close_ int fd = -EBADF;
        char *trust_error = NULL, *policy_error = NULL;
        const char *message = NULL;
        Capture capture;
        struct stat config_st;
        DaemonConfig new;
        unsigned line = 0;
        int r;

        assert(config_path);
        assert(trust);
        assert(ret_config);
        assert(ret_policy);
        assert(ret_fd);

        fd = memfd_create("tsmd-last-good", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (fd < 0)
                return load_failed_errno(-errno, "Failed to make a memfd for the configuration", ret_error,
                                         ret_policy_failed);

        /* The bytes read are the bytes parsed and the bytes kept: no second read in between.
         * SECURITY: checked as the policy files are (file-trust.h): it names them, and what
         * root hands over. */
        r = file_trust_read(config_path, trust, DAEMON_CONFIG_FILE_MAX, &text, &config_st, &trust_error);
        if (r == -ENOENT && optional)
                r = 0; /* built-in defaults */
        else if (r < 0 && trust_error) {
                log_error_errno(r, "%s.", trust_error);
                return load_failed(r, trust_error, false, ret_error, ret_policy_failed);
        } else if (r == -EISDIR || r == -EBADFD)
                return config_failed(config_path, r, 0, "not a regular file", ret_error, ret_policy_failed);
        else if (r < 0)
                return config_failed(config_path, r, 0, r == -EBADMSG ? "syntax error" : "cannot read file",
                                     ret_error, ret_policy_failed);

        r = daemon_config_init(&new);
        if (r < 0)
                return load_failed_errno(r, "Failed to set up the configuration", ret_error, ret_policy_failed);
        if (text) {
                r = daemon_config_load_text(&new, text, &line, &message);
                if (r < 0) {
                        daemon_config_done(&new);
                        return config_failed(config_path, r, line, message, ret_error, ret_policy_failed);
                }
        }
        capture = (Capture) { .fd = fd, .reads = ret_reads ? &reads : NULL };
        r = append_entry(text ? config_path : "", strempty(text), text ? &config_st : NULL, &capture);
        if (r >= 0) {
                r = policy_load_capture(new.policy_file, new.policy_dropin_dir, trust, append_entry, &capture,
                                        &policy, &policy_error);
                if (r < 0 && policy_error) {
                        daemon_config_done(&new);
                        return load_failed(r, policy_error, true, ret_error, ret_policy_failed);
                }
        }
        /* The names as resolved now, so a restore resolves them the same, asking nobody. */
        if (r >= 0)
                r = append_entry("", policy_resolved_names(policy), NULL, &capture);
        if (r >= 0)
                r = RET_NERRNO(fcntl(fd, F_ADD_SEALS, LAST_GOOD_SEALS));
        if (r < 0) {
                daemon_config_done(&new);
                return load_failed_errno(r, "Failed to keep the configuration and policy in a memfd", ret_error,
                                         ret_policy_failed);
        }

        *ret_config = new;
        *ret_policy = TAKE_PTR(policy);
        *ret_fd = TAKE_FD(fd);
        if (ret_reads) {
                *ret_reads = reads;
                reads = (LastGoodReads) {};
        }
        return 0;
}

/* Maps what last_good_load() kept in fd: sealed, or it is not what the monitor keeps (and could
 * change under us), and made of NUL-terminated names and texts. */
static int last_good_map(int fd, const char **ret_data, size_t *ret_size) {
        struct stat st;
        void *map;
        int seals;

        seals = fcntl(fd, F_GET_SEALS);
        if (seals < 0)
                return negative_errno();
        if ((seals & LAST_GOOD_SEALS) != LAST_GOOD_SEALS)
                return -EPERM;
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t) st.st_size > LAST_GOOD_SIZE_MAX)
                return -EBADMSG;

        /* The fd's offset is shared with the monitor's: mapped, not read(). */
        map = mmap(NULL, (size_t) st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
                return negative_errno();
        /* Every name and text ends in a NUL, so the last byte is one. */
        if (((const char *) map)[st.st_size - 1] != 0) {
                (void) munmap(map, (size_t) st.st_size);
                return -EBADMSG;
        }
        *ret_data = map;
        *ret_size = (size_t) st.st_size;
        return 0;
}

int last_good_foreach_file(int fd, LastGoodFileFunc func, void *userdata) {
        const char *data, *p, *end;
        size_t size, index = 0;
        int r;

        assert(fd >= 0);
        assert(func);

        r = last_good_map(fd, &data, &size);
        if (r < 0)
                return r;
        end = data + size;
        for (p = data; p < end && r >= 0; index++) {
                const char *name = p, *text;
                size_t len;

                p += strlen(p) + 1;
                if (p >= end) {
                        r = -EBADMSG; /* a name without its text */
                        break;
                }
                text = p;
                len = strlen(text);
                p += len + 1;
                /* The resolved names, last: no file. */
                if (index > 0 && isempty(name))
                        break;
                r = func(index, name, text, len, userdata);
        }
        (void) munmap((void *) data, size);
        return r;
}

int last_good_restore(int fd, DaemonConfig *ret_config, Policy **ret_policy, char **ret_names, char **ret_error) {
        _cleanup_free_ PolicySource *sources = NULL;
        _cleanup_free_ char *names = NULL;
        size_t n_sources = 0, allocated = 0, names_size = 0, size;
        const char *data, *p, *end, *config_name, *config_text, *resolved_names = NULL;
        const char *message = NULL;
        Policy *policy = NULL;
        DaemonConfig config;
        FILE *f = NULL;
        unsigned line = 0;
        int r;

        assert(fd >= 0);
        assert(ret_config);
        assert(ret_policy);
        assert(ret_names);

        if (ret_error)
                *ret_error = NULL;

        /* SECURITY: sealed, or it is not what the monitor keeps (last_good_map()). */
        r = last_good_map(fd, &data, &size);
        if (r < 0)
                return r;
        end = data + size;

        config_name = NULL;
        config_text = NULL;
        f = open_memstream(&names, &names_size);
        if (!f) {
                r = -ENOMEM;
                goto out_unmap;
        }
        for (p = data; p < end;) {
                const char *name = p, *text;

                p += strlen(p) + 1;
                if (p >= end) {
                        r = -EBADMSG; /* a name without its text */
                        goto out_unmap;
                }
                text = p;
                p += strlen(p) + 1;

                if (!config_name) {
                        config_name = name;
                        config_text = text;
                } else if (isempty(name)) {
                        /* The resolved names, last; a tsmd before them kept none. */
                        if (p < end) {
                                r = -EBADMSG;
                                goto out_unmap;
                        }
                        resolved_names = text;
                } else {
                        if (!GREEDY_REALLOC(sources, allocated, n_sources + 1)) {
                                r = -ENOMEM;
                                goto out_unmap;
                        }
                        sources[n_sources++] = (PolicySource) { .name = name, .text = text };
                }
                if (!isempty(name))
                        fprintf(f, "%s'%s'", ftell(f) > 0 ? ", " : "", name);
        }

        if (isempty(config_name) && !isempty(config_text)) {
                r = -EBADMSG; /* no file, yet text */
                goto out_unmap;
        }
        r = daemon_config_init(&config);
        if (r < 0)
                goto out_unmap;
        if (!isempty(config_name)) {
                r = daemon_config_load_text(&config, config_text, &line, &message);
                if (r < 0) {
                        log_debug("%s:%u: %s", config_name, line, message);
                        daemon_config_done(&config);
                        goto out_unmap;
                }
        }
        r = policy_load_resolved(sources, n_sources, resolved_names, &policy, ret_error);
        if (r >= 0 && fclose(f) < 0) {
                policy = policy_unref(policy);
                r = -ENOMEM;
        }
        if (r < 0) {
                daemon_config_done(&config);
                goto out_unmap;
        }
        f = NULL;

        *ret_config = config;
        *ret_policy = policy;
        *ret_names = TAKE_PTR(names);
        r = 0;
out_unmap:
        if (f)
                fclose(f);
        (void) munmap((void *) data, size);
        return r;
}
