/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* tsmctl's --since=/--until= times. Runs in: the admin's shell, tests. */

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "time-parse.h"

#define USEC_PER_SEC UINT64_C(1000000)
/* A Varlink int is a JSON number tsmd reads as int64. */
#define TIME_USEC_MAX ((uint64_t) INT64_MAX)

static const struct {
        const char *name;
        uint64_t usec;
} units[] = {
        { "s", USEC_PER_SEC },           { "sec", USEC_PER_SEC },
        { "second", USEC_PER_SEC },      { "seconds", USEC_PER_SEC },
        { "m", 60 * USEC_PER_SEC },      { "min", 60 * USEC_PER_SEC },
        { "minute", 60 * USEC_PER_SEC }, { "minutes", 60 * USEC_PER_SEC },
        { "h", 3600 * USEC_PER_SEC },    { "hour", 3600 * USEC_PER_SEC },
        { "hours", 3600 * USEC_PER_SEC }, { "d", 86400 * USEC_PER_SEC },
        { "day", 86400 * USEC_PER_SEC }, { "days", 86400 * USEC_PER_SEC },
        { "w", 604800 * USEC_PER_SEC },  { "week", 604800 * USEC_PER_SEC },
        { "weeks", 604800 * USEC_PER_SEC },
};

/* Decimal digits only (no sign, no space, not empty), into *ret; -ERANGE past max. */
static int parse_number(const char *s, size_t n, uint64_t max, uint64_t *ret) {
        uint64_t v = 0;

        if (n == 0)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -EINVAL;
                if (v > (max - (uint64_t) (s[i] - '0')) / 10)
                        return -ERANGE;
                v = v * 10 + (uint64_t) (s[i] - '0');
        }
        *ret = v;
        return 0;
}

/* "-15min", "+2h": now minus or plus a number of units. */
static int parse_relative(const char *s, uint64_t now_usec, uint64_t *ret) {
        size_t digits = strspn(s + 1, "0123456789");
        uint64_t n, usec = 0;
        int r;

        for (size_t i = 0; i < ELEMENTSOF(units) && usec == 0; i++)
                if (streq(s + 1 + digits, units[i].name))
                        usec = units[i].usec;
        if (usec == 0)
                return -EINVAL; /* no unit, or none of ours */
        r = parse_number(s + 1, digits, TIME_USEC_MAX / usec, &n);
        if (r < 0)
                return r;
        n *= usec;
        if (s[0] == '-') {
                if (n > now_usec)
                        return -ERANGE;
                *ret = now_usec - n;
        } else {
                if (n > TIME_USEC_MAX - now_usec)
                        return -ERANGE;
                *ret = now_usec + n;
        }
        return 0;
}

/* tm (local time, fields as written) to microseconds, if it is a time that exists. */
static int local_time_usec(struct tm *tm, uint64_t *ret) {
        struct tm want = *tm;
        time_t t;

        tm->tm_isdst = -1;
        t = mktime(tm);
        /* mktime() makes Feb 30 Mar 2: not a date anyone meant. (A time a clock change skips,
         * 02:30 when 02:00 becomes 03:00, is the time it would have been, as journalctl has it.) */
        if (tm->tm_year != want.tm_year || tm->tm_mon != want.tm_mon || tm->tm_mday != want.tm_mday)
                return -EINVAL;
        if (t < 0 || (uint64_t) t > TIME_USEC_MAX / USEC_PER_SEC)
                return -ERANGE;
        *ret = (uint64_t) t * USEC_PER_SEC;
        return 0;
}

/* The n digits at s as a number (the shape is checked already). */
static int digits(const char *s, size_t n) {
        int v = 0;

        for (size_t i = 0; i < n; i++)
                v = v * 10 + (s[i] - '0');
        return v;
}

/* tm (fields as written) at offset seconds east of UTC, plus usec, to microseconds, if it is a
 * time that exists. */
static int offset_time_usec(struct tm *tm, int offset, uint64_t usec, uint64_t *ret) {
        struct tm want = *tm;
        time_t t = timegm(tm);

        if (tm->tm_year != want.tm_year || tm->tm_mon != want.tm_mon || tm->tm_mday != want.tm_mday)
                return -EINVAL;
        if (t < offset || (uint64_t) (t - offset) > (TIME_USEC_MAX - usec) / USEC_PER_SEC)
                return -ERANGE;
        *ret = (uint64_t) (t - offset) * USEC_PER_SEC + usec;
        return 0;
}

/* What may follow "YYYY-MM-DDTHH:MM:SS": a fraction of up to six digits (tsmd's records have
 * microseconds), then the UTC offset, "Z", "+HH:MM" or "-HH:MM", as seconds east. */
static int parse_fraction_and_offset(const char *s, uint64_t *ret_usec, int *ret_offset) {
        uint64_t usec = 0, scale = USEC_PER_SEC;
        int hours, minutes;

        if (s[0] == '.') {
                size_t n = strspn(++s, "0123456789");

                if (n == 0 || n > 6)
                        return -EINVAL;
                for (size_t i = 0; i < n; i++)
                        usec += (uint64_t) (s[i] - '0') * (scale /= 10);
                s += n;
        }
        *ret_usec = usec;
        if (streq(s, "Z")) {
                *ret_offset = 0;
                return 0;
        }
        if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':' || strspn(s + 1, "0123456789") != 2 ||
            strspn(s + 4, "0123456789") != 2)
                return -EINVAL;
        hours = digits(s + 1, 2);
        minutes = digits(s + 4, 2);
        if (hours > 23 || minutes > 59)
                return -EINVAL;
        *ret_offset = (s[0] == '-' ? -1 : 1) * (hours * 3600 + minutes * 60);
        return 0;
}

/* "YYYY-MM-DD", "YYYY-MM-DD HH:MM", "YYYY-MM-DD HH:MM:SS", as local time; a "T" for the space
 * too, and "YYYY-MM-DDTHH:MM:SS" followed by its UTC offset, as tsmctl audit shows times
 * ("+01:00") and tsmd writes them (".123456Z"): RFC 3339. */
static int parse_absolute(const char *s, uint64_t *ret) {
        static const char shape[] = "dddd-dd-dd dd:dd:dd";
        int mon, day, hour = 0, min = 0, sec = 0, offset = 0;
        size_t len = strlen(s);
        bool has_offset = false;
        uint64_t usec = 0;
        struct tm tm;

        if (len > 19 && s[10] == 'T') {
                if (parse_fraction_and_offset(s + 19, &usec, &offset) < 0)
                        return -EINVAL;
                has_offset = true;
                len = 19;
        }
        if (len != 10 && len != 16 && len != 19)
                return -EINVAL;
        for (size_t i = 0; i < len; i++)
                if (shape[i] == 'd' ? s[i] < '0' || s[i] > '9' : s[i] != shape[i] && !(i == 10 && s[i] == 'T'))
                        return -EINVAL;
        mon = digits(s + 5, 2);
        day = digits(s + 8, 2);
        if (len >= 16) {
                hour = digits(s + 11, 2);
                min = digits(s + 14, 2);
        }
        if (len == 19)
                sec = digits(s + 17, 2);
        if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 59)
                return -EINVAL;

        tm = (struct tm){ .tm_year = digits(s, 4) - 1900, .tm_mon = mon - 1, .tm_mday = day,
                          .tm_hour = hour, .tm_min = min, .tm_sec = sec };
        return has_offset ? offset_time_usec(&tm, offset, usec, ret) : local_time_usec(&tm, ret);
}

/* Local midnight, days from now's day. */
static int parse_day(int days, uint64_t now_usec, uint64_t *ret) {
        time_t now = (time_t) (now_usec / USEC_PER_SEC);
        struct tm tm;
        int r;

        if (!localtime_r(&now, &tm))
                return -ERANGE;
        tm.tm_mday += days;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        /* Normalize first (the day before the 1st), then check what mktime() makes of it. */
        tm.tm_isdst = -1;
        if (mktime(&tm) == (time_t) -1)
                return -ERANGE;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        r = local_time_usec(&tm, ret);
        return r == -EINVAL ? -ERANGE : r;
}

int time_parse(const char *s, uint64_t now_usec, uint64_t *ret_usec) {
        uint64_t sec, usec = 0;
        int r = 0;

        assert(s);
        assert(ret_usec);

        if (now_usec > TIME_USEC_MAX)
                return -ERANGE;
        if (streq(s, "now"))
                usec = now_usec;
        else if (streq(s, "today"))
                r = parse_day(0, now_usec, &usec);
        else if (streq(s, "yesterday"))
                r = parse_day(-1, now_usec, &usec);
        else if (streq(s, "tomorrow"))
                r = parse_day(1, now_usec, &usec);
        else if (s[0] == '@') {
                r = parse_number(s + 1, strlen(s + 1), TIME_USEC_MAX / USEC_PER_SEC, &sec);
                if (r >= 0)
                        usec = sec * USEC_PER_SEC;
        } else if (s[0] == '-' || s[0] == '+')
                r = parse_relative(s, now_usec, &usec);
        else
                r = parse_absolute(s, &usec);
        if (r < 0)
                return r;

        *ret_usec = usec;
        return 0;
}
