//! Settings parsing shared by the binaries: every setting is a flag and an env var (clap), and a
//! bad one stops the process at start with one clear line naming both, never a panic.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};

/// Parses the process arguments and environment into `T`, or prints one line and exits with
/// status 2 (`--help`/`--version` print as usual and exit 0).
pub fn parse_or_exit<T: CommandFactory + FromArgMatches>(binary: &str) -> T {
    match try_parse::<T, _>(std::env::args_os()) {
        Ok(config) => config,
        Err(ParseExit::Print(e)) => e.exit(),
        Err(ParseExit::Invalid(line)) => {
            eprintln!("{binary}: {line}");
            std::process::exit(2);
        }
    }
}

/// Runs a daemon's async `main` on a new multi-threaded runtime: the binaries start it by hand
/// (not `#[tokio::main]`) so that their first steps run while the process has one thread.
pub fn run_on_runtime<F>(binary: &str, main: F) -> std::process::ExitCode
where
    F: std::future::Future<Output = std::process::ExitCode>,
{
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(main),
        Err(e) => {
            eprintln!("{binary}: cannot start the async runtime: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub enum ParseExit {
    /// `--help` / `--version`: clap prints them.
    Print(clap::Error),
    /// A bad setting, as one line.
    Invalid(String),
}

pub fn try_parse<T, I>(args: I) -> Result<T, ParseExit>
where
    T: CommandFactory + FromArgMatches,
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString> + Clone,
{
    let mut cmd = T::command();
    let result = cmd
        .try_get_matches_from_mut(args)
        .and_then(|m| T::from_arg_matches(&m));
    result.map_err(|e| match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ParseExit::Print(e),
        _ => ParseExit::Invalid(one_line(&cmd, &e)),
    })
}

fn one_line(cmd: &clap::Command, e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid settings")
        .trim_start_matches("error: ")
        .to_owned();
    // Name the env var too: operators mostly set these through the environment.
    let long = arg_long(e);
    let env = cmd
        .get_arguments()
        .find(|a| !long.is_empty() && a.get_long() == Some(long.as_str()))
        .and_then(|a| a.get_env())
        .map(|env| env.to_string_lossy().into_owned());
    match env {
        Some(env) => format!("invalid setting: {first} (flag --{long}, env {env})"),
        None => format!("invalid setting: {first}"),
    }
}

/// The long flag name clap's error is about (`""` when it names none).
fn arg_long(e: &clap::Error) -> String {
    match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => arg
            .split_whitespace()
            .next()
            .unwrap_or("")
            .trim_start_matches("--")
            .to_owned(),
        _ => String::new(),
    }
}
