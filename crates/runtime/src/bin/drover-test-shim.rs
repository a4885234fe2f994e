//! A stand-in for `drover shim --instance-dir DIR`, for this crate's integration tests, which
//! cannot depend on the `drover` binary: parses the same arguments and calls
//! [`runtime::shim::run`].

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let [subcommand, flag, dir] = args.as_slice() else {
        eprintln!("usage: drover-test-shim shim --instance-dir DIR");
        return ExitCode::from(2);
    };
    if subcommand != "shim" || flag != "--instance-dir" {
        eprintln!("usage: drover-test-shim shim --instance-dir DIR");
        return ExitCode::from(2);
    }
    match runtime::shim::run(Path::new(dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("drover-test-shim: {message}");
            ExitCode::FAILURE
        }
    }
}
