//! imageshim's config.toml as adopt writes it: the backend the kubelet talks to today,
//! the kubelet's pull cap, its credential sources — each with a comment saying where it
//! was read — and nothing invented; every other key keeps its documented default. Text
//! only: validated with `Config::parse` by the caller, written only with `--write`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::BackendKind;

use super::kubelet::{KubeletSettings, Origin, Setting};

/// Everything the generated config says.
pub struct Plan<'a> {
    pub mode: &'a str,
    pub sources: &'a [PathBuf],
    pub socket: &'a Path,
    pub backend_kind: BackendKind,
    pub kind_reason: String,
    pub endpoint: &'a Setting<String>,
    /// Which calls the kubelet sends there ("image calls", "every CRI call").
    pub endpoint_key: &'a str,
    pub runtime_config: Option<&'a Path>,
    pub handlers: &'a [String],
    pub kubelet: &'a KubeletSettings,
    pub docker_config: Option<&'a Path>,
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// Where a setting came from, for a comment.
pub fn origin_text(origin: &Origin) -> String {
    match origin {
        Origin::Default => "kubelet default".to_string(),
        Origin::ConfigKey { file, key } => format!("{key} in {}", file.display()),
        Origin::Flag(flag) => format!("--{} in {}", flag.name, flag.file.display()),
    }
}

impl Plan<'_> {
    /// The config.toml text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# Written by `imageshim adopt` ({} mode) from:",
            self.mode
        );
        for source in self.sources {
            let _ = writeln!(out, "#   {}", source.display());
        }
        out.push_str(
            "# Keys not written here keep the defaults documented in imageshim's config.toml.\n\n",
        );
        let _ = writeln!(out, "socket = {}\n", quoted(&self.socket.to_string_lossy()));
        self.render_backend(&mut out);
        self.render_pull(&mut out);
        self.render_credentials(&mut out);
        out
    }

    fn render_backend(&self, out: &mut String) {
        let kind = match self.backend_kind {
            BackendKind::Containerd => "containerd",
            BackendKind::CriO => "cri-o",
        };
        out.push_str("[[backend]]\n");
        let _ = writeln!(out, "name = {}", quoted(kind));
        let _ = writeln!(out, "kind = {}  # {}", quoted(kind), self.kind_reason);
        let _ = writeln!(
            out,
            "endpoint = {}  # where the kubelet sends {} today ({})",
            quoted(&self.endpoint.value),
            self.endpoint_key,
            origin_text(&self.endpoint.origin)
        );
        out.push_str("default = true\n");
        match self.runtime_config {
            Some(path) => {
                let _ = writeln!(out, "runtime_config = {}", quoted(&path.to_string_lossy()));
                out.push_str("# handlers discovered there (check-config prints them again):\n");
                for handler in self.handlers {
                    let _ = writeln!(out, "#   {handler}");
                }
            }
            None => {
                out.push_str("# runtime_config: none found; unknown handlers go to this backend\n")
            }
        }
        out.push('\n');
    }

    fn render_pull(&self, out: &mut String) {
        let kubelet = self.kubelet;
        out.push_str("[pull]\n");
        let _ = writeln!(
            out,
            "serialize_image_pulls = {}  # serializeImagePulls ({})",
            kubelet.serialize_image_pulls.value,
            origin_text(&kubelet.serialize_image_pulls.origin)
        );
        let limit = match kubelet.serialize_image_pulls.value {
            true => 0,
            false => kubelet.max_parallel_image_pulls.value.unwrap_or(0),
        };
        let _ = writeln!(
            out,
            "max_parallel_image_pulls = {limit}  # maxParallelImagePulls ({}; 0 = unlimited)\n",
            origin_text(&kubelet.max_parallel_image_pulls.origin)
        );
    }

    fn render_credentials(&self, out: &mut String) {
        out.push_str("[credentials]\n");
        match self.docker_config {
            Some(path) => {
                let _ = writeln!(
                    out,
                    "docker_config = [{}]  # the file the kubelet's keyring reads",
                    quoted(&path.to_string_lossy())
                );
            }
            None => out.push_str("docker_config = []  # the kubelet finds no config.json either\n"),
        }
        if let (Some(config), Some(bin)) = (
            &self.kubelet.provider_config,
            &self.kubelet.provider_bin_dir,
        ) {
            let _ = writeln!(
                out,
                "provider_config = {}  # --image-credential-provider-config in {}",
                quoted(&config.value),
                config.file.display()
            );
            let _ = writeln!(
                out,
                "provider_bin_dir = {}  # --image-credential-provider-bin-dir in {}",
                quoted(&bin.value),
                bin.file.display()
            );
        }
    }
}
