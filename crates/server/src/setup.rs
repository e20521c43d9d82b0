//! Where the store lives and how it is opened: the data directory, the database URL and the
//! master key, from flags, environment and the config file's `[store]` table, in that order.

use anyhow::Context;
use signalbox_store::{BootstrapEnv, MasterKey, Store, write_secret_file};
use std::path::{Path, PathBuf};

/// Store settings as given on the command line.
#[derive(Debug, Default, Clone)]
pub struct StoreArgs {
    pub db: Option<String>,
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct StoreLocation {
    /// `[store] traces` (default true): store trace records.
    pub store_traces: bool,
    /// `[store] trace_retention_days` (default 30; 0 keeps traces forever).
    pub trace_retention_days: u64,
    pub url: String,
    pub data_dir: PathBuf,
    pub master_key_file: PathBuf,
}

fn relative_to(file: Option<&Path>, p: &str) -> PathBuf {
    let path = Path::new(p);
    match file.and_then(Path::parent) {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

/// A SQLite URL in one spelling, `sqlite://ABSOLUTE_PATH[?OPTIONS]`, whichever way it was
/// written (`sqlite:PATH`, `sqlite://PATH`, `sqlite:///PATH`): a relative path is taken from
/// `file`'s folder when the URL was written in that file, else from the working directory.
/// Other URLs (and SQLite's `:memory:` names) are returned as they are.
fn sqlite_absolute(url: &str, file: Option<&Path>) -> anyhow::Result<String> {
    let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return Ok(url.to_string());
    };
    let (path, options) = match rest.split_once('?') {
        Some((p, o)) => (p, Some(o)),
        None => (rest, None),
    };
    if path.is_empty() || path.starts_with(':') {
        return Ok(url.to_string());
    }
    let written = path;
    let path = relative_to(file, written);
    let path = std::path::absolute(&path).unwrap_or(path);
    // Releases before this one took a relative path in the file from the working directory:
    // a store found only there is named, never silently replaced by a new empty one.
    if file.is_some() && Path::new(written).is_relative() && !path.exists() {
        let old = std::path::absolute(written).unwrap_or_else(|_| PathBuf::from(written));
        if old != path && old.exists() {
            anyhow::bail!(
                "[store] url names {written}, which is now taken from the config file's folder ({}); a store exists at {} (taken from the working directory by earlier releases): move it there, or write its absolute path in the url",
                path.display(),
                old.display()
            );
        }
    }
    Ok(match options {
        Some(o) => format!("sqlite://{}?{o}", path.display()),
        None => format!("sqlite://{}", path.display()),
    })
}

/// Resolve the store's location. `config` is the config file, if any.
pub fn locate(
    args: &StoreArgs,
    config: Option<&Path>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<StoreLocation> {
    let mut text = String::new();
    let raw = match config {
        Some(p) => {
            text = signalbox_core::config::read_file(p).map_err(|e| anyhow::anyhow!("{e}"))?;
            signalbox_core::config::parse(&text, Some(&p.display().to_string()))
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .store
        }
        None => Default::default(),
    };
    // `FILE:LINE: store.url: ` as the validator's messages begin.
    let at = |key: &str| match config {
        Some(p) => match signalbox_core::config::line_of_key(&text, key) {
            Some(line) => format!("{}:{line}: {key}: ", p.display()),
            None => format!("{}: {key}: ", p.display()),
        },
        None => format!("{key}: "),
    };
    let data_dir = match (&args.data_dir, env("SIGNALBOX_DATA_DIR"), &raw.data_dir) {
        (Some(d), _, _) => d.clone(),
        (None, Some(d), _) if !d.is_empty() => PathBuf::from(d),
        (None, _, Some(d)) => relative_to(config, d),
        _ => PathBuf::from("signalbox-data"),
    };
    let url = match (&args.db, &raw.url) {
        (Some(u), _) => sqlite_absolute(u, None)?,
        (None, Some(u)) => match u.strip_prefix("env::") {
            Some(var) => sqlite_absolute(
                &env(var).filter(|v| !v.is_empty()).with_context(|| {
                    format!(
                        "{}names environment variable {var}, which is not set",
                        at("store.url")
                    )
                })?,
                None,
            )?,
            // Written in the file: a relative path is relative to the file, as every path
            // in it is.
            None => sqlite_absolute(u, config)?,
        },
        (None, None) => {
            let abs = std::path::absolute(&data_dir).unwrap_or(data_dir.clone());
            format!("sqlite://{}", abs.join("signalbox.db").display())
        }
    };
    let master_key_file = match &raw.master_key_file {
        Some(f) => relative_to(config, f),
        None => data_dir.join("master.key"),
    };
    Ok(StoreLocation {
        store_traces: raw.traces.unwrap_or(true),
        trace_retention_days: raw.trace_retention_days.unwrap_or(30),
        url,
        data_dir,
        master_key_file,
    })
}

/// The data directory, created owner-only (0700) when it is not there yet.
pub fn ensure_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    Ok(())
}

/// Open (creating on first start) the store with its master key.
pub async fn open(
    loc: &StoreLocation,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Store> {
    BootstrapEnv {
        admin_password: env("SIGNALBOX_ADMIN_PASSWORD"),
        admin_token: env("SIGNALBOX_ADMIN_TOKEN"),
        gateway_key: env("SIGNALBOX_BOOTSTRAP_KEY"),
    }
    .check()?;
    ensure_dir(&loc.data_dir)?;
    let env_key = env("SIGNALBOX_MASTER_KEY");
    let (key, created) = MasterKey::load_or_create(env_key.as_deref(), &loc.master_key_file)?;
    if created {
        tracing::info!(path = %loc.master_key_file.display(), "created a new master key (keep it safe: credentials cannot be read without it)");
    }
    let opened = Store::open(&loc.url, key).await;
    if opened.is_err() && created {
        // A key made for a store that could not be opened is no store's key: left behind,
        // it would be taken for the real one later (and the node refused).
        let _ = std::fs::remove_file(&loc.master_key_file);
    }
    opened.with_context(|| {
        format!(
            "cannot open the store at {}",
            signalbox_store::redact_url(&loc.url)
        )
    })
}

/// First start: create project `default`, `admin` and a gateway key once, write what was
/// generated to `<data_dir>/initial-credentials` (0600) and print its path; the values go
/// to standard output only when it is a terminal, never to the log.
/// `serve` announces on standard output; the other commands on standard error, keeping
/// their standard output for their own answer (`keys create` prints the key alone).
pub async fn first_start(
    store: &Store,
    loc: &StoreLocation,
    env: &dyn Fn(&str) -> Option<String>,
    announce_on_stdout: bool,
) -> anyhow::Result<()> {
    let created = store
        .bootstrap(&BootstrapEnv {
            admin_password: env("SIGNALBOX_ADMIN_PASSWORD"),
            admin_token: env("SIGNALBOX_ADMIN_TOKEN"),
            gateway_key: env("SIGNALBOX_BOOTSTRAP_KEY"),
        })
        .await?;
    if created.is_empty() {
        return Ok(());
    }
    let mut text = String::from("admin_user=admin\n");
    if let Some(p) = &created.admin_password {
        text.push_str(&format!("admin_password={p}\n"));
    }
    if let Some(k) = &created.gateway_key {
        text.push_str(&format!("gateway_key={k}\n"));
    }
    let path = loc.data_dir.join("initial-credentials");
    if path.exists() {
        // Left by an earlier store that is gone: keep it aside rather than lose either.
        let aside = loc.data_dir.join(format!(
            "initial-credentials.old-{}",
            signalbox_store::now_millis()
        ));
        std::fs::rename(&path, &aside)
            .with_context(|| format!("cannot move the old {} aside", path.display()))?;
        tracing::warn!(old = %aside.display(), "an initial-credentials file of an earlier store was moved aside");
    }
    write_secret_file(&path, &text)?;
    let what = match (&created.admin_password, &created.gateway_key) {
        (Some(_), Some(_)) => "the admin password and a gateway key are",
        (Some(_), None) => "the admin password is",
        (None, Some(_)) => "a gateway key is",
        (None, None) => "the admin user name is",
    };
    tracing::info!(path = %path.display(), "first start: {what} in this file (mode 0600)");
    use std::io::IsTerminal;
    let terminal = if announce_on_stdout {
        std::io::stdout().is_terminal()
    } else {
        std::io::stderr().is_terminal()
    };
    let message = if terminal {
        format!(
            "First start. Initial credentials (also in {}):\n{text}",
            path.display()
        )
    } else {
        format!(
            "First start. Initial credentials written to {}",
            path.display()
        )
    };
    if announce_on_stdout {
        println!("{message}");
    } else {
        eprintln!("{message}");
    }
    Ok(())
}
