//! Image references: parsing and normalisation with the distribution grammar, and the
//! key imageshim uses for an image. Owns the grammar and the key form; must not do I/O.
//! The backend always receives the caller's original string, never the key.
//! Ported from distribution/reference v0.6 (`regexp.go` grammar, `normalize.go`
//! `ParseNormalizedNamed`, `reference.go` limits) with the total-name limit containerd
//! 1.6 and CRI-O 1.37 apply (DESIGN §2.2).

use std::fmt;

/// Docker Hub's canonical domain.
pub const DOCKER_HUB: &str = "docker.io";
const LEGACY_DOCKER_HUB: &str = "index.docker.io";
const NAME_TOTAL_LENGTH_MAX: usize = 255;
const TAG_LENGTH_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    pub domain: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// Why a reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("empty image reference")]
    Empty,
    #[error("invalid reference format: {0}")]
    InvalidFormat(String),
    #[error("repository name ({0}) must be lowercase")]
    NotLowercase(String),
    #[error("repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters")]
    NameTooLong,
    #[error("tag must be at most {TAG_LENGTH_MAX} characters")]
    TagTooLong,
    #[error("invalid digest length for {0}")]
    DigestLength(String),
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedDigest(String),
    #[error("cannot specify a 64-byte hexadecimal string as a repository name")]
    HexIdentifier,
}

impl Reference {
    /// Parses `input` as the kubelet and containerd do (`ParseNormalizedNamed`).
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if is_hex64(input) {
            return Err(ReferenceError::HexIdentifier);
        }
        let (domain, remainder) = split_domain(input);
        let (name_and_tag, digest) = match remainder.split_once('@') {
            Some((n, d)) => (n, Some(parse_digest(d)?)),
            None => (remainder.as_str(), None),
        };
        let (path, tag) = match name_and_tag.split_once(':') {
            Some((p, t)) => (p, Some(parse_tag(t)?)),
            None => (name_and_tag, None),
        };
        if path.to_lowercase() != path {
            return Err(ReferenceError::NotLowercase(path.to_string()));
        }
        validate_domain(&domain)?;
        validate_path(path)?;
        if domain.len() + 1 + path.len() > NAME_TOTAL_LENGTH_MAX {
            return Err(ReferenceError::NameTooLong);
        }
        Ok(Reference {
            domain,
            path: path.to_string(),
            tag,
            digest,
        })
    }

    /// The tag as the key sees it: the given tag, or `latest` when neither tag nor digest.
    pub fn effective_tag(&self) -> Option<&str> {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => Some(tag),
            (None, None) => Some("latest"),
            (None, Some(_)) => None,
        }
    }

    /// `domain/path` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The normalised key: digest wins over the tag, `:latest` when neither is given.
    pub fn key(&self) -> String {
        match (&self.digest, self.effective_tag()) {
            (Some(digest), _) => format!("{}@{}", self.name(), digest),
            (None, Some(tag)) => format!("{}:{}", self.name(), tag),
            (None, None) => self.name(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Splits the domain off as `splitDockerDomain` does and applies Docker Hub defaults.
fn split_domain(input: &str) -> (String, String) {
    let (mut domain, mut remainder) = match input.split_once('/') {
        Some((first, rest)) if looks_like_domain(first) => (first.to_string(), rest.to_string()),
        _ => (DOCKER_HUB.to_string(), input.to_string()),
    };
    if domain == LEGACY_DOCKER_HUB {
        domain = DOCKER_HUB.to_string();
    }
    if domain == DOCKER_HUB && !remainder.contains('/') {
        remainder = format!("library/{remainder}");
    }
    (domain, remainder)
}

fn looks_like_domain(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost" || first.to_lowercase() != first
}

fn validate_domain(domain: &str) -> Result<(), ReferenceError> {
    let bad =
        || ReferenceError::InvalidFormat(format!("domain {domain:?} is not a valid host[:port]"));
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
        if inside.is_empty() || !inside.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(bad());
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (None, port)
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(host) = host {
        if !host.split('.').all(is_domain_component) {
            return Err(bad());
        }
    }
    match port {
        Some(p) if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) => Err(bad()),
        _ => Ok(()),
    }
}

fn is_domain_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    !bytes.is_empty()
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

fn validate_path(path: &str) -> Result<(), ReferenceError> {
    for component in path.split('/') {
        if !is_path_component(component) {
            return Err(ReferenceError::InvalidFormat(format!(
                "path component {component:?} must be lowercase letters and digits separated by '.', '_', '__' or '-'"
            )));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(b) {
            let ok = matches!(separator.as_str(), "" | "." | "_" | "__")
                || separator.bytes().all(|s| s == b'-');
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(b as char);
        } else {
            return false;
        }
    }
    true
}

/// `[\w][\w.-]{0,127}`
fn parse_tag(tag: &str) -> Result<String, ReferenceError> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    if bytes.is_empty()
        || !word(bytes[0])
        || !bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
    {
        return Err(ReferenceError::InvalidFormat(format!(
            "tag {tag:?} must match [A-Za-z0-9_][A-Za-z0-9_.-]*"
        )));
    }
    if bytes.len() > TAG_LENGTH_MAX {
        return Err(ReferenceError::TagTooLong);
    }
    Ok(tag.to_string())
}

/// `algorithm:hex`, with the lengths the known algorithms require.
fn parse_digest(digest: &str) -> Result<String, ReferenceError> {
    let bad = || ReferenceError::InvalidFormat(format!("digest {digest:?} must be algorithm:hex"));
    let (algorithm, hex) = digest.split_once(':').ok_or_else(bad)?;
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|c| {
        c.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && c.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if !algorithm_ok || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let expected = match algorithm {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        other => return Err(ReferenceError::UnsupportedDigest(other.to_string())),
    };
    if hex.len() != expected || hex.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::DigestLength(algorithm.to_string()));
    }
    Ok(digest.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../testdata/reference.json")).unwrap()
    }

    fn opt(v: &Value) -> Option<String> {
        v.as_str().map(str::to_string)
    }

    #[test]
    fn every_valid_vector_parses_to_its_key_and_parts() {
        let all = vectors();
        let cases = all["valid"].as_array().unwrap();
        assert!(cases.len() >= 20);
        for case in cases {
            let input = case["input"].as_str().unwrap();
            let parsed = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                parsed.key(),
                case["key"].as_str().unwrap(),
                "key of {input}"
            );
            assert_eq!(
                parsed.domain,
                case["domain"].as_str().unwrap(),
                "domain of {input}"
            );
            assert_eq!(
                parsed.path,
                case["path"].as_str().unwrap(),
                "path of {input}"
            );
            let tag = parsed
                .tag
                .clone()
                .or(parsed.effective_tag().map(str::to_string));
            assert_eq!(tag, opt(&case["tag"]), "tag of {input}");
            assert_eq!(parsed.digest, opt(&case["digest"]), "digest of {input}");
        }
    }

    fn expected_kind(why: &str, err: &ReferenceError) -> bool {
        match why {
            "empty name" => matches!(err, ReferenceError::Empty),
            "invalid format" => matches!(err, ReferenceError::InvalidFormat(_)),
            "repository name must be lowercase" => matches!(err, ReferenceError::NotLowercase(_)),
            "invalid digest length" => matches!(err, ReferenceError::DigestLength(_)),
            "unsupported digest algorithm" => matches!(err, ReferenceError::UnsupportedDigest(_)),
            "tag over 128 characters" => matches!(err, ReferenceError::TagTooLong),
            w if w.contains("255") => matches!(err, ReferenceError::NameTooLong),
            other => panic!("vector reason not mapped: {other}"),
        }
    }

    #[test]
    fn every_invalid_vector_is_refused_for_its_reason() {
        let all = vectors();
        for case in all["invalid"].as_array().unwrap() {
            let input = case["input"].as_str().unwrap();
            let why = case["why"].as_str().unwrap();
            let err = Reference::parse(input).expect_err(input);
            assert!(
                expected_kind(why, &err),
                "{input}: expected {why}, got {err}"
            );
        }
    }

    #[test]
    fn bare_ids_are_not_names() {
        let hex = "e6693c20186f837fc393390135d8a598a96a833917917789d63766cab6c59582";
        assert_eq!(Reference::parse(hex), Err(ReferenceError::HexIdentifier));
    }

    #[test]
    fn ipv6_domain_and_errors_name_the_part() {
        let r = Reference::parse("[::1]:5000/foo:bar").unwrap();
        assert_eq!(r.key(), "[::1]:5000/foo:bar");
        let err = Reference::parse("aa/asdf$$^/aa").unwrap_err().to_string();
        assert!(err.contains("asdf$$^"), "{err}");
    }
}
