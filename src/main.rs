//! `linli`: the one binary. Serve the platform, seed the demo, import/export, verify the audit
//! chain, print the default configuration, run the benchmarks.

mod bench;
mod bench_crash;
mod bench_iot;
mod bench_mqtt;
mod bench_reports;
mod bench_soak;
mod config;
mod iot;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

use linli_core::auth::{Action, Grant};
use linli_store::audit::Actor;
use linli_store::registry::export::Masking;
use linli_store::{DbConfig, Store};

use crate::config::{Config, Overrides};

/// mimalloc instead of the system allocator: a request allocates hundreds of small strings and
/// buffers across the runtime's threads, and glibc's arenas (locks, consolidation) were ~15 % of
/// the CPU of a person search or a report read (perf, `docs/benchmarks.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "linli",
    version,
    about = "Linli (邻里): smart-community governance and service platform"
)]
struct Cli {
    /// Configuration file (default: ./linli.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, master key).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// postgres://… to use PostgreSQL instead of the embedded SQLite.
    #[arg(long, global = true)]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<String>,
        /// Seed the demo district (idempotent) and print the demo accounts.
        #[arg(long)]
        demo: bool,
        /// Embedded MQTT broker address (default 127.0.0.1:1884; "" = off).
        #[arg(long)]
        mqtt_listen: Option<String>,
        /// Use an external MQTT broker (mqtt://host:port) instead of the embedded one.
        #[arg(long)]
        mqtt_url: Option<String>,
    },
    /// Publish realistic traffic from the demo devices to an MQTT broker (the live view moves).
    Simulate {
        /// Broker address (host:port), e.g. the one `serve --demo` printed.
        #[arg(long, default_value = "127.0.0.1:1884")]
        mqtt: String,
        /// Stop after this many seconds (0 = run until stopped).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        /// Each device publishes every this many milliseconds.
        #[arg(long, default_value_t = 5000)]
        period_ms: u64,
    },
    /// Import from a spreadsheet.
    Import {
        #[command(subcommand)]
        what: ImportWhat,
    },
    /// Export to XLSX or CSV (CSV to standard output without --output).
    Export {
        what: ExportWhat,
        #[arg(long, value_enum, default_value = "csv")]
        format: Format,
        #[arg(long)]
        output: Option<PathBuf>,
        /// Export full ID and phone numbers, for this stated purpose (audited).
        #[arg(long)]
        reveal_purpose: Option<String>,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        what: AuditWhat,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        what: ConfigWhat,
    },
    /// Create the first administrator (and the city at the top of the place tree, if none).
    Admin {
        #[command(subcommand)]
        what: AdminWhat,
    },
    /// Take a consistent online backup (SQLite: database and uploads in one file) while the
    /// server runs. PostgreSQL: use pg_dump (see docs/operations.md).
    Backup {
        /// The backup file to write (must not exist yet).
        file: PathBuf,
    },
    /// Restore a backup into an empty data directory.
    Restore {
        /// A file written by `linli backup`.
        file: PathBuf,
        /// The backed-up instance's master.key (copied into the new data directory); not needed
        /// when master_key is configured or data_dir/master.key is already in place.
        #[arg(long)]
        key: Option<PathBuf>,
        /// After restoring, compare every table of the restored database with the backup.
        #[arg(long)]
        verify: bool,
    },
    /// Benchmarks (results as JSON lines, with ratios against a baseline measured in the same run).
    Bench {
        #[command(subcommand)]
        what: bench::BenchWhat,
    },
}

#[derive(Subcommand)]
enum ImportWhat {
    /// Households, one row per person (download the template from the API or use `linli export persons`).
    Households {
        file: PathBuf,
        /// Validate and print the preview only.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum ExportWhat {
    Households,
    Persons,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Xlsx,
    Csv,
}

#[derive(Subcommand)]
enum AuditWhat {
    /// Walk the hash chain; exit code 1 and the first broken entry if it is broken.
    Verify,
}

#[derive(Subcommand)]
enum ConfigWhat {
    /// Print a commented default linli.toml.
    Default,
}

#[derive(Subcommand)]
enum AdminWhat {
    /// Create a city administrator. The password is read from LINLI_ADMIN_PASSWORD.
    Create {
        #[arg(long)]
        login: String,
        /// Name of the city to create when the place tree is empty.
        #[arg(long, default_value = "武汉市")]
        city: String,
        #[arg(long, default_value = "420100000000")]
        city_code: String,
    },
}

fn init_logging(filter: &str) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
}

pub fn db_config(cfg: &Config) -> DbConfig {
    DbConfig {
        url: cfg
            .database_url
            .clone()
            .unwrap_or_else(|| linli_store::sqlite_url(&cfg.data_dir)),
        max_connections: cfg.max_connections,
        sqlite_synchronous: cfg.sqlite_synchronous.clone(),
    }
}

pub async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let zone = cfg
        .time_zone
        .parse::<linli_core::tz::Zone>()
        .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
    let store = Store::open(
        &db_config(cfg),
        &cfg.data_dir,
        cfg.master_key.as_deref(),
        linli_server::modules::platform(),
    )
    .await
    .with_context(|| format!("opening the database ({})", redact(&db_config(cfg).url)))?;
    store.clock.set_zone(zone);
    store
        .ensure_default_labels()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(store)
}

/// Hide a password in a database or broker URL before printing it.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***{}", &url[..s], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// The runtime gets one worker thread more than there are cores: SQLite reads on the fast path
/// run synchronously on the worker that serves the request (short B-tree work, no hand-off), so
/// the spare worker keeps accepting and answering while the others are inside SQLite, and there
/// are too few threads for the OS to preempt a request half-way (which is what made the slowest
/// 1 % slow). Measured on the 2-core machine (docs/benchmarks.md, 2026-11-25): person search
/// p99 9.7–10.8 ms with 3 workers against 11.9–12.2 ms with 8 at the same throughput; report
/// reads the same (8,305 against 8,420/s); 2 workers left CPU idle. `TOKIO_WORKER_THREADS` overrides.
fn main() -> anyhow::Result<()> {
    let threads = std::env::var("TOKIO_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            (cores + 1).clamp(3, 33)
        });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut overrides = Overrides {
        data_dir: cli.data_dir.clone(),
        database_url: cli.database_url.clone(),
        ..Default::default()
    };
    if let Command::Serve {
        listen,
        demo,
        mqtt_listen,
        mqtt_url,
    } = &cli.command
    {
        overrides.listen = listen.clone();
        overrides.demo = *demo;
        overrides.mqtt_listen = mqtt_listen.clone();
        overrides.mqtt_url = mqtt_url.clone();
    }
    if let Command::Config {
        what: ConfigWhat::Default,
    } = &cli.command
    {
        print!("{}", config::DEFAULT_TOML);
        return Ok(());
    }
    let cfg =
        config::load(cli.config.as_deref(), &overrides).context("reading the configuration")?;
    init_logging(&cfg.log);
    match cli.command {
        Command::Serve { .. } => serve(cfg).await,
        Command::Import {
            what: ImportWhat::Households { file, dry_run },
        } => import(&cfg, &file, dry_run).await,
        Command::Export {
            what,
            format,
            output,
            reveal_purpose,
        } => export(&cfg, what, format, output.as_deref(), reveal_purpose).await,
        Command::Audit {
            what: AuditWhat::Verify,
        } => audit_verify(&cfg).await,
        Command::Admin {
            what:
                AdminWhat::Create {
                    login,
                    city,
                    city_code,
                },
        } => admin_create(&cfg, &login, &city, &city_code).await,
        Command::Bench { what } => bench::run(&cfg, what).await,
        Command::Backup { file } => backup(&cfg, &file).await,
        Command::Restore { file, key, verify } => {
            restore(&cfg, &file, key.as_deref(), verify).await
        }
        Command::Simulate {
            mqtt,
            seconds,
            period_ms,
        } => iot::simulate(&cfg, &mqtt, seconds, period_ms).await,
        Command::Config { .. } => Ok(()),
    }
}

/// Say loudly at start when the working-day calendar lacks the current or the next year: their
/// deadlines fall back to clock days until an administrator adds the official arrangement.
async fn warn_if_calendar_incomplete(store: &linli_store::Store) {
    match store.calendar_missing_years().await {
        Ok(missing) if !missing.is_empty() => tracing::warn!(
            years = ?missing,
            "working-day calendar lacks {missing:?}: deadlines into those years are counted in clock days; add the State Council arrangement with POST /api/v1/work-calendar"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not check the working-day calendar"),
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let trusted_proxies = cfg
        .trusted_proxies
        .iter()
        .map(|p| p.parse::<linli_server::extract::IpBlock>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("configuration: trusted_proxies: {e}"))?;
    let store = open_store(&cfg).await?;
    if cfg.demo {
        let accounts = linli_server::modules::seed_demo(&store, &cfg.demo_password)
            .await
            .map_err(|e| anyhow::anyhow!("seeding the demo: {e}"))?;
        println!("Demo accounts (password: {}):", cfg.demo_password);
        for a in accounts {
            println!(
                "  {:<11} {:<10} {:<18} {}",
                a.login,
                a.role.as_str(),
                a.display_name,
                a.scope
            );
        }
    }
    warn_if_calendar_incomplete(&store).await;
    let smtp = if cfg.smtp.host.trim().is_empty() {
        None
    } else {
        cfg.smtp
            .validate()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        Some(cfg.smtp.clone())
    };
    // Network delivery (webhooks, e-mail) from the outbox: one worker, outside the store.
    linli_delivery::Worker::configured(
        &store,
        &linli_delivery::DeliveryConfig {
            smtp,
            public_url: cfg.public_url.clone(),
        },
    )
    .spawn();
    if store
        .start_pg_bus()
        .await
        .context("starting the PostgreSQL event bridge")?
    {
        tracing::info!("live events are shared with other instances through PostgreSQL");
    }
    let listener = tokio::net::TcpListener::bind(&cfg.listen)
        .await
        .with_context(|| format!("listening on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    // The modules' background jobs (report deadlines …).
    linli_server::modules::spawn_jobs(&store);
    let iot_runtime = iot::start(&cfg, &store).await?;
    let state = linli_server::AppState::new(
        store,
        linli_server::ServerConfig {
            secure_cookies: cfg.secure_cookies,
            data_dir: cfg.data_dir.clone(),
            trusted_proxies,
        },
    );
    let _ = state.iot.set(iot_runtime.clone());
    println!(
        "Linli is ready at http://{addr}/  (API docs: http://{addr}/api/docs) — started in {} ms",
        started.elapsed().as_millis()
    );
    linli_server::serve(listener, state).await?;
    // HTTP is done; the broker consumers hand over what they took, acknowledged.
    iot_runtime.shutdown().await;
    Ok(())
}

async fn import(cfg: &Config, file: &Path, dry_run: bool) -> anyhow::Result<()> {
    let store = open_store(cfg).await?;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let lang = std::env::var("LANG")
        .ok()
        .map(|l| {
            if l.starts_with("en") {
                linli_core::i18n::Lang::En
            } else {
                linli_core::i18n::Lang::ZhCn
            }
        })
        .unwrap_or_default();
    let grant = Grant::system(Action::RegistryImport);
    let sensitive = Grant::system(Action::SensitiveLabelRead);
    let report = store
        .import_households(
            &grant,
            Some(&sensitive),
            &Actor::system("cli-import"),
            &bytes,
            dry_run,
            lang,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message(lang)))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn export(
    cfg: &Config,
    what: ExportWhat,
    format: Format,
    output: Option<&Path>,
    purpose: Option<String>,
) -> anyhow::Result<()> {
    let store = open_store(cfg).await?;
    let grant = Grant::system(Action::RegistryExport);
    let sensitive = Grant::system(Action::SensitiveLabelRead);
    let reveal = Grant::system(Action::PersonReveal);
    let err =
        |e: linli_core::AppError| anyhow::anyhow!("{}", e.message(linli_core::i18n::Lang::ZhCn));
    let (name, table) = match what {
        ExportWhat::Households => (
            "households",
            store.export_households(&grant).await.map_err(err)?,
        ),
        ExportWhat::Persons => {
            let masking = match purpose.as_deref() {
                Some(p) => Masking::Revealed {
                    grant: &reveal,
                    purpose: p,
                },
                None => Masking::Masked,
            };
            (
                "persons",
                store
                    .export_persons(
                        &grant,
                        Some(&sensitive),
                        &Actor::system("cli-export"),
                        masking,
                    )
                    .await
                    .map_err(err)?,
            )
        }
    };
    let bytes = match format {
        Format::Csv => linli_core::sheet::write_csv(&table.headers, &table.rows),
        Format::Xlsx => linli_core::sheet::write_xlsx(name, &table.headers, &table.rows)
            .map_err(|e| anyhow::anyhow!(e))?,
    };
    match output {
        Some(path) => {
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            eprintln!("{} rows written to {}", table.rows.len(), path.display());
        }
        None => {
            if matches!(format, Format::Xlsx) {
                bail!("XLSX needs --output FILE");
            }
            use std::io::Write;
            std::io::stdout().write_all(&bytes)?;
        }
    }
    Ok(())
}

async fn audit_verify(cfg: &Config) -> anyhow::Result<()> {
    let store = open_store(cfg).await?;
    let report = store
        .audit_verify()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    match report.first_broken {
        None => {
            println!("audit chain intact: {} entries", report.entries);
            Ok(())
        }
        Some(seq) => {
            println!(
                "audit chain BROKEN at entry {seq}: {}",
                report.reason.unwrap_or_default()
            );
            std::process::exit(1);
        }
    }
}

async fn admin_create(
    cfg: &Config,
    login: &str,
    city: &str,
    city_code: &str,
) -> anyhow::Result<()> {
    let password = std::env::var("LINLI_ADMIN_PASSWORD")
        .context("set LINLI_ADMIN_PASSWORD to the new administrator's password")?;
    let store = open_store(cfg).await?;
    let user = store
        .bootstrap_admin(login, &password, city, city_code)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.message(linli_core::i18n::Lang::ZhCn)))?;
    println!("created city administrator {user}");
    Ok(())
}

async fn backup(cfg: &Config, file: &Path) -> anyhow::Result<()> {
    if cfg.database_url.is_some() {
        bail!("{}", linli_store::ops::backup::BackupError::Postgres);
    }
    let store = open_store(cfg).await?;
    let report = store.backup_to(file, &cfg.data_dir).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn restore(
    cfg: &Config,
    file: &Path,
    key: Option<&Path>,
    verify: bool,
) -> anyhow::Result<()> {
    if cfg.database_url.is_some() {
        bail!("{}", linli_store::ops::backup::BackupError::Postgres);
    }
    let key_hex = match key {
        Some(k) => {
            Some(std::fs::read_to_string(k).with_context(|| format!("reading {}", k.display()))?)
        }
        None => cfg.master_key.clone(),
    };
    let report = linli_store::ops::backup::restore(file, &cfg.data_dir, key_hex.as_deref()).await?;
    // Open once: runs any newer migrations and checks the key against the data.
    open_store(cfg).await?;
    if verify {
        let restored = linli_store::ops::backup::sqlite_path(&cfg.data_dir);
        let diffs = linli_store::ops::backup::compare_sqlite(file, &restored).await?;
        if !diffs.is_empty() {
            bail!(
                "restored database differs from the backup: {}",
                diffs.join("; ")
            );
        }
        eprintln!("verified: every table matches the backup");
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
