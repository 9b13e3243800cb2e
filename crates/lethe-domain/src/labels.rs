//! How a platform's table is named to users, per language: what it holds
//! and, when kept, why. The data map gives them; erasure outcomes and the
//! signed receipt carry them (absent fields are left out of the JSON).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableLabels {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_zh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title_en: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis_zh: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis_en: Option<String>,
}

impl TableLabels {
    /// None when the data map gives no label at all.
    pub fn given(&self) -> Option<&Self> {
        (self != &Self::default()).then_some(self)
    }
}
