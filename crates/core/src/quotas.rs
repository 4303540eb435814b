//! Upload quotas: per-domain limits and the usage ledger (issue 4).
