//! gRPC message framing and protobuf wire edits on the caller's own bytes. Edits only
//! the fields they name and copies every other byte, so fields imageshim does not know
//! survive. Must not decode whole messages and re-encode them.

use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{decode_varint, encode_varint, WireType};

/// Largest gRPC message accepted, as the kubelet allows.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
const FRAME_HEADER: usize = 5;

/// Why bytes could not be read as a gRPC message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("grpc frame is truncated")]
    Truncated,
    #[error("compressed grpc messages are not supported on intercepted calls")]
    Compressed,
    #[error("expected exactly one grpc message, found trailing bytes")]
    TrailingBytes,
    #[error("message of {0} bytes exceeds the 16 MiB limit")]
    TooLarge(usize),
    #[error("malformed protobuf")]
    Malformed(#[from] prost::DecodeError),
    #[error("malformed protobuf: a field runs past the end")]
    FieldPastEnd,
    #[error("malformed protobuf: unsupported wire type {0}")]
    UnsupportedWireType(u64),
    #[error("malformed protobuf: group of field {0} is not closed as it was opened")]
    UnbalancedGroup(u32),
    #[error("malformed protobuf: groups nested deeper than {GROUP_DEPTH_LIMIT}")]
    GroupsTooDeep,
}

/// prost's recursion limit, which also bounds nested groups it skips.
const GROUP_DEPTH_LIMIT: u32 = 100;

/// Wraps one message in a gRPC length-prefixed frame (uncompressed).
pub fn frame(message: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(FRAME_HEADER + message.len());
    out.put_u8(0);
    out.put_u32(message.len() as u32);
    out.put_slice(message);
    out.freeze()
}

/// Reads the single uncompressed message of a unary gRPC body.
pub fn unframe(body: &[u8]) -> Result<&[u8], WireError> {
    if body.len() < FRAME_HEADER {
        return Err(WireError::Truncated);
    }
    if body[0] != 0 {
        return Err(WireError::Compressed);
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if len > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(len));
    }
    let end = FRAME_HEADER + len;
    match body.len().cmp(&end) {
        std::cmp::Ordering::Less => Err(WireError::Truncated),
        std::cmp::Ordering::Greater => Err(WireError::TrailingBytes),
        std::cmp::Ordering::Equal => Ok(&body[FRAME_HEADER..end]),
    }
}

/// Appends a length-delimited field. For an embedded message this merges into any
/// existing value of that field; for a repeated field it adds an element.
pub fn append_message_field(message: &mut Vec<u8>, field: u32, payload: &[u8]) {
    encode_varint(
        u64::from(field << 3 | WireType::LengthDelimited as u32),
        message,
    );
    encode_varint(payload.len() as u64, message);
    message.extend_from_slice(payload);
}

/// Appends a varint field (a later value of a scalar field wins when decoded).
pub fn append_varint_field(message: &mut Vec<u8>, field: u32, value: u64) {
    encode_varint(u64::from(field << 3 | WireType::Varint as u32), message);
    encode_varint(value, message);
}

/// One top-level field of a message, as raw bytes.
struct RawField<'a> {
    number: u32,
    /// The whole field: key, length and value.
    whole: &'a [u8],
    /// For length-delimited fields, the value without key and length.
    payload: Option<&'a [u8]>,
}

fn read_field<'a>(buf: &mut &'a [u8]) -> Result<RawField<'a>, WireError> {
    let start: &'a [u8] = buf;
    let key = decode_varint(buf).map_err(WireError::Malformed)?;
    let number = (key >> 3) as u32;
    if key & 7 == 4 {
        // An end-group with no group open: prost refuses it too.
        return Err(WireError::UnbalancedGroup(number));
    }
    let payload = skip_value(buf, number, key & 7, 0)?;
    let used = start.len() - buf.len();
    Ok(RawField {
        number,
        whole: &start[..used],
        payload,
    })
}

/// Skips one value of `wire_type` (a whole group for 3, as prost skips unknown groups);
/// the payload of a length-delimited value.
fn skip_value<'a>(
    buf: &mut &'a [u8],
    number: u32,
    wire_type: u64,
    depth: u32,
) -> Result<Option<&'a [u8]>, WireError> {
    let malformed = WireError::Malformed;
    match wire_type {
        0 => decode_varint(buf).map(|_| None).map_err(malformed),
        1 => take(buf, 8).map(|_| None),
        2 => {
            let len = decode_varint(buf).map_err(malformed)? as usize;
            take(buf, len).map(Some)
        }
        3 => skip_group(buf, number, depth + 1).map(|()| None),
        5 => take(buf, 4).map(|_| None),
        other => Err(WireError::UnsupportedWireType(other)),
    }
}

/// Skips the fields of group `number` up to and including its end-group key.
fn skip_group(buf: &mut &[u8], number: u32, depth: u32) -> Result<(), WireError> {
    if depth > GROUP_DEPTH_LIMIT {
        return Err(WireError::GroupsTooDeep);
    }
    loop {
        if buf.is_empty() {
            return Err(WireError::FieldPastEnd);
        }
        let key = decode_varint(buf).map_err(WireError::Malformed)?;
        let inner = (key >> 3) as u32;
        if key & 7 == 4 {
            return match inner == number {
                true => Ok(()),
                false => Err(WireError::UnbalancedGroup(inner)),
            };
        }
        skip_value(buf, inner, key & 7, depth)?;
    }
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], WireError> {
    if buf.len() < len {
        return Err(WireError::FieldPastEnd);
    }
    let (head, tail) = buf.split_at(len);
    *buf = tail;
    Ok(head)
}

/// Rewrites every occurrence of length-delimited `field` with `edit`, copying all other
/// bytes as they are.
pub fn rewrite_field(
    message: &[u8],
    field: u32,
    mut edit: impl FnMut(&[u8]) -> Vec<u8>,
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::with_capacity(message.len() + 32);
    let mut rest = message;
    while !rest.is_empty() {
        let raw = read_field(&mut rest)?;
        match raw.payload {
            Some(payload) if raw.number == field => match edit(payload) {
                // Unchanged: kept exactly as sent (a length written in more bytes than
                // it needs included).
                edited if edited == payload => out.extend_from_slice(raw.whole),
                edited => append_message_field(&mut out, field, &edited),
            },
            _ => out.extend_from_slice(raw.whole),
        }
    }
    Ok(out)
}

/// True when `message` carries `field` at top level.
pub fn has_field(message: &[u8], field: u32) -> Result<bool, WireError> {
    let mut rest = message;
    while !rest.is_empty() {
        if read_field(&mut rest)?.number == field {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::{AuthConfig, Image, ImageSpec, ListImagesResponse, PullImageRequest};
    use prost::Message;

    /// Found by fuzzing: a field left as it was keeps its bytes, even a length written
    /// in more bytes than it needs.
    #[test]
    fn an_unchanged_field_keeps_its_exact_bytes() {
        let message = [0x0a, 0x80, 0x00, 0x0a, 0x02, 0x0a, 0x00];
        assert_eq!(rewrite_field(&message, 1, |i| i.to_vec()).unwrap(), message);
    }

    /// Groups (wire types 3 and 4) are skipped as prost skips them: an edited answer
    /// with a group keeps it byte for byte; unbalanced groups are refused, as prost does.
    #[test]
    fn groups_are_skipped_as_prost_skips_them() {
        let image = Image {
            id: "sha256:x".into(),
            ..Default::default()
        }
        .encode_to_vec();
        // Field 5 group holding field 1 varint 7 and a nested field 6 group; then image.
        let mut message = vec![0x2b, 0x08, 0x07, 0x33, 0x34, 0x2c];
        append_message_field(&mut message, 1, &image);
        assert!(
            ListImagesResponse::decode(message.as_slice()).is_ok(),
            "prost skips it"
        );
        assert!(has_field(&message, 1).unwrap());
        let edited = rewrite_field(&message, 1, |i| i.to_vec()).unwrap();
        assert_eq!(edited, message);
        let lone = [0x2b, 0x2c];
        assert!(ListImagesResponse::decode(&lone[..]).is_ok());
        assert!(!has_field(&lone, 1).unwrap());
        for bad in [&[0x2b, 0x08][..], &[0x2c], &[0x2b, 0x34]] {
            assert!(ListImagesResponse::decode(bad).is_err(), "{bad:?}");
            assert!(has_field(bad, 1).is_err(), "{bad:?}");
        }
    }

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
}
