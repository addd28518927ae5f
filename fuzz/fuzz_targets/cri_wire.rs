//! CRI wire views and edits on arbitrary answer bytes, differential against prost:
//! whenever prost decodes a ListImagesResponse, imageshim reads the same fields and an
//! identity edit gives the message back byte for byte; unframing never panics.
#![no_main]
use imageshim::cri::{wire, ListImagesResponse};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let _ = wire::unframe(data);
    let Ok(decoded) = ListImagesResponse::decode(data) else {
        return;
    };
    let has = wire::has_field(data, 1).expect("prost decoded it");
    assert_eq!(has, !decoded.images.is_empty());
    let same = wire::rewrite_field(data, 1, |image| image.to_vec()).expect("prost decoded it");
    assert_eq!(same, data);
    let marked = wire::rewrite_field(data, 1, |image| {
        let mut edited = image.to_vec();
        wire::append_varint_field(&mut edited, 8, 1);
        edited
    })
    .unwrap();
    let remarked = ListImagesResponse::decode(&marked[..]).expect("an edit stays valid");
    assert_eq!(remarked.images.len(), decoded.images.len());
    assert!(remarked.images.iter().all(|i| i.pinned));
});
