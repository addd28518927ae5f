use super::*;
use http::HeaderValue;

fn bytes(hex: &str) -> Vec<u8> {
    ::hex::decode(hex).unwrap()
}

fn fields(decoder: &mut Decoder, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
    let mut out = Vec::new();
    decoder.decode(block, |field| {
        if let Some((name, value)) = field.parsed {
            assert_eq!(
                name.as_str().as_bytes(),
                field.name,
                "parsed as it was sent"
            );
            assert_eq!(value.as_bytes(), field.value);
        }
        out.push((
            String::from_utf8(field.name.to_vec()).unwrap(),
            String::from_utf8(field.value.to_vec()).unwrap(),
        ))
    })?;
    Ok(out)
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

#[test]
fn the_rfc_request_sequence_decodes_with_its_dynamic_table() {
    // RFC 7541 C.4: three requests, Huffman strings, sharing the dynamic table.
    let mut decoder = Decoder::default();
    let first = fields(&mut decoder, &bytes("828684418cf1e3c2e5f23a6ba0ab90f4ff")).unwrap();
    assert_eq!(
        first,
        pairs(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ])
    );
    let second = fields(&mut decoder, &bytes("828684be5886a8eb10649cbf")).unwrap();
    assert_eq!(second[3], pairs(&[(":authority", "www.example.com")])[0]);
    assert_eq!(second[4], pairs(&[("cache-control", "no-cache")])[0]);
    let third = fields(
        &mut decoder,
        &bytes("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"),
    )
    .unwrap();
    assert_eq!(third[2], pairs(&[(":path", "/index.html")])[0]);
    assert_eq!(third[4], pairs(&[("custom-key", "custom-value")])[0]);
    assert_eq!(decoder.size, 164, "the RFC's table size after C.4.3");
}

#[test]
fn entries_are_evicted_to_fit_the_table() {
    // RFC 7541 C.5/C.6 use a 256-byte table: a size update brings ours down to it.
    let mut decoder = Decoder::default();
    let update_to_256 = [0x3f, 0xe1, 0x01];
    fields(&mut decoder, &update_to_256).unwrap();
    let first = bytes("488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3");
    let decoded = fields(&mut decoder, &first).unwrap();
    assert_eq!(decoded[0], pairs(&[(":status", "302")])[0]);
    assert_eq!(decoder.size, 222);
    let second = bytes("4883640effc1c0bf");
    let decoded = fields(&mut decoder, &second).unwrap();
    assert_eq!(decoded[0], pairs(&[(":status", "307")])[0]);
    assert_eq!(decoder.size, 222, "\":status: 302\" was evicted");
}

#[test]
fn broken_blocks_are_errors_not_panics() {
    let mut decoder = Decoder::default();
    assert_eq!(fields(&mut decoder, &[0xbe]), Err(HpackError::BadIndex(62)));
    assert_eq!(fields(&mut decoder, &[0x80]), Err(HpackError::BadIndex(0)));
    assert_eq!(
        fields(&mut decoder, &[0x00, 0x05, b'a']),
        Err(HpackError::Truncated)
    );
    assert_eq!(
        fields(&mut decoder, &[0x3f, 0xe2, 0x1f]),
        Err(HpackError::TableTooLarge(4097)),
        "a size update over 4096"
    );
    let endless = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
    assert_eq!(fields(&mut decoder, &endless), Err(HpackError::Overflow));
}

#[test]
fn an_encoded_request_decodes_to_what_was_given() {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("grpc-timeout", HeaderValue::from_static("1999m"));
    let mut secret = HeaderValue::from_static("Bearer x");
    secret.set_sensitive(true);
    headers.insert("authorization", secret);
    headers.append("x-many", HeaderValue::from_static("1"));
    headers.append("x-many", HeaderValue::from_static("2"));
    let long_path = format!("/{}", "p".repeat(300));
    let mut out = BytesMut::new();
    encode_request(long_path.as_bytes(), b"localhost", &headers, &mut out);
    let decoded = fields(&mut Decoder::default(), &out).unwrap();
    let expected = [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", long_path.as_str()),
        ("content-type", "application/grpc"),
        ("grpc-timeout", "1999m"),
        ("authorization", "Bearer x"),
        ("x-many", "1"),
        ("x-many", "2"),
    ];
    assert_eq!(decoded, pairs(&expected));
    let never_indexed = out
        .windows(14)
        .any(|w| w[0] == 0x10 && &w[2..] == b"authorizatio");
    assert!(never_indexed, "a sensitive value is sent never-indexed");
}

/// RFC 7541 section 4.2 and h2's integer limit, checked beside loona-hpack (a
/// maintained decoder) where it agrees: a size update only before the first field of
/// a block; at most 4 continuation bytes.
#[test]
fn size_updates_come_first_and_integers_stay_within_h2s_limit() {
    let mut ours = Decoder::default();
    let late = bytes("822082");
    assert_eq!(fields(&mut ours, &late), Err(HpackError::LateSizeUpdate));
    let mut ours = Decoder::default();
    let early = bytes("208282");
    assert_eq!(fields(&mut ours, &early).unwrap().len(), 2);
    // Index 127 + 2^28-ish with 4 continuation bytes decodes (to a bad index here);
    // a 5th continuation byte is an overflow, as in h2.
    let four = bytes("ff80808001");
    assert!(matches!(
        fields(&mut Decoder::default(), &four),
        Err(HpackError::BadIndex(_))
    ));
    let five = bytes("ff8080808001");
    assert_eq!(
        fields(&mut Decoder::default(), &five),
        Err(HpackError::Overflow)
    );
    let mut loona = loona_hpack::Decoder::new();
    assert!(loona.decode(&five).is_err(), "loona-hpack refuses it too");
}
