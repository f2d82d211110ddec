//! The command line: clap definitions and what each command does. Commands translate flags into
//! calls of the domain layer ([`crate::ops`], as [`Actor::cli`]) and results into lines on the
//! console; this is the edge where library errors become `anyhow` errors with a message for the
//! person at the console.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};

use crate::app::App;
use crate::config::{Config, Overrides};
use crate::ops::Actor;
use crate::store::{Page, Store};
use crate::{ops, server};

/// trex — a self-hosted data platform in one binary, administered over MCP.
#[derive(Debug, Parser)]
#[command(name = "trex", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (default 127.0.0.1:8001, data in ./trex-data). On an empty data dir it
    /// creates an admin and prints its API key with a ready-to-paste client config.
    Serve {
        #[command(flatten)]
        common: Common,
        /// Address to listen on (port 0 picks a free one; the bound address is logged).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Create the store and an admin user; prints the admin's new API key alone on the last line.
    Init {
        #[command(flatten)]
        common: Common,
        /// Email of the admin user.
        #[arg(long)]
        admin_email: String,
        /// Password of the admin user (at least 8 characters); omit for key-only access. Prefer the
        /// environment variable, which stays out of shell history and `ps`.
        #[arg(long, env = "TREX_ADMIN_PASSWORD", hide_env_values = true)]
        admin_password: Option<String>,
        /// Display name of the admin user.
        #[arg(long, default_value = "Administrator")]
        admin_name: String,
    },
    /// Manage API keys.
    #[command(subcommand)]
    ApiKey(ApiKeyCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// The master key that seals secrets at rest.
    #[command(subcommand)]
    MasterKey(MasterKeyCommand),
    /// Versioned migrations (V<n>__<name>.sql) of core, trexdb and registered databases.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Migration definitions (the migrations MCP server's): define, test, run, show.
    #[command(subcommand)]
    Migration(MigrationCommand),
    /// Plugins: install (a directory or an `npm pack` .tgz), list, show, uninstall. A running
    /// server on the same data dir picks the change up within one heartbeat.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Take an online backup of the data dir (a running server keeps serving); prints the
    /// archive's path.
    Backup {
        #[command(flatten)]
        common: Common,
        /// Where to write the archive (default: a new file in backup.dir).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Put master.key into the archive too (it opens every sealed secret: keep such an
        /// archive as safe as the key).
        #[arg(long)]
        include_master_key: bool,
    },
    /// The control store itself.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Restore a backup archive into a data dir (refused while a server holds it; every
    /// checksum and database checked before anything is moved in).
    Restore {
        /// The archive (from `trex backup` or backup-create).
        file: PathBuf,
        /// The data dir to restore into.
        #[arg(long)]
        data_dir: PathBuf,
        /// Replace the files of a data dir that already holds a store.
        #[arg(long)]
        force: bool,
    },
}

/// `trex plugin …`
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Install a plugin from a directory or a .tgz / .tar.gz (see the plugin development guide).
    Install {
        #[command(flatten)]
        common: Common,
        /// The plugin directory or archive.
        package: PathBuf,
    },
    /// List installed plugins.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Show one plugin (JSON): config, files, migration status.
    Show {
        #[command(flatten)]
        common: Common,
        /// The plugin's name.
        name: String,
    },
    /// Uninstall a plugin: its tools, UI, functions, files and its own plugin.db.
    Uninstall {
        #[command(flatten)]
        common: Common,
        /// The plugin's name.
        name: String,
    },
}

/// `trex migration …`
#[derive(Debug, Subcommand)]
pub enum MigrationCommand {
    /// List definitions (latest versions), most recently updated first.
    List {
        #[command(flatten)]
        common: Common,
        /// Only definitions with this status (pending, ready, running, completed, failed,
        /// rolling_back, rolled_back).
        #[arg(long)]
        status: Option<String>,
    },
    /// Define a migration from a JSON file with define_migration's fields (id, description,
    /// strategy, data, failure_handling, apis, interlays).
    Define {
        #[command(flatten)]
        common: Common,
        /// The JSON file.
        file: PathBuf,
        /// Make a new version when the id exists with other content.
        #[arg(long)]
        replace: bool,
    },
    /// Test the latest version on scratch copies and print the report; exit status 1 if it fails.
    Test {
        #[command(flatten)]
        common: Common,
        /// The migration id.
        id: String,
        /// Queue the run for a running server and print its id instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Migrate for real (needs a passed test of this version); exit status 1 if it fails.
    Run {
        #[command(flatten)]
        common: Common,
        /// The migration id.
        id: String,
        /// Queue the run for a running server and print its id instead of waiting.
        #[arg(long)]
        no_wait: bool,
    },
    /// Show a definition (with its versions and runs) or a run (by its `run_…` id).
    Show {
        #[command(flatten)]
        common: Common,
        /// A migration id or a run id.
        id: String,
    },
}

/// `trex migrate …`
#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// The status of every file of every target (or of --target); writes nothing.
    Status {
        #[command(flatten)]
        common: Common,
        /// One target: core, trexdb or a database id.
        #[arg(long)]
        target: Option<String>,
    },
    /// Apply pending files in version order, stopping at the first failure (exit status 1).
    Run {
        #[command(flatten)]
        common: Common,
        /// One target: core, trexdb or a database id.
        #[arg(long)]
        target: Option<String>,
        /// Apply files up to this version only.
        #[arg(long)]
        to_version: Option<i64>,
        /// List what would run; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// `trex store …`
#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy this data dir's SQLite store (trex.db) into a new PostgreSQL store, table by table,
    /// checked by counts and SHA-256 checksums; sealed secrets stay sealed (give every node the
    /// same master.key). Stop the server first. Then set store.url (TREX_STORE_URL) to use it.
    Migrate {
        #[command(flatten)]
        common: Common,
        /// The PostgreSQL database: postgres://user:password@host:5432/database[?sslmode=require].
        #[arg(long)]
        to: String,
        /// The schema to create the store in (must not hold a store with users yet).
        #[arg(long, default_value = "trex")]
        schema: String,
    },
}

/// `trex master-key …`
#[derive(Debug, Subcommand)]
pub enum MasterKeyCommand {
    /// Make a new master key when the old one is lost: drops every secret sealed with the old
    /// key (SSO and app client secrets, which are disabled; database credentials, which are
    /// deleted), after confirmation. Stop the server first.
    Reset {
        #[command(flatten)]
        common: Common,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

/// `trex user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints its id.
    Create {
        #[command(flatten)]
        common: Common,
        /// Email address (unique).
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Password (at least 8 characters); omit for an SSO-only user. Also from TREX_PASSWORD.
        #[arg(long, env = "TREX_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// admin or user.
        #[arg(long, default_value = "user")]
        role: String,
    },
    /// List users.
    List {
        #[command(flatten)]
        common: Common,
        /// Include soft-deleted users.
        #[arg(long)]
        include_deleted: bool,
    },
    /// Set a user's password (ends their web sessions).
    SetPassword {
        #[command(flatten)]
        common: Common,
        /// The user's email.
        #[arg(long)]
        email: String,
        /// The new password (at least 8 characters). Also from TREX_PASSWORD.
        #[arg(long, env = "TREX_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Ban a user (ends their web sessions; a running server refuses their API keys at once), or
    /// lift a ban with --unban.
    Ban {
        #[command(flatten)]
        common: Common,
        /// The user's email.
        #[arg(long)]
        email: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
        /// When the ban ends: a date (2027-01-31) or an RFC 3339 time.
        #[arg(long)]
        until: Option<String>,
        /// Lift the ban instead.
        #[arg(long, conflicts_with_all = ["reason", "until"])]
        unban: bool,
    },
}

/// `trex api-key …`
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key for an admin user; prints the key alone on the last line of stdout.
    Create {
        #[command(flatten)]
        common: Common,
        /// Email of the admin user who will hold the key.
        #[arg(long)]
        user: String,
        /// A name to recognise the key by.
        #[arg(long)]
        name: String,
        /// Expiry: a date (2027-01-31) or an RFC 3339 time (2027-01-01T00:00:00Z).
        #[arg(long)]
        expires: Option<String>,
        /// Only read-only tools (scope `readOnly`).
        #[arg(long)]
        read_only: bool,
        /// Allow-list of tool-name globs (scope `tools`), e.g. --tools 'user-*' --tools audit-list.
        #[arg(long = "tools")]
        tools: Vec<String>,
        /// Allow-list of database ids for the endpoint servers (scope `endpoints`).
        #[arg(long = "endpoint")]
        endpoints: Vec<String>,
        /// Allow Dangerous SQL (scope `dangerousSql`).
        #[arg(long)]
        dangerous_sql: bool,
    },
    /// List keys (never the keys themselves).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Revoke a key by id, or by the prefix `trex api-key list` shows when it is unique.
    Revoke {
        #[command(flatten)]
        common: Common,
        /// The key's id or prefix (from `trex api-key list`).
        id: String,
    },
}

/// Options every command takes.
#[derive(Debug, Args, Clone)]
pub struct Common {
    /// Configuration file (TOML); see trex.toml.example.
    #[arg(long, env = "TREX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (holds trex.db); default ./trex-data.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl Common {
    fn load(&self, listen: Option<SocketAddr>) -> Result<Config> {
        let o = Overrides {
            data_dir: self.data_dir.clone(),
            listen,
        };
        Ok(Config::load(self.config.as_deref(), std::env::vars(), &o)?)
    }
}

/// Entry point used by `main`.
pub fn main() -> Result<()> {
    // every file trex creates (trex.db and its -wal/-shm, master.key, backups) is its owner's only
    #[cfg(unix)]
    {
        unsafe extern "C" {
            fn umask(mask: u32) -> u32;
        }
        unsafe {
            umask(0o077);
        }
    }
    // before any SQLite connection: the per-query memory budget needs its allocator first
    crate::engine::memory::install();
    crate::engine::memory::release_large_blocks();
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { common, listen } => {
            let config = common.load(listen)?;
            init_tracing(&config.log.level);
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(serve(config))
        }
        Command::Init {
            common,
            admin_email,
            admin_password,
            admin_name,
        } => init(
            &common.load(None)?,
            &admin_email,
            admin_password.as_deref(),
            &admin_name,
        ),
        Command::ApiKey(cmd) => api_key(cmd),
        Command::User(cmd) => user(cmd),
        Command::MasterKey(MasterKeyCommand::Reset { common, yes }) => {
            master_key_reset(&common, yes)
        }
        Command::Migrate(cmd) => migrate(cmd),
        Command::Store(StoreCommand::Migrate { common, to, schema }) => {
            store_migrate(&common, &to, &schema)
        }
        Command::Migration(cmd) => migration(cmd),
        Command::Plugin(cmd) => plugin(cmd),
        Command::Backup {
            common,
            out,
            include_master_key,
        } => {
            let con = Console::open(&common)?;
            let b = con.run(ops::backups::create(
                &con.app,
                &Actor::cli(),
                include_master_key,
                out,
                |_, _, _| true,
            ))?;
            eprintln!(
                "Backed up {} file(s), {} bytes{}",
                b.manifest.files.len(),
                b.bytes,
                if include_master_key {
                    ", master.key included: keep this archive as safe as the key"
                } else {
                    "; master.key is not in it: keep it elsewhere, safe"
                }
            );
            println!("{}", b.file);
            Ok(())
        }
        Command::Restore {
            file,
            data_dir,
            force,
        } => {
            let _lock = lock_data_dir(&data_dir)?;
            let m = ops::backups::restore(&file, &data_dir, force)?;
            println!(
                "Restored {} file(s) of the backup taken {} into {}{}",
                m.files.len(),
                m.created_at,
                data_dir.display(),
                if m.master_key_included {
                    ""
                } else {
                    " (master.key was not in the backup: put the original key file there before starting)"
                }
            );
            Ok(())
        }
    }
}

/// `trex master-key reset`.
fn master_key_reset(common: &Common, yes: bool) -> Result<()> {
    use crate::auth::secrets::{KEY_ENV, MasterKey, key_path};
    if std::env::var_os(KEY_ENV).is_some() {
        bail!(
            "{KEY_ENV} is set: the key comes from the environment; unset it to reset the key file"
        );
    }
    let config = common.load(None)?;
    let store = existing_store(&config)?;
    // the running server keeps sealing with the key it loaded: refuse while one holds the dir
    let _lock = lock_data_dir(&config.store.data_dir)?;
    let rt = runtime()?;
    let sealed = rt.block_on(ops::secrets::sealed_count(&store))?;
    let path = key_path(&config.store.data_dir);
    if !yes {
        eprint!(
            "This drops {sealed} sealed secret(s) in {} (SSO and app client secrets are disabled, database \
             credentials deleted) and writes a new {}. Type `reset` to go on: ",
            store.describe(),
            path.display()
        );
        let mut line = String::new();
        std::io::stdin().read_line(&mut line)?;
        if line.trim() != "reset" {
            bail!("not confirmed; nothing was changed");
        }
    }
    let (key, hex_key) = MasterKey::generate();
    let check = serde_json::to_string(&key.seal("trex", crate::app::MASTER_CHECK_AAD))?;
    let fresh = path.with_extension("key.new");
    std::fs::write(&fresh, format!("{hex_key}\n"))
        .with_context(|| format!("cannot write {}", fresh.display()))?;
    let dropped = rt.block_on(ops::secrets::drop_sealed(
        &store,
        config.audit,
        &Actor::cli(),
        sealed,
        check,
    ))?;
    std::fs::rename(&fresh, &path).with_context(|| format!("cannot replace {}", path.display()))?;
    println!(
        "New master key written to {}. Dropped: {} SSO client secret(s) (providers disabled), {} app \
         secret(s) (apps disabled), {} database credential(s). Save them again with sso-save, \
         app-update/app-create and database-credential-save.",
        path.display(),
        dropped.0,
        dropped.1,
        dropped.2
    );
    Ok(())
}

fn init_tracing(level: &str) {
    // hyper reports every client that drops an open SSE stream as a connection error; that is
    // normal for MCP clients, so warp's server-loop messages are off unless RUST_LOG asks
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| format!("{level},warp::server=off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn open_store(c: &Config) -> Result<Store> {
    Store::open(&c.store).with_context(|| match c.store.postgres_url() {
        Some(_) => format!(
            "cannot open the PostgreSQL store (schema {})",
            c.store.schema
        ),
        None => format!("cannot open the store in {}", c.store.data_dir.display()),
    })
}

/// `trex store migrate`: copies the SQLite store into PostgreSQL with the data dir locked.
fn store_migrate(common: &Common, to: &str, schema: &str) -> Result<()> {
    let config = common.load(None)?;
    if config.store.postgres_url().is_none() {
        existing_store(&config)?;
    }
    let _lock = lock_data_dir(&config.store.data_dir)?;
    let copied = ops::store_migrate::to_postgres(&config.store, to, schema)?;
    let rows: usize = copied.iter().map(|c| c.rows).sum();
    for c in &copied {
        println!(
            "{:<24} {:>8} rows  sha256 {}",
            c.table,
            c.rows,
            &c.sha256[..16]
        );
    }
    eprintln!(
        "Copied {} tables ({rows} rows) into schema {schema}; every count and checksum matches. \
         To use it, set store.url (TREX_STORE_URL) and store.schema (TREX_STORE_SCHEMA) on every \
         node, and give every node this data dir's master.key.",
        copied.len()
    );
    Ok(())
}

/// The store of an existing data dir: every command but `init` and `serve` refuses to create one.
fn existing_store(c: &Config) -> Result<Store> {
    if !Store::exists(&c.store)? {
        if let Some(url) = c.store.postgres_url() {
            let at = crate::store::pg::Manager::new(url, &c.store.schema)?.describe();
            bail!(
                "no trex store in {at}; run `trex serve` or `trex init` with this store.url first"
            );
        }
        let file = c.store.data_dir.join(crate::store::STORE_FILE);
        bail!(
            "no trex store in {} (looked for {}); run `trex serve` or `trex init` there first, or pass --data-dir",
            c.store.data_dir.display(),
            file.display()
        );
    }
    open_store(c)
}

/// A runtime for one command of the console.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A console command's session with the domain layer: the application opened on an existing
/// store (a running server on the same data dir sees its changes at once), and a runtime.
struct Console {
    rt: tokio::runtime::Runtime,
    app: Arc<App>,
}

impl Console {
    /// Opens the existing store of `common`'s data dir (never creates one).
    fn open(common: &Common) -> Result<Console> {
        let config = common.load(None)?;
        existing_store(&config)?;
        let rt = runtime()?;
        let app = rt.block_on(App::open(config))?;
        Ok(Console { rt, app })
    }

    /// Runs one domain call to its end.
    fn run<T>(&self, f: impl std::future::Future<Output = crate::Result<T>>) -> Result<T> {
        Ok(self.rt.block_on(f)?)
    }
}

/// The lock a running `trex serve` holds on its data dir (`trex.lock`, released when the process
/// ends, even by `kill -9`): a second `serve` and `trex master-key reset` refuse while it is held.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("trex.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another trex server is running on {} (it holds {}); stop it first",
            dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// `trex serve`.
pub async fn serve(config: Config) -> Result<()> {
    let started = std::time::Instant::now();
    let _lock = lock_data_dir(&config.store.data_dir)?;
    let app = App::open(config).await?;
    let first = ops::users::first_start(&app.store).await?;
    let catalogue = Arc::new(crate::servers::Catalogue::new());
    let path = crate::http::admin_mount(&app, &catalogue).path();
    let running = server::start(app.clone(), catalogue, vec![]).await?;
    let url = format!("http://{}{}", running.addr, path);
    tracing::info!(
        "trex {} listening on {} (MCP: {url}; data: {}; ready in {} ms)",
        env!("CARGO_PKG_VERSION"),
        running.addr,
        app.config.store.data_dir.display(),
        started.elapsed().as_millis()
    );
    let keys = ops::keys::count_active(&app).await?;
    if first.is_none() && keys == 0 {
        println!(
            "\nNo API key exists yet, so no client can connect. Mint one for an admin:\n\n  \
             trex api-key create --data-dir {} --user <admin email> --name <name>\n",
            app.config.store.data_dir.display()
        );
    }
    if let Some((user, key)) = first {
        println!(
            "\nFirst start: created admin user {} and an API key for it.\n\
             This key is shown once; store it now:\n\n  {}\n\n\
             Client configuration (url + headers, e.g. Claude Code's .mcp.json; see README for Claude Desktop):\n\n{}\n",
            user.email,
            key.key,
            ops::client_config(&url, &key.key)
        );
    }
    let stop = app.shutdown.clone();
    tokio::spawn(async move {
        server::signal().await;
        tracing::info!("shutting down");
        stop.cancel();
    });
    running.wait().await;
    Ok(())
}

fn init(c: &Config, email: &str, pw: Option<&str>, name: &str) -> Result<()> {
    // check the input before anything is created on disk
    ops::validate_email_as("--admin-email", email)?;
    ops::validate_name("--admin-name", name)?;
    if let Some(p) = pw {
        crate::auth::password::validate(p)?;
    }
    let store = open_store(c)?;
    let (user, key) = runtime()?
        .block_on(ops::users::bootstrap_admin(
            &store,
            name,
            email,
            pw.map(str::to_string),
            "init",
        ))?
        .ok_or_else(|| {
            crate::Error::Conflict(format!(
                "the store in {} is already initialized; use `trex api-key create`",
                c.store.data_dir.display()
            ))
        })?;
    crate::auth::secrets::MasterKey::load(
        &c.store.data_dir,
        std::env::var(crate::auth::secrets::KEY_ENV).ok(),
        true,
    )?;
    eprintln!(
        "Initialized {} with admin {} ({}). The API key below is shown once:",
        store.describe(),
        user.email,
        user.id
    );
    println!("{}", key.key);
    Ok(())
}

fn api_key(cmd: ApiKeyCommand) -> Result<()> {
    match cmd {
        ApiKeyCommand::Create {
            common,
            user,
            name,
            expires,
            read_only,
            tools,
            endpoints,
            dangerous_sql,
        } => {
            let scopes = crate::auth::scopes::Scopes {
                read_only,
                tools: (!tools.is_empty()).then_some(tools),
                endpoints: (!endpoints.is_empty()).then_some(endpoints),
                dangerous_sql,
            };
            let scopes = (scopes != Default::default()).then_some(scopes);
            let con = Console::open(&common)?;
            let key = con.run(ops::keys::create(
                &con.app,
                &Actor::cli(),
                &user,
                &name,
                expires.as_deref(),
                "--expires",
                scopes,
            ))?;
            eprintln!("Created API key {} ({name}). It is shown once:", key.id);
            println!("{}", key.key);
        }
        ApiKeyCommand::List { common } => {
            let con = Console::open(&common)?;
            let mut after = None;
            println!(
                "{:<36}  {:<13}  {:<20}  {:<28}  {:<32}  SCOPES",
                "ID", "PREFIX", "NAME", "USER", "STATUS"
            );
            loop {
                let page = Page { limit: 500, after };
                let p = con.run(ops::keys::list(&con.app, None, page))?;
                for k in &p.items {
                    let status = if k.revoked_at.is_some() {
                        "revoked".to_string()
                    } else if let Some(e) = &k.expires_at {
                        format!("expires {e}")
                    } else {
                        "active".to_string()
                    };
                    let scopes = match &k.scopes {
                        None => "unrestricted".to_string(),
                        Some(sc) => serde_json::to_string(sc).unwrap_or_default(),
                    };
                    println!(
                        "{:<36}  {:<13}  {:<20}  {:<28}  {status:<32}  {scopes}",
                        k.id, k.key_prefix, k.name, k.user_email
                    );
                }
                match p.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        ApiKeyCommand::Revoke { common, id } => {
            let con = Console::open(&common)?;
            let revoked = con.run(ops::keys::revoke(&con.app, &Actor::cli(), &id))?;
            println!(
                "API key '{}' ({}...) revoked",
                revoked.name, revoked.key_prefix
            );
        }
    }
    Ok(())
}

fn user(cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Create {
            common,
            email,
            name,
            password,
            role,
        } => {
            let con = Console::open(&common)?;
            let u = con.run(ops::users::create(
                &con.app,
                &Actor::cli(),
                &name,
                &email,
                password,
                &role,
            ))?;
            eprintln!("Created user {} ({}, {})", u.email, u.role, u.id);
            println!("{}", u.id);
        }
        UserCommand::List {
            common,
            include_deleted,
        } => {
            let con = Console::open(&common)?;
            println!("{:<36}  {:<30}  {:<6}  STATUS", "ID", "EMAIL", "ROLE");
            let mut after = None;
            loop {
                let page = Page { limit: 500, after };
                let p = con.run(ops::users::list(&con.app, include_deleted, None, page))?;
                for u in &p.items {
                    let status = if u.deleted_at.is_some() {
                        "deleted"
                    } else if u.is_banned_now() {
                        "banned"
                    } else {
                        "active"
                    };
                    println!("{:<36}  {:<30}  {:<6}  {status}", u.id, u.email, u.role);
                }
                match p.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
        }
        UserCommand::SetPassword {
            common,
            email,
            password,
        } => {
            let con = Console::open(&common)?;
            con.run(ops::users::set_password(
                &con.app,
                &Actor::cli(),
                &email,
                password,
            ))?;
            println!("Password set for {email}");
        }
        UserCommand::Ban {
            common,
            email,
            reason,
            until,
            unban,
        } => {
            let con = Console::open(&common)?;
            con.run(ops::users::ban(
                &con.app,
                &Actor::cli(),
                &email,
                !unban,
                reason,
                until.as_deref(),
                "--until",
            ))?;
            println!("{email} {}", if unban { "unbanned" } else { "banned" });
        }
    }
    Ok(())
}

fn migrate(cmd: MigrateCommand) -> Result<()> {
    match cmd {
        MigrateCommand::Status { common, target } => {
            let con = Console::open(&common)?;
            let all = con.run(ops::migrations::list(
                &con.app,
                &Actor::cli(),
                target.as_deref(),
            ))?;
            for t in &all {
                let dir = t.directory.as_deref().unwrap_or("schema.sql");
                println!(
                    "{} ({}, {dir}): {} applied, {} pending",
                    t.target, t.dialect, t.applied_count, t.pending_count
                );
                if let Some(e) = &t.error {
                    println!("  error: {e}");
                }
                for m in &t.migrations {
                    println!("  V{:<6} {:<40} {}", m.version, m.name, m.status);
                }
                for i in &t.ignored {
                    println!("  ignored {}: {}", i.file, i.reason);
                }
            }
        }
        MigrateCommand::Run {
            common,
            target,
            to_version,
            dry_run,
        } => {
            let con = Console::open(&common)?;
            let runs = con.run(ops::migrations::run(
                &con.app,
                &Actor::cli(),
                target.as_deref(),
                to_version,
                dry_run,
            ))?;
            for r in &runs {
                if let Some(n) = &r.note {
                    println!("{}: {n}", r.target);
                }
                for o in &r.results {
                    let ms = o
                        .duration_ms
                        .map(|m| format!(" ({m} ms)"))
                        .unwrap_or_default();
                    println!("{}: V{} {} {}{ms}", r.target, o.version, o.name, o.status);
                }
                for i in &r.ignored {
                    println!("{}: ignored {}: {}", r.target, i.file, i.reason);
                }
            }
        }
    }
    Ok(())
}

/// Prints `v` as indented JSON.
fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs migration `id` in `mode` from the console: a progress bar on a terminal (plain lines
/// otherwise), the report at the end, and an error when the run did not complete.
fn migration_run(common: &Common, id: &str, mode: &str, no_wait: bool) -> Result<()> {
    let con = Console::open(common)?;
    if !no_wait {
        // no server may be running: this process works the run itself
        let _in = con.rt.enter();
        ops::runs::register(&con.app);
        con.app.jobs.start(1);
    }
    // subscribed before the run is queued, so none of its progress is missed
    let events = con.app.jobs.subscribe();
    let run = con.run(ops::runs::start(&con.app, &Actor::cli(), id, mode, None))?;
    if no_wait {
        println!("{run}");
        eprintln!(
            "Queued {run}; a running `trex serve` works it (see `trex migration show {run}`)"
        );
        return Ok(());
    }
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(std::time::Duration::from_millis(120));
        b
    });
    let mut last = String::new();
    let progress = |_: f64, _: Option<f64>, m: Option<&str>| {
        let m = m.unwrap_or_default().to_string();
        match &bar {
            Some(b) => b.set_message(m),
            None if m != last && !m.contains("statement") => {
                eprintln!("{m}");
                last = m;
            }
            None => {}
        }
    };
    let v = con.run(ops::runs::wait(
        &con.app,
        &run,
        events,
        progress,
        tokio_util::sync::CancellationToken::new(),
    ))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    print_json(&v);
    let state = v["state"].as_str().unwrap_or("");
    if state != "completed" {
        bail!(
            "{mode} run {run} of {id} ended {state}: {}",
            v["error"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

/// `trex plugin …`
fn plugin(cmd: PluginCommand) -> Result<()> {
    match cmd {
        PluginCommand::Install { common, package } => {
            let con = Console::open(&common)?;
            let spec = std::path::absolute(&package).unwrap_or(package);
            let i = con.run(ops::plugins::install(
                &con.app,
                &Actor::cli(),
                &spec.display().to_string(),
            ))?;
            let or_none = |v: &[String]| {
                if v.is_empty() {
                    "none".to_string()
                } else {
                    v.join(", ")
                }
            };
            println!(
                "Installed {} {} into {} (tools: {}; functions: {}; ui: {}; migrations applied: {})",
                i.name,
                i.version,
                i.install_path,
                or_none(&i.tools),
                or_none(&i.functions),
                i.ui_path.as_deref().unwrap_or("none"),
                i.migrations
                    .iter()
                    .filter(|m| m.status == "applied")
                    .count()
            );
            Ok(())
        }
        PluginCommand::List { common } => {
            let con = Console::open(&common)?;
            let page = ops::page(Some(1000), None)?;
            let l = con.run(ops::plugins::list(&con.app, page))?;
            if l.items.is_empty() {
                println!("No plugins installed.");
            }
            for p in l.items {
                println!(
                    "{}\t{}\t{}\t{}",
                    p.name,
                    p.version,
                    p.registered_types.join(","),
                    if p.installed {
                        "installed"
                    } else {
                        "files missing"
                    }
                );
            }
            Ok(())
        }
        PluginCommand::Show { common, name } => {
            let con = Console::open(&common)?;
            let i = con.run(ops::plugins::info(&con.app, &Actor::cli(), &name))?;
            println!("{}", serde_json::to_string_pretty(&i)?);
            Ok(())
        }
        PluginCommand::Uninstall { common, name } => {
            let con = Console::open(&common)?;
            let u = con.run(ops::plugins::uninstall(&con.app, &Actor::cli(), &name))?;
            println!("Uninstalled {}", u.package);
            Ok(())
        }
    }
}

fn migration(cmd: MigrationCommand) -> Result<()> {
    match cmd {
        MigrationCommand::List { common, status } => {
            let con = Console::open(&common)?;
            let mut cursor = None;
            println!(
                "{:<32}  {:<7}  {:<12}  {:<14}  TARGETS",
                "ID", "VERSION", "STATUS", "STRATEGY"
            );
            loop {
                let f = ops::definitions::ListFilter {
                    status: status.clone(),
                    limit: Some(500),
                    cursor: cursor.clone(),
                    ..Default::default()
                };
                let (items, next) = con.run(ops::definitions::list(&con.app, f))?;
                for m in &items {
                    println!(
                        "{:<32}  {:<7}  {:<12}  {:<14}  {}",
                        m.id,
                        m.version,
                        m.status,
                        m.strategy["type"].as_str().unwrap_or(""),
                        m.interlays.join(", ")
                    );
                }
                match next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
        }
        MigrationCommand::Define {
            common,
            file,
            replace,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", file.display()))?;
            let known = [
                "id",
                "description",
                "strategy",
                "data",
                "failure_handling",
                "apis",
                "interlays",
                "replace",
            ];
            if let Some(k) = v
                .as_object()
                .and_then(|o| o.keys().find(|k| !known.contains(&k.as_str())))
            {
                bail!(
                    "{}: unknown field `{k}` (fields: {})",
                    file.display(),
                    known.join(", ")
                );
            }
            let list = |k: &str| v.get(k).and_then(|x| x.as_array()).cloned();
            let d = ops::definitions::Define {
                id: v["id"].as_str().unwrap_or_default().to_string(),
                description: v["description"].as_str().map(str::to_string),
                strategy: v.get("strategy").cloned(),
                data: v.get("data").cloned(),
                failure_handling: v.get("failure_handling").cloned(),
                apis: list("apis"),
                interlays: list("interlays"),
                replace: replace || v["replace"] == true,
                scoped_to: None,
            };
            let con = Console::open(&common)?;
            let m = con.run(ops::definitions::define(&con.app, &Actor::cli(), d))?;
            eprintln!("Defined {} version {} ({})", m.id, m.version, m.status);
        }
        MigrationCommand::Test {
            common,
            id,
            no_wait,
        } => migration_run(&common, &id, "test", no_wait)?,
        MigrationCommand::Run {
            common,
            id,
            no_wait,
        } => migration_run(&common, &id, "migrate", no_wait)?,
        MigrationCommand::Show { common, id } => {
            let con = Console::open(&common)?;
            let v = if id.starts_with("run_") {
                con.run(ops::runs::get(&con.app, &id, None))?
            } else {
                con.run(ops::definitions::get(&con.app, &id, true, None))?
            };
            print_json(&v);
        }
    }
    Ok(())
}
