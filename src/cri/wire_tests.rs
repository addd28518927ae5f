use super::*;
use crate::cri::{AuthConfig, Image, ImageSpec, ListImagesResponse, PullImageRequest};
use prost::Message;

#[test]
fn frame_and_unframe_round_trip_and_refuse_bad_frames() {
    let framed = frame(b"hello");
    assert_eq!(unframe(&framed).unwrap(), b"hello");
    assert_eq!(unframe(&framed[..7]), Err(WireError::Truncated));
    let mut compressed = framed.to_vec();
    compressed[0] = 1;
    assert_eq!(unframe(&compressed), Err(WireError::Compressed));
    let mut extra = framed.to_vec();
    extra.push(0);
    assert_eq!(unframe(&extra), Err(WireError::TrailingBytes));
}

#[test]
fn appending_auth_to_a_request_without_one_keeps_unknown_fields() {
    let request = PullImageRequest {
        image: Some(ImageSpec {
            image: "busybox".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut bytes = request.encode_to_vec();
    // A field from a newer CRI release that the view does not know: 99, varint 7.
    encode_varint(99 << 3, &mut bytes);
    encode_varint(7, &mut bytes);
    let auth = AuthConfig {
        username: "u".into(),
        password: "p".into(),
        ..Default::default()
    };
    append_message_field(&mut bytes, 2, &auth.encode_to_vec());
    let decoded = PullImageRequest::decode(bytes.as_slice()).unwrap();
    assert_eq!(decoded.auth.unwrap().username, "u");
    assert_eq!(decoded.image.unwrap().image, "busybox");
    assert!(
        bytes.windows(2).any(|w| w == [0x98, 0x06]),
        "unknown field 99 kept"
    );
}

#[test]
fn rewrite_field_edits_each_repeated_element_only() {
    let response = ListImagesResponse {
        images: vec![
            Image {
                id: "a".into(),
                ..Default::default()
            },
            Image {
                id: "b".into(),
                spec: Some(ImageSpec {
                    image: "b-image".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ],
    };
    let spec = ImageSpec {
        runtime_handler: "kata".into(),
        ..Default::default()
    }
    .encode_to_vec();
    let edited = rewrite_field(&response.encode_to_vec(), 1, |image| {
        let mut image = image.to_vec();
        append_message_field(&mut image, 7, &spec);
        image
    })
    .unwrap();
    let decoded = ListImagesResponse::decode(edited.as_slice()).unwrap();
    assert_eq!(decoded.images.len(), 2);
    assert!(decoded
        .images
        .iter()
        .all(|i| i.spec.as_ref().unwrap().runtime_handler == "kata"));
    assert_eq!(decoded.images[1].spec.as_ref().unwrap().image, "b-image");
}

#[test]
fn malformed_bytes_are_an_error_not_a_panic() {
    assert!(rewrite_field(&[0x0a, 0x05, 0x01], 1, |b| b.to_vec()).is_err());
    assert!(has_field(&[0x0b], 1).is_err());
    assert!(!has_field(&[], 1).unwrap());
}
