//! The two directions of adopt: read the node, build imageshim's config and the
//! kubelet diff (`adopt`), or the diff back to the runtime (`reverse`); and writing the
//! config (`Report::write`), the only file adopt ever writes.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::credentials::provider_config;

use super::edit::{self, Change, Home};
use super::flags::{self, Flag};
use super::kubelet::{KubeletSettings, Setting, DEFAULT_RUNTIME_ENDPOINT};
use super::plan::{origin_text, Plan};
use super::runtime::{discover_handlers, runtime_config, runtime_kind};
use super::{node_file_exists, node_path, AdoptError, AdoptOptions, Mode};

const DEFAULT_KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
const DEFAULT_FLAG_FILES: [&str; 3] = [
    "/var/lib/kubelet/kubeadm-flags.env",
    "/etc/default/kubelet",
    "/etc/sysconfig/kubelet",
];
const DEFAULT_K3S_CONFIG: &str = "/etc/rancher/k3s/config.yaml";
const K3S_CONTAINERD: &str = "unix:///run/k3s/containerd/containerd.sock";

/// What adopt found and would do.
#[derive(Debug)]
pub struct Report {
    /// What was read and decided, one line each.
    pub notes: Vec<String>,
    /// imageshim's config path and the text adopt generated (not for `--reverse`).
    pub config: Option<(PathBuf, String)>,
    /// The diff against an existing imageshim config, when there is one.
    pub config_diff: Option<String>,
    /// The kubelet change, as a unified diff.
    pub kubelet_diff: String,
    pub next_steps: Vec<String>,
}

/// The node as the kubelet sees it.
pub(super) struct Node {
    pub(super) kubelet: KubeletSettings,
    pub(super) home: Option<Home>,
    k3s: bool,
    pub(super) sources: Vec<PathBuf>,
    pub(super) notes: Vec<String>,
}

/// The kubelet's flags from its flag files and k3s's config, in the order the kubelet
/// receives them, and the files read.
struct FlagSources {
    flags: Vec<Flag>,
    files: Vec<PathBuf>,
    k3s_config: Option<PathBuf>,
    default_endpoint: String,
}

fn read_flags(options: &AdoptOptions) -> Result<FlagSources, AdoptError> {
    let root = &options.root;
    let existing = |path: &str| Some(PathBuf::from(path)).filter(|p| node_file_exists(root, p));
    let files: Vec<PathBuf> = match options.flag_files.is_empty() {
        true => DEFAULT_FLAG_FILES
            .iter()
            .filter_map(|p| existing(p))
            .collect(),
        false => options.flag_files.clone(),
    };
    let mut sources = FlagSources {
        flags: Vec::new(),
        files: files.clone(),
        k3s_config: options
            .k3s_config
            .clone()
            .or_else(|| existing(DEFAULT_K3S_CONFIG)),
        default_endpoint: DEFAULT_RUNTIME_ENDPOINT.to_string(),
    };
    for file in &files {
        sources.flags.extend(flags::read_env_file(root, file)?);
    }
    if let Some(file) = &sources.k3s_config {
        let (k3s_flags, external) = flags::read_k3s_config(root, file)?;
        sources.flags.extend(k3s_flags);
        sources.default_endpoint = external.unwrap_or_else(|| K3S_CONTAINERD.to_string());
        sources.files.push(file.clone());
    }
    Ok(sources)
}

pub(super) fn read_node(options: &AdoptOptions) -> Result<Node, AdoptError> {
    let root = &options.root;
    let kubelet_config = options.kubelet_config.clone().or_else(|| {
        Some(PathBuf::from(DEFAULT_KUBELET_CONFIG)).filter(|p| node_file_exists(root, p))
    });
    let FlagSources {
        flags,
        files,
        k3s_config,
        default_endpoint,
    } = read_flags(options)?;
    if kubelet_config.is_none() && flags::last(&flags, "config").is_none() && files.is_empty() {
        return Err(AdoptError::Refused(format!(
            "no kubelet settings found under {}: looked for {DEFAULT_KUBELET_CONFIG}, {}, {DEFAULT_K3S_CONFIG}; name them with --kubelet-config, --kubelet-flags or --k3s-config",
            root.display(),
            DEFAULT_FLAG_FILES.join(", ")
        )));
    }
    let kubelet =
        KubeletSettings::read(root, kubelet_config.as_deref(), &flags, &default_endpoint)?;
    let sources: Vec<PathBuf> = kubelet.read.iter().cloned().chain(files).collect();
    let mut notes: Vec<String> = sources
        .iter()
        .map(|s| format!("read {}", s.display()))
        .collect();
    if k3s_config.is_some() {
        notes.push(format!(
            "k3s: the kubelet's runtime endpoint defaults to {default_endpoint}"
        ));
    }
    let home = match (&kubelet.config_file, &k3s_config) {
        (Some(file), _) => Some(Home::ConfigFile(file.clone())),
        (None, Some(file)) => Some(Home::K3s(file.clone())),
        (None, None) => None,
    };
    Ok(Node {
        kubelet,
        home,
        k3s: k3s_config.is_some(),
        sources,
        notes,
    })
}

pub(super) fn shim_endpoint(socket: &Path) -> String {
    format!("unix://{}", socket.display())
}

/// Reads the node and builds imageshim's config and the kubelet change for `mode`.
pub fn adopt(options: &AdoptOptions) -> Result<Report, AdoptError> {
    let node = read_node(options)?;
    let kubelet = &node.kubelet;
    kubelet.check_pull_limits()?;
    let shim = shim_endpoint(&options.socket);
    let installed =
        crate::config::read_config_file(&node_path(&options.root, &options.config)).ok();
    if let Some(socket) = installed
        .as_deref()
        .and_then(installed_socket)
        .filter(|s| *s != shim)
    {
        backend_endpoint(kubelet, options.mode, &socket)?;
    }
    let endpoint = backend_endpoint(kubelet, options.mode, &shim)?;
    let (kind, kind_reason) = runtime_kind(options, &endpoint.value)?;
    let runtime_config = runtime_config(options, kind, node.k3s)?;
    let mut notes = node.notes.clone();
    let handlers = discover_handlers(options, kind, &endpoint.value, runtime_config.as_deref())?;
    notes.extend(credential_notes(options, kubelet)?);
    let docker_config = kubelet_docker_config(&options.root, &kubelet.root_dir);
    let plan = Plan {
        mode: options.mode.as_str(),
        sources: &node.sources,
        socket: &options.socket,
        backend_kind: kind,
        kind_reason,
        endpoint: &endpoint,
        endpoint_key: match options.mode {
            Mode::ImageEndpoint => "image calls",
            Mode::DropIn => "every CRI call",
        },
        runtime_config: runtime_config.as_deref(),
        handlers: &handlers,
        kubelet,
        docker_config: docker_config.as_deref(),
    };
    let text = plan.render();
    // Validated as the node will read it: its paths resolved under --root.
    let on_node = runtime_config
        .as_deref()
        .map(|p| node_path(&options.root, p));
    let checked = Plan {
        runtime_config: on_node.as_deref(),
        ..plan
    }
    .render();
    Config::parse(&checked)
        .map_err(|e| AdoptError::Generated(strip_root(&options.root, &e.to_string())))?;
    let kubelet_diff = edit::diff(
        &options.root,
        &kubelet_changes(kubelet, options.mode, &shim),
        node.home.as_ref(),
    )?;
    let config_diff = installed.and_then(|before| existing_config_diff(options, &before, &text));
    Ok(Report {
        notes,
        config: Some((options.config.clone(), text)),
        config_diff,
        kubelet_diff,
        next_steps: adopt_steps(options, node.k3s),
    })
}

/// The kubelet settings that point it at imageshim in `mode`.
fn kubelet_changes<'a>(kubelet: &'a KubeletSettings, mode: Mode, shim: &str) -> Vec<Change<'a>> {
    let mut changes = vec![];
    if mode == Mode::DropIn {
        changes.push(change(
            "containerRuntimeEndpoint",
            &kubelet.runtime_endpoint,
            shim,
        ));
    }
    if mode == Mode::ImageEndpoint || !kubelet.image_endpoint.value.is_empty() {
        changes.push(change(
            "imageServiceEndpoint",
            &kubelet.image_endpoint,
            shim,
        ));
    }
    changes
}

pub(super) fn change<'a>(
    key: &'static str,
    current: &'a Setting<String>,
    value: &str,
) -> Change<'a> {
    let flag = match key {
        "containerRuntimeEndpoint" => "container-runtime-endpoint",
        _ => "image-service-endpoint",
    };
    Change {
        key,
        flag,
        current,
        value: value.to_string(),
    }
}

/// The endpoint imageshim forwards to: where the kubelet sends the calls it takes over.
fn backend_endpoint(
    kubelet: &KubeletSettings,
    mode: Mode,
    shim: &str,
) -> Result<Setting<String>, AdoptError> {
    for (key, setting) in [
        ("containerRuntimeEndpoint", &kubelet.runtime_endpoint),
        ("imageServiceEndpoint", &kubelet.image_endpoint),
    ] {
        if setting.value == shim {
            return Err(AdoptError::Refused(format!(
                "the kubelet's {key} ({}) already points at imageshim ({shim}); `imageshim adopt --reverse` prints the way back",
                origin_text(&setting.origin)
            )));
        }
    }
    let split = !kubelet.image_endpoint.value.is_empty()
        && kubelet.image_endpoint.value != kubelet.runtime_endpoint.value;
    let (mut setting, key) = match (mode, split) {
        (Mode::DropIn, true) => {
            return Err(AdoptError::Refused(format!(
                "the kubelet sends image calls to {} ({}) and runtime calls to {}: drop-in mode would send both to one backend; use --mode image-endpoint",
                kubelet.image_endpoint.value,
                origin_text(&kubelet.image_endpoint.origin),
                kubelet.runtime_endpoint.value
            )))
        }
        (Mode::ImageEndpoint, true) => (kubelet.image_endpoint.clone(), "imageServiceEndpoint"),
        _ => (kubelet.runtime_endpoint.clone(), "containerRuntimeEndpoint"),
    };
    if setting.value.starts_with('/') {
        setting.value = format!("unix://{}", setting.value);
    }
    if !setting.value.starts_with("unix://") {
        return Err(AdoptError::Refused(format!(
            "the kubelet's {key} {:?} ({}) is not a unix socket; imageshim forwards to unix sockets only",
            setting.value,
            origin_text(&setting.origin)
        )));
    }
    Ok(setting)
}

/// Which providers imageshim runs and which stay with the kubelet; refuses a provider
/// config the kubelet itself would refuse.
fn credential_notes(
    options: &AdoptOptions,
    kubelet: &KubeletSettings,
) -> Result<Vec<String>, AdoptError> {
    let (config, bin) = match (&kubelet.provider_config, &kubelet.provider_bin_dir) {
        (None, None) => return Ok(vec!["no credential provider configured".to_string()]),
        (Some(config), Some(bin)) => (config, bin),
        (Some(only), None) | (None, Some(only)) => {
            return Err(AdoptError::Refused(format!(
                "--{} is set in {} without its pair (--image-credential-provider-config needs --image-credential-provider-bin-dir); the kubelet refuses this too",
                only.name,
                only.file.display()
            )))
        }
    };
    let root = &options.root;
    let set = provider_config::load(
        &node_path(root, Path::new(&config.value)),
        &node_path(root, Path::new(&bin.value)),
    )
    .map_err(|e| AdoptError::Refused(strip_root(root, &e.to_string())))?;
    Ok(set.describe())
}

/// `text` with the node root taken out of the paths it names.
pub(super) fn strip_root(root: &Path, text: &str) -> String {
    let root = root.to_string_lossy();
    match root.trim_end_matches('/') {
        "" => text.to_string(),
        prefix => text.replace(prefix, ""),
    }
}

/// The kubelet's keyring reads the first config.json of its search path (root dir,
/// working directory, $HOME/.docker, /.docker), else the first .dockercfg.
fn kubelet_docker_config(root: &Path, kubelet_root: &Path) -> Option<PathBuf> {
    let json_dirs = [
        kubelet_root,
        Path::new("/"),
        Path::new("/root/.docker"),
        Path::new("/.docker"),
    ];
    let legacy_dirs = [kubelet_root, Path::new("/"), Path::new("/root")];
    let json = json_dirs.iter().map(|d| d.join("config.json"));
    let legacy = legacy_dirs.iter().map(|d| d.join(".dockercfg"));
    json.chain(legacy).find(|p| node_file_exists(root, p))
}

/// The socket of the imageshim config already at `--config`: the kubelet
/// pointing there is pointing at imageshim too.
fn installed_socket(installed: &str) -> Option<String> {
    let value: toml::Value = toml::from_str(installed).ok()?;
    let socket = value.get("socket")?.as_str()?;
    Some(shim_endpoint(Path::new(socket)))
}

/// The diff against an existing config the operator wrote or changed; none for no file
/// or for the documented defaults the package installs (nothing of the operator's there).
fn existing_config_diff(options: &AdoptOptions, before: &str, text: &str) -> Option<String> {
    if before == crate::config::DOCUMENTED_DEFAULTS {
        return None;
    }
    let shown = options.config.display().to_string();
    let diff = similar::TextDiff::from_lines(before, text);
    Some(diff.unified_diff().header(&shown, &shown).to_string())
}

fn adopt_steps(options: &AdoptOptions, k3s: bool) -> Vec<String> {
    let restart = match k3s {
        true => "apply the change above, then: systemctl restart k3s (k3s-agent on agents); k3s regenerates its containerd config from config.toml.tmpl, so keep handler changes there",
        false => "apply the kubelet change above, then: systemctl restart kubelet",
    };
    vec![
        format!(
            "imageshim check-config --config {}",
            options.config.display()
        ),
        "systemctl enable --now imageshim.socket imageshim.service".to_string(),
        restart.to_string(),
        "crictl --image-endpoint unix://SOCKET images; imageshim status"
            .replace("SOCKET", &options.socket.to_string_lossy()),
    ]
}
