/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The defaults of the audit log's [Audit] settings, in one place for the configuration
 * (daemon-config.c, which the monitor links too) and audit_config_init(): the parser needs
 * these numbers, not the log. Runs in: monitor and worker.
 */
#pragma once

#define AUDIT_MAX_FILE_SIZE_DEFAULT (8u * 1024u * 1024u) /* MaxFileSize= */
#define AUDIT_N_FILES_DEFAULT 5u                         /* Files= */
#define AUDIT_MAX_IN_FLIGHT_DEFAULT 4096u                /* MaxRecordsInFlight= */
#define AUDIT_MAX_IN_FLIGHT_PER_UID_DEFAULT 1024u        /* MaxRecordsInFlightPerUid= */
#define AUDIT_MAX_IN_FLIGHT_UNNAMED_DEFAULT 64u          /* MaxRecordsInFlightUnnamed= */
#define AUDIT_REFUSALS_PER_UID_DEFAULT 32u               /* RefusalRecordsPerUid= */
#define AUDIT_REFUSAL_INTERVAL_SEC_DEFAULT 10u           /* RefusalIntervalSec= */
#define AUDIT_REFUSAL_SHARE_PERCENT_DEFAULT 50u          /* RefusalSharePercent= */
#define AUDIT_MAX_QUERIES_DEFAULT 4u                     /* MaxQueries= */
#define AUDIT_MAX_FOLLOWERS_DEFAULT 16u                  /* MaxFollowers= */
#define AUDIT_MAX_QUERY_SCAN_DEFAULT (256u * 1024u * 1024u) /* MaxQueryScanSize= */
#define AUDIT_MAX_QUERY_RECORDS_DEFAULT 10000u          /* MaxQueryRecords= */
#define AUDIT_JOURNAL_BACKLOG_DEFAULT 4096u              /* MaxJournalBacklog= */
#define AUDIT_MAX_KEPT_DEFAULT 1024u                     /* owed records kept while the log cannot take them */
