//! A keyring of registry credentials from docker config.json (`auths`) and legacy
//! `.dockercfg` files, looked up with the kubelet's rules; files are re-read when they
//! change on disk. Ported from the kubelet's `pkg/credentialprovider/config.go`
//! (`ReadDockerConfigJSONFile`, `DockerConfigEntry` decoding of `auth`) and
//! `keyring.go` (`BasicDockerKeyring.Lookup`: all matches, most specific first).

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::Engine;
use serde::Deserialize;

use super::matching::{is_docker_hub_image, normalize_key, url_matches, DOCKER_HUB_KEY};
use super::{CredentialsError, RegistryCredential};

/// Credentials indexed by normalised key, most specific key first.
#[derive(Debug, Default, Clone)]
pub struct Keyring {
    entries: BTreeMap<String, Vec<RegistryCredential>>,
}

impl Keyring {
    pub fn add(&mut self, key: &str, credential: RegistryCredential) {
        self.entries
            .entry(normalize_key(key))
            .or_default()
            .push(credential);
    }

    /// Every credential whose key matches `image` (`host[:port]/path`), most specific
    /// key first (keys in reverse lexical order); Docker Hub images fall back to
    /// `index.docker.io` credentials.
    pub fn lookup(&self, image: &str) -> Vec<RegistryCredential> {
        let found: Vec<RegistryCredential> = self
            .entries
            .iter()
            .rev()
            .filter(|(key, _)| url_matches(key, image))
            .flat_map(|(_, credentials)| credentials.iter().cloned())
            .collect();
        if !found.is_empty() || !is_docker_hub_image(image) {
            return found;
        }
        self.entries
            .get(DOCKER_HUB_KEY)
            .cloned()
            .unwrap_or_default()
    }

    /// Parses a config.json (`{"auths": {...}}`) or legacy `.dockercfg` document.
    pub fn from_docker_config(text: &str, origin: &Path) -> Result<Keyring, CredentialsError> {
        let invalid = |reason: String| CredentialsError::DockerConfig {
            path: origin.to_path_buf(),
            reason,
        };
        // serde's messages can quote values (a password in the wrong place): say only
        // where and what kind of error.
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            invalid(format!(
                "{:?} JSON error at line {} column {}",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        let auths = match value.get("auths") {
            Some(auths) => auths.clone(),
            None => value,
        };
        let entries: BTreeMap<String, DockerConfigEntry> =
            serde_json::from_value(auths).map_err(|_| {
                invalid("auths: every entry must be an object of string fields (auth, username, password, identitytoken); values not shown".into())
            })?;
        let mut keyring = Keyring::default();
        for (key, entry) in entries {
            let credential = entry
                .into_credential()
                .map_err(|reason| invalid(format!("auths.{key:?}: {reason}")))?;
            keyring.add(&key, credential);
        }
        Ok(keyring)
    }

    fn extend(&mut self, other: Keyring) {
        for (key, credentials) in other.entries {
            self.entries.entry(key).or_default().extend(credentials);
        }
    }
}

/// One `auths` entry.
#[derive(Deserialize, Default)]
struct DockerConfigEntry {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default, rename = "identitytoken")]
    identity_token: String,
}

impl DockerConfigEntry {
    fn into_credential(self) -> Result<RegistryCredential, String> {
        let (mut username, mut password) = (self.username, self.password);
        if !self.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .map_err(|_| "auth is not valid base64".to_string())?;
            let decoded =
                String::from_utf8(decoded).map_err(|_| "auth is not UTF-8".to_string())?;
            let (user, pass) = decoded
                .split_once(':')
                .ok_or_else(|| "auth must encode username:password".to_string())?;
            (username, password) = (user.to_string(), pass.to_string());
        }
        Ok(RegistryCredential {
            username,
            password,
            identity_token: self.identity_token,
        })
    }
}

/// The keyrings of a list of files, re-read whenever a file's modification time or
/// size changes. A missing file contributes nothing; a file that cannot be read or
/// parsed (corrupt, half-written) keeps contributing what it held before, with a
/// warning naming it.
pub struct FileKeyring {
    paths: Vec<PathBuf>,
    loaded: Mutex<Loaded>,
}

/// Modification time and size of a file (`None` when it is missing).
type FileStamp = Option<(SystemTime, u64)>;

#[derive(Default)]
struct Loaded {
    /// Per path: the stamp last looked at and the keyring last read successfully.
    files: Vec<(Option<FileStamp>, Keyring)>,
    merged: Keyring,
}

impl FileKeyring {
    pub fn new(paths: Vec<PathBuf>) -> FileKeyring {
        let files = vec![(None, Keyring::default()); paths.len()];
        FileKeyring {
            paths,
            loaded: Mutex::new(Loaded {
                files,
                merged: Keyring::default(),
            }),
        }
    }

    /// Reads every file now, reporting the first problem (used by check-config).
    pub fn check(paths: &[PathBuf]) -> Vec<CredentialsError> {
        paths.iter().filter_map(|p| read_keyring(p).err()).collect()
    }

    pub fn lookup(&self, image: &str) -> Vec<RegistryCredential> {
        let mut loaded = self.loaded.lock();
        let mut changed = false;
        for (path, (seen, keyring)) in self.paths.iter().zip(loaded.files.iter_mut()) {
            let now = Some(stamp(path));
            if *seen == now {
                continue;
            }
            *seen = now;
            changed = true;
            match read_keyring(path) {
                Ok(found) => *keyring = found,
                Err(err) => tracing::warn!(
                    error = %err,
                    "docker config unreadable; its previous credentials stay in force"
                ),
            }
        }
        if changed {
            let mut merged = Keyring::default();
            for (_, keyring) in &loaded.files {
                merged.extend(keyring.clone());
            }
            loaded.merged = merged;
        }
        loaded.merged.lookup(image)
    }
}

fn stamp(path: &Path) -> FileStamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

fn read_keyring(path: &Path) -> Result<Keyring, CredentialsError> {
    match crate::config::read_config_file(path) {
        Ok(text) => Keyring::from_docker_config(&text, path),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(Keyring::default()),
        Err(err) => Err(CredentialsError::DockerConfig {
            path: path.to_path_buf(),
            reason: err.to_string(),
        }),
    }
}
