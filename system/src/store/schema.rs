//! Schema versions shared by both stores: a binary never runs against a schema newer than it
//! knows, since an older binary would write rows a newer one reads wrongly (or miss columns
//! it relies on). Downgrades go through a restored backup, not through the old binary.

use super::StoreError;

/// Refuses a store whose schema is at `current` when this binary knows `known` versions.
pub fn check_known(current: u32, known: usize) -> Result<(), StoreError> {
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
    }
}
