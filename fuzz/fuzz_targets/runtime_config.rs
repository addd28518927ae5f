//! A runtime's own config as discovery reads it (containerd's `config.toml` with an
//! import, CRI-O's `crio.conf` with a drop-in): arbitrary file contents give a catalog
//! or an error naming a file, never a panic; every handler a catalog lists has a
//! snapshotter answer consistent with its kind.
#![no_main]
use imageshim::backend::discovery::discover;
use imageshim::config::BackendKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (main, dropin) = text.split_once('\u{0}').unwrap_or((text, ""));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("conf.d")).unwrap();
    std::fs::create_dir(dir.path().join("crio.conf.d")).unwrap();
    std::fs::write(dir.path().join("config.toml"), main).unwrap();
    std::fs::write(dir.path().join("conf.d/10.toml"), dropin).unwrap();
    std::fs::write(dir.path().join("crio.conf"), main).unwrap();
    std::fs::write(dir.path().join("crio.conf.d/10.conf"), dropin).unwrap();
    for (kind, file) in [
        (BackendKind::Containerd, "config.toml"),
        (BackendKind::CriO, "crio.conf"),
    ] {
        if let Ok(catalog) = discover(kind, &dir.path().join(file)) {
            assert!(
                catalog.handlers.contains_key(&catalog.default_handler)
                    || kind == BackendKind::Containerd
            );
            for handler in catalog.handlers.keys() {
                let snapshotter = catalog.snapshotter_for(handler);
                assert_eq!(snapshotter.is_some(), kind == BackendKind::Containerd);
            }
            let _ = catalog.handlers_missing_unpack();
        }
    }
});
