//! Command line: `serve` (the default), `migrate`, `check-config`. The only place with exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use x402_facilitator::app::{Application, shutdown_signal, validate_networks};
use x402_facilitator::config::Settings;
use x402_facilitator::{ledger, telemetry};

#[derive(Parser)]
#[command(
    name = "x402-facilitator",
    version,
    about = "x402 facilitator: /verify, /settle, /supported"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default when no command is given).
    Serve {
        #[arg(long, env = "X402_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides server.port; 0 picks a free port.
        #[arg(long)]
        port: Option<u16>,
    },
    /// Apply ledger migrations and exit.
    Migrate {
        #[arg(long, env = "X402_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate the configuration and print it with secrets redacted.
    CheckConfig {
        #[arg(long, env = "X402_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve {
        config: std::env::var_os("X402_CONFIG").map(PathBuf::from),
        port: None,
    }) {
        Command::Serve { config, port } => {
            let mut settings = Settings::load(config.as_deref())?;
            if let Some(port) = port {
                settings.server.port = port;
            }
            telemetry::init(settings.server.log_format);
            let app = Application::build(&settings).await?;
            app.run_until(shutdown_signal()).await?;
        }
        Command::Migrate { config } => {
            let settings = Settings::load(config.as_deref())?;
            telemetry::init(settings.server.log_format);
            ledger::connect(
                settings.database.url.expose(),
                1,
                Duration::from_millis(settings.database.acquire_timeout_ms),
            )
            .await?;
            println!("ledger migrations applied");
        }
        Command::CheckConfig { config } => {
            let settings = Settings::load(config.as_deref())?;
            validate_networks(&settings).map_err(anyhow::Error::msg)?;
            println!("{}", settings.redacted_json());
        }
    }
    Ok(())
}
