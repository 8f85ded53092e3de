//! Names of callers, groups and keys.
//!
//! A caller's name is the ASAP issuer and the first segment of its kids, so
//! names must fit the kid grammar that atlassian-jwt-auth enforces
//! (`^[\w.\-\+/]*$`, no empty, `.` or `..` segment). We are stricter: ASCII,
//! starting with a letter or digit, no `/`, at most 64 characters.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidField;

pub const MAX_NAME_LEN: usize = 64;

/// Checks the shared name grammar; `what` names the kind of name in errors.
fn check_name(value: &str, what: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(format!("{what} is longer than {MAX_NAME_LEN} characters"));
    }
    let first = value.as_bytes()[0];
    if !first.is_ascii_alphanumeric() {
        return Err(format!("{what} must start with an ASCII letter or digit"));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '+')))
    {
        return Err(format!(
            "{what} contains {bad:?}; allowed are ASCII letters, digits and _ . - +"
        ));
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(try_from = "String", into = "String")]
        #[schema(value_type = String, min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")]
        pub struct $ty(String);

        impl $ty {
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidField> {
                let value = value.into();
                check_name(&value, $what).map_err(|m| InvalidField::new("", m))?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                check_name(&value, $what)?;
                Ok(Self(value))
            }
        }

        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

name_type!(
    /// A caller's name: its OAuth2 `client_id` and the `iss` of its tokens.
    CallerName,
    "caller name"
);
name_type!(
    /// A group's name. `admin` and `auditor` are reserved.
    GroupName,
    "group name"
);
name_type!(
    /// The part of a kid after `<caller>/`.
    KeyName,
    "key name"
);
name_type!(
    /// A trusted issuer's name: what bindings and the audit call it.
    IssuerName,
    "issuer name"
);

impl GroupName {
    pub const ADMIN: &'static str = "admin";
    pub const AUDITOR: &'static str = "auditor";

    /// Reserved groups carry admin rights and cannot be deleted.
    pub fn is_reserved(&self) -> bool {
        self.0 == Self::ADMIN || self.0 == Self::AUDITOR
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kid_safe_names() {
        for ok in ["svc-a", "Billing_2", "a", "x.y+z", &"a".repeat(64)] {
            assert!(CallerName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_names_outside_the_grammar() {
        for bad in [
            "",
            "-a",
            ".",
            "..",
            "a/b",
            "a b",
            "é",
            "a\n",
            &"a".repeat(65),
        ] {
            assert!(CallerName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
