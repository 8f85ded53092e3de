//! `[pkcs11]`: the token that holds signing keys when `keys.backend` is
//! `"pkcs11"` (README, "Keys in an HSM (PKCS#11)").

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::master_key::Redacted;
use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pkcs11Settings {
    /// The PKCS#11 library (`/usr/lib/softhsm/libsofthsm2.so`, a vendor's).
    pub module: Option<PathBuf>,
    /// The label of the token that holds the keys.
    pub token_label: Option<String>,
    /// The user PIN. Prefer `pin_file` or the environment.
    #[serde(deserialize_with = "pin_text")]
    pub pin: Option<Redacted>,
    /// A file holding the user PIN (one line; surrounding whitespace is
    /// ignored).
    pub pin_file: Option<PathBuf>,
    /// Logged-in sessions kept open: signatures in flight at once.
    pub sessions: usize,
}

impl Default for Pkcs11Settings {
    fn default() -> Self {
        Self {
            module: None,
            token_label: None,
            pin: None,
            pin_file: None,
            sessions: 4,
        }
    }
}

impl Pkcs11Settings {
    /// Checked only when `keys.backend = "pkcs11"`: the settings mean
    /// nothing otherwise.
    pub fn validate(&self) -> Result<(), String> {
        if self.module.is_none() {
            return Err(
                "pkcs11.module is required with keys.backend = \"pkcs11\": the path \
                 of the token's PKCS#11 library (ASAPD_PKCS11__MODULE, for SoftHSM2 \
                 /usr/lib/softhsm/libsofthsm2.so)"
                    .into(),
            );
        }
        if self.token_label.as_deref().is_none_or(str::is_empty) {
            return Err(
                "pkcs11.token_label is required with keys.backend = \"pkcs11\": the \
                 label the token was initialised with (ASAPD_PKCS11__TOKEN_LABEL)"
                    .into(),
            );
        }
        if self.pin.is_some() == self.pin_file.is_some() {
            return Err("give exactly one of pkcs11.pin and pkcs11.pin_file \
                 (ASAPD_PKCS11__PIN or ASAPD_PKCS11__PIN_FILE); a file is safer"
                .into());
        }
        if self.sessions == 0 || self.sessions > 256 {
            return Err("pkcs11.sessions must be between 1 and 256".into());
        }
        Ok(())
    }

    /// The user PIN, from `pin` or read from `pin_file`.
    pub fn read_pin(&self) -> Result<Redacted, ConfigError> {
        if let Some(pin) = &self.pin {
            return Ok(pin.clone());
        }
        let path = self
            .pin_file
            .as_ref()
            .ok_or_else(|| ConfigError("pkcs11.pin or pkcs11.pin_file is required".into()))?;
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!(
                "pkcs11.pin_file {} cannot be read ({e}); fix ASAPD_PKCS11__PIN_FILE",
                path.display()
            ))
        })?;
        Ok(Redacted(text.trim().to_owned()))
    }
}

/// A PIN written as a string or, in TOML, as a bare number. Never echoed:
/// serde's own "invalid type" error would quote the value.
fn pin_text<'de, D>(deserializer: D) -> Result<Option<Redacted>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct PinVisitor;
    impl serde::de::Visitor<'_> for PinVisitor {
        type Value = Option<Redacted>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a PIN (a string)")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Redacted(v.to_owned())))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(Redacted(v.to_string())))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(Redacted(v.to_string())))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(PinVisitor)
}

/// `ASAPD_PKCS11__PIN` exactly as set: the environment layer would read
/// `0123` as the number 123 and lose the leading zero.
pub(super) const PIN_VARIABLE: &str = "PKCS11__PIN";

#[cfg(test)]
mod tests {
    use super::*;
    use figment::providers::{Format, Toml};
    use figment::Figment;

    fn pin_of(toml: &str) -> Result<Option<String>, String> {
        Figment::from(Toml::string(toml))
            .extract::<Pkcs11Settings>()
            .map(|s| s.pin.map(|p| p.0))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_pin_is_read_as_text_or_number_and_never_echoed() {
        assert_eq!(pin_of("pin = \"0123\"").unwrap().as_deref(), Some("0123"));
        assert_eq!(pin_of("pin = 98765").unwrap().as_deref(), Some("98765"));
        assert_eq!(pin_of("").unwrap(), None);
        let err = pin_of("pin = [\"s3cr3t-pin\"]").unwrap_err();
        assert!(!err.contains("s3cr3t-pin"), "{err}");
    }

    #[test]
    fn the_settings_needed_are_named() {
        let mut s = Pkcs11Settings::default();
        assert!(s.validate().unwrap_err().starts_with("pkcs11.module"));
        s.module = Some("/x.so".into());
        assert!(s.validate().unwrap_err().starts_with("pkcs11.token_label"));
        s.token_label = Some("t".into());
        assert!(s.validate().unwrap_err().contains("pkcs11.pin"));
        s.pin = Some(Redacted("1".into()));
        assert!(s.validate().is_ok());
        s.pin_file = Some("/p".into());
        assert!(s.validate().is_err(), "not both");
    }
}
