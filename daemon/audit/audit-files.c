/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Audit files: resume, repair, rotation. Runs in: worker (audit writer and sync thread).
 *
 * Crash safety of rotation: every step is one atomic rename or create, and every record in
 * a file was synced before any newer file was created (audit_files_rotate()'s contract). So
 * after a crash at any point the newest file that holds a record holds the last written
 * one: resume walks audit.log, audit.log.1, ..., repairs the tail of the first file with a
 * record (and of the newer ones), and continues after the highest seq in any file's tail (an
 * older file may hold higher ones: a directory a reload left, found again). A crash between
 * the renames leaves a hole in the numbering (audit.log.2 missing), which only moves up with
 * the next rotation; queries skip missing files. The new file is made (and its room taken)
 * as audit.log.new before the first rename: one a crash left is no record's, and goes.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit-files.h"
#include "audit-record.h"
#include "json-util.h"
#include "log.h"

void audit_file_name(unsigned i, char buf[static sizeof(AUDIT_FILE_NAME) + 12]) {
        if (i == 0)
                strcpy(buf, AUDIT_FILE_NAME);
        else
                (void) snprintf(buf, sizeof(AUDIT_FILE_NAME) + 12, AUDIT_FILE_NAME ".%u", i);
}

/* SECURITY: whoever may write the directory may delete, rename or replace the records in it
 * (and plant what a restart resumes from). Ours: group and others lose write access (the setgid
 * bit and the admins' read stay). Another's that they may write: refused. */
static int dir_make_private(int fd, const char *directory) {
        struct stat st;

        if (fstat(fd, &st) < 0)
                return -errno;
        if (!(st.st_mode & 0022))
                return 0;
        if (st.st_uid != geteuid())
                return log_error_errno(-EPERM, "Audit log directory '%s' is writable by others and not ours, "
                                       "refusing it.", directory);
        if (fchmod(fd, st.st_mode & 07755) < 0)
                return log_error_errno(-errno, "Failed to make audit log directory '%s' writable by its owner "
                                       "only: %m", directory);
        log_warning("Audit log directory '%s' was writable by others, made it writable by its owner only.",
                    directory);
        return 0;
}

int audit_files_new(const char *directory, int held_fd, unsigned n_files, uint64_t max_file_size,
                    const AuditFileOps *ops, AuditFiles **ret) {
        _cleanup_(audit_files_freep) AuditFiles *f = NULL;
        struct stat held, here;
        int r;

        assert(directory);
        assert(ops);
        assert(ret);

        /* Rotation keeps the previous file: with one file it would have to delete records. */
        if (n_files < 2 || n_files > AUDIT_FILES_MAX || max_file_size == 0)
                return -EINVAL;

        f = new0(AuditFiles, 1);
        if (!f)
                return -ENOMEM;
        f->ops = ops;
        f->n_files = n_files;
        f->max_file_size = max_file_size;
        f->dir_fd = f->fd = -EBADF;
        r = -pthread_mutex_init(&f->rotate_lock, NULL);
        if (r < 0) {
                free(f);
                f = NULL;
                return r;
        }
        f->directory = strdup(directory);
        if (!f->directory)
                return -ENOMEM;

        if (mkdir(directory, 0750) < 0 && errno != EEXIST)
                return -errno;
        f->dir_fd = RET_NERRNO(open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (f->dir_fd < 0)
                return f->dir_fd;
        /* The monitor's, locked for each of its workers in turn: one killed and not yet gone
         * (a thread of it held in the kernel) holds the lock by the same file, and runs no code
         * of its own again. */
        if (held_fd >= 0 && fstat(held_fd, &held) >= 0 && fstat(f->dir_fd, &here) >= 0 &&
            held.st_dev == here.st_dev && held.st_ino == here.st_ino) {
                int fd = RET_NERRNO(fcntl(held_fd, F_DUPFD_CLOEXEC, 3));

                if (fd < 0)
                        return fd;
                safe_close(f->dir_fd);
                f->dir_fd = fd;
        }
        /* SECURITY: two writers would interleave sequence numbers and rotate each other's
         * files away. */
        if (flock(f->dir_fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        r = dir_make_private(f->dir_fd, directory);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(f);
        return 0;
}

int audit_files_reopen_directory(AuditFiles *f) {
        _cleanup_close_ int fd = -EBADF;
        struct stat old, new;
        int r;

        assert(f);

        fd = RET_NERRNO(open(f->directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (fd < 0)
                return fd;
        /* The same directory: our lock is on it already (a second flock() of it would
         * conflict with our own), and there is nothing to change. */
        if (fstat(fd, &new) < 0)
                return -errno;
        if (fstat(f->dir_fd, &old) >= 0 && old.st_dev == new.st_dev && old.st_ino == new.st_ino)
                return dir_make_private(f->dir_fd, f->directory);
        /* SECURITY: the monitor made the directory ours at start, and no longer can: another one
         * found at its path (a parent writable by someone else, a mount) must be ours already,
         * not a directory someone prepared, and files in it, for us to write into. */
        if (new.st_uid != geteuid())
                return log_error_errno(-EPERM, "Audit log directory '%s' is another directory now, owned by uid "
                                       "%u and not by us: refusing it.", f->directory, (unsigned) new.st_uid);
        if (flock(fd, LOCK_EX | LOCK_NB) < 0)
                return errno == EWOULDBLOCK ? -EBUSY : -errno;
        r = dir_make_private(fd, f->directory);
        if (r < 0)
                return r;

        /* Another file system (or directory) is mounted at the path now: the old one and its
         * open file go; audit_files_resume() continues in the new one. Under the rotation
         * lock: a snapshot taken meanwhile (from the loop, or a query thread) sees one directory
         * or the other. */
        f->fd = safe_close(f->fd);
        pthread_mutex_lock(&f->rotate_lock);
        safe_close(f->dir_fd);
        f->dir_fd = TAKE_FD(fd);
        pthread_mutex_unlock(&f->rotate_lock);
        f->size = f->synced = f->alloc_end = 0;
        return 1;
}

AuditFiles *audit_files_free(AuditFiles *f) {
        if (!f)
                return NULL;
        safe_close(f->fd);
        safe_close(f->dir_fd);
        pthread_mutex_destroy(&f->rotate_lock);
        free(f->directory);
        return mfree(f);
}

static int pread_full(int fd, void *buf, size_t n, uint64_t offset) {
        size_t done = 0;

        while (done < n) {
                ssize_t k = pread(fd, (char *) buf + done, n - done, (off_t) (offset + done));
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (k == 0)
                        return -EIO; /* shrank under us */
                done += (size_t) k;
        }
        return 0;
}

/* Where the first complete line in buf[from, to) that holds no NUL starts, or -1. */
static ssize_t first_clean_line(const char *buf, size_t from, size_t to) {
        for (size_t pos = from; pos < to;) {
                const char *nl = memchr(buf + pos, '\n', to - pos);

                if (!nl)
                        break;
                if (!memchr(buf + pos, 0, (size_t) (nl - (buf + pos))))
                        return (ssize_t) pos;
                pos = (size_t) (nl - buf) + 1;
        }
        return -1;
}

/* A complete line without a NUL at offset, after what (zeros, the last record), that is no
 * record: no torn write leaves one. */
static int refuse_clean_line(AuditFiles *f, const char *name, uint64_t offset, const char *after) {
        return log_error_errno(-EBADMSG,
                               "Audit log '%s/%s': complete line at offset %" PRIu64 " after %s is no record "
                               "and no torn write, refusing to cut it.",
                               f->directory, name, offset, after);
}

/* Scans the tail of one file. What a crash leaves after the last record: a partial last line,
 * and the blocks of a batch that had not reached the disk as zeros inside the file's new size
 * (a whole batch, up to MaxRecordsInFlight= records, far beyond the window), possibly followed
 * by blocks of the same batch that did. A record never holds a NUL, so lines that hold one are
 * torn, and a window with zeros but no record is stepped back from, to end where the first of
 * those lines began (nothing after a lost block was acknowledged: every acknowledgement follows
 * an fdatasync of the whole file). A complete line without a NUL that does not parse is not
 * what a crash leaves (a record of another tsmd version?): after the last record, it is
 * refused rather than cut, as is a window of such lines. On return *ret_found says whether a
 * record was found, *ret_max_seq is the highest seq among them (a regression must not make
 * resume number a record twice), *ret_cut how many bytes after the last one are torn. */
static int scan_tail(AuditFiles *f, const char *name, int fd, uint64_t size, json_tokener *tok,
                     bool *ret_found, uint64_t *ret_max_seq, uint64_t *ret_cut,
                     unsigned *ret_anomalies) {
        _cleanup_free_ char *buf = NULL;
        size_t w, start, good_end;
        uint64_t end = size, base, max_seq = 0;
        unsigned anomalies = 0;
        bool found = false;
        ssize_t clean;
        int r;

        buf = malloc(MIN(size, (uint64_t) AUDIT_TAIL_WINDOW) ?: 1);
        if (!buf)
                return -ENOMEM;

        for (;;) {
                uint64_t prev = 0;
                bool have_prev = false;
                char *nul, *nl;
                size_t cut_at;

                w = (size_t) MIN(end, (uint64_t) AUDIT_TAIL_WINDOW);
                base = end - w;
                r = pread_full(fd, buf, w, base);
                if (r < 0)
                        return r;

                /* A window that does not start at offset 0 starts inside a line: skip to the
                 * next. */
                start = 0;
                if (base > 0) {
                        nl = memchr(buf, '\n', w);
                        start = nl ? (size_t) (nl - buf) + 1 : w;
                }

                /* Walk the complete lines forward: the last one that parses ends the good
                 * part. */
                good_end = start;
                for (size_t pos = start; pos < w;) {
                        uint64_t seq;

                        nl = memchr(buf + pos, '\n', w - pos);
                        if (!nl)
                                break;
                        r = audit_line_parse(tok, buf + pos, (size_t) (nl - (buf + pos)), NULL, &seq);
                        if (r == -ENOMEM)
                                /* Else a record would be an unparsable line, a gap, or (the
                                 * last) a line after it that is no record. */
                                return r;
                        if (r >= 0) {
                                if (have_prev && seq != prev + 1) {
                                        anomalies++;
                                        log_warning("Audit log '%s/%s': sequence %s from %" PRIu64
                                                    " to %" PRIu64 ", continuing.",
                                                    f->directory, name, seq > prev ? "gap" : "regression",
                                                    prev, seq);
                                }
                                prev = seq;
                                have_prev = true;
                                found = true;
                                max_seq = MAX(max_seq, seq);
                                good_end = (size_t) (nl - buf) + 1;
                        } else if (found)
                                /* A bad line followed by good ones is damage inside the file,
                                 * not a torn tail: queries skip it, resume must not cut good
                                 * records. */
                                log_warning("Audit log '%s/%s': unparsable line at offset %" PRIu64
                                            ", ignoring.",
                                            f->directory, name, base + pos);
                        pos = (size_t) (nl - buf) + 1;
                }

                nul = found ? NULL : memchr(buf, 0, w);
                if (!nul)
                        break;

                /* Zeros and no record: the torn tail begins with the line that holds the first
                 * NUL, in the window or (in the line it starts inside of) before. */
                if ((size_t) (nul - buf) < start)
                        cut_at = 0;
                else {
                        nl = memrchr(buf + start, '\n', (size_t) (nul - (buf + start)));
                        cut_at = nl ? (size_t) (nl - buf) + 1 : start;
                }
                clean = first_clean_line(buf, MAX(cut_at, start), w);
                if (clean >= 0)
                        return refuse_clean_line(f, name, base + (size_t) clean, "zeros");
                /* Again, with a whole window before that line. */
                end = base + cut_at;
        }

        if (!found && base > 0)
                /* A whole window of garbage is not a torn write: refuse to guess. */
                return log_error_errno(-EBADMSG,
                                       "Audit log '%s/%s': no record in its last %zu bytes, "
                                       "refusing to cut it.",
                                       f->directory, name, w);
        clean = first_clean_line(buf, good_end, w);
        if (clean >= 0)
                return refuse_clean_line(f, name, base + (size_t) clean, "its last record");

        *ret_found = found;
        *ret_max_seq = max_seq;
        *ret_cut = size - (base + good_end);
        *ret_anomalies = anomalies;
        return 0;
}

/* Readable by the directory's group (tsm-admin, which tsmd.tmpfiles makes it and, setgid, its
 * files'), whatever the umask: the unit's is 0077. */
#define AUDIT_FILE_MODE 0640

/* The new audit.log until a rotation names it so: no reader, resume or query looks at it. */
#define AUDIT_FILE_NAME_NEW AUDIT_FILE_NAME ".new"

static int open_current(AuditFiles *f) {
        struct stat st;
        int fd;

        fd = f->ops->openat(f->dir_fd, AUDIT_FILE_NAME,
                            O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, AUDIT_FILE_MODE);
        if (fd < 0)
                return fd;
        (void) fchmod(fd, AUDIT_FILE_MODE);
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                safe_close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                safe_close(fd);
                return -EBADFD;
        }
        safe_close(f->fd);
        f->fd = fd;
        /* audit_files_resume() synced what it holds. */
        f->size = f->synced = f->alloc_end = (uint64_t) st.st_size;
        /* The file may have just been created (first start, or a crash mid-rotation). */
        return f->ops->fsync(f->dir_fd);
}

/* Makes what a file holds as durable as what we wrote ourselves, before it is trusted: the
 * records a predecessor (a worker killed in fdatasync(), a crashed one) left may be in the page
 * cache only. fdatasync() waits for writeback in flight, and reports a writeback error
 * (errseq, since Linux 4.13) that came after our open, or before it if no open file has seen
 * it yet (since 4.16; while the inode stays cached); an error another one saw already is not
 * reported again, and the pages it left are clean but may not be on the disk: dropping the
 * clean pages (POSIX_FADV_DONTNEED, advice a file system may ignore) makes the scan read what
 * is on the disk where it can. */
static int sync_before_trust(AuditFiles *f, const char *name, int fd) {
        int r;

        r = f->ops->fdatasync(fd);
        if (r < 0)
                return log_error_errno(r, "Failed to sync audit log '%s/%s': %m", f->directory, name);
        (void) posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        return 0;
}

int audit_files_resume(AuditFiles *f, AuditResumeInfo *ret) {
        _cleanup_(json_tokener_freep) json_tokener *tok = NULL;
        AuditResumeInfo info = {};
        bool found_newest = false;
        int r;

        assert(f);
        assert(ret);

        f->fd = safe_close(f->fd);

        r = json_tokener_new_strict(1, &tok);
        if (r < 0)
                return r;

        /* Every file, not only the newest with a record: one older may hold higher seqs,
         * which must not be written twice. */
        for (unsigned i = 0; i < f->n_files; i++) {
                char name[sizeof(AUDIT_FILE_NAME) + 12];
                _cleanup_close_ int fd = -EBADF;
                uint64_t seq = 0, cut = 0;
                unsigned anomalies = 0;
                struct stat st;
                bool found = false;

                audit_file_name(i, name);
                fd = f->ops->openat(f->dir_fd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0);
                if (fd == -ENOENT)
                        continue;
                if (fd < 0)
                        return log_error_errno(fd, "Failed to open audit log '%s/%s': %m",
                                               f->directory, name);
                if (fstat(fd, &st) < 0)
                        return -errno;
                if (!S_ISREG(st.st_mode))
                        return log_error_errno(-EBADFD, "Audit log '%s/%s' is not a regular file.",
                                               f->directory, name);
                if (st.st_size == 0)
                        continue;
                r = sync_before_trust(f, name, fd);
                if (r < 0)
                        return r;

                r = scan_tail(f, name, fd, (uint64_t) st.st_size, tok, &found, &seq, &cut,
                              &anomalies);
                if (r == -EBADMSG && found_newest) {
                        /* Older than the file the log continues in, and never written again:
                         * queries skip its damage. */
                        log_warning("Audit log '%s/%s': damaged tail, leaving its sequence numbers out.",
                                    f->directory, name);
                        continue;
                }
                if (r < 0)
                        return r;
                info.n_anomalies += anomalies;
                info.last_seq = MAX(info.last_seq, seq);
                if (found_newest)
                        continue;

                if (cut > 0) {
                        uint64_t keep = (uint64_t) st.st_size - cut;

                        r = f->ops->ftruncate(fd, (off_t) keep);
                        if (r >= 0)
                                r = f->ops->fsync(fd);
                        if (r < 0)
                                return log_error_errno(r, "Failed to cut torn tail of audit log '%s/%s': %m",
                                                       f->directory, name);
                        log_warning("Audit log '%s/%s' had a torn tail: cut %" PRIu64
                                    " bytes after offset %" PRIu64 ".",
                                    f->directory, name, cut, keep);
                        info.repaired_bytes += cut;
                }
                found_newest = found;
        }

        r = open_current(f);
        if (r < 0)
                return log_error_errno(r, "Failed to open audit log '%s/" AUDIT_FILE_NAME "': %m",
                                       f->directory);
        /* A rotation's new file that a crash left before it was named: its room is given back. */
        (void) unlinkat(f->dir_fd, AUDIT_FILE_NAME_NEW, 0);

        info.current_size = f->size;
        *ret = info;
        return 0;
}

int audit_files_take_back(AuditFiles *f) {
        int r;

        assert(f);

        if (f->fd < 0 || f->size <= f->synced)
                return 0;
        r = f->ops->ftruncate(f->fd, (off_t) f->synced);
        if (r < 0)
                return r;
        f->size = f->synced;
        return 0;
}

int audit_files_preallocate(AuditFiles *f, uint64_t end) {
        int r;

        assert(f);
        assert(f->fd >= 0);

        if (end <= f->alloc_end)
                return 0;
        if (end > INT64_MAX)
                return -EFBIG;
        /* KEEP_SIZE: the space is ours, but readers and resume never see zeros after the
         * last record. */
        r = f->ops->fallocate(f->fd, FALLOC_FL_KEEP_SIZE, (off_t) f->size,
                              (off_t) (end - f->size));
        if (r < 0)
                return r;
        f->alloc_end = end;
        return 0;
}

/* The new file of a rotation, under AUDIT_FILE_NAME_NEW, with prealloc_size preallocated (at
 * least min_size: -ENOSPC, leaving none, if that cannot be had). *ret_alloc_end: how much it got. */
static int rotate_new_file(AuditFiles *f, uint64_t prealloc_size, uint64_t min_size, uint64_t *ret_alloc_end) {
        _cleanup_close_ int fd = -EBADF;
        uint64_t want = MAX(prealloc_size, min_size);
        int r;

        if (want > INT64_MAX)
                return -EFBIG;
        /* A crash's leftover, never written to. */
        if (unlinkat(f->dir_fd, AUDIT_FILE_NAME_NEW, 0) < 0 && errno != ENOENT)
                return -errno;
        fd = f->ops->openat(f->dir_fd, AUDIT_FILE_NAME_NEW, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                            AUDIT_FILE_MODE);
        if (fd < 0)
                return fd;
        (void) fchmod(fd, AUDIT_FILE_MODE);
        /* KEEP_SIZE, as audit_files_preallocate(). */
        r = want > 0 ? f->ops->fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t) want) : 0;
        if (r == -ENOSPC && min_size > 0 && min_size < want) {
                want = min_size;
                r = f->ops->fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, (off_t) want);
        }
        if (r == -ENOSPC && min_size > 0) {
                (void) unlinkat(f->dir_fd, AUDIT_FILE_NAME_NEW, 0);
                return -ENOSPC;
        }
        /* Not all that was wanted (nothing was promised), or no fallocate here: none. */
        *ret_alloc_end = r >= 0 ? want : 0;
        return TAKE_FD(fd);
}

int audit_files_rotate(AuditFiles *f, uint64_t prealloc_size, uint64_t min_size) {
        _cleanup_close_ int old_fd = -EBADF, fd = -EBADF;
        uint64_t old_size, old_alloc_end, alloc_end = 0;
        int r = 0;

        assert(f);
        assert(f->fd >= 0);

        old_size = f->size;
        old_alloc_end = f->alloc_end;

        /* The room reserved against the old file's preallocated tail (min_size) moves to the new
         * file: taken there before anything changes, and before the old tail is given back, so
         * that no other writer of the file system can take it in between. Where it cannot be had
         * (a full disk), nothing changes: the records go into the old tail, which has their room,
         * and the log is full once that is used, as without a rotation. */
        fd = rotate_new_file(f, prealloc_size, min_size, &alloc_end);
        if (fd == -ENOSPC)
                return 1;
        if (fd < 0)
                return fd;

        pthread_mutex_lock(&f->rotate_lock);
        /* Oldest first, so each rename replaces a file that was already copied up; the
         * first one drops the oldest file. A file missing after an earlier crash is fine. */
        for (unsigned i = f->n_files - 1; i >= 1; i--) {
                char from[sizeof(AUDIT_FILE_NAME) + 12], to[sizeof(AUDIT_FILE_NAME) + 12];

                audit_file_name(i - 1, from);
                audit_file_name(i, to);
                r = f->ops->renameat(f->dir_fd, from, f->dir_fd, to);
                if (r == -ENOENT)
                        r = 0;
                if (r < 0)
                        goto unlock;
        }
        r = f->ops->renameat(f->dir_fd, AUDIT_FILE_NAME_NEW, f->dir_fd, AUDIT_FILE_NAME);
        if (r < 0)
                goto unlock;
        old_fd = f->fd;
        f->fd = TAKE_FD(fd);
        f->size = f->synced = 0;
        f->alloc_end = alloc_end;
        /* The renames and the new name must be durable before a record in the new file is
         * acknowledged. */
        r = f->ops->fsync(f->dir_fd);
unlock:
        pthread_mutex_unlock(&f->rotate_lock);
        if (fd >= 0)
                (void) unlinkat(f->dir_fd, AUDIT_FILE_NAME_NEW, 0);

        /* The old file never grows again. */
        if (old_fd >= 0 && old_alloc_end > old_size)
                (void) f->ops->ftruncate(old_fd, (off_t) old_size);
        return r;
}

/* Opens one file of a snapshot: -ENOENT if missing, -EBADFD for anything that is not a regular
 * file. SECURITY: whoever can write the directory can put a FIFO, a device node, a symlink or a
 * directory under a rotated file's name; opening must not block on it or act on it (O_NONBLOCK,
 * O_NOFOLLOW, and nothing but a regular file is opened at all if fstatat() can tell), and
 * reading it must not be tried. */
static int snapshot_open(int dir_fd, const char *name) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        fd = RET_NERRNO(openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
        if (fd == -ELOOP)
                return -EBADFD; /* replaced by a symlink since */
        if (fd < 0)
                return fd;
        /* Replaced since the fstatat(). */
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EBADFD;
        return TAKE_FD(fd);
}

int audit_files_snapshot(AuditFiles *f, int *fds) {
        int r = 0;

        assert(f);
        assert(fds);

        for (unsigned i = 0; i < f->n_files; i++)
                fds[i] = -EBADF;

        pthread_mutex_lock(&f->rotate_lock);
        for (unsigned i = 0; i < f->n_files; i++) {
                char name[sizeof(AUDIT_FILE_NAME) + 12];
                unsigned idx = f->n_files - 1 - i;
                int fd;

                audit_file_name(idx, name);
                fd = snapshot_open(f->dir_fd, name);
                if (fd == -ENOENT)
                        continue;
                if (fd == -EBADFD) {
                        log_warning("Audit log '%s/%s' is not a regular file, leaving it out of the query.",
                                    f->directory, name);
                        continue;
                }
                if (fd < 0) {
                        r = fd;
                        break;
                }
                fds[i] = fd;
        }
        pthread_mutex_unlock(&f->rotate_lock);

        if (r < 0)
                close_many(fds, f->n_files);
        return r;
}
