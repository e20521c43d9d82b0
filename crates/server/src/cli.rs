//! The store commands: explain, migrate, keys, config export/import, admin, rotate-master-key.

use super::{AdminAction, Command, ConfigAction, KeysAction, StoreFlags, config_path};
use anyhow::{Context, bail};
use signalbox::setup::{self, StoreArgs, StoreLocation};
use signalbox_core::config::{Catalog, ConfigErrors};
use signalbox_store::{Actor, Change, MasterKey, Store};
use std::path::{Path, PathBuf};

fn env(n: &str) -> Option<String> {
    std::env::var(n).ok()
}

fn locate(flags: &StoreFlags) -> anyhow::Result<(StoreLocation, Option<PathBuf>)> {
    let config = config_path(flags.config.clone());
    let loc = setup::locate(
        &StoreArgs {
            db: flags.db.clone(),
            data_dir: flags.data_dir.clone(),
        },
        config.as_deref(),
        &env,
    )?;
    Ok((loc, config))
}

async fn open(flags: &StoreFlags) -> anyhow::Result<(Store, Option<PathBuf>)> {
    let (loc, config) = locate(flags)?;
    let store = setup::open(&loc, &env).await?;
    setup::first_start(&store, &loc, &env, false).await?;
    Ok((store, config))
}

/// The check every CLI write passes: the config file (if any) and the catalog together,
/// refusing what the change itself breaks. Errors the config already has in this shell (an
/// `env::VAR` set only where the gateway runs, say) do not stop a change that adds none: an
/// emergency key revoke must not wait for the production environment.
async fn checker(
    store: &Store,
    config: Option<&Path>,
) -> anyhow::Result<impl FnOnce(&Catalog, i64) -> Result<(), ConfigErrors> + use<>> {
    let text = match config {
        Some(p) => signalbox_core::config::read_file(p).map_err(|e| anyhow::anyhow!("{e}"))?,
        None => String::new(),
    };
    let file = config.map(|p| p.display().to_string());
    // A file that does not even parse checks nothing about the change: refused, not waved
    // through as an error that was there before.
    if let Err(e) = signalbox_core::config::parse(&text, file.as_deref()) {
        bail!("the config file does not parse, so the change cannot be checked against it:\n{e}");
    }
    let load = move |catalog: &Catalog, v: i64| {
        signalbox_core::config::load_with_catalog(&text, file.as_deref(), &env, v as u64, catalog)
    };
    let (current, version) = store.load_catalog().await?;
    let before: std::collections::HashSet<String> = load(&current, version)
        .err()
        .map(|errs| errs.0.iter().map(ToString::to_string).collect())
        .unwrap_or_default();
    Ok(move |catalog: &Catalog, v: i64| match load(catalog, v) {
        Ok(_) => Ok(()),
        Err(errs) => {
            let new: Vec<_> = errs
                .0
                .into_iter()
                .filter(|e| !before.contains(&e.to_string()))
                .collect();
            if new.is_empty() {
                Ok(())
            } else {
                Err(ConfigErrors(new))
            }
        }
    })
}

fn cli_actor() -> Actor {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    Actor(format!("cli:{user}"))
}

fn rejected(e: signalbox_store::StoreError) -> anyhow::Error {
    match e {
        signalbox_store::StoreError::Rejected(errs) => {
            anyhow::anyhow!("the change was not applied:\n{errs}")
        }
        other => anyhow::anyhow!(other),
    }
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Serve { .. } | Command::Check { .. } => unreachable_command(),
        Command::Explain {
            model,
            endpoint,
            project,
            file_only,
            store,
        } => explain(&model, &endpoint, &project, file_only, &store).await,
        Command::Migrate { store } => {
            let (loc, _) = locate(&store)?;
            if loc.url.starts_with("sqlite:") {
                setup::ensure_dir(&loc.data_dir)?;
            }
            let (pool, _, applied) = signalbox_store::connect_and_migrate(&loc.url)
                .await
                .with_context(|| {
                    format!("cannot migrate {}", signalbox_store::redact_url(&loc.url))
                })?;
            pool.close().await;
            if applied.is_empty() {
                println!("store is up to date");
            } else {
                println!("applied migrations {applied:?}");
            }
            Ok(())
        }
        Command::Keys { action } => keys(action).await,
        Command::Config { action } => config(action).await,
        Command::Admin {
            action: AdminAction::ResetPassword { user, store },
        } => {
            // A mistyped --data-dir must not make a new store whose password this "resets".
            existing_store(&store, "reset-password changes")?;
            let (s, _) = open(&store).await?;
            let (password, generated) =
                match env("SIGNALBOX_NEW_PASSWORD").filter(|p| !p.is_empty()) {
                    Some(p) => (p, false),
                    None => (signalbox_store::crypto::random_token(18), true),
                };
            s.set_password(&cli_actor(), &user, &password).await?;
            s.close().await;
            if generated {
                println!("{password}");
            }
            eprintln!("password of '{user}' reset; their tokens are revoked");
            Ok(())
        }
        Command::RotateMasterKey { store } => rotate(&store).await,
    }
}

fn unreachable_command() -> anyhow::Result<()> {
    bail!("this command is handled elsewhere")
}

/// Where the flags point, refused unless a store is there (`what`: the command's work, as
/// "rotate-master-key re-encrypts"): a command that changes a store never makes one.
fn existing_store(flags: &StoreFlags, what: &str) -> anyhow::Result<StoreLocation> {
    let (loc, _) = locate(flags)?;
    if !store_exists(&loc) {
        bail!(
            "no store at {}: {what} an existing store (check --data-dir / --db)",
            signalbox_store::redact_url(&loc.url)
        );
    }
    Ok(loc)
}

/// Whether a store exists where the flags point (never creates one).
fn store_exists(loc: &StoreLocation) -> bool {
    match loc.url.strip_prefix("sqlite://") {
        Some(path) => Path::new(path.split('?').next().unwrap_or(path)).exists(),
        // A URL of another kind is refused by the config's validation, not opened.
        None => loc.url.starts_with("postgres://") || loc.url.starts_with("postgresql://"),
    }
}

/// The config as serve would load it: the file, and the store's objects when there is a
/// store (unless `file_only`).
async fn load(
    flags: &StoreFlags,
    file_only: bool,
) -> anyhow::Result<Result<signalbox_core::Loaded, ConfigErrors>> {
    let config = config_path(flags.config.clone());
    let text = match &config {
        Some(p) => match signalbox_core::config::read_file(p) {
            Ok(t) => t,
            Err(e) => return Ok(Err(e)),
        },
        None => String::new(),
    };
    // A `[store]` that cannot be located is reported by the validation below, with the
    // file's other errors; the file is then checked on its own.
    let loc = locate(flags).ok().map(|(loc, _)| loc);
    let catalog = if !file_only && let Some(loc) = loc.as_ref().filter(|l| store_exists(l)) {
        let s = setup::open(loc, &env).await?;
        let (c, _) = s.load_catalog().await?;
        s.close().await;
        c
    } else {
        Catalog::file_only()
    };
    let file = config.as_ref().map(|p| p.display().to_string());
    Ok(signalbox_core::config::load_with_catalog(
        &text,
        file.as_deref(),
        &env,
        1,
        &catalog,
    ))
}

/// Whether the config file names a project `name` (`project = "…"` on any of its objects),
/// read from the file alone: an `env::VAR` unset in this shell does not hide it.
fn named_in_file(flags: &StoreFlags, name: &str) -> bool {
    use signalbox_core::config::raw::HasProject;
    let Some(path) = config_path(flags.config.clone()) else {
        return false;
    };
    let Ok(text) = signalbox_core::config::read_file(&path) else {
        return false;
    };
    let Ok(raw) = signalbox_core::config::parse(&text, None) else {
        return false;
    };
    let named = |p: Option<&str>| p == Some(name);
    raw.providers.values().any(|o| named(o.project()))
        || raw.targets.values().any(|o| named(o.project()))
        || raw.routes.values().any(|o| named(o.project()))
        || raw.functions.values().any(|o| named(o.project()))
        || raw.api_keys.values().any(|o| named(o.project()))
}

/// `signalbox check`: Ok(true) when the config is valid.
pub async fn check(flags: &StoreFlags, file_only: bool) -> anyhow::Result<bool> {
    let name = config_path(flags.config.clone())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "signalbox.toml".into());
    match &flags.config {
        Some(p) if !p.exists() => bail!("config file {name} does not exist"),
        None if config_path(None).is_none() => {
            bail!("no signalbox.toml here; name the config file with --config PATH")
        }
        _ => {}
    }
    match load(flags, file_only).await? {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            println!("{name}: ok");
            Ok(true)
        }
        Err(errs) => {
            for e in &errs.0 {
                eprintln!("error: {e}");
            }
            eprintln!("{name}: {} error(s)", errs.0.len());
            Ok(false)
        }
    }
}

async fn explain(
    model: &str,
    endpoint: &str,
    project: &str,
    file_only: bool,
    flags: &StoreFlags,
) -> anyhow::Result<()> {
    let Some(kind) = signalbox_core::model::EndpointKind::parse(endpoint) else {
        bail!(
            "unknown endpoint kind '{endpoint}' (chat, embeddings, audio_speech, audio_transcription, image_generation)"
        );
    };
    let loaded = load(flags, file_only)
        .await?
        .map_err(|e| anyhow::anyhow!("the config is invalid:\n{e}"))?;
    let Some(ps) = loaded.snapshot.project(project) else {
        bail!("unknown project '{project}'");
    };
    match signalbox_core::explain::explain(ps, kind, model) {
        Ok(v) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(())
        }
        Err(e) => bail!("{} ({})", e.message, e.code.as_str()),
    }
}

async fn keys(action: KeysAction) -> anyhow::Result<()> {
    match action {
        KeysAction::Create {
            project,
            name,
            expires_in,
            store,
        } => {
            // Checked before the store is opened (or created).
            const MAX: i64 = signalbox_store::MAX_KEY_LIFETIME_SECS;
            let expires_in = match expires_in {
                Some(secs) if (1..=MAX).contains(&secs) => Some(secs),
                Some(_) => bail!("--expires-in must be from 1 to {MAX} seconds (a hundred years)"),
                None => None,
            };
            if !signalbox_store::label_ok(&name) {
                bail!("--name must be 1 to 128 characters");
            }
            let (s, config) = open(&store).await?;
            let expires_at = expires_in.map(|secs| signalbox_store::now_millis() + secs * 1000);
            let mut changes = Vec::new();
            // A project only the config file names gets its store record with its first key
            // (keys live in the store).
            if s.project(&project).await?.is_none() && named_in_file(&store, &project) {
                changes.push(Change::CreateProject {
                    name: project.clone(),
                    description: "Named in the config file".into(),
                });
            }
            changes.push(Change::CreateKey {
                project,
                name,
                expires_at,
                value: None,
            });
            let (_, c) = s
                .write_all(&cli_actor(), changes, checker(&s, config.as_deref()).await?)
                .await
                .map_err(rejected)?;
            s.close().await;
            let (Some(k), Some(secret)) = (&c.key, c.revealed) else {
                bail!("the key was created but not returned; revoke it and create another");
            };
            eprintln!("created key {} ({})", k.id, k.prefix);
            println!("{secret}");
            Ok(())
        }
        KeysAction::List { project, store } => {
            let (s, _) = open(&store).await?;
            if s.project(&project).await?.is_none() {
                s.close().await;
                bail!("no project '{project}' in the store");
            }
            let keys = s.keys(&project).await?;
            s.close().await;
            println!(
                "{:<38} {:<14} {:<20} {:<10}",
                "ID", "PREFIX", "NAME", "STATE"
            );
            let now = signalbox_store::now_millis();
            for k in keys {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|e| e <= now) {
                    "expired"
                } else {
                    "active"
                };
                println!("{:<38} {:<14} {:<20} {:<10}", k.id, k.prefix, k.name, state);
            }
            Ok(())
        }
        KeysAction::Revoke { id, project, store } => {
            let (s, config) = open(&store).await?;
            s.write(
                &cli_actor(),
                Change::RevokeKey {
                    project,
                    id: id.clone(),
                },
                checker(&s, config.as_deref()).await?,
            )
            .await
            .map_err(rejected)?;
            s.close().await;
            eprintln!("revoked {id}");
            Ok(())
        }
    }
}

async fn config(action: ConfigAction) -> anyhow::Result<()> {
    match action {
        ConfigAction::Export {
            project,
            output,
            store,
        } => {
            let (s, _) = open(&store).await?;
            if s.project(&project).await?.is_none() {
                bail!("no project named '{project}'");
            }
            let (catalog, _) = s.load_catalog().await?;
            s.close().await;
            let text = signalbox::transfer::export_toml(&catalog, &project);
            match output {
                Some(p) => std::fs::write(&p, text)
                    .with_context(|| format!("cannot write {}", p.display()))?,
                None => print!("{text}"),
            }
            Ok(())
        }
        ConfigAction::Import {
            file,
            project,
            store,
        } => {
            let text =
                signalbox_core::config::read_file(&file).map_err(|e| anyhow::anyhow!("{e}"))?;
            let raw = signalbox_core::config::parse(&text, Some(&file.display().to_string()))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let (s, config) = open(&store).await?;
            if config.as_deref().is_some_and(|c| same_file(c, &file)) {
                bail!(
                    "{} is the config file itself; its objects are file-managed already",
                    file.display()
                );
            }
            let existing: Vec<String> = s.projects().await?.into_iter().map(|p| p.name).collect();
            let (changes, mut warnings) =
                signalbox::transfer::import_changes(raw, &project, &existing);
            warnings.extend(signalbox::transfer::tables_left_out(&text));
            for w in warnings {
                eprintln!("warning: {w}");
            }
            let n = changes.len();
            s.write_all(&cli_actor(), changes, checker(&s, config.as_deref()).await?)
                .await
                .map_err(rejected)?;
            s.close().await;
            eprintln!("imported {n} change(s) from {}", file.display());
            Ok(())
        }
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// New key first written beside the old one, then the store re-encrypted in one transaction,
/// then the new key file moved into place: a crash at any point leaves a key that opens it.
async fn rotate(flags: &StoreFlags) -> anyhow::Result<()> {
    // Rotating a store that is not there would create one and "rotate" it: a mistyped
    // --data-dir must not look like success.
    let loc = existing_store(flags, "rotate-master-key re-encrypts")?;
    let s = setup::open(&loc, &env).await?;
    let new = MasterKey::generate();
    let from_env = env("SIGNALBOX_MASTER_KEY").is_some_and(|v| !v.trim().is_empty());
    let pending = loc.master_key_file.with_extension("key.new");
    if from_env {
        // The key's only copy is what is printed: printed (and flushed) before the store
        // changes, or the store is not changed.
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{}", new.to_base64()).and_then(|()| out.flush()) {
            s.close().await;
            bail!("cannot print the new master key ({e}); the store still uses the old one");
        }
    } else {
        let _ = std::fs::remove_file(&pending);
        signalbox_store::write_secret_file(&pending, &format!("{}\n", new.to_base64()))?;
    }
    let n = match s.rotate_master_key(&new).await {
        Ok(n) => n,
        Err(e) if from_env => {
            s.close().await;
            bail!("{e}; the store still uses the old master key (ignore the key printed above)");
        }
        Err(e) => return Err(e.into()),
    };
    s.close().await;
    if from_env {
        eprintln!(
            "re-encrypted {n} credential(s); set SIGNALBOX_MASTER_KEY to the key printed above on every node"
        );
    } else {
        std::fs::rename(&pending, &loc.master_key_file).with_context(|| {
            format!(
                "the store now uses the key in {}; move it to {}",
                pending.display(),
                loc.master_key_file.display()
            )
        })?;
        eprintln!(
            "re-encrypted {n} credential(s); new master key in {}",
            loc.master_key_file.display()
        );
    }
    Ok(())
}
