//! The real binary: first start, the store commands, and refusing a wrong master key, on
//! SQLite and (when the test command started one) PostgreSQL.

use crate::common::client;
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

const CONFIG: &str = "[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\", \"echo-2\"]\n[targets.t]\nmodel = \"echo-1\"\n[routes.hello]\ntargets = [\"t\"]\n";

struct Proc(Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signalbox(dir: &Path, db: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_signalbox"));
    c.args(args)
        .arg("--config")
        .arg(dir.join("signalbox.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("SIGNALBOX_MASTER_KEY")
        .env_remove("SIGNALBOX_ADMIN_PASSWORD")
        .env_remove("SIGNALBOX_BOOTSTRAP_KEY")
        .env_remove("SIGNALBOX_DATA_DIR");
    if let Some(db) = db {
        c.arg("--db").arg(db);
    }
    c
}

fn run(dir: &Path, db: Option<&str>, args: &[&str]) -> Output {
    signalbox(dir, db, args).output().unwrap()
}

/// Start `serve` on port 0; returns the process, its address and its log so far.
fn serve(
    dir: &Path,
    db: Option<&str>,
    envs: &[(&str, &str)],
) -> Result<(Proc, String, String), String> {
    let mut cmd = signalbox(dir, db, &["serve", "--port", "0"]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                log.push_str(&line);
                log.push('\n');
                if let Some(i) = line.find("listening on http://") {
                    let addr = line[i + "listening on http://".len()..]
                        .split_whitespace()
                        .next()
                        .unwrap()
                        .to_string();
                    std::thread::spawn(move || for _ in lines {});
                    return Ok((Proc(child), addr, log));
                }
            }
            _ => {
                let _ = child.wait();
                return Err(log);
            }
        }
    }
}

fn each_db(f: impl Fn(&Path, Option<&str>)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg = rt.block_on(signalbox_store::testing::fresh_postgres());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("signalbox.toml"), CONFIG).unwrap();
    f(dir.path(), None);
    if let Some(pg) = pg {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("signalbox.toml"), CONFIG).unwrap();
        f(dir.path(), Some(&pg));
    }
}

fn creds(dir: &Path) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(dir.join("data/initial-credentials"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

#[test]
fn first_start_writes_initial_credentials_once_and_keeps_secrets_out_of_the_log() {
    each_db(|dir, db| {
        let (proc_, addr, log) = serve(dir, db, &[]).unwrap();
        let file = dir.join("data/initial-credentials");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                std::fs::metadata(dir.join("data/master.key"))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777,
                0o600
            );
        }
        let c = creds(dir);
        assert_eq!(c["admin_user"], "admin");
        let (pw, key) = (c["admin_password"].clone(), c["gateway_key"].clone());
        assert!(log.contains("initial-credentials"), "{log}");
        assert!(
            !log.contains(&pw) && !log.contains(&key),
            "secrets in the log:\n{log}"
        );
        // The key calls a route; the password logs in.
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r = client()
                .post(format!("http://{addr}/v1/chat/completions"))
                .bearer_auth(&key)
                .json(&json!({"model": "route::hello", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            assert!(crate::admin::login(&format!("http://{addr}"), "admin", &pw).await.is_ok());
        });
        drop(proc_);
        // A second start creates nothing and leaves the file as it was.
        let before = std::fs::read_to_string(&file).unwrap();
        let (_p, _, log2) = serve(dir, db, &[]).unwrap();
        assert!(!log2.contains("first start"), "{log2}");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    });
}

#[test]
fn a_wrong_master_key_refuses_to_start_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("signalbox.toml"), CONFIG).unwrap();
    let (p, _, _) = serve(dir.path(), None, &[]).unwrap();
    drop(p);
    let other = signalbox_store::MasterKey::generate().to_base64();
    let log = serve(dir.path(), None, &[("SIGNALBOX_MASTER_KEY", &other)])
        .err()
        .expect("must refuse to start");
    assert!(
        log.contains("master key does not unlock this store"),
        "{log}"
    );
}

#[test]
fn keys_create_prints_the_key_alone_and_list_and_revoke_manage_it() {
    each_db(|dir, db| {
        assert!(run(dir, db, &["migrate"]).status.success());
        if db.is_none() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("data"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o700,
                "migrate makes the data directory owner-only"
            );
        }
        let out = run(
            dir,
            db,
            &["keys", "create", "--project", "default", "--name", "ci"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let key = stdout.trim();
        assert_eq!(
            stdout.lines().count(),
            1,
            "the key alone on stdout: {stdout:?}"
        );
        assert!(key.starts_with("sbx-"));
        let list =
            String::from_utf8(run(dir, db, &["keys", "list", "--project", "default"]).stdout)
                .unwrap();
        assert!(list.contains(&key[..12]) && !list.contains(key), "{list}");
        let id = list
            .lines()
            .find(|l| l.contains(&key[..12]))
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        // The key works on a running gateway, then a CLI revoke reaches it.
        let (_p, addr, _) = serve(dir, db, &[]).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let call = |k: String| {
            rt.block_on(async {
                client()
                    .post(format!("http://{addr}/v1/chat/completions"))
                    .bearer_auth(k)
                    .json(&json!({"model": "route::hello", "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        };
        assert_eq!(call(key.to_string()), 200);
        assert!(
            run(dir, db, &["keys", "revoke", &id, "--project", "default"])
                .status
                .success()
        );
        let t0 = std::time::Instant::now();
        while call(key.to_string()) != 401 {
            assert!(
                t0.elapsed().as_secs() < 5,
                "revocation never reached the running gateway"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let bad = run(
            dir,
            db,
            &["keys", "create", "--project", "nope", "--name", "x"],
        );
        assert!(!bad.status.success());
    });
}

/// A config whose `env::VAR` is set only where the gateway runs does not stop key commands
/// run from another shell (an emergency revoke above all); a change that adds an error of its
/// own is still refused.
#[test]
fn key_commands_work_where_the_configs_environment_is_not_set() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let config = format!(
        "{CONFIG}[providers.prod]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nmodels = [\"gpt-4o\"]\ncredential = \"env::SB_TEST_PROD_ONLY_KEY\"\n[targets.p]\nmodel = \"gpt-4o\"\n[providers.tm]\nkind = \"mock\"\nmodels = [\"t-1\"]\nproject = \"team\"\n"
    );
    std::fs::write(dir.join("signalbox.toml"), config).unwrap();
    let run = |args: &[&str]| {
        signalbox(dir, None, args)
            .env_remove("SB_TEST_PROD_ONLY_KEY")
            .output()
            .unwrap()
    };
    let out = run(&["keys", "create", "--project", "default", "--name", "ops"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = String::from_utf8(run(&["keys", "list", "--project", "default"]).stdout).unwrap();
    let id = list
        .lines()
        .find(|l| l.contains(" ops "))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let out = run(&["keys", "revoke", &id, "--project", "default"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A blank name, or a lifetime past a hundred years (it overflowed into a key born
    // expired), is refused and creates nothing.
    for bad in [
        &["--name", " "][..],
        &["--name", "x", "--expires-in", "9223372036854775807"][..],
        &["--name", "x", "--expires-in", "0"][..],
    ] {
        let mut args = vec!["keys", "create", "--project", "default"];
        args.extend_from_slice(bad);
        let out = run(&args);
        assert!(!out.status.success() && out.stdout.is_empty(), "{bad:?}");
    }
    let list = String::from_utf8(run(&["keys", "list", "--project", "default"]).stdout).unwrap();
    assert_eq!(
        list.lines().count(),
        3,
        "header, the initial key and ops: {list}"
    );
    // An import naming a target that exists nowhere is its own error: refused.
    std::fs::write(
        dir.join("bad.toml"),
        "[routes.broken]\ntargets = [\"nowhere\"]\n",
    )
    .unwrap();
    let out = run(&["config", "import", "bad.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("nowhere"), "{err}");
    assert!(
        !err.contains("SB_TEST_PROD_ONLY_KEY"),
        "only the change's own errors: {err}"
    );
    // A project only the file names gets its first key here too.
    let out = run(&["keys", "create", "--project", "team", "--name", "svc"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A config file that does not parse checks nothing: the change is refused, not waved
    // through as an error that was already there.
    std::fs::write(dir.join("signalbox.toml"), "[routes.x\n").unwrap();
    let out = run(&["config", "import", "bad.toml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("unclosed table"),
        "{err}"
    );
}

/// `keys create --project P` for a project only the config file names creates the project's
/// store record with the key (keys live in the store); a project named nowhere is still refused.
#[test]
fn keys_create_works_for_a_project_only_the_config_file_names() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let team = "[providers.tp]\nkind = \"mock\"\nmodels = [\"t-1\"]\nproject = \"team\"\n[targets.tt]\nmodel = \"t-1\"\nproject = \"team\"\n";
    std::fs::write(dir.join("signalbox.toml"), format!("{CONFIG}{team}")).unwrap();
    let out = run(
        dir,
        None,
        &["keys", "create", "--project", "team", "--name", "svc"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .starts_with("sbx-")
    );
    let list =
        String::from_utf8(run(dir, None, &["keys", "list", "--project", "team"]).stdout).unwrap();
    assert!(list.contains(" svc "), "{list}");
    assert!(
        !run(
            dir,
            None,
            &["keys", "create", "--project", "nowhere", "--name", "x"]
        )
        .status
        .success()
    );
}

/// Import creates projects by the rule the config file and the admin API hold them to: a
/// name no config file could name back is refused, and no project comes of it.
#[test]
fn config_import_refuses_a_project_name_the_config_file_could_not_hold() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("signalbox.toml"), CONFIG).unwrap();
    let t = "[providers.demo2]\nkind = \"mock\"\nmodels = [\"echo-9\"]\n[targets.c]\nmodel = \"echo-9\"\n";
    std::fs::write(dir.join("t.toml"), t).unwrap();
    for bad in ["", "has space", "a/../b"] {
        let out = run(dir, None, &["config", "import", "t.toml", "--project", bad]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("not a valid project name"),
            "{bad:?}: {err}"
        );
        assert!(
            !run(dir, None, &["config", "export", "--project", bad])
                .status
                .success()
        );
    }
    let out = run(
        dir,
        None,
        &["config", "import", "t.toml", "--project", "team-2"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Node settings in an imported file are not imported, and each is said so.
    let node = format!("[server]\nport = 4100\n[routing.retry]\nmax_retries = 5\n{t}");
    std::fs::write(dir.join("t.toml"), node).unwrap();
    let out = run(
        dir,
        None,
        &["config", "import", "t.toml", "--project", "team-2"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("[server] not imported") && err.contains("[routing] not imported"),
        "{err}"
    );
}

#[test]
fn config_import_then_export_round_trips_and_a_bad_import_changes_nothing() {
    each_db(|dir, db| {
        std::fs::write(
            dir.join("signalbox.toml"),
            "[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\", \"echo-2\"]\n",
        )
        .unwrap();
        let import = dir.join("routes.toml");
        std::fs::write(
            &import,
            "[targets.a]\nmodel = \"echo-1\"\n[targets.b]\nmodel = \"echo-2\"\n[routes.split]\nstrategy = \"weighted\"\ntargets = [{ target = \"a\", weight = 70 }, \"b\"]\n[routes.chain]\nstrategy = \"fallback\"\ntargets = [\"a\", \"b\"]\nretry = { max_retries = 1 }\n",
        )
        .unwrap();
        let out = run(dir, db, &["config", "import", import.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let exported =
            String::from_utf8(run(dir, db, &["config", "export", "--project", "default"]).stdout)
                .unwrap();
        for needle in [
            "[routes.split]",
            "[routes.chain]",
            "weight = 70",
            "max_retries = 1",
        ] {
            assert!(exported.contains(needle), "{needle} missing:\n{exported}");
        }
        let explain = |extra: &[&str]| {
            let mut args = vec!["explain", "route::split"];
            args.extend_from_slice(extra);
            let o = run(dir, db, &args);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
        };
        let from_store = explain(&[]);
        // The export, as a config file of its own, plans the same.
        let file = dir.join("exported.toml");
        std::fs::write(
            &file,
            format!(
                "[providers.demo]\nkind = \"mock\"\nmodels = [\"echo-1\", \"echo-2\"]\n{exported}"
            ),
        )
        .unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_signalbox"))
            .args(["explain", "route::split", "--file-only", "--config"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["plan"],
            from_store["plan"]
        );
        // An import with one bad reference applies nothing at all.
        std::fs::write(
            &import,
            "[targets.c]\nmodel = \"echo-1\"\n[routes.broken]\ntargets = [\"zzz\"]\n",
        )
        .unwrap();
        let out = run(dir, db, &["config", "import", import.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("routes.broken.targets[0]"));
        let after = String::from_utf8(run(dir, db, &["config", "export"]).stdout).unwrap();
        assert!(
            !after.contains("[targets.c]"),
            "half an import landed:\n{after}"
        );
    });
}

#[test]
fn reset_password_and_rotate_master_key_keep_the_store_usable() {
    each_db(|dir, db| {
        let (p, _, _) = serve(dir, db, &[]).unwrap();
        drop(p);
        let out = signalbox(dir, db, &["admin", "reset-password"])
            .env("SIGNALBOX_NEW_PASSWORD", "          ")
            .output()
            .unwrap();
        assert!(!out.status.success(), "a password of spaces is refused");
        let out = signalbox(dir, db, &["admin", "reset-password"])
            .env("SIGNALBOX_NEW_PASSWORD", "brand-new-password")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let old_key = std::fs::read_to_string(dir.join("data/master.key")).unwrap();
        let out = run(dir, db, &["rotate-master-key"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_ne!(
            std::fs::read_to_string(dir.join("data/master.key")).unwrap(),
            old_key
        );
        let (_p, addr, _) = serve(dir, db, &[]).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let url = format!("http://{addr}");
            assert!(
                crate::admin::login(&url, "admin", "brand-new-password")
                    .await
                    .is_ok()
            );
            let old = creds(dir)["admin_password"].clone();
            assert_eq!(
                crate::admin::login(&url, "admin", &old)
                    .await
                    .unwrap_err()
                    .0,
                401
            );
        });
    });
}

/// With the master key in SIGNALBOX_MASTER_KEY, the printed new key is its only copy: when
/// it cannot be printed, the store is left on the old key (it still opens with it); when it
/// is printed, the store opens with the printed key and no longer with the old one.
#[test]
fn rotating_an_environment_master_key_never_loses_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("signalbox.toml"), CONFIG).unwrap();
    let old = signalbox_store::MasterKey::generate().to_base64();
    let with_key = |key: &str, args: &[&str]| {
        let mut c = signalbox(dir, None, args);
        c.env("SIGNALBOX_MASTER_KEY", key);
        c
    };
    let list = ["keys", "list", "--project", "default"];
    assert!(with_key(&old, &list).output().unwrap().status.success());
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = with_key(&old, &["rotate-master-key"])
        .stdout(full)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("still uses the old one"), "{err}");
    assert!(
        with_key(&old, &list).output().unwrap().status.success(),
        "the old key still opens the store"
    );
    let out = with_key(&old, &["rotate-master-key"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(with_key(&new, &list).output().unwrap().status.success());
    assert!(!with_key(&old, &list).output().unwrap().status.success());
}

/// A relative SQLite path written in the config file is taken from the file's folder, as the
/// file's other paths are: the same store whatever directory a command runs in. `sqlite:PATH`
/// (no `//`) names the same store as `sqlite://PATH` for every command.
#[test]
fn a_relative_sqlite_url_in_the_file_is_relative_to_the_file() {
    let root = tempfile::tempdir().unwrap();
    let (conf_dir, elsewhere) = (root.path().join("conf"), root.path().join("elsewhere"));
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let config = conf_dir.join("signalbox.toml");
    std::fs::write(
        &config,
        format!("[store]\nurl = \"sqlite://rel.db\"\ndata_dir = \"data\"\n{CONFIG}"),
    )
    .unwrap();
    let cmd = |cwd: &Path, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_signalbox"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .current_dir(cwd)
            .env_remove("SIGNALBOX_MASTER_KEY")
            .env_remove("SIGNALBOX_DATA_DIR")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    cmd(
        &elsewhere,
        &["keys", "create", "--project", "default", "--name", "a"],
    );
    assert!(conf_dir.join("rel.db").exists());
    assert!(!elsewhere.join("rel.db").exists());
    // From the file's own folder: the same store (the key made above is listed).
    let list = String::from_utf8(cmd(&conf_dir, &["keys", "list", "--project", "default"]).stdout)
        .unwrap();
    assert!(list.contains(" a "), "{list}");
    // `sqlite:PATH` on the command line is that store too: rotating finds it.
    let db = format!("sqlite:{}", conf_dir.join("rel.db").display());
    cmd(
        &elsewhere,
        &[
            "rotate-master-key",
            "--db",
            &db,
            "--data-dir",
            conf_dir.join("data").to_str().unwrap(),
        ],
    );
    let list = String::from_utf8(cmd(&elsewhere, &["keys", "list", "--project", "default"]).stdout)
        .unwrap();
    assert!(list.contains(" a "), "{list}");
    // A store an earlier release made from the working directory is named, never replaced by
    // a new empty one in the file's folder.
    let old_db = elsewhere.join("old.db");
    let made = Command::new(env!("CARGO_BIN_EXE_signalbox"))
        .args(["migrate", "--db"])
        .arg(format!("sqlite://{}", old_db.display()))
        .arg("--data-dir")
        .arg(conf_dir.join("data"))
        .output()
        .unwrap();
    assert!(made.status.success() && old_db.exists());
    std::fs::write(
        &config,
        format!("[store]\nurl = \"sqlite://old.db\"\ndata_dir = \"data\"\n{CONFIG}"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_signalbox"))
        .args(["keys", "list", "--config"])
        .arg(&config)
        .current_dir(&elsewhere)
        .env_remove("SIGNALBOX_MASTER_KEY")
        .env_remove("SIGNALBOX_DATA_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("taken from the working directory"),
        "{err}"
    );
    assert!(!conf_dir.join("old.db").exists(), "no new store was made");
}

#[test]
fn admin_listen_moves_the_admin_api_or_switches_it_off() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = |url: String| {
        rt.block_on(async {
            client()
                .post(url)
                .json(&json!({"username": "admin", "password": "x"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("signalbox.toml"),
        format!("[server]\nadmin_listen = \"off\"\n{CONFIG}"),
    )
    .unwrap();
    let (p, addr, _) = serve(dir.path(), None, &[]).unwrap();
    assert_eq!(status(format!("http://{addr}/admin/v1/login")), 404);
    drop(p);

    std::fs::write(
        dir.path().join("signalbox.toml"),
        format!("[server]\nadmin_listen = \"127.0.0.1:0\"\n{CONFIG}"),
    )
    .unwrap();
    let (_p, addr, log) = serve(dir.path(), None, &[]).unwrap();
    assert_eq!(
        status(format!("http://{addr}/admin/v1/login")),
        404,
        "not on the data-plane address"
    );
    let admin = log
        .lines()
        .find_map(|l| l.split("admin API listening on http://").nth(1))
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no admin address in the log:\n{log}"))
        .to_string();
    assert_eq!(status(format!("http://{admin}/admin/v1/login")), 401);
}

#[test]
fn a_command_pointed_at_no_store_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("signalbox.toml"), "").unwrap();
    // A mistyped data directory: rotating or resetting a password refuses instead of making
    // a store to change (whose new password would be no store's).
    for args in [&["rotate-master-key"][..], &["admin", "reset-password"][..]] {
        let out = run(dir.path(), None, args);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("no store at"),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!dir.path().join("data/signalbox.db").exists());
    }
    // A store that cannot be reached: no master key is left for a later start to trust.
    let out = run(
        dir.path(),
        Some("postgres://sb@127.0.0.1:1/sb?connect_timeout=1"),
        &["check"],
    );
    assert!(!out.status.success());
    assert!(!dir.path().join("data/master.key").exists());
    // A first start refused for a too-short bootstrap secret creates nothing at all.
    let _ = std::fs::remove_dir_all(dir.path().join("data"));
    let log = serve(dir.path(), None, &[("SIGNALBOX_BOOTSTRAP_KEY", "short")])
        .err()
        .expect("refused");
    assert!(
        log.contains("SIGNALBOX_BOOTSTRAP_KEY must be at least"),
        "{log}"
    );
    assert!(!dir.path().join("data").exists());
    // So does one refused for its [server] settings (auth off on a public address).
    std::fs::write(
        dir.path().join("signalbox.toml"),
        "[server]\nauth = \"off\"\nhost = \"0.0.0.0\"\n",
    )
    .unwrap();
    let log = serve(dir.path(), None, &[]).err().expect("refused");
    assert!(log.contains("server.auth"), "{log}");
    assert!(!dir.path().join("data").exists());
}

#[test]
fn an_unset_store_url_variable_is_named_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("signalbox.toml"),
        "[store]\nurl = \"env::SIGNALBOX_TEST_NOT_SET_ANYWHERE\"\n",
    )
    .unwrap();
    let out = run(dir.path(), None, &["check"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("signalbox.toml:2: store.url: names environment variable SIGNALBOX_TEST_NOT_SET_ANYWHERE, which is not set"),
        "{err}"
    );
}
