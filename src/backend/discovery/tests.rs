//! Discovery read as the runtimes read their configs. The fixtures are written the way
//! containerd 1.x/2.x and CRI-O lay them out; `containerd_config_dump_agrees` compares
//! with containerd's own `config dump` when a containerd 2.x binary is at hand.

use std::path::Path;

use super::*;

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let path = dir.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, text).unwrap();
    path
}

fn handlers(catalog: &RuntimeCatalog) -> Vec<(String, Option<String>)> {
    catalog.handlers.clone().into_iter().collect()
}

fn snap(h: &str, s: Option<&str>) -> (String, Option<String>) {
    (h.to_string(), s.map(str::to_string))
}

const V3_RUNC_NATIVE: &str = r#"
version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc-native]
  runtime_type = "io.containerd.runc.v2"
  snapshotter = "native"
"#;

#[test]
fn containerd_without_runtimes_has_the_built_in_runc_on_overlayfs() {
    let dir = tempfile::tempdir().unwrap();
    for text in ["version = 3\n", "version = 2\n", ""] {
        let path = write(dir.path(), "config.toml", text);
        let c = discover(BackendKind::Containerd, &path).unwrap();
        assert_eq!(handlers(&c), vec![snap("runc", None)], "{text:?}");
        assert_eq!(c.default_handler, "runc");
        assert_eq!(c.snapshotter_for(""), Some("overlayfs"));
        assert_eq!(c.unpack_snapshotters, Some(vec!["overlayfs".to_string()]));
    }
}

#[test]
fn containerd_versions_2_3_and_4_name_the_same_things_in_their_own_tables() {
    let dir = tempfile::tempdir().unwrap();
    let v2 = r#"
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "native"
  default_runtime_name = "kata"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
  runtime_type = "io.containerd.kata.v2"
  snapshotter = "devmapper"
"#;
    let v4 = r#"
version = 4
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "native"
[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "kata"
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.kata]
  runtime_type = "io.containerd.kata.v2"
  snapshotter = "devmapper"
"#;
    for text in [v2, &v4.replace("version = 4", "version = 3"), v4] {
        let path = write(dir.path(), "config.toml", text);
        let c = discover(BackendKind::Containerd, &path).unwrap();
        assert_eq!(
            handlers(&c),
            vec![snap("kata", Some("devmapper")), snap("runc", None)]
        );
        assert_eq!(c.default_handler, "kata");
        assert_eq!(c.default_snapshotter.as_deref(), Some("native"));
        assert_eq!(c.snapshotter_for("runc"), Some("native"));
        assert_eq!(
            c.snapshotter_for(""),
            Some("devmapper"),
            "the default handler's own"
        );
    }
}

#[test]
fn containerd_imports_globs_and_relative_paths_later_files_win() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "etc/config.toml",
        r#"
version = 3
imports = ["conf.d/*.toml", "../extra.toml"]
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.a]
  snapshotter = "native"
"#,
    );
    write(dir.path(), "etc/conf.d/20-b.toml", V3_RUNC_NATIVE);
    // A version 2 file is migrated before it is merged; 10 comes before 20.
    write(
        dir.path(),
        "etc/conf.d/10-a.toml",
        r#"
version = 2
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.a]
  snapshotter = "overlayfs"
"#,
    );
    write(dir.path(), "etc/conf.d/ignored.txt", "not = = toml");
    write(
        dir.path(),
        "extra.toml",
        r#"
version = 3
[[plugins.'io.containerd.transfer.v1.local'.unpack_config]]
  platform = "linux/amd64"
  snapshotter = "native"
"#,
    );
    let c = discover(BackendKind::Containerd, &main).unwrap();
    assert_eq!(
        handlers(&c),
        vec![
            snap("a", Some("overlayfs")),
            snap("runc", None),
            snap("runc-native", Some("native"))
        ]
    );
    let names: Vec<String> = c
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["config.toml", "10-a.toml", "20-b.toml", "extra.toml"]
    );
    // unpack_config is replaced, not appended.
    assert_eq!(c.unpack_snapshotters, Some(vec!["native".to_string()]));
    assert_eq!(
        c.handlers_missing_unpack(),
        vec![
            ("a".to_string(), "overlayfs".to_string()),
            ("runc".to_string(), "overlayfs".to_string())
        ]
    );
}

#[test]
fn containerd_import_cycles_end_and_missing_imports_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "a.toml",
        "version = 3\nimports = [\"b.toml\"]\n",
    );
    write(
        dir.path(),
        "b.toml",
        "version = 3\nimports = [\"a.toml\"]\n",
    );
    assert_eq!(
        discover(BackendKind::Containerd, &main)
            .unwrap()
            .files
            .len(),
        2
    );
    let main = write(
        dir.path(),
        "c.toml",
        "version = 3\nimports = [\"gone.toml\"]\n",
    );
    let err = discover(BackendKind::Containerd, &main)
        .unwrap_err()
        .to_string();
    assert!(err.contains("gone.toml"), "{err}");
}

#[test]
fn containerd_images_runtime_platform_and_local_pull() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "config.toml",
        r#"
version = 3
[plugins.'io.containerd.cri.v1.images']
  use_local_image_pull = true
[plugins.'io.containerd.cri.v1.images'.runtime_platform.runc-native]
  snapshotter = "erofs"
"#,
    );
    std::fs::write(
        &path,
        format!(
            "{}{V3_RUNC_NATIVE}",
            std::fs::read_to_string(&path).unwrap()
        )
        .replace(
            "version = 3\n[plugins.'io.containerd.cri.v1.runtime'",
            "[plugins.'io.containerd.cri.v1.runtime'",
        ),
    )
    .unwrap();
    let c = discover(BackendKind::Containerd, &path).unwrap();
    assert_eq!(c.snapshotter_for("runc-native"), Some("erofs"));
    assert_eq!(
        c.unpack_snapshotters, None,
        "local pulls do not use the transfer service"
    );
    assert!(c.handlers_missing_unpack().is_empty());
}

#[test]
fn crio_reads_its_drop_ins_in_lexical_order_over_its_built_in_crun() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "crio.conf",
        "[crio.runtime]\ndefault_runtime = \"crun\"\n",
    );
    write(
        dir.path(),
        "crio.conf.d/20-runc.conf",
        "[crio.runtime]\ndefault_runtime = \"runc\"\n[crio.runtime.runtimes.runc]\nruntime_path = \"/usr/bin/runc\"\n",
    );
    write(
        dir.path(),
        "crio.conf.d/10-kata",
        "[crio.runtime]\ndefault_runtime = \"kata\"\n[crio.runtime.runtimes.kata]\nruntime_type = \"vm\"\n",
    );
    let c = discover(BackendKind::CriO, &main).unwrap();
    let names: Vec<&String> = c.handlers.keys().collect();
    assert_eq!(names, ["crun", "kata", "runc"]);
    assert_eq!(c.default_handler, "runc", "20 is applied after 10");
    assert_eq!(c.snapshotter_for("kata"), None);
    let dir_only = discover(BackendKind::CriO, &dir.path().join("crio.conf.d")).unwrap();
    assert_eq!(dir_only.files.len(), 2);
    write(
        dir.path(),
        "crio.conf.d/30-bad.conf",
        "[crio.runtime]\ndefault_runtime = \"nosuch\"\n",
    );
    let err = discover(BackendKind::CriO, &main).unwrap_err().to_string();
    assert!(err.contains("nosuch"), "{err}");
}

/// containerd's own reading of the same files: `containerd config dump` merges imports
/// and migrates versions; its runtimes and snapshotters must be ours.
#[test]
fn containerd_config_dump_agrees() {
    let Some(containerd) = std::env::var_os("IMAGESHIM_TEST_CONTAINERD2_BIN") else {
        eprintln!("skipped: IMAGESHIM_TEST_CONTAINERD2_BIN names no containerd 2.x binary");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "config.toml",
        "version = 2\nimports = [\"conf.d/*.toml\"]\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.gvisor]\n  runtime_type = \"io.containerd.runsc.v1\"\n  snapshotter = \"native\"\n",
    );
    write(dir.path(), "conf.d/a.toml", V3_RUNC_NATIVE);
    write(
        dir.path(),
        "conf.d/b.toml",
        "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.gvisor]\n  snapshotter = \"overlayfs\"\n[plugins.'io.containerd.cri.v1.images']\n  snapshotter = \"native\"\n",
    );
    let dump = std::process::Command::new(containerd)
        .args(["--config", &main.display().to_string(), "config", "dump"])
        .output()
        .unwrap();
    assert!(
        dump.status.success(),
        "{}",
        String::from_utf8_lossy(&dump.stderr)
    );
    let dumped: toml::Table = String::from_utf8(dump.stdout).unwrap().parse().unwrap();
    let dumped_path = dir.path().join("dumped.toml");
    std::fs::write(&dumped_path, toml::to_string(&dumped).unwrap()).unwrap();
    let theirs = discover(BackendKind::Containerd, &dumped_path).unwrap();
    let ours = discover(BackendKind::Containerd, &main).unwrap();
    assert_eq!(handlers(&ours), handlers(&theirs));
    assert_eq!(ours.default_snapshotter, theirs.default_snapshotter);
    assert_eq!(ours.default_handler, theirs.default_handler);
    assert_eq!(ours.unpack_snapshotters, theirs.unpack_snapshotters);
}
