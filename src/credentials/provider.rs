//! One credential provider at run time: matchImages, an `lru` cache keyed per the
//! plugin's cacheKeyType with expiry, and collapsing of concurrent execs (one exec per
//! registry at a time; the others then find the cache). Cache keys and expiry follow
//! the kubelet's `pkg/credentialprovider/plugin/plugin.go` (`getCachedCredentials`).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use lru::LruCache;
use tokio::time::Instant;

use super::exec::{run_plugin, CacheKeyType, PluginError, PluginResponse};
use super::keyring::Keyring;
use super::matching::{registry_of, url_matches};
use super::provider_config::PluginSpec;
use super::RegistryCredential;

const CACHE_ENTRIES: NonZeroUsize = match NonZeroUsize::new(1024) {
    Some(entries) => entries,
    None => panic!("the cache holds entries"),
};
pub const GLOBAL_CACHE_KEY: &str = "<global>";

struct CacheEntry {
    keyring: Keyring,
    expires_at: Instant,
}

/// An exec plugin with its cache.
pub struct Provider {
    pub spec: PluginSpec,
    timeout: Duration,
    cache: Mutex<LruCache<String, CacheEntry>>,
    exec_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub(super) metrics: super::CredentialMetrics,
}

/// The cache key a response is stored under, or `None` when it must not be cached.
pub fn cache_key(
    response: &PluginResponse,
    default_duration: Duration,
    image: &str,
) -> Option<(String, Duration)> {
    let duration = response.cache_duration.unwrap_or(default_duration);
    if duration.is_zero() {
        return None;
    }
    let key = match response.cache_key_type {
        CacheKeyType::Image => image.to_string(),
        CacheKeyType::Registry => registry_of(image),
        CacheKeyType::Global => GLOBAL_CACHE_KEY.to_string(),
    };
    Some((key, duration))
}

impl Provider {
    pub fn new(spec: PluginSpec, timeout: Duration) -> Provider {
        Provider {
            spec,
            timeout,
            cache: Mutex::new(LruCache::new(CACHE_ENTRIES)),
            exec_locks: Mutex::new(HashMap::new()),
            metrics: super::CredentialMetrics::default(),
        }
    }

    /// True when one of the provider's matchImages patterns matches `image`.
    pub fn matches(&self, image: &str) -> bool {
        self.spec
            .match_images
            .iter()
            .any(|pattern| url_matches(pattern, image))
    }

    /// Credentials for `image` (`host[:port]/path`), from the cache or one exec.
    pub async fn provide(&self, image: &str) -> Result<Vec<RegistryCredential>, PluginError> {
        if !self.matches(image) {
            return Ok(Vec::new());
        }
        if let Some(keyring) = self.cached(image) {
            return Ok(keyring.lookup(image));
        }
        let lock = self.exec_lock(&registry_of(image));
        let _one_exec_per_registry = lock.lock().await;
        if let Some(keyring) = self.cached(image) {
            return Ok(keyring.lookup(image));
        }
        let started = Instant::now();
        let response = run_plugin(&self.spec, image, self.timeout).await;
        tracing::debug!(provider = %self.spec.name, elapsed = ?started.elapsed(), ok = response.is_ok(), "credential plugin ran");
        self.metrics
            .plugin_ran(&self.spec.name, started.elapsed(), response.is_ok());
        let response = response?;
        if let Some((key, duration)) = cache_key(&response, self.spec.default_cache_duration, image)
        {
            self.store(key, response.keyring.clone(), duration);
        }
        Ok(response.keyring.lookup(image))
    }

    fn cached(&self, image: &str) -> Option<Keyring> {
        let mut cache = self.cache.lock();
        let now = Instant::now();
        for key in [
            image.to_string(),
            registry_of(image),
            GLOBAL_CACHE_KEY.to_string(),
        ] {
            match cache.get(&key) {
                Some(entry) if entry.expires_at > now => return Some(entry.keyring.clone()),
                Some(_) => {
                    cache.pop(&key);
                }
                None => {}
            }
        }
        None
    }

    fn store(&self, key: String, keyring: Keyring, duration: Duration) {
        // Go's longest duration (292 years) fits an Instant; be safe about it anyway.
        let Some(expires_at) = Instant::now().checked_add(duration) else {
            return;
        };
        let entry = CacheEntry {
            keyring,
            expires_at,
        };
        self.cache.lock().put(key, entry);
    }

    fn exec_lock(&self, registry: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.exec_locks.lock();
        locks.entry(registry.to_string()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> Provider {
        let spec = PluginSpec {
            name: "p".into(),
            binary: "/nonexistent".into(),
            match_images: vec!["*.registry.io".into()],
            default_cache_duration: Duration::from_secs(60),
            api_version: "credentialprovider.kubelet.k8s.io/v1".into(),
            args: vec![],
            env: vec![],
        };
        Provider::new(spec, Duration::from_secs(60))
    }

    fn keyring() -> Keyring {
        let mut keyring = Keyring::default();
        keyring.add("*.registry.io", RegistryCredential::default());
        keyring
    }

    #[tokio::test(start_paused = true)]
    async fn cache_entries_expire_after_their_duration() {
        let provider = provider();
        provider.store("a.registry.io".into(), keyring(), Duration::from_secs(30));
        assert!(
            provider.cached("a.registry.io/x").is_some(),
            "registry entry serves images under it"
        );
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(provider.cached("a.registry.io/y").is_some());
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(provider.cached("a.registry.io/x").is_none(), "expired");
        provider.store(GLOBAL_CACHE_KEY.into(), keyring(), Duration::from_secs(5));
        assert!(
            provider.cached("b.registry.io/z").is_some(),
            "global entry serves every image"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(provider.cached("b.registry.io/z").is_none());
    }

    #[tokio::test]
    async fn an_expired_plugin_answer_is_fetched_again() {
        let dir = tempfile::tempdir().unwrap();
        let count = dir.path().join("count");
        let binary = dir.path().join("plugin");
        let body = format!(
            "#!/bin/sh\ncat >/dev/null\necho x >> {}\necho '{{\"kind\":\"CredentialProviderResponse\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"cacheKeyType\":\"Image\",\"cacheDuration\":\"300ms\",\"auth\":{{\"*.registry.io\":{{\"username\":\"u\",\"password\":\"p\"}}}}}}'\n",
            count.display()
        );
        std::fs::write(&binary, body).unwrap();
        std::fs::set_permissions(&binary, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut provider = provider();
        provider.spec.binary = binary;
        let runs = || {
            std::fs::read_to_string(&count)
                .unwrap_or_default()
                .lines()
                .count()
        };
        assert_eq!(provider.provide("a.registry.io/x").await.unwrap().len(), 1);
        assert_eq!(provider.provide("a.registry.io/x").await.unwrap().len(), 1);
        assert_eq!(runs(), 1, "second lookup served from the cache");
        tokio::time::sleep(Duration::from_millis(400)).await;
        provider.provide("a.registry.io/x").await.unwrap();
        assert_eq!(runs(), 2, "expired entry fetched again");
        assert!(
            provider
                .provide("other.example.com/x")
                .await
                .unwrap()
                .is_empty(),
            "matchImages"
        );
        assert_eq!(runs(), 2);
    }
}
