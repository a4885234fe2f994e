//! Procfile: one `name: command` line per process type, as Heroku and Foreman read it.
//!
//! A Procfile only declares processes; everything else in the [`AppSpec`] takes its default,
//! and the app's name comes from the caller. A command must be something `execve` can carry
//! (`model::env::check_command`: no NUL byte, not too long).

use crate::error::{field_segment, ConfigError, Position};
use model::{AppName, AppSpec, ProcessType};
use std::collections::BTreeMap;

/// Parses the text of a Procfile; `file` names it in errors.
///
/// Blank lines and lines starting with `#` are skipped. Columns count characters.
pub(crate) fn parse(file: &str, text: &str, name: AppName) -> Result<AppSpec, ConfigError> {
    let at = |line: u64, column: usize| Position {
        file: file.to_owned(),
        line,
        column: u64::try_from(column).expect("a line is shorter than u64::MAX characters"),
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut processes = BTreeMap::new();
    let mut declared_on: BTreeMap<ProcessType, u64> = BTreeMap::new();
    for (line_no, line) in (1u64..).zip(text.lines()) {
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let name_column = line.chars().count() - content.chars().count() + 1;
        let malformed =
            || ConfigError::Malformed { at: at(line_no, name_column), message: "expected `name: command`".to_owned() };
        let (raw_name, rest) = content.split_once(':').ok_or_else(malformed)?;
        let process_name = raw_name.trim_end();
        if process_name.is_empty() {
            return Err(malformed());
        }
        let invalid = |column: usize, message: String| ConfigError::Invalid {
            at: at(line_no, column),
            field: field_segment(process_name),
            message,
        };
        let process = ProcessType::parse(process_name).map_err(|err| invalid(name_column, err.to_string()))?;
        let command = rest.trim();
        if command.is_empty() {
            let after_colon = name_column + raw_name.chars().count() + 1;
            return Err(invalid(after_colon, "expected a command after `:`".to_owned()));
        }
        if let Err(e) = model::env::check_command(command) {
            let leading_spaces = rest.chars().count() - rest.trim_start().chars().count();
            let command_column = name_column + raw_name.chars().count() + 1 + leading_spaces;
            return Err(invalid(command_column, e.to_string()));
        }
        if let Some(first) = declared_on.get(&process) {
            return Err(invalid(name_column, format!("duplicate process type, first declared on line {first}")));
        }
        declared_on.insert(process.clone(), line_no);
        processes.insert(process, command.to_owned());
    }
    if processes.is_empty() {
        return Err(ConfigError::Malformed {
            at: at(1, 1),
            message: "no processes declared, expected lines like `web: ./server`".to_owned(),
        });
    }
    Ok(AppSpec::new(name, processes))
}
