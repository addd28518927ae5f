//! The kubelet's credential matching: schemeless URLs, per-label globs, equal ports and
//! path prefixes, and the Docker Hub fallback. Pure functions. Ported from the kubelet's
//! `pkg/credentialprovider/keyring.go` (`URLsMatch`, `ParseSchemelessURL`) and
//! `config.go` (Docker Hub handling); each host label is matched with Go's
//! `filepath.Match` (`glob.rs`).

use super::glob::go_match;

/// A registry URL without its scheme: host (with port) and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemelessUrl {
    pub host: String,
    pub port: String,
    pub path: String,
}

impl SchemelessUrl {
    /// Parses `registry.example.com:5000/some/path` (a scheme, if any, is dropped).
    pub fn parse(text: &str) -> SchemelessUrl {
        let without_scheme = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
            .unwrap_or(text);
        let (authority, path) = match without_scheme.find('/') {
            Some(i) => (&without_scheme[..i], &without_scheme[i..]),
            None => (without_scheme, ""),
        };
        let (host, port) = split_host_port(authority);
        SchemelessUrl {
            host: host.to_string(),
            port: port.to_string(),
            path: path.to_string(),
        }
    }
}

fn split_host_port(authority: &str) -> (&str, &str) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':').unwrap_or(""));
        }
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port),
        _ => (authority, ""),
    }
}

/// The keyring key for a config.json / plugin `auth` key: scheme dropped, `/v1/` and
/// `/v2/` treated as the bare host.
pub fn normalize_key(key: &str) -> String {
    let url = SchemelessUrl::parse(key);
    let mut path = url.path.as_str();
    if path.starts_with("/v2/") || path.starts_with("/v1/") {
        path = &path[3..];
    }
    let authority = if url.port.is_empty() {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    if path.is_empty() || path == "/" {
        authority
    } else {
        format!("{authority}{path}")
    }
}

/// Does the glob URL match the target (both schemeless)? Same port, same number of
/// host labels each matching its glob, and the glob's path a prefix of the target's.
pub fn url_matches(glob: &str, target: &str) -> bool {
    let glob = SchemelessUrl::parse(glob);
    let target = SchemelessUrl::parse(target);
    if glob.port != target.port || !target.path.starts_with(&glob.path) {
        return false;
    }
    let glob_labels: Vec<&str> = glob.host.split('.').collect();
    let target_labels: Vec<&str> = target.host.split('.').collect();
    glob_labels.len() == target_labels.len()
        && glob_labels
            .iter()
            .zip(&target_labels)
            .all(|(g, t)| go_match(g, t))
}

/// Docker Hub's key in a keyring.
pub const DOCKER_HUB_KEY: &str = "index.docker.io";

/// True for images on Docker Hub, which `index.docker.io` credentials also serve.
pub fn is_docker_hub_image(image: &str) -> bool {
    let mut parts = image.splitn(2, '/');
    let first = parts.next().unwrap_or("");
    if first.is_empty() {
        return false;
    }
    match parts.next() {
        None => true,
        Some(_) => {
            first == "docker.io" || first == "index.docker.io" || !first.contains(['.', ':'])
        }
    }
}

/// The registry part of an image (host and port), as plugin cache keys use it.
pub fn registry_of(image: &str) -> String {
    let url = SchemelessUrl::parse(image);
    if url.port.is_empty() {
        url.host
    } else {
        format!("{}:{}", url.host, url.port)
    }
}
