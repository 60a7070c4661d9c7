use std::process::ExitCode;

use swarmq_coordinator::{Application, Config};
use swarmq_shared::{cli, secrets, shutdown, telemetry};
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    // First, while this is the only thread: secret files (REDIS_URL_FILE, …) become settings.
    if let Err(e) = secrets::load_from_files() {
        eprintln!("swarmq-coordinator: {e}");
        return ExitCode::from(2);
    }
    let config: Config = cli::parse_or_exit("swarmq-coordinator");
    cli::run_on_runtime("swarmq-coordinator", run(config))
}

async fn run(config: Config) -> ExitCode {
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
