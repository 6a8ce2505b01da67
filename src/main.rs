//! Command line: `serve` (the default), `migrate`, `check-config`, `keys`. The only place with
//! exit codes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use x402_facilitator::app::{Application, shutdown_signal, validate_networks};
use x402_facilitator::config::Settings;
use x402_facilitator::{access, ledger, telemetry};

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
    /// Manage API keys in the configured ledger database.
    Keys {
        #[arg(long, env = "X402_CONFIG")]
        config: Option<PathBuf>,
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key; its token is printed once and never stored.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: verify, settle, supported, settlements, discovery, admin.
        #[arg(long, default_value = "verify,settle,supported")]
        scopes: String,
        /// Comma-separated payees the key may settle for (default: any).
        #[arg(long)]
        pay_to: Option<String>,
        /// The key's own rate limit, requests per second per endpoint.
        #[arg(long)]
        rate: Option<u32>,
    },
    /// List keys (ids, names, token prefixes, scopes, payees, state).
    List,
    /// Revoke a key: every replica refuses it within auth.cache_ms.
    Revoke { id: String },
    /// Replace a key by a new one with the same rights; the old one is revoked.
    Rotate { id: String },
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
        Command::Keys { config, action } => {
            let settings = Settings::load(config.as_deref())?;
            let ledger = ledger::connect(
                settings.database.url.expose(),
                1,
                Duration::from_millis(settings.database.acquire_timeout_ms),
            )
            .await?;
            keys(&ledger, action).await?;
        }
        Command::CheckConfig { config } => {
            let settings = Settings::load(config.as_deref())?;
            validate_networks(&settings).map_err(anyhow::Error::msg)?;
            println!("{}", settings.redacted_json());
        }
    }
    Ok(())
}

async fn keys(ledger: &ledger::SharedLedger, action: KeysAction) -> anyhow::Result<()> {
    match action {
        KeysAction::Create {
            name,
            scopes,
            pay_to,
            rate,
        } => {
            let scopes = scopes
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    access::Scope::parse(s).ok_or_else(|| anyhow::anyhow!("unknown scope `{s}`"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let pay_to = pay_to.map(|p| {
                p.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            });
            let spec = access::KeySpec {
                name,
                scopes,
                pay_to,
                rate_per_second: rate,
            };
            let issued = access::create_key(ledger, &spec, None).await?;
            eprintln!("created {}; the token below is shown once:", issued.id);
            println!("{}", issued.token);
        }
        KeysAction::List => {
            println!("id\tname\tprefix\tscopes\tpayees\tstate");
            for key in ledger.list_keys().await? {
                println!("{}", access::describe(&key));
            }
        }
        KeysAction::Revoke { id } => {
            if !ledger.revoke_key(&id).await?.applied() {
                anyhow::bail!("no live key {id}");
            }
            println!("revoked {id}");
        }
        KeysAction::Rotate { id } => {
            let issued = access::rotate_key(ledger, &id).await?;
            eprintln!(
                "{id} revoked; created {}; the token below is shown once:",
                issued.id
            );
            println!("{}", issued.token);
        }
    }
    Ok(())
}
