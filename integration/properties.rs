//! Ring 5, generated input (issue 8): every parser that takes outside input never
//! panics, and the wire edits never touch a byte they should not. Case counts are
//! proptest's default (256) in CI; run longer by hand with
//! `PROPTEST_CASES=100000 cargo test --test properties`.

use std::time::Duration;

use imageshim::config::Config;
use imageshim::credentials::duration::parse_go_duration;
use imageshim::credentials::exec::decode_response;
use imageshim::cri::wire;
use imageshim::reference::Reference;
use proptest::prelude::*;

const API: &str = "credentialprovider.kubelet.k8s.io/v1";

/// Strings shaped like references (domains, ports, paths, tags, digests, mixed case),
/// so most cases reach deep into the grammar rather than failing at the first byte.
fn reference_like() -> impl Strategy<Value = String> {
    let domain =
        "([a-zA-Z0-9-]{1,12}(\\.[a-z]{2,6}){0,2}(:[0-9]{1,5})?/|localhost/|\\[::1\\]:5000/)?";
    let path = "[a-z0-9]{1,12}(([._]|__|-+)[a-z0-9]{1,8}){0,2}(/[a-zA-Z0-9._-]{1,12}){0,3}";
    let tag = "(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,130})?";
    let digest = "(@(sha256|sha512|md5):[0-9a-fA-F]{0,130})?";
    proptest::string::string_regex(&format!("{domain}{path}{tag}{digest}")).expect("a valid regex")
}

fn field() -> impl Strategy<Value = Vec<u8>> {
    let number = 1u32..2000;
    prop_oneof![
        (number.clone(), any::<u64>()).prop_map(|(n, v)| {
            let mut out = Vec::new();
            prost::encoding::encode_varint(u64::from(n << 3), &mut out);
            prost::encoding::encode_varint(v, &mut out);
            out
        }),
        (
            number.clone(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(n, v)| {
                let mut out = Vec::new();
                wire::append_message_field(&mut out, n, &v);
                out
            }),
        (number.clone(), any::<[u8; 8]>()).prop_map(|(n, v)| {
            let mut out = Vec::new();
            prost::encoding::encode_varint(u64::from(n << 3 | 1), &mut out);
            out.extend_from_slice(&v);
            out
        }),
        (number, any::<[u8; 4]>()).prop_map(|(n, v)| {
            let mut out = Vec::new();
            prost::encoding::encode_varint(u64::from(n << 3 | 5), &mut out);
            out.extend_from_slice(&v);
            out
        }),
    ]
}

/// A valid message as a list of encoded fields.
fn message() -> impl Strategy<Value = Vec<Vec<u8>>> {
    proptest::collection::vec(field(), 0..12)
}

proptest! {
    #[test]
    fn reference_parsing_never_panics(input in any::<String>()) {
        let _ = Reference::parse(&input);
    }

    #[test]
    fn accepted_references_round_trip_through_their_key(input in reference_like()) {
        if let Ok(reference) = Reference::parse(&input) {
            let again = Reference::parse(&reference.key());
            prop_assert!(again.is_ok(), "{input:?} -> {:?} refused: {again:?}", reference.key());
            prop_assert_eq!(again.unwrap().key(), reference.key());
        }
    }

    #[test]
    fn go_durations_never_panic(input in any::<String>(), shaped in "[+]?([0-9]{0,25}(\\.[0-9]{0,25})?(ns|us|µs|ms|s|m|h|d)?){1,4}") {
        let _ = parse_go_duration(&input);
        let _ = parse_go_duration(&shaped);
    }

    #[test]
    fn go_durations_add_up(h in 0u64..100_000, m in 0u64..1000, s in 0u64..1000, ms in 0u64..1000) {
        let text = format!("{h}h{m}m{s}s{ms}ms");
        let expected = Duration::from_secs(h * 3600 + m * 60 + s) + Duration::from_millis(ms);
        prop_assert_eq!(parse_go_duration(&text).unwrap(), expected);
    }

    #[test]
    fn plugin_answers_never_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        kind in "CredentialProviderResponse|x",
        key_type in "Image|Registry|Global|\\PC{0,8}",
        duration in "\\PC{0,24}",
        pattern in "\\PC{0,24}",
    ) {
        let _ = decode_response(&bytes, API);
        let json = serde_json::json!({
            "kind": kind, "apiVersion": API, "cacheKeyType": key_type,
            "cacheDuration": duration,
            "auth": { pattern: { "username": "u", "password": "p" } },
        });
        let _ = decode_response(json.to_string().as_bytes(), API);
    }

    #[test]
    fn config_parsing_never_panics(
        text in "\\PC{0,200}",
        key in "socket|log_level|shutdown_grace|\\[pull\\]\nmax_parallel_image_pulls|\\[credentials\\]\nexec_timeout|\\[\\[backend\\]\\]\nendpoint",
        value in "\"\\PC{0,20}\"|-?[0-9]{1,25}|true|\\[\\]|\\{\\}",
    ) {
        let _ = Config::parse(&text);
        let _ = Config::parse(&format!("{key} = {value}\n"));
    }

    #[test]
    fn appending_auth_keeps_every_other_byte(fields in message(), auth in proptest::collection::vec(any::<u8>(), 0..64)) {
        let original: Vec<u8> = fields.concat();
        let mut edited = original.clone();
        wire::append_message_field(&mut edited, 2, &auth);
        prop_assert!(edited.starts_with(&original));
        let mut expected_tail = Vec::new();
        wire::append_message_field(&mut expected_tail, 2, &auth);
        prop_assert_eq!(&edited[original.len()..], &expected_tail[..]);
        let framed = wire::frame(&edited);
        prop_assert_eq!(wire::unframe(&framed).unwrap(), &edited[..]);
    }

    #[test]
    fn marking_a_field_keeps_every_other_field_byte_identical(fields in message(), extra in proptest::collection::vec(any::<u8>(), 0..32)) {
        let original: Vec<u8> = fields.concat();
        let edited = wire::rewrite_field(&original, 1, |payload| {
            let mut out = payload.to_vec();
            out.extend_from_slice(&extra);
            out
        }).unwrap();
        let unchanged = wire::rewrite_field(&original, 1, |payload| payload.to_vec()).unwrap();
        prop_assert_eq!(&unchanged, &original, "an identity edit changes nothing");
        let mut expected = Vec::new();
        for field in &fields {
            let is_field_one = field.first() == Some(&0x0a);
            if is_field_one {
                let rewritten = wire::rewrite_field(field, 1, |p| [p, &extra[..]].concat()).unwrap();
                expected.extend_from_slice(&rewritten);
            } else {
                expected.extend_from_slice(field);
            }
        }
        prop_assert_eq!(edited, expected);
    }

    #[test]
    fn wire_reading_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = wire::unframe(&bytes);
        let _ = wire::has_field(&bytes, 1);
        let _ = wire::rewrite_field(&bytes, 1, |p| p.to_vec());
    }
}
