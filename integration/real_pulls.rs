//! Ring 3 for pull merging: concurrent pulls through imageshim against the real
//! containerd and registry, counted in the registry's access log, beside the same
//! pulls made directly to containerd.

use crate::support::stallproxy::StallProxy;
use crate::support::{oci, RealEnv, Shim};

/// Manifest requests (by method) the registry's access log shows for `repo`.
fn manifest_requests(env: &RealEnv, repo: &str, method: &str) -> usize {
    let log = std::fs::read_to_string(&env.registry_log).unwrap();
    let needle = format!("\"{method} /v2/{repo}/manifests/");
    log.lines().filter(|l| l.contains(&needle)).count()
}

#[tokio::test]
async fn fifty_concurrent_pulls_make_the_registry_serve_the_manifest_once() {
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let shim = Shim::start(&env.runtime_backend("")).await;
    // Fresh repositories each run, so neither containerd nor the log has seen them.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (via_repo, direct_repo) = (
        format!("it/merge-shim-{run}"),
        format!("it/merge-direct-{run}"),
    );
    oci::build_and_push(&env.registry, &via_repo, &["v1"], None, None);
    oci::build_and_push(&env.registry, &direct_repo, &["v1"], None, None);

    let via_image = fifty_merged_pulls_held_together(&env, &shim, &via_repo).await;
    let via_gets = manifest_requests(&env, &via_repo, "GET");
    let via_heads = manifest_requests(&env, &via_repo, "HEAD");
    assert_eq!(
        via_gets, 1,
        "the registry served the manifest once through imageshim"
    );
    assert!(
        shim.client.image_status(&via_image).await.is_some(),
        "the image is present"
    );

    let direct_image = format!("{}/{direct_repo}:v1", env.registry);
    let direct = env.direct().pull_concurrently(&direct_image, 50).await;
    assert!(direct.iter().all(|r| r.is_ok()));
    let direct_gets = manifest_requests(&env, &direct_repo, "GET");
    let direct_heads = manifest_requests(&env, &direct_repo, "HEAD");
    eprintln!(
        "registry manifest requests for 50 concurrent pulls: imageshim GET {via_gets} HEAD {via_heads}; direct containerd GET {direct_gets} HEAD {direct_heads}"
    );
    // containerd resolves with one HEAD; CRI-O resolves with the GET itself.
    assert!(
        via_heads <= 1,
        "at most one resolve through imageshim: {via_heads}"
    );
    assert!(via_gets + via_heads <= direct_gets + direct_heads);
}

/// 50 pulls of `repo` through imageshim, behind a proxy that holds the blobs until
/// all 50 callers have joined one pull; the image pulled.
async fn fifty_merged_pulls_held_together(env: &RealEnv, shim: &Shim, repo: &str) -> String {
    let proxy = StallProxy::start_gated(&env.registry, 0, false, false).await;
    env.plain_http_registry(&proxy.address);
    let image = format!("{}/{repo}:v1", proxy.address);
    let pulling = {
        let (client, image) = (shim.client.clone(), image.clone());
        tokio::spawn(async move { client.pull_concurrently(&image, 50).await })
    };
    let running = shim.running.as_ref().unwrap();
    let started = std::time::Instant::now();
    while running.pull_stats().waiters < 50 {
        assert!(
            started.elapsed().as_secs() < 30,
            "{:?}",
            running.pull_stats()
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        running.pull_stats().started_total,
        1,
        "one pull for 50 callers"
    );
    proxy.open();
    let ids: std::collections::HashSet<_> = pulling
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.expect("every caller succeeds"))
        .collect();
    assert_eq!(ids.len(), 1, "all 50 callers got the same image");
    image
}
