//! An order as `POST /api/orders` creates it.

use serde::{Deserialize, Serialize};

use super::event::{validate_amount, validate_currency, validate_id, Invalid};

/// Orders carry a short list of items; the bound keeps one row small.
pub const MAX_ITEMS: usize = 100;

fn default_currency() -> String {
    "USD".to_owned()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewOrder {
    pub id: String,
    pub user_id: String,
    pub items: Vec<String>,
    pub total_amount: i64,
    #[serde(default = "default_currency")]
    pub currency: String,
}

impl NewOrder {
    pub fn validate(&self) -> Result<(), Invalid> {
        validate_id("id", &self.id)?;
        validate_id("user_id", &self.user_id)?;
        validate_amount("total_amount", self.total_amount)?;
        validate_currency(&self.currency)?;
        if self.items.len() > MAX_ITEMS {
            return Err(Invalid { field: "items", reason: format!("at most {MAX_ITEMS} items") });
        }
        if let Some(bad) = self.items.iter().find(|i| i.is_empty() || i.len() > 256 || i.chars().any(char::is_control)) {
            return Err(Invalid { field: "items", reason: format!("item {bad:?} must be 1 to 256 characters without control characters") });
        }
        Ok(())
    }
}

/// What creating an order did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The identical order already existed: a safe retry.
    AlreadyExists,
    /// Another order with this id and different content exists.
    Conflict,
}
