use std::process::ExitCode;

use swarmq_coordinator::{Application, Config};
use swarmq_shared::{cli, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    let config: Config = cli::parse_or_exit("swarmq-coordinator");
    telemetry::init(config.common.log_format);
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown::cancel_on_signal(shutdown.clone()));
    let result = match Application::build(config).await {
        Ok(app) => app.run_until_stopped(shutdown).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("swarmq-coordinator: {e:#}");
            ExitCode::FAILURE
        }
    }
}
