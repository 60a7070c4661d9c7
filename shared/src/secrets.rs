//! Secrets from files instead of the environment: for each secret setting `NAME` (the Redis URL,
//! which may hold a password, and the tokens and API keys), `NAME_FILE=/path` or a systemd
//! credential named `NAME` (`LoadCredential=NAME:/path`, found in `$CREDENTIALS_DIRECTORY`) is
//! read at start. The value then lives only in the process's memory: not in the environment
//! block that `/proc/<pid>/environ`, `docker inspect` or `systemctl show` reveal.
//!
//! A file the daemon's user can read, its workers (same user) can read too: a secret is only
//! out of a worker's reach when workers run as another user (see docs/operations.md, Security).

use std::path::{Path, PathBuf};

/// The settings that may come from a file.
pub const SECRETS: &[&str] = &[
    "REDIS_URL",
    "SWARMQ_API_TOKEN",
    "SWARMQ_METRICS_TOKEN",
    "SWARMQ_SHARE_KEY",
    "SWARMQ_SHARE_KEY_PREVIOUS",
    "ANTHROPIC_API_KEY",
    "E2B_API_KEY",
    "DEDALUS_API_KEY",
];

/// Reads every `NAME_FILE` / systemd credential into `NAME`. Call it first thing in `main`, while
/// the process has a single thread (it sets environment variables).
pub fn load_from_files() -> Result<(), String> {
    for name in SECRETS {
        let file_var = format!("{name}_FILE");
        let Some(path) = source(name, &file_var)? else {
            continue;
        };
        let value = read(&path).map_err(|e| format!("{file_var}: {e}"))?;
        // SAFETY: called before any other thread exists (see the doc comment).
        unsafe {
            std::env::set_var(name, value);
            std::env::remove_var(&file_var);
        }
    }
    Ok(())
}

fn source(name: &str, file_var: &str) -> Result<Option<PathBuf>, String> {
    if let Some(path) = std::env::var_os(file_var).filter(|p| !p.is_empty()) {
        if std::env::var_os(name).is_some() {
            return Err(format!("{name} and {file_var} are both set: use one"));
        }
        return Ok(Some(PathBuf::from(path)));
    }
    if std::env::var_os(name).is_some() {
        return Ok(None);
    }
    Ok(std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|dir| Path::new(&dir).join(name))
        .filter(|p| p.is_file()))
}

/// The file's text without its trailing newline.
fn read(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_value_loses_its_trailing_newline_and_an_empty_file_is_an_error() {
        let dir = std::env::temp_dir().join(format!("swarmq-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "s3cret\n").unwrap();
        assert_eq!(read(&file).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        assert!(read(&file).unwrap_err().contains("is empty"));
        assert!(
            read(&dir.join("missing"))
                .unwrap_err()
                .contains("cannot read")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
