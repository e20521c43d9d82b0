//! What the store contributes to a snapshot: its objects (in the file's key shapes, as JSON),
//! decrypted credentials, hashed gateway keys and the key hasher. The file and the store go
//! through the same validation in [`super::build_snapshot`].

use crate::model::{KeyEntry, KeyHasher, Secret};
use std::collections::HashMap;

/// The kinds of catalog object a project holds, by the name of their config-file table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Provider,
    Model,
    Target,
    Route,
    Function,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 5] = [
        ObjectKind::Provider,
        ObjectKind::Model,
        ObjectKind::Target,
        ObjectKind::Route,
        ObjectKind::Function,
    ];

    /// The config-file table: `providers`, `routes`, ...
    pub fn table(self) -> &'static str {
        match self {
            ObjectKind::Provider => "providers",
            ObjectKind::Model => "models",
            ObjectKind::Target => "targets",
            ObjectKind::Route => "routes",
            ObjectKind::Function => "functions",
        }
    }

    /// Singular, as stored: `provider`, `route`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::Provider => "provider",
            ObjectKind::Model => "model",
            ObjectKind::Target => "target",
            ObjectKind::Route => "route",
            ObjectKind::Function => "function",
        }
    }

    pub fn parse(s: &str) -> Option<ObjectKind> {
        ObjectKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s || k.table() == s)
    }
}

/// One store object: the body is the object's config-file table as JSON, without `project`.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogObject {
    pub kind: ObjectKind,
    pub project: String,
    pub name: String,
    pub body: serde_json::Value,
    pub version: i64,
}

/// A stored credential, decrypted.
#[derive(Debug, Clone)]
pub struct CatalogCredential {
    pub project: String,
    pub secret: Secret,
}

/// Everything the store adds to the file's config.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub projects: Vec<String>,
    /// Projects whose traces keep message content.
    pub capture_content: Vec<String>,
    pub objects: Vec<CatalogObject>,
    /// `credential::NAME` references resolve here.
    pub credentials: HashMap<String, CatalogCredential>,
    /// Store gateway keys, already hashed with `key_hasher`.
    pub keys: Vec<([u8; 32], KeyEntry)>,
    pub key_hasher: KeyHasher,
}

impl Catalog {
    /// No store: file keys are hashed under a key of this process only.
    pub fn file_only() -> Catalog {
        Catalog {
            projects: Vec::new(),
            capture_content: Vec::new(),
            objects: Vec::new(),
            credentials: HashMap::new(),
            keys: Vec::new(),
            key_hasher: KeyHasher::random(),
        }
    }
}
