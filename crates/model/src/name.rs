//! Newtypes for names and identifiers that come from users or disk.
//!
//! App names and process types end up in host names, paths and environment variables, so they
//! are restricted to a DNS-label-like alphabet: nothing here can carry a shell metacharacter, a
//! path separator or `..`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a name or identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} {value:?} is longer than {max} characters")]
    TooLong { what: &'static str, value: String, max: usize },
    #[error("{what} {value:?} may only contain lowercase letters, digits and '-', and must start with a letter")]
    BadChars { what: &'static str, value: String },
    #[error("digest {value:?} is not of the form sha256:<64 hex digits>")]
    BadDigest { value: String },
}

fn check_label(what: &'static str, value: &str, max: usize) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(NameError::Empty { what });
    }
    if value.len() > max {
        return Err(NameError::TooLong { what, value: value.to_owned(), max });
    }
    let mut chars = value.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_ok = value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !first_ok || !rest_ok || value.ends_with('-') {
        return Err(NameError::BadChars { what, value: value.to_owned() });
    }
    Ok(())
}

/// An app's name: a DNS label, so `NAME.localhost` is a valid host and `apps/NAME` a safe path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppName(String);

impl AppName {
    pub const MAX_LEN: usize = 40;

    pub fn parse(value: &str) -> Result<Self, NameError> {
        check_label("app name", value, Self::MAX_LEN)?;
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A process type from the Procfile or `processes:`, e.g. `web` or `worker`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProcessType(String);

impl ProcessType {
    pub const MAX_LEN: usize = 30;

    pub fn parse(value: &str) -> Result<Self, NameError> {
        check_label("process type", value, Self::MAX_LEN)?;
        Ok(Self(value.to_owned()))
    }

    /// The process type that receives `$PORT` and is routed by the proxy.
    pub fn web() -> Self {
        Self("web".to_owned())
    }

    pub fn is_web(&self) -> bool {
        self.0 == "web"
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A content digest, always `sha256:` followed by 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    pub fn parse(value: &str) -> Result<Self, NameError> {
        let hex = value.strip_prefix("sha256:").ok_or_else(|| NameError::BadDigest { value: value.to_owned() })?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(NameError::BadDigest { value: value.to_owned() });
        }
        Ok(Self(value.to_owned()))
    }

    /// Builds a digest from raw sha256 output.
    pub fn from_sha256(bytes: &[u8; 32]) -> Self {
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in bytes {
            s.push_str(&format!("{b:02x}"));
        }
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits, safe to use as a file name.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

/// A release number, counted per app from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReleaseId(pub u64);

/// An instance's identifier: `APP-PROC-RELEASE-SUFFIX`, unique on this box and safe as a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstanceId(String);

impl InstanceId {
    pub fn new(app: &AppName, process: &ProcessType, release: ReleaseId, suffix: &str) -> Self {
        Self(format!("{}-{}-v{}-{}", app.0, process.0, release.0, suffix))
    }

    pub fn parse(value: &str) -> Result<Self, NameError> {
        if value.is_empty() {
            return Err(NameError::Empty { what: "instance id" });
        }
        if value.len() > 100 || !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(NameError::BadChars { what: "instance id", value: value.to_owned() });
        }
        Ok(Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(value: String) -> Result<Self, NameError> {
                Self::parse(&value)
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
    )*};
}
string_newtype_impls!(AppName, ProcessType, Digest, InstanceId);

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_reject_shell_and_paths() {
        let table = [
            ("hello", true),
            ("hello-2", true),
            ("h", true),
            ("", false),
            ("Hello", false),
            ("2hello", false),
            ("hello-", false),
            ("../etc", false),
            ("a/b", false),
            ("a;rm -rf ~", false),
            ("$(id)", false),
            ("a b", false),
            ("a.b", false),
        ];
        for (input, ok) in table {
            assert_eq!(AppName::parse(input).is_ok(), ok, "{input:?}");
        }
    }

    #[test]
    fn digests_round_trip() {
        let d = Digest::from_sha256(&[0xab; 32]);
        assert_eq!(Digest::parse(d.as_str()).unwrap(), d);
        assert_eq!(d.short(), "abababababab");
        assert!(Digest::parse("sha256:xyz").is_err());
        assert!(Digest::parse(&d.as_str().to_uppercase()).is_err());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
    }
}
