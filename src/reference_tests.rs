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
