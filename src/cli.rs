//! Command-line arguments and subcommands. Parsing only: the work is in `app`.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub const DEFAULT_CONFIG: &str = "/etc/imageshim/config.toml";
pub const DEFAULT_SOCKET: &str = "/run/imageshim/imageshim.sock";

#[derive(Debug, Parser)]
#[command(
    name = "imageshim",
    version = env!("IMAGESHIM_VERSION_LINE"),
    about = "CRI image-service shim in front of containerd or CRI-O"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the CRI socket until SIGTERM/SIGINT.
    Serve {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate a config file and report every problem at once.
    CheckConfig {
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Show queued and running pulls, the cap and backend readiness, read from a
    /// running imageshim's admin endpoint.
    Status {
        /// The admin endpoint (host:port); default: `[admin] listen` of --config, else
        /// 127.0.0.1:9595.
        #[arg(long)]
        admin: Option<String>,
        #[arg(long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the JSON view instead of the table.
        #[arg(long)]
        json: bool,
        /// Redraw every second until Ctrl-C.
        #[arg(long)]
        watch: bool,
    },
    /// Read the kubelet's settings (config file, --config-dir drop-ins, kubeadm's and
    /// k3s's flags) and the runtime's config into imageshim's config.toml, and print
    /// the kubelet change that puts imageshim in the call path. Dry run unless --write.
    Adopt(AdoptArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AdoptMode {
    /// imageshim serves the kubelet's imageServiceEndpoint only.
    ImageEndpoint,
    /// imageshim serves every CRI call (containerRuntimeEndpoint).
    DropIn,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RuntimeKind {
    Containerd,
    #[value(name = "cri-o")]
    CriO,
}

#[derive(Debug, clap::Args)]
pub struct AdoptArgs {
    #[arg(long, value_enum, default_value = "image-endpoint")]
    pub mode: AdoptMode,
    /// Print the kubelet change that takes imageshim out again (reads --config).
    #[arg(long)]
    pub reverse: bool,
    /// Write imageshim's config (a different existing one is kept as
    /// config.toml.before-adopt). The kubelet's files are never written.
    #[arg(long)]
    pub write: bool,
    /// imageshim's config.toml.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// The socket imageshim serves.
    #[arg(long, default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,
    /// The KubeletConfiguration file [default: /var/lib/kubelet/config.yaml if present].
    #[arg(long)]
    pub kubelet_config: Option<PathBuf>,
    /// systemd environment files holding kubelet flags, in the order the unit expands
    /// them [default: /var/lib/kubelet/kubeadm-flags.env, /etc/default/kubelet,
    /// /etc/sysconfig/kubelet, those present].
    #[arg(long = "kubelet-flags")]
    pub kubelet_flags: Vec<PathBuf>,
    /// k3s's config.yaml (kubelet-arg) [default: /etc/rancher/k3s/config.yaml if present].
    #[arg(long)]
    pub k3s_config: Option<PathBuf>,
    /// The runtime behind the kubelet's endpoint [default: from its socket name].
    #[arg(long, value_enum)]
    pub runtime_kind: Option<RuntimeKind>,
    /// The runtime's config [default: /etc/containerd/config.toml, k3s's, or
    /// /etc/crio/crio.conf, if present].
    #[arg(long)]
    pub runtime_config: Option<PathBuf>,
    /// Where the node's / is (for a mounted node image); paths above are as on the node.
    #[arg(long, default_value = "/")]
    pub root: PathBuf,
}

impl AdoptArgs {
    /// The options `adopt` runs with.
    pub fn options(&self) -> crate::adopt::AdoptOptions {
        use crate::adopt::{AdoptOptions, Mode};
        use crate::config::BackendKind;
        AdoptOptions {
            root: self.root.clone(),
            mode: match self.mode {
                AdoptMode::ImageEndpoint => Mode::ImageEndpoint,
                AdoptMode::DropIn => Mode::DropIn,
            },
            kubelet_config: self.kubelet_config.clone(),
            flag_files: self.kubelet_flags.clone(),
            k3s_config: self.k3s_config.clone(),
            runtime_kind: self.runtime_kind.map(|kind| match kind {
                RuntimeKind::Containerd => BackendKind::Containerd,
                RuntimeKind::CriO => BackendKind::CriO,
            }),
            runtime_config: self.runtime_config.clone(),
            config: self.config.clone(),
            socket: self.socket.clone(),
        }
    }
}
