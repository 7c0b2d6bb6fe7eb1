//! Operating an installation: backup and restore.

pub mod backup;
