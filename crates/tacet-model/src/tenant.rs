//! Tenant identifiers. They become path segments in the lake, so their alphabet is narrow.

use std::fmt;

/// A validated tenant id: 1 to 64 characters of `a-z`, `0-9`, `-` and `_`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "tenant id {0:?} is not valid: use 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter or digit"
)]
pub struct TenantIdError(pub String);

impl TenantId {
    pub fn new(id: impl Into<String>) -> Result<Self, TenantIdError> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && id.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(Self(id))
        } else {
            Err(TenantIdError(id))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_ids_and_refuses_path_tricks() {
        assert!(TenantId::new("demo").is_ok());
        assert!(TenantId::new("acme-corp_2").is_ok());
        for bad in ["", "../x", "a/b", "A", "x=y", "-x", &"a".repeat(65)] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
