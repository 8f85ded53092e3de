//! Key ids: `<caller>/<key-name>`.
//!
//! ASAP verifiers require the kid to start with `iss + "/"` and fetch
//! `<base-url><kid>` literally, so a kid is exactly two name segments.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::names::{CallerName, KeyName};
use super::InvalidField;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Kid {
    full: String,
    split: usize,
}

impl Kid {
    pub fn new(caller: &CallerName, key: &KeyName) -> Self {
        Self {
            full: format!("{caller}/{key}"),
            split: caller.as_str().len(),
        }
    }

    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        let (caller, key) = value
            .split_once('/')
            .ok_or_else(|| InvalidField::new("kid", "a kid has the form <caller>/<key-name>"))?;
        let caller = CallerName::parse(caller).map_err(|e| e.within("kid"))?;
        let key = KeyName::parse(key).map_err(|e| e.within("kid"))?;
        Ok(Self::new(&caller, &key))
    }

    pub fn as_str(&self) -> &str {
        &self.full
    }

    pub fn caller(&self) -> &str {
        &self.full[..self.split]
    }
}

impl TryFrom<String> for Kid {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        Kid::parse(&value).map_err(|e| e.message)
    }
}

impl From<Kid> for String {
    fn from(value: Kid) -> String {
        value.full
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_two_segments() {
        let kid = Kid::parse("svc-a/2026-11-22.x").unwrap();
        assert_eq!(kid.caller(), "svc-a");
        assert_eq!(kid.as_str(), "svc-a/2026-11-22.x");
    }

    #[test]
    fn rejects_traversal_and_odd_shapes() {
        for bad in [
            "svc-a",
            "svc-a/",
            "/x",
            "svc-a/../x",
            "svc-a/./x",
            "a/b/c",
            "a//b",
            "..",
            "a/..",
        ] {
            assert!(Kid::parse(bad).is_err(), "{bad}");
        }
    }
}
