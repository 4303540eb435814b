//! SQL for the upload quota ledger.
