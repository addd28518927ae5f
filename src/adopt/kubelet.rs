//! The kubelet's effective image settings, read as kubelet 1.36 reads them: its
//! KubeletConfiguration file (`--config`), the drop-ins of `--config-dir` (`*.conf`, in
//! lexical order, over the file), then command-line flags (over both). Each value
//! remembers where it came from, so adopt can change it where it is set. Read-only.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::flags::{self, Flag};
use super::AdoptError;

/// The kubelet's default `containerRuntimeEndpoint` (1.27 and later).
pub const DEFAULT_RUNTIME_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";
const CONFIG_API_VERSIONS: [&str; 2] =
    ["kubelet.config.k8s.io/v1beta1", "kubelet.config.k8s.io/v1"];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigDocument {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    serialize_image_pulls: Option<bool>,
    max_parallel_image_pulls: Option<i64>,
    container_runtime_endpoint: Option<String>,
    image_service_endpoint: Option<String>,
}

/// Where a setting's value is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Not written anywhere: the kubelet's (or k3s's) built-in default.
    Default,
    /// A top-level key of a KubeletConfiguration file (the config or a drop-in).
    ConfigKey { file: PathBuf, key: &'static str },
    /// A command-line flag.
    Flag(Flag),
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    pub value: T,
    pub origin: Origin,
}

/// What adopt needs from the kubelet.
#[derive(Debug, Clone)]
pub struct KubeletSettings {
    /// The KubeletConfiguration file, when the kubelet has one.
    pub config_file: Option<PathBuf>,
    pub runtime_endpoint: Setting<String>,
    pub image_endpoint: Setting<String>,
    pub serialize_image_pulls: Setting<bool>,
    pub max_parallel_image_pulls: Setting<Option<u64>>,
    pub provider_config: Option<Flag>,
    pub provider_bin_dir: Option<Flag>,
    pub root_dir: PathBuf,
    /// Every file read, in order.
    pub read: Vec<PathBuf>,
}

impl KubeletSettings {
    /// Settings from `config_file` (when given), its `--config-dir` drop-ins, and
    /// `flags` (in the order the kubelet receives them; the last one wins).
    pub fn read(
        root: &Path,
        config_file: Option<&Path>,
        flags: &[Flag],
        default_runtime_endpoint: &str,
    ) -> Result<KubeletSettings, AdoptError> {
        let config_file = flags::last(flags, "config")
            .map(|flag| PathBuf::from(&flag.value))
            .or_else(|| config_file.map(Path::to_path_buf));
        let mut settings = KubeletSettings {
            config_file: config_file.clone(),
            provider_config: flags::last(flags, "image-credential-provider-config").cloned(),
            provider_bin_dir: flags::last(flags, "image-credential-provider-bin-dir").cloned(),
            ..KubeletSettings::defaults(default_runtime_endpoint)
        };
        if let Some(dir) = flags::last(flags, "root-dir") {
            settings.root_dir = PathBuf::from(&dir.value);
        }
        if let Some(file) = &config_file {
            settings.apply_document(root, file)?;
        }
        if let Some(dir) = flags::last(flags, "config-dir") {
            for file in drop_ins(root, Path::new(&dir.value))? {
                settings.apply_document(root, &file)?;
            }
        }
        settings.apply_flags(flags)?;
        Ok(settings)
    }

    fn apply_document(&mut self, root: &Path, file: &Path) -> Result<(), AdoptError> {
        let text = super::read_node_file(root, file)?;
        self.read.push(file.to_path_buf());
        self.apply_text(&text, file)
    }

    /// Applies one KubeletConfiguration document's image settings.
    pub fn apply_text(&mut self, text: &str, file: &Path) -> Result<(), AdoptError> {
        let parse = |problem: String| AdoptError::Parse {
            file: file.to_path_buf(),
            problem,
        };
        let doc: ConfigDocument = serde_yaml::from_str::<Option<ConfigDocument>>(text)
            .map_err(|e| parse(e.to_string()))?
            .unwrap_or_default();
        if doc.kind != "KubeletConfiguration"
            || !CONFIG_API_VERSIONS.contains(&doc.api_version.as_str())
        {
            return Err(parse(format!(
                "kind/apiVersion: a KubeletConfiguration of {} is required",
                CONFIG_API_VERSIONS.join(" or ")
            )));
        }
        let at = |key| Origin::ConfigKey {
            file: file.to_path_buf(),
            key,
        };
        if let Some(value) = doc.container_runtime_endpoint {
            self.runtime_endpoint = Setting {
                value,
                origin: at("containerRuntimeEndpoint"),
            };
        }
        if let Some(value) = doc.image_service_endpoint {
            self.image_endpoint = Setting {
                value,
                origin: at("imageServiceEndpoint"),
            };
        }
        if let Some(value) = doc.serialize_image_pulls {
            self.serialize_image_pulls = Setting {
                value,
                origin: at("serializeImagePulls"),
            };
        }
        if let Some(value) = doc.max_parallel_image_pulls {
            let value = u64::try_from(value)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| {
                    parse(format!("maxParallelImagePulls: {value} must be at least 1"))
                })?;
            self.max_parallel_image_pulls = Setting {
                value: Some(value),
                origin: at("maxParallelImagePulls"),
            };
        }
        Ok(())
    }

    /// The kubelet's defaults, before any file or flag.
    pub fn defaults(default_runtime_endpoint: &str) -> KubeletSettings {
        KubeletSettings {
            config_file: None,
            runtime_endpoint: setting(default_runtime_endpoint.to_string()),
            image_endpoint: setting(String::new()),
            serialize_image_pulls: setting(true),
            max_parallel_image_pulls: setting(None),
            provider_config: None,
            provider_bin_dir: None,
            root_dir: PathBuf::from("/var/lib/kubelet"),
            read: Vec::new(),
        }
    }

    pub fn apply_flags(&mut self, flags: &[Flag]) -> Result<(), AdoptError> {
        if let Some(flag) = flags::last(flags, "container-runtime-endpoint") {
            self.runtime_endpoint = flag_setting(flag, flag.value.clone());
        }
        if let Some(flag) = flags::last(flags, "image-service-endpoint") {
            self.image_endpoint = flag_setting(flag, flag.value.clone());
        }
        if let Some(flag) = flags::last(flags, "serialize-image-pulls") {
            let value = flag.value.parse::<bool>().map_err(|_| AdoptError::Parse {
                file: flag.file.clone(),
                problem: format!("--serialize-image-pulls: {:?} is not a boolean", flag.value),
            })?;
            self.serialize_image_pulls = flag_setting(flag, value);
        }
        Ok(())
    }

    /// The kubelet's own check: a parallel limit other than 1 needs
    /// `serializeImagePulls: false`.
    pub fn check_pull_limits(&self) -> Result<(), AdoptError> {
        match self.max_parallel_image_pulls.value {
            Some(limit) if limit > 1 && self.serialize_image_pulls.value => {
                Err(AdoptError::Refused(format!(
                    "maxParallelImagePulls ({limit}) needs serializeImagePulls: false; the kubelet refuses this configuration too"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Where the kubelet sends image calls: `imageServiceEndpoint`, else the runtime's.
    pub fn effective_image_endpoint(&self) -> &str {
        match self.image_endpoint.value.is_empty() {
            true => &self.runtime_endpoint.value,
            false => &self.image_endpoint.value,
        }
    }
}

fn setting<T>(value: T) -> Setting<T> {
    Setting {
        value,
        origin: Origin::Default,
    }
}

fn flag_setting<T>(flag: &Flag, value: T) -> Setting<T> {
    Setting {
        value,
        origin: Origin::Flag(flag.clone()),
    }
}

/// `--config-dir`: its `*.conf` files, sorted by name (kubelet 1.36 reads no others).
fn drop_ins(root: &Path, dir: &Path) -> Result<Vec<PathBuf>, AdoptError> {
    let on_node = super::node_path(root, dir);
    let entries = match std::fs::read_dir(&on_node) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(AdoptError::Read {
                file: dir.to_path_buf(),
                source,
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| !t.is_dir()))
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".conf"))
        .map(|entry| dir.join(entry.file_name()))
        .collect();
    files.sort();
    Ok(files)
}
