//! Schema versions shared by both stores: a binary never runs against a schema newer than it
//! knows, since an older binary would write rows a newer one reads wrongly (or miss columns
//! it relies on). Downgrades go through a restored backup, not through the old binary.
//!
//! Upgrades are explicit: only `webhooks migrate` and `standalone` change an existing schema
//! ([`Upgrade`]); an empty store is created at the current schema by any process.

use super::StoreError;

/// What opening a store does with a schema older than this binary's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    /// Brings it up to date: `webhooks migrate`, and `standalone`, which owns its data
    /// directory alone and keeps starting with one command.
    Migrate,
    /// Refuses it and says to run `webhooks migrate`: the processes of a scale-out deployment
    /// (server, worker, dlq), so that the schema changes once, when the operator has taken a
    /// backup, not in whichever process of a rolling restart starts first while older ones run.
    Refuse,
}

/// Checks a store whose schema is at `current` (0: empty) against the `known` versions of this
/// binary, before anything is migrated.
pub fn check(current: u32, known: usize, upgrade: Upgrade) -> Result<(), StoreError> {
    check_known(current, known)?;
    if upgrade == Upgrade::Refuse && current > 0 && (current as usize) < known {
        return Err(StoreError::Permanent(format!(
            "the store's schema is at version {current}, older than this binary's ({known}): take a backup \
             (webhooks backup, or your database's own), run this binary's `webhooks migrate` with the same \
             storage flags, then start the workers and servers"
        )));
    }
    Ok(())
}

/// Refuses a store whose schema is at `current` when this binary knows `known` versions.
fn check_known(current: u32, known: usize) -> Result<(), StoreError> {
    if current as usize > known {
        return Err(StoreError::Permanent(format!(
            "the store's schema is at version {current}, newer than this binary knows ({known}): \
             run the newer binary, or restore the backup taken before the upgrade"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_schema_is_refused_and_says_what_to_do() {
        assert!(check_known(3, 4).is_ok());
        assert!(check_known(4, 4).is_ok());
        let why = check_known(5, 4).expect_err("newer than known").to_string();
        assert!(why.contains("version 5") && why.contains("(4)") && why.contains("restore"), "{why}");
        assert!(check(5, 4, Upgrade::Migrate).is_err(), "not even by `webhooks migrate`");
    }

    #[test]
    fn an_older_schema_is_migrated_only_when_asked_and_an_empty_store_always_created() {
        assert!(check(0, 4, Upgrade::Refuse).is_ok(), "an empty store is created");
        assert!(check(4, 4, Upgrade::Refuse).is_ok());
        assert!(check(3, 4, Upgrade::Migrate).is_ok());
        let why = check(3, 4, Upgrade::Refuse).expect_err("older").to_string();
        assert!(why.contains("version 3") && why.contains("(4)") && why.contains("webhooks migrate") && why.contains("backup"), "{why}");
    }
}
