//! Where a runtime puts a pulled image, by the runtime's own rule — what decides which
//! pulls merge and whether an image is present for a handler. Pure functions over the
//! runtime's family (from its `Version` answer), its discovered config and the facts
//! of one request; must not do I/O.
//!
//! - containerd 2.x (`internal/cri/server/images/image_pull.go`): a request without
//!   `sandbox_config` lands in the images plugin's default snapshotter whatever the
//!   handler; otherwise the handler is `ImageSpec.runtime_handler`, else the sandbox
//!   annotation `io.containerd.cri.runtime-handler`, and the pull unpacks into that
//!   runtime's own snapshotter when it has one, else the default.
//! - containerd 1.x and CRI-O: one image store for every handler (their PullImage
//!   ignores the handler).

use super::discovery::RuntimeCatalog;

/// Which runtime answers behind a backend, as its `Version` answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeFamily {
    /// containerd 1.x: one snapshotter for every pull.
    Containerd1,
    /// containerd 2.x or later: per-handler snapshotters.
    Containerd2,
    CriO,
    /// Anything else: treated with the most cautious rule (never merge handlers).
    Other,
}

impl RuntimeFamily {
    /// The family from `VersionResponse.runtime_name` and `runtime_version`
    /// (containerd: `v2.4.2`, Debian's `1.6.20~ds1`).
    pub fn from_version(runtime_name: &str, runtime_version: &str) -> RuntimeFamily {
        match runtime_name {
            "containerd" => {
                let major = runtime_version
                    .trim_start_matches('v')
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|m| m.parse::<u32>().ok());
                match major {
                    Some(0 | 1) => RuntimeFamily::Containerd1,
                    Some(_) => RuntimeFamily::Containerd2,
                    None => RuntimeFamily::Other,
                }
            }
            "cri-o" => RuntimeFamily::CriO,
            _ => RuntimeFamily::Other,
        }
    }

    /// True when images are kept per snapshotter, so a handler can lack an image
    /// the runtime has.
    pub fn has_snapshotters(self) -> bool {
        matches!(self, RuntimeFamily::Containerd2)
    }
}

/// What a PullImageRequest says that decides where it lands.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullFacts<'a> {
    /// `ImageSpec.runtime_handler`.
    pub spec_handler: &'a str,
    /// True when the request carries a `sandbox_config`.
    pub has_sandbox_config: bool,
    /// The sandbox annotation `io.containerd.cri.runtime-handler`, if present.
    pub annotation_handler: Option<&'a str>,
}

/// One image store for every handler.
pub const ONE_STORE: &str = "the image store";

/// Where a pull with `facts` lands on a runtime of `family` whose config is
/// `catalog` (`None`: not discovered). Equal strings merge.
pub fn pull_lands_in(
    family: RuntimeFamily,
    catalog: Option<&RuntimeCatalog>,
    facts: PullFacts<'_>,
) -> String {
    match family {
        RuntimeFamily::Containerd1 | RuntimeFamily::CriO => ONE_STORE.into(),
        RuntimeFamily::Containerd2 => {
            if !facts.has_sandbox_config {
                return default_snapshotter(catalog);
            }
            let handler = match facts.spec_handler {
                "" => facts.annotation_handler.unwrap_or(""),
                named => named,
            };
            handler_lands_in(catalog, handler)
        }
        RuntimeFamily::Other => format!("handler {:?}", facts.spec_handler),
    }
}

/// Where containerd 2.x keeps `handler`'s images: its own snapshotter, else the
/// default. Without a discovered config only the handler's name is known.
pub fn handler_lands_in(catalog: Option<&RuntimeCatalog>, handler: &str) -> String {
    let Some(catalog) = catalog else {
        return match handler {
            "" => default_snapshotter(None),
            named => format!("handler {named:?}"),
        };
    };
    let Some(runtime) = catalog.handlers.get(handler) else {
        // containerd falls back to the default for a handler it does not know.
        return default_snapshotter(Some(catalog));
    };
    match runtime {
        Some(own) => snapshotter_place(own),
        None => default_snapshotter(Some(catalog)),
    }
}

fn default_snapshotter(catalog: Option<&RuntimeCatalog>) -> String {
    match catalog.and_then(|c| c.default_snapshotter.as_deref()) {
        Some(name) => snapshotter_place(name),
        None => "the default snapshotter".into(),
    }
}

fn snapshotter_place(name: &str) -> String {
    format!("snapshotter {name}")
}

/// The snapshotter an ImageStatus naming `handler` must find the image unpacked in,
/// or `None` when presence is the runtime's to answer as it does (one store, or no
/// handler named, or the config is not known).
pub fn status_snapshotter<'a>(
    family: RuntimeFamily,
    catalog: Option<&'a RuntimeCatalog>,
    handler: &str,
) -> Option<&'a str> {
    if handler.is_empty() || !family.has_snapshotters() {
        return None;
    }
    catalog?.snapshotter_for(handler)
}

#[cfg(test)]
mod tests;
