//! `portico`: the command line. Parses arguments, loads configuration and wires the
//! gateway, the BFF modules and the demo together; all behaviour lives in the crates.

mod demo;

/// mimalloc: markedly less allocator time than glibc's under a proxy's churn of small
/// buffers (measured with bench/run.sh).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gateway::config::{self, Config};

/// Portico: an edge API gateway and Backend-for-Frontend server.
#[derive(Parser)]
#[command(name = "portico", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load DIR/gateway.yaml and DIR/routes/*.yaml, validate all of it, and serve.
    Serve {
        /// The configuration directory.
        #[arg(long)]
        config: PathBuf,
        /// Override `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override `admin.listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Validate a configuration without serving.
    Validate {
        /// The configuration directory.
        #[arg(long)]
        config: PathBuf,
    },
    /// Start the built-in demo backends and serve the repository's own configuration.
    Demo {
        /// Override the demo's `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Override the demo's `admin.listen`.
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
    },
    /// Print the route table.
    Routes {
        /// The configuration directory.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the JSON Schema of `gateway.yaml` and `routes/<team>.yaml`.
    Schema,
    /// Write the OpenAPI 3.1 documents: one per team (`TEAM.json`, from its route file)
    /// and the admin API's (`admin.yaml`).
    Openapi {
        /// The configuration directory.
        #[arg(long)]
        config: PathBuf,
        /// Where to write them.
        #[arg(long, default_value = "openapi")]
        out: PathBuf,
    },
    /// GET an `http://` URL and exit 0 on a 2xx answer, 1 otherwise: a health check for
    /// images without a shell or curl (the Dockerfile's HEALTHCHECK).
    Probe {
        /// The URL, like http://127.0.0.1:9901/health.
        url: String,
        /// Bearer token (the admin token), also read from PORTICO_ADMIN_TOKEN.
        #[arg(long, env = "PORTICO_ADMIN_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

const INVALID_CONFIG: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            admin_listen,
        } => match (gateway::server::watch::stamp(&config), load(&config)) {
            (baseline, Ok(cfg)) => {
                let dir = config.clone();
                let reloader: BeforeServe = Box::new(move |bound| {
                    // Reloads: `POST /reload`, SIGHUP, and any change of the files.
                    let gateway = bound.gateway();
                    let from = dir.clone();
                    gateway.set_reloader(Box::new(move || {
                        config::load_dir(&from, &bffs::extensions())
                    }));
                    tokio::spawn(gateway::server::watch::watch(
                        gateway.clone(),
                        dir,
                        baseline,
                    ));
                    tokio::spawn(gateway::server::watch::on_hangup(gateway));
                });
                serve(cfg, listen, admin_listen, Some(reloader))
            }
            (_, Err(code)) => code,
        },
        Command::Validate { config } => match load(&config) {
            Ok(cfg) => {
                println!("{}: valid: {}", config.display(), summary(&cfg));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Routes { config } => match load(&config) {
            Ok(cfg) => {
                print!("{}", route_table(&cfg));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Schema => {
            let mut schema = config::json_schema();
            // The typed blocks the BFF crate reads (`graphql`, the modules' options), where
            // the file has them.
            for (key, block_schema) in bffs::block_schemas() {
                if let Some(block) = schema["routes/<team>.yaml"]["properties"].get_mut(key) {
                    *block = block_schema;
                }
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Command::Demo {
            listen,
            admin_listen,
        } => demo::run(listen, admin_listen),
        Command::Openapi { config, out } => match load(&config) {
            Ok(cfg) => match write_openapi(&cfg, &out) {
                Ok(n) => {
                    println!("{}: wrote {n} documents", out.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("portico openapi: {}: {e}", out.display());
                    ExitCode::FAILURE
                }
            },
            Err(code) => code,
        },
        Command::Probe { url, token } => match probe(&url, token.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(why) => {
                eprintln!("portico probe: {why}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Loads a config directory, printing every error on failure.
/// Warnings (valid, but probably not meant) go to stderr too.
fn load(dir: &Path) -> Result<Config, ExitCode> {
    let cfg = config::load_dir(dir, &bffs::extensions()).map_err(|e| {
        eprint!("{e}");
        ExitCode::from(INVALID_CONFIG)
    })?;
    for w in &cfg.warnings {
        eprintln!("{w}");
    }
    Ok(cfg)
}

/// `TEAM.json` per team and `admin.yaml` into `out`; returns how many.
fn write_openapi(cfg: &Config, out: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(out)?;
    for (i, team) in cfg.teams.iter().enumerate() {
        let doc = gateway::openapi::team_document(cfg, config::TeamId(i));
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        std::fs::write(out.join(format!("{}.json", team.name)), text)?;
    }
    std::fs::write(out.join("admin.yaml"), gateway::openapi::ADMIN)?;
    Ok(cfg.teams.len() + 1)
}

/// One plain HTTP/1.1 GET, answered 2xx within 2 s.
fn probe(url: &str, token: Option<&str>) -> Result<(), String> {
    use std::io::{Read, Write};
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs are probed")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    if token.is_some_and(|t| t.bytes().any(|b| b.is_ascii_control())) {
        return Err("the token has control characters".into());
    }
    let target = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let wait = std::time::Duration::from_secs(2);
    // Every address the name has (`localhost` may be ::1 and 127.0.0.1).
    let addrs = std::net::ToSocketAddrs::to_socket_addrs(target.as_str())
        .map_err(|e| format!("{authority}: {e}"))?;
    let mut last = format!("{authority}: no address");
    let mut stream = None;
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, wait) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream
        .set_read_timeout(Some(wait))
        .map_err(|e| e.to_string())?;
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let request =
        format!("GET {path} HTTP/1.1\r\nhost: {authority}\r\n{auth}connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).map_err(|e| e.to_string())?;
    let status = std::str::from_utf8(&head[9..12]).unwrap_or("???");
    if head.starts_with(b"HTTP/1.") && status.starts_with('2') {
        Ok(())
    } else {
        Err(format!("{url} answered {status}"))
    }
}

fn summary(cfg: &Config) -> String {
    let teams: Vec<&str> = cfg.teams.iter().map(|t| t.name.as_str()).collect();
    format!(
        "{} route file{} ({}), {} route{}, {} backend{}",
        teams.len(),
        if teams.len() == 1 { "" } else { "s" },
        teams.join(", "),
        cfg.routes.len(),
        if cfg.routes.len() == 1 { "" } else { "s" },
        cfg.backends.len(),
        if cfg.backends.len() == 1 { "" } else { "s" },
    )
}

fn route_table(cfg: &Config) -> String {
    let mut rows = vec![[
        "METHODS".to_string(),
        "PATH".into(),
        "ID".into(),
        "TEAM".into(),
        "AUTH".into(),
        "HANDLER".into(),
        "BACKENDS".into(),
    ]];
    let routes = gateway::admin::routes_json(cfg);
    for r in routes["routes"].as_array().into_iter().flatten() {
        let list = |v: &serde_json::Value| {
            let items: Vec<&str> = v
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str())
                .collect();
            if items.is_empty() {
                "-".to_string()
            } else {
                items.join(",")
            }
        };
        rows.push([
            list(&r["methods"]),
            r["path"].as_str().unwrap_or_default().to_string(),
            r["id"].as_str().unwrap_or_default().to_string(),
            r["team"].as_str().unwrap_or_default().to_string(),
            r["auth"].as_str().unwrap_or_default().to_string(),
            r["handler"].as_str().unwrap_or_default().to_string(),
            list(&r["backends"]),
        ]);
    }
    let widths: Vec<usize> = (0..7)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, cell)| format!("{cell:<w$}", w = widths[i]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Runs once the listeners are bound, inside the runtime.
type BeforeServe = Box<dyn FnOnce(&gateway::server::Bound) + Send>;

/// Builds the runtime (`server.workers` threads), binds and serves until SIGTERM/SIGINT.
/// `before_serve` runs inside the runtime once the listeners are bound (the demo prints
/// its curl commands there).
fn serve(
    cfg: Config,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
    before_serve: Option<BeforeServe>,
) -> ExitCode {
    gateway::telemetry::init(cfg.telemetry.log_format);
    // One worker: a single-threaded runtime, like one nginx worker, with no cross-thread
    // scheduling at all. More: a work-stealing pool of that many threads.
    let mut rt = match cfg.server.workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let summary = summary(&cfg);
        let bound = match gateway::server::bind(cfg, listen, admin_listen).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("portico: {e}");
                return ExitCode::FAILURE;
            }
        };
        let scheme = if bound.is_tls() { "https" } else { "http" };
        eprintln!("portico: listening on {scheme}://{}", bound.addr);
        if let Some(a) = bound.admin_addr {
            eprintln!("portico: admin on http://{a}");
        }
        tracing::info!(listen = %bound.addr, admin = ?bound.admin_addr, config = %summary, "serving");
        if let Some(f) = before_serve {
            f(&bound);
        }
        bound.run(gateway::server::shutdown_signal()).await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    })
}
