//! adopt against fixture nodes laid out as kubeadm, k3s and a hand-written provider
//! directory leave them (`testdata/adopt/`), and its refusals.

use std::path::{Path, PathBuf};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/adopt")
        .join(name)
}

/// A writable copy of a fixture node (permissions kept: the plugins stay executable).
fn copy_of(name: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            match entry.file_type().unwrap().is_dir() {
                true => copy(&entry.path(), &target),
                false => drop(std::fs::copy(entry.path(), &target).unwrap()),
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&fixture(name), dir.path());
    dir
}

fn options(root: &Path, mode: Mode) -> AdoptOptions {
    AdoptOptions {
        root: root.to_path_buf(),
        mode,
        kubelet_config: None,
        flag_files: Vec::new(),
        k3s_config: None,
        runtime_kind: None,
        runtime_config: None,
        config: PathBuf::from("/etc/imageshim/config.toml"),
        socket: PathBuf::from("/run/imageshim/imageshim.sock"),
    }
}

fn refusal(options: &AdoptOptions) -> String {
    adopt(options).unwrap_err().to_string()
}

fn edit(root: &Path, file: &str, from: &str, to: &str) {
    let path = node_path(root, Path::new(file));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{from:?} not in {file}");
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

fn assert_contains(text: &str, expected: &[&str]) {
    for line in expected {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
fn a_kubeadm_node_becomes_a_config_and_an_image_endpoint_change() {
    let report = adopt(&options(&fixture("kubeadm"), Mode::ImageEndpoint)).unwrap();
    let (path, text) = report.config.as_ref().unwrap();
    assert_eq!(path, Path::new("/etc/imageshim/config.toml"));
    assert_contains(text, &[
        "endpoint = \"unix:///var/run/containerd/containerd.sock\"",
        "runtime_config = \"/etc/containerd/config.toml\"",
        "#     handler runc-native: images land in snapshotter native",
        "serialize_image_pulls = false",
        "max_parallel_image_pulls = 3",
        "docker_config = [\"/var/lib/kubelet/config.json\"]",
        "provider_config = \"/etc/kubernetes/credential-providers\"  # --image-credential-provider-config in /etc/default/kubelet",
        "provider_bin_dir = \"/usr/libexec/kubernetes/kubelet-plugins/credential-provider/exec\"",
    ]);
    let loaded =
        crate::config::Config::parse(text.replace("/etc/containerd/config.toml", "").as_str())
            .unwrap();
    assert_eq!(loaded.pull.permits(), Some(3));
    let notes = report.notes.join("\n");
    assert_contains(&notes, &[
        "read /var/lib/kubelet/config.yaml",
        "read /var/lib/kubelet/kubeadm-flags.env",
        "credential provider gcr-credential-provider: imageshim runs it",
        "credential provider token-credential-provider: needs service-account tokens (KEP-4412), stays with the kubelet",
    ]);
    assert_eq!(
        report.kubelet_diff,
        "--- /var/lib/kubelet/config.yaml\n+++ /var/lib/kubelet/config.yaml\n@@ -43,3 +43,4 @@\n streamingConnectionIdleTimeout: 0s\n syncFrequency: 0s\n volumeStatsAggPeriod: 0s\n+imageServiceEndpoint: unix:///run/imageshim/imageshim.sock\n"
    );
}

#[test]
fn drop_in_mode_replaces_the_runtime_endpoint_where_it_is_set() {
    let report = adopt(&options(&fixture("kubeadm"), Mode::DropIn)).unwrap();
    assert_contains(
        &report.kubelet_diff,
        &[
            "-containerRuntimeEndpoint: unix:///var/run/containerd/containerd.sock\n",
            "+containerRuntimeEndpoint: unix:///run/imageshim/imageshim.sock\n",
        ],
    );
    // A flag wins over the config file, so the flag is what changes.
    let node = copy_of("kubeadm");
    edit(
        node.path(),
        "/var/lib/kubelet/kubeadm-flags.env",
        "--node-ip",
        "--container-runtime-endpoint=unix:///run/crio/crio.sock --node-ip",
    );
    let report = adopt(&options(node.path(), Mode::DropIn)).unwrap();
    assert_contains(&report.kubelet_diff, &[
        "+++ /var/lib/kubelet/kubeadm-flags.env",
        "+KUBELET_KUBEADM_ARGS=\"--container-runtime-endpoint=unix:///run/imageshim/imageshim.sock --node-ip",
    ]);
    let (_, text) = report.config.unwrap();
    assert_contains(
        &text,
        &[
            "kind = \"cri-o\"",
            "endpoint = \"unix:///run/crio/crio.sock\"",
            "# runtime_config: none found",
        ],
    );
}

#[test]
fn a_k3s_node_gets_a_kubelet_arg_and_k3s_defaults() {
    let report = adopt(&options(&fixture("k3s"), Mode::ImageEndpoint)).unwrap();
    let (_, text) = report.config.as_ref().unwrap();
    assert_contains(text, &[
        "endpoint = \"unix:///run/k3s/containerd/containerd.sock\"",
        "runtime_config = \"/var/lib/rancher/k3s/agent/etc/containerd/config.toml\"",
        "#     handler nvidia:",
        "serialize_image_pulls = true  # serializeImagePulls (--serialize-image-pulls in /etc/rancher/k3s/config.yaml)",
        "provider_config = \"/etc/rancher/k3s/credential-providers.yaml\"",
    ]);
    assert_contains(&report.kubelet_diff, &[
        "   - \"serialize-image-pulls=true\"\n+  - \"image-service-endpoint=unix:///run/imageshim/imageshim.sock\"\n",
    ]);
    assert!(report
        .next_steps
        .join("\n")
        .contains("systemctl restart k3s"));
}

#[test]
fn written_then_reversed() {
    let node = copy_of("kubeadm");
    let opts = options(node.path(), Mode::ImageEndpoint);
    let report = adopt(&opts).unwrap();
    report.write(node.path()).unwrap();
    let written = std::fs::read_to_string(node.path().join("etc/imageshim/config.toml")).unwrap();
    assert_eq!(written, report.config.as_ref().unwrap().1);
    // The operator applies the change.
    let kubelet_config = node.path().join("var/lib/kubelet/config.yaml");
    let mut text = std::fs::read_to_string(&kubelet_config).unwrap();
    text.push_str("imageServiceEndpoint: unix:///run/imageshim/imageshim.sock\n");
    std::fs::write(&kubelet_config, text).unwrap();
    assert!(refusal(&opts).contains("the kubelet's imageServiceEndpoint (imageServiceEndpoint in /var/lib/kubelet/config.yaml) already points at imageshim"));
    // The written config needs the node's runtime config path to load: point it home.
    edit(
        node.path(),
        "/etc/imageshim/config.toml",
        "\"/etc/containerd/config.toml\"",
        &format!("{:?}", node.path().join("etc/containerd/config.toml")),
    );
    let back = reverse(&opts).unwrap();
    assert_contains(
        &back.kubelet_diff,
        &[
            "-imageServiceEndpoint: unix:///run/imageshim/imageshim.sock\n",
            "+imageServiceEndpoint: unix:///var/run/containerd/containerd.sock\n",
        ],
    );
    // Pointed at the installed socket, adopting for another one is refused too.
    let elsewhere = AdoptOptions {
        socket: PathBuf::from("/run/other/shim.sock"),
        ..opts.clone()
    };
    assert!(refusal(&elsewhere)
        .contains("already points at imageshim (unix:///run/imageshim/imageshim.sock)"));
    // Reversed, adopting again keeps the operator's edited file.
    edit(
        node.path(),
        "/var/lib/kubelet/config.yaml",
        "imageServiceEndpoint: unix:///run/imageshim/imageshim.sock\n",
        "",
    );
    let again = adopt(&AdoptOptions {
        socket: PathBuf::from("/run/other/shim.sock"),
        ..opts.clone()
    })
    .unwrap();
    assert!(again
        .config_diff
        .as_ref()
        .unwrap()
        .contains("+socket = \"/run/other/shim.sock\""));
    let done = again.write(node.path()).unwrap().join("\n");
    assert!(
        done.contains("kept the previous config as /etc/imageshim/config.toml.before-adopt"),
        "{done}"
    );
}

#[test]
fn config_dir_drop_ins_override_the_config_file() {
    let node = copy_of("kubeadm");
    edit(
        node.path(),
        "/var/lib/kubelet/kubeadm-flags.env",
        "--node-ip",
        "--config-dir=/etc/kubernetes/kubelet.conf.d --node-ip",
    );
    let drop_ins = node.path().join("etc/kubernetes/kubelet.conf.d");
    std::fs::create_dir_all(&drop_ins).unwrap();
    let doc = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n";
    std::fs::write(
        drop_ins.join("20-pulls.conf"),
        format!("{doc}maxParallelImagePulls: 5\n"),
    )
    .unwrap();
    std::fs::write(
        drop_ins.join("10-pulls.conf"),
        format!("{doc}maxParallelImagePulls: 4\n"),
    )
    .unwrap();
    std::fs::write(
        drop_ins.join("30-ignored.yaml"),
        format!("{doc}maxParallelImagePulls: 9\n"),
    )
    .unwrap();
    let report = adopt(&options(node.path(), Mode::ImageEndpoint)).unwrap();
    assert!(report.config.unwrap().1.contains("max_parallel_image_pulls = 5  # maxParallelImagePulls (maxParallelImagePulls in /etc/kubernetes/kubelet.conf.d/20-pulls.conf"));
}

#[test]
fn refusals_name_the_file_and_the_setting() {
    let node = copy_of("kubeadm");
    let root = node.path();
    let opts = options(root, Mode::ImageEndpoint);
    let providers = "/etc/kubernetes/credential-providers";
    let dup =
        std::fs::read_to_string(node_path(root, Path::new(providers)).join("10-ecr.yaml")).unwrap();
    std::fs::write(
        node_path(root, Path::new(providers)).join("40-dup.yaml"),
        dup,
    )
    .unwrap();
    assert_contains(&refusal(&opts), &[
        "/etc/kubernetes/credential-providers",
        "40-dup.yaml: providers[0] (\"ecr-credential-provider\").name: duplicate provider name, first defined in 10-ecr.yaml",
    ]);
    std::fs::remove_file(node_path(root, Path::new(providers)).join("40-dup.yaml")).unwrap();

    edit(
        root,
        "/etc/default/kubelet",
        " --image-credential-provider-bin-dir=",
        " --unrelated=",
    );
    assert_contains(
        &refusal(&opts),
        &["--image-credential-provider-config is set in /etc/default/kubelet without its pair"],
    );
    std::fs::write(node_path(root, Path::new("/etc/default/kubelet")), "").unwrap();

    edit(
        root,
        "/var/lib/kubelet/config.yaml",
        "serializeImagePulls: false",
        "serializeImagePulls: true",
    );
    assert_contains(
        &refusal(&opts),
        &["maxParallelImagePulls (3) needs serializeImagePulls: false"],
    );
    edit(
        root,
        "/var/lib/kubelet/config.yaml",
        "maxParallelImagePulls: 3",
        "maxParallelImagePulls: 0",
    );
    assert_contains(
        &refusal(&opts),
        &["/var/lib/kubelet/config.yaml: maxParallelImagePulls: 0 must be at least 1"],
    );
    edit(
        root,
        "/var/lib/kubelet/config.yaml",
        "maxParallelImagePulls: 0",
        "imageServiceEndpoint: unix:///run/other/images.sock",
    );
    assert_contains(&refusal(&AdoptOptions { mode: Mode::DropIn, ..opts.clone() }), &[
        "the kubelet sends image calls to unix:///run/other/images.sock (imageServiceEndpoint in /var/lib/kubelet/config.yaml) and runtime calls to unix:///var/run/containerd/containerd.sock",
    ]);
    assert_contains(
        &refusal(&opts),
        &["cannot tell which runtime serves unix:///run/other/images.sock: pass --runtime-kind"],
    );
    edit(
        root,
        "/var/lib/kubelet/config.yaml",
        "unix:///run/other/images.sock",
        "tcp://10.0.0.1:5000",
    );
    assert_contains(&refusal(&opts), &["\"tcp://10.0.0.1:5000\" (imageServiceEndpoint in /var/lib/kubelet/config.yaml) is not a unix socket"]);
    edit(
        root,
        "/var/lib/kubelet/config.yaml",
        "kind: KubeletConfiguration",
        "kind: Other",
    );
    assert_contains(
        &refusal(&opts),
        &["/var/lib/kubelet/config.yaml: kind/apiVersion: a KubeletConfiguration"],
    );

    let empty = tempfile::tempdir().unwrap();
    assert_contains(
        &refusal(&options(empty.path(), Mode::ImageEndpoint)),
        &["no kubelet settings found under"],
    );
    let missing = AdoptOptions {
        kubelet_config: Some("/etc/kubelet.yaml".into()),
        ..options(empty.path(), Mode::ImageEndpoint)
    };
    assert_contains(&refusal(&missing), &["/etc/kubelet.yaml: No such file"]);
    let not_adopted = reverse(&AdoptOptions {
        ..options(&fixture("kubeadm"), Mode::ImageEndpoint)
    })
    .unwrap_err()
    .to_string();
    assert_contains(&not_adopted, &["/etc/imageshim/config.toml"]);
}

#[test]
fn the_packaged_defaults_are_replaced_without_a_backup() {
    let node = copy_of("kubeadm");
    let installed = node.path().join("etc/imageshim/config.toml");
    std::fs::create_dir_all(installed.parent().unwrap()).unwrap();
    std::fs::write(&installed, crate::config::DOCUMENTED_DEFAULTS).unwrap();
    let report = adopt(&options(node.path(), Mode::ImageEndpoint)).unwrap();
    assert!(
        report.config_diff.is_none(),
        "the defaults are not the operator's"
    );
    assert_eq!(
        report.write(node.path()).unwrap(),
        ["wrote /etc/imageshim/config.toml"]
    );
    assert!(!node
        .path()
        .join("etc/imageshim/config.toml.before-adopt")
        .exists());
}
