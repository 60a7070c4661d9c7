use std::process::ExitCode;

use swarmq_runner::{Config, Runner};
use swarmq_shared::{cli, secrets, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // First, while this is the only thread: secret files become settings, and the process is
    // made non-dumpable, so a worker running as the same user cannot read the runner's
    // environment or memory through /proc/<pid>/environ, /proc/<pid>/mem or ptrace.
    if let Err(e) = secrets::load_from_files() {
        eprintln!("swarmq-runner: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("swarmq-runner: cannot make the process non-dumpable: {e}");
        return ExitCode::from(2);
    }
    let config: Config = cli::parse_or_exit("swarmq-runner");
    cli::run_on_runtime("swarmq-runner", run(config))
}

async fn run(config: Config) -> ExitCode {
    telemetry::init(config.common.log_format);
    let runner = match Runner::build(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("swarmq-runner: {e:#}");
            return ExitCode::from(2);
        }
    };
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown::cancel_on_signal(shutdown.clone()));
    match runner.run_until_stopped(shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarmq-runner: {e:#}");
            ExitCode::FAILURE
        }
    }
}
