//! Credential metrics: lookups by source and result, plugin exec duration and errors by
//! provider (names from the provider config, so bounded). Never an image, registry or
//! credential in a label.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Where a credential lookup looked.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Source {
    request,
    docker_config,
    plugin,
}

/// What it found.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Found {
    hit,
    miss,
    error,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    source: Source,
    result: Found,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

/// The credential metric families. Cheap to clone; survive reloads.
#[derive(Debug, Clone)]
pub struct CredentialMetrics {
    lookups: Family<LookupLabels, Counter>,
    plugin_duration: Family<ProviderLabels, Histogram, fn() -> Histogram>,
    plugin_errors: Family<ProviderLabels, Counter>,
}

fn plugin_histogram() -> Histogram {
    // 5 ms .. ~100 s.
    Histogram::new(exponential_buckets(0.005, 3.0, 10))
}

impl Default for CredentialMetrics {
    fn default() -> Self {
        CredentialMetrics {
            lookups: Family::default(),
            plugin_duration: Family::new_with_constructor(plugin_histogram),
            plugin_errors: Family::default(),
        }
    }
}

impl CredentialMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "credential_lookups",
            "Credential lookups for pulls, by source and result",
            self.lookups.clone(),
        );
        registry.register(
            "credential_plugin_duration_seconds",
            "Credential provider plugin exec time",
            self.plugin_duration.clone(),
        );
        registry.register(
            "credential_plugin_errors",
            "Credential provider plugin failures",
            self.plugin_errors.clone(),
        );
    }

    pub fn lookup(&self, source: Source, result: Found) {
        self.lookups
            .get_or_create(&LookupLabels { source, result })
            .inc();
    }

    pub fn plugin_ran(&self, provider: &str, elapsed: Duration, ok: bool) {
        let labels = ProviderLabels {
            provider: provider.to_string(),
        };
        self.plugin_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if !ok {
            self.plugin_errors.get_or_create(&labels).inc();
        }
    }
}
