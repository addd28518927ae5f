use std::collections::BTreeMap;

use super::*;

/// containerd 2.x with `runc` (default snapshotter), `runc-native` (native) and
/// `runc-overlay` (overlayfs named explicitly).
fn catalog() -> RuntimeCatalog {
    RuntimeCatalog {
        handlers: BTreeMap::from([
            ("runc".to_string(), None),
            ("runc-native".to_string(), Some("native".to_string())),
            ("runc-overlay".to_string(), Some("overlayfs".to_string())),
        ]),
        default_handler: "runc".into(),
        default_snapshotter: Some("overlayfs".into()),
        unpack_snapshotters: Some(vec!["overlayfs".into()]),
        files: vec![],
    }
}

fn facts<'a>(spec: &'a str, sandbox: bool, annotation: Option<&'a str>) -> PullFacts<'a> {
    PullFacts {
        spec_handler: spec,
        has_sandbox_config: sandbox,
        annotation_handler: annotation,
    }
}

#[test]
fn families_come_from_the_version_answer() {
    use RuntimeFamily::*;
    assert_eq!(
        RuntimeFamily::from_version("containerd", "v2.4.2"),
        Containerd2
    );
    assert_eq!(
        RuntimeFamily::from_version("containerd", "1.6.20~ds1"),
        Containerd1
    );
    assert_eq!(
        RuntimeFamily::from_version("containerd", "v1.7.27"),
        Containerd1
    );
    assert_eq!(
        RuntimeFamily::from_version("containerd", "3.0.0-rc.1"),
        Containerd2
    );
    assert_eq!(RuntimeFamily::from_version("cri-o", "1.36.3"), CriO);
    assert_eq!(RuntimeFamily::from_version("containerd", "dev"), Other);
    assert_eq!(RuntimeFamily::from_version("other", "1"), Other);
}

#[test]
fn containerd_2_lands_by_the_handlers_snapshotter_only_with_a_sandbox_config() {
    let c = Some(catalog());
    let lands = |f| pull_lands_in(RuntimeFamily::Containerd2, c.as_ref(), f);
    // No sandbox_config: the default, whatever the handler.
    assert_eq!(
        lands(facts("runc-native", false, None)),
        "snapshotter overlayfs"
    );
    assert_eq!(
        lands(facts("runc-native", true, None)),
        "snapshotter native"
    );
    // The spec field first, then containerd's annotation.
    assert_eq!(
        lands(facts("", true, Some("runc-native"))),
        "snapshotter native"
    );
    assert_eq!(
        lands(facts("runc", true, Some("runc-native"))),
        "snapshotter overlayfs"
    );
    // "" and the default handler, and two handlers with one snapshotter, are one place.
    assert_eq!(
        lands(facts("", true, None)),
        lands(facts("runc", true, None))
    );
    assert_eq!(
        lands(facts("runc-overlay", true, None)),
        lands(facts("runc", true, None))
    );
    // A handler containerd does not know: its default.
    assert_eq!(
        lands(facts("", true, Some("nosuch"))),
        "snapshotter overlayfs"
    );
}

#[test]
fn containerd_1_and_crio_keep_one_store_whatever_the_handler() {
    for family in [RuntimeFamily::Containerd1, RuntimeFamily::CriO] {
        let c = Some(catalog());
        assert_eq!(
            pull_lands_in(family, c.as_ref(), facts("runc-native", true, None)),
            pull_lands_in(family, c.as_ref(), facts("", false, None)),
        );
    }
}

#[test]
fn without_a_config_handlers_are_kept_apart() {
    let lands = |f| pull_lands_in(RuntimeFamily::Containerd2, None, f);
    assert_ne!(lands(facts("a", true, None)), lands(facts("b", true, None)));
    assert_eq!(
        lands(facts("a", false, None)),
        lands(facts("b", false, None))
    );
    let other = |f| pull_lands_in(RuntimeFamily::Other, Some(&catalog()), f);
    assert_ne!(
        other(facts("runc", true, None)),
        other(facts("", true, None))
    );
}

#[test]
fn status_checks_the_handlers_snapshotter_on_containerd_2_only() {
    let c = catalog();
    let check = |family, handler| status_snapshotter(family, Some(&c), handler);
    assert_eq!(
        check(RuntimeFamily::Containerd2, "runc-native"),
        Some("native")
    );
    assert_eq!(check(RuntimeFamily::Containerd2, "runc"), Some("overlayfs"));
    assert_eq!(check(RuntimeFamily::Containerd2, ""), None);
    assert_eq!(check(RuntimeFamily::Containerd1, "runc-native"), None);
    assert_eq!(check(RuntimeFamily::CriO, "runc-native"), None);
    assert_eq!(
        status_snapshotter(RuntimeFamily::Containerd2, None, "runc"),
        None
    );
}
