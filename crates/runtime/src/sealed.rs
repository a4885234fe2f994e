//! Opening an instance's sealed variables, for the supervisor that puts them into the app's
//! environment (the shim, or the Docker backend writing a container's env file).

use crate::SealedVar;
use secrets::{Keyring, SecretError};
use std::path::Path;

/// Why a sealed variable could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the instance has sealed variables but the runtime has no key file")]
    NoKeyFile,
    #[error("cannot load the key file")]
    Key(#[source] SecretError),
    #[error("cannot open secret {name}")]
    Open {
        name: String,
        #[source]
        source: SecretError,
    },
    #[error("secret {name} is not UTF-8, so it cannot be an environment variable")]
    NotUtf8 { name: String },
}

/// The plain `(name, value)` of each of `vars`, opened with the key in `key_file`.
pub(crate) fn open(key_file: Option<&Path>, vars: &[SealedVar]) -> Result<Vec<(String, String)>, OpenError> {
    if vars.is_empty() {
        return Ok(Vec::new());
    }
    let key_file = key_file.ok_or(OpenError::NoKeyFile)?;
    let keyring = Keyring::load_or_create(key_file).map_err(OpenError::Key)?;
    let mut out = Vec::with_capacity(vars.len());
    for var in vars {
        let value = keyring
            .open(&var.context, &var.sealed)
            .map_err(|source| OpenError::Open { name: var.name.clone(), source })?;
        let text = value.expose_str().ok_or_else(|| OpenError::NotUtf8 { name: var.name.clone() })?;
        out.push((var.name.clone(), text.to_owned()));
    }
    Ok(out)
}
