//! What text may become part of a process's environment or command line.
//!
//! Everything a user writes that ends up in `execve` (an `env:` entry, a config var, a secret,
//! a process's command, a build step, a test command) is checked here once, at the edge, by
//! `config` for drover.yml and by the API for `drover config set` / `drover secrets set`. A
//! value that `execve` cannot carry (a NUL byte, a string over the kernel's limit) would
//! otherwise be stored in a release and make every start of the app fail, far from the mistake.
//!
//! The rules:
//! - A name is a portable shell name, `[A-Za-z_][A-Za-z0-9_]*`, of at most [`MAX_KEY_LEN`]
//!   bytes: no `=`, NUL, space or dot, so that `sh` and every runtime can set and read it.
//! - A value holds no NUL byte and is at most [`MAX_VALUE_LEN`] bytes; all the variables of one
//!   app together are at most [`MAX_ENV_LEN`] bytes, well under Linux's `ARG_MAX` share.
//! - Names Drover sets itself are refused rather than silently overridden: [`RESERVED`]
//!   (`PORT` included: the proxy routes to the port Drover picks, so an app cannot choose its
//!   own) and every name starting with [`RESERVED_PREFIX`]. `PATH` and `LANG` may be set.
//! - A command holds no NUL byte and is at most [`MAX_COMMAND_LEN`] bytes (Linux refuses a
//!   single argument over 128 KiB).

/// The longest variable name, in bytes.
pub const MAX_KEY_LEN: usize = 256;
/// The longest variable value, in bytes: room for a certificate chain or a private key.
pub const MAX_VALUE_LEN: usize = 32 * 1024;
/// The most bytes (`KEY=VALUE` and a NUL each) all of an app's variables may take together.
///
/// Linux allows arguments and environment together a quarter of the stack limit (2 MiB with
/// the usual 8 MiB), so this leaves room for what Drover and the runtime add.
pub const MAX_ENV_LEN: usize = 256 * 1024;
/// The longest command line, in bytes.
pub const MAX_COMMAND_LEN: usize = 64 * 1024;
/// Names Drover sets in an app's environment (the shim, the Docker backend, the test runner),
/// each with what it holds.
pub const RESERVED: &[(&str, &str)] = &[
    ("PORT", "drover sets it to the port the proxy routes to"),
    ("HOME", "drover sets it to the instance's own home directory"),
    ("TMPDIR", "drover sets it to the instance's private temporary directory"),
    ("TINI_KILL_PROCESS_GROUP", "drover's container init reads it to stop the whole process group"),
];
/// The prefix of the names Drover sets about the instance (`DROVER_APP`, `DROVER_RELEASE`,
/// `DROVER_INSTANCE`, `DROVER_PROCESS`, `DROVER_REPORTS`, ...), now and in the future.
pub const RESERVED_PREFIX: &str = "DROVER_";

/// Why an environment variable was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvVarError {
    #[error("the variable name is empty")]
    EmptyKey,
    #[error("the variable name is {len} bytes long, more than {MAX_KEY_LEN}")]
    KeyTooLong { len: usize },
    #[error("{key:?} is not a variable name: expected letters, digits and `_`, not starting with a digit")]
    BadKey { key: String },
    #[error("{key} is reserved: {why}")]
    Reserved { key: String, why: &'static str },
    #[error("{key} is reserved: drover sets the variables starting with {RESERVED_PREFIX}")]
    ReservedPrefix { key: String },
    #[error("the value holds a NUL byte, which no process environment can carry")]
    NulInValue,
    #[error("the value is {len} bytes long, more than {MAX_VALUE_LEN}")]
    ValueTooLong { len: usize },
    #[error("the variables take {len} bytes together, more than {MAX_ENV_LEN}")]
    EnvTooLong { len: usize },
}

/// Checks one variable an app asks for: a portable name, not one Drover sets, and a value a
/// process environment can carry. See the module doc for the rules.
pub fn check_env_var(key: &str, value: &str) -> Result<(), EnvVarError> {
    check_env_key(key)?;
    if value.contains('\0') {
        return Err(EnvVarError::NulInValue);
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(EnvVarError::ValueTooLong { len: value.len() });
    }
    Ok(())
}

/// Checks a variable's name alone, for callers that have no value yet (`config unset`).
pub fn check_env_key(key: &str) -> Result<(), EnvVarError> {
    if key.is_empty() {
        return Err(EnvVarError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(EnvVarError::KeyTooLong { len: key.len() });
    }
    let mut bytes = key.bytes();
    let portable = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !portable {
        return Err(EnvVarError::BadKey { key: key.to_owned() });
    }
    if let Some((_, why)) = RESERVED.iter().find(|(name, _)| *name == key) {
        return Err(EnvVarError::Reserved { key: key.to_owned(), why });
    }
    if key.starts_with(RESERVED_PREFIX) {
        return Err(EnvVarError::ReservedPrefix { key: key.to_owned() });
    }
    Ok(())
}

/// Checks that a set of variables fits in a process environment together, counting each as
/// `KEY=VALUE` and its NUL, as `execve` does. Each variable is checked by [`check_env_var`].
pub fn check_env_len<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), EnvVarError> {
    let len: usize = vars.into_iter().map(|(key, value)| key.len() + value.len() + 2).sum();
    if len > MAX_ENV_LEN {
        return Err(EnvVarError::EnvTooLong { len });
    }
    Ok(())
}

/// Why a command line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("the command holds a NUL byte, which no command line can carry")]
    Nul,
    #[error("the command is {len} bytes long, more than {MAX_COMMAND_LEN}")]
    TooLong { len: usize },
}

/// Checks a command line run with `sh -c` (a process, a build step, a test command) for what
/// `execve` cannot carry. Emptiness is the caller's to judge.
pub fn check_command(command: &str) -> Result<(), CommandError> {
    if command.contains('\0') {
        return Err(CommandError::Nul);
    }
    if command.len() > MAX_COMMAND_LEN {
        return Err(CommandError::TooLong { len: command.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_9_f2_env_vars_are_checked_at_the_edge() {
        let long_key = "K".repeat(MAX_KEY_LEN + 1);
        let long_value = "v".repeat(MAX_VALUE_LEN + 1);
        let table: &[(&str, &str, &str)] = &[
            ("GREETING", "hello", "ok"),
            ("_X1", "", "ok"),
            ("PATH", "/app/bin:/usr/bin", "ok"),
            ("LANG", "C.UTF-8", "ok"),
            ("A", "multi\nline = fine", "ok"),
            ("", "x", "the variable name is empty"),
            (
                "A=B",
                "x",
                r#""A=B" is not a variable name: expected letters, digits and `_`, not starting with a digit"#,
            ),
            (
                "A\0B",
                "x",
                r#""A\0B" is not a variable name: expected letters, digits and `_`, not starting with a digit"#,
            ),
            ("1A", "x", r#""1A" is not a variable name: expected letters, digits and `_`, not starting with a digit"#),
            (
                "A-B",
                "x",
                r#""A-B" is not a variable name: expected letters, digits and `_`, not starting with a digit"#,
            ),
            ("É", "x", r#""É" is not a variable name: expected letters, digits and `_`, not starting with a digit"#),
            (&long_key, "x", "the variable name is 257 bytes long, more than 256"),
            ("PORT", "8080", "PORT is reserved: drover sets it to the port the proxy routes to"),
            ("HOME", "/root", "HOME is reserved: drover sets it to the instance's own home directory"),
            ("TMPDIR", "/tmp", "TMPDIR is reserved: drover sets it to the instance's private temporary directory"),
            ("port", "1", "ok"),
            ("DROVER_APP", "x", "DROVER_APP is reserved: drover sets the variables starting with DROVER_"),
            ("DROVER_", "x", "DROVER_ is reserved: drover sets the variables starting with DROVER_"),
            ("A", "x\0y", "the value holds a NUL byte, which no process environment can carry"),
            ("A", &long_value, "the value is 32769 bytes long, more than 32768"),
        ];
        for (key, value, expected) in table {
            let actual = match check_env_var(key, value) {
                Ok(()) => "ok".to_owned(),
                Err(err) => err.to_string(),
            };
            assert_eq!(actual, *expected, "{key:?}");
        }
        assert_eq!(check_env_var("A", &"v".repeat(MAX_VALUE_LEN)), Ok(()));
        assert_eq!(check_env_key(&"K".repeat(MAX_KEY_LEN)), Ok(()));
    }

    #[test]
    fn issue_9_f2_all_vars_together_fit_an_environment() {
        let value = "v".repeat(MAX_VALUE_LEN);
        let keys: Vec<String> = (0..8).map(|idx| format!("K{idx}")).collect();
        let vars = |n: usize| keys[..n].iter().map(|key| (key.as_str(), value.as_str())).collect::<Vec<_>>();
        assert_eq!(check_env_len(vars(7)), Ok(()));
        assert_eq!(check_env_len(vars(8)), Err(EnvVarError::EnvTooLong { len: 8 * (MAX_VALUE_LEN + 4) }));
    }

    #[test]
    fn issue_9_f2_commands_carry_no_nul() {
        assert_eq!(check_command("python3 app.py"), Ok(()));
        assert_eq!(check_command("a\0b"), Err(CommandError::Nul));
        let long = "x".repeat(MAX_COMMAND_LEN + 1);
        assert_eq!(check_command(&long), Err(CommandError::TooLong { len: MAX_COMMAND_LEN + 1 }));
    }
}
