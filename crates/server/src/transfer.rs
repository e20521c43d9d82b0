//! `signalbox config export|import`: a project's store objects as config-file TOML and back.

use serde_json::Value;
use signalbox_core::config::raw::{HasProject, RawConfig};
use signalbox_core::config::{Catalog, ObjectKind};
use signalbox_store::Change;

/// The project's store objects as TOML the config file (or `config import`) loads back to
/// the same behaviour. Secrets are never written: `credential::NAME` references stay
/// references, and gateway keys (kept only as hashes) are listed in a comment.
pub fn export_toml(catalog: &Catalog, project: &str) -> String {
    let mut doc = toml::Table::new();
    for kind in ObjectKind::ALL {
        let mut table = toml::Table::new();
        for o in catalog
            .objects
            .iter()
            .filter(|o| o.kind == kind && o.project == project)
        {
            let mut body = o.body.clone();
            if project != "default"
                && kind != ObjectKind::Model
                && let Some(m) = body.as_object_mut()
            {
                m.insert("project".into(), Value::String(project.to_string()));
            }
            match toml::Value::try_from(strip_nulls(body)) {
                Ok(v) => {
                    table.insert(o.name.clone(), v);
                }
                Err(e) => tracing::warn!(
                    "{} '{}' cannot be written as TOML: {e}",
                    kind.as_str(),
                    o.name
                ),
            }
        }
        if !table.is_empty() {
            doc.insert(kind.table().to_string(), toml::Value::Table(table));
        }
    }
    let mut out = format!("# Signalbox project '{project}', exported from the store.\n");
    let mut creds: Vec<&String> = catalog
        .credentials
        .iter()
        .filter(|(_, c)| c.project == project)
        .map(|(n, _)| n)
        .collect();
    creds.sort();
    if !creds.is_empty() {
        out.push_str(
            "# Stored credentials referenced as credential::NAME (values are never exported): ",
        );
        out.push_str(
            &creds
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
        out.push('\n');
    }
    let keys = catalog
        .keys
        .iter()
        .filter(|(_, e)| e.project == project)
        .count();
    if keys > 0 {
        out.push_str(&format!(
            "# {keys} gateway key(s) live in the store as hashes only and are not exported.\n"
        ));
    }
    out.push('\n');
    out.push_str(&toml::to_string(&doc).unwrap_or_default());
    out
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

/// The store changes that import a config file's objects (each into the project it names,
/// else `project`), plus warnings for what an import does not carry.
/// The tables of a config file that import leaves out (they configure a node, not a
/// project's objects), each with why: import warns of each one the file has.
pub fn tables_left_out(text: &str) -> Vec<String> {
    let Ok(doc) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    [
        ("server", "node settings stay in each node's config file"),
        ("store", "where a node's store lives stays in its config file"),
        ("defaults", "provider timeout defaults stay in the config file; set timeouts on the imported providers, models or targets"),
        ("routing", "the default retry policy stays in the config file; set `retry` on the imported routes or functions"),
    ]
    .into_iter()
    .filter(|(t, _)| doc.contains_key(*t))
    .map(|(t, why)| format!("[{t}] not imported: {why}"))
    .collect()
}

pub fn import_changes(
    raw: RawConfig,
    project: &str,
    existing_projects: &[String],
) -> (Vec<Change>, Vec<String>) {
    let mut changes = Vec::new();
    let mut warnings = Vec::new();
    let mut projects: Vec<String> = Vec::new();
    fn add<T: serde::Serialize + HasProject>(
        kind: ObjectKind,
        map: std::collections::BTreeMap<String, T>,
        default_project: &str,
        changes: &mut Vec<Change>,
        projects: &mut Vec<String>,
    ) {
        for (name, obj) in map {
            let p = match kind {
                ObjectKind::Model => default_project.to_string(),
                _ => obj.project().unwrap_or(default_project).to_string(),
            };
            let mut body = serde_json::to_value(&obj).unwrap_or(Value::Null);
            if let Some(m) = body.as_object_mut() {
                m.remove("project");
            }
            if !projects.contains(&p) {
                projects.push(p.clone());
            }
            changes.push(Change::PutObject {
                kind,
                project: p,
                name,
                body,
                if_match: None,
                create_only: false,
            });
        }
    }
    add(
        ObjectKind::Provider,
        raw.providers,
        project,
        &mut changes,
        &mut projects,
    );
    add(
        ObjectKind::Model,
        raw.models,
        project,
        &mut changes,
        &mut projects,
    );
    add(
        ObjectKind::Target,
        raw.targets,
        project,
        &mut changes,
        &mut projects,
    );
    add(
        ObjectKind::Route,
        raw.routes,
        project,
        &mut changes,
        &mut projects,
    );
    add(
        ObjectKind::Function,
        raw.functions,
        project,
        &mut changes,
        &mut projects,
    );
    if !raw.api_keys.is_empty() {
        warnings.push(format!(
            "{} [api_keys] entr(y/ies) not imported: create store keys with `signalbox keys create`",
            raw.api_keys.len()
        ));
    }
    let new_projects: Vec<Change> = projects
        .into_iter()
        .filter(|p| !existing_projects.contains(p))
        .map(|name| Change::CreateProject {
            name,
            description: "Created by config import".into(),
        })
        .collect();
    let mut all = new_projects;
    all.extend(changes);
    (all, warnings)
}
