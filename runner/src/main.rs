use std::process::ExitCode;

use swarmq_runner::{Config, Runner};
use swarmq_shared::{cli, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = cli::parse_or_exit("swarmq-runner");
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
