//! Ring 2, the shim's life: a graceful stop drains the calls in flight and removes the
//! socket; credentials reload without rebinding, and a bad reload keeps the old ones.

use std::time::Duration;

use crate::hermetic::{pull_request, shim_in_front_of, simple_fake};
use crate::support::fake::{handler, reply, FakeBackend};
use crate::support::{backend_toml, Shim};
use imageshim::cri::{self, paths};

#[tokio::test]
async fn shutdown_drains_in_flight_calls_and_removes_the_socket() {
    let fake = FakeBackend::start(handler(|_| async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        reply(&cri::VersionResponse {
            version: "slow".into(),
            ..Default::default()
        })
    }))
    .await;
    let mut shim = shim_in_front_of(&fake).await;
    let client = shim.client.clone();
    let in_flight = tokio::spawn(async move {
        client
            .call::<_, cri::VersionResponse>(
                "/runtime.v1.RuntimeService/Version",
                cri::VersionRequest::default(),
            )
            .await
    });
    // Stop once the call is in flight at the backend.
    while fake.calls.lock().unwrap().is_empty() {
        tokio::task::yield_now().await;
    }
    shim.stop().await;
    assert_eq!(in_flight.await.unwrap().unwrap().version, "slow");
    assert!(!shim.socket.exists(), "socket removed");
}

#[tokio::test]
async fn credentials_reload_without_rebinding_and_bad_reloads_keep_the_old_ones() {
    let fake = simple_fake(&[]).await;
    let shim = shim_in_front_of(&fake).await;
    let pull = || {
        shim.client.call::<_, cri::PullImageResponse>(
            paths::PULL_IMAGE,
            pull_request("registry.example.com/app:v1", ""),
        )
    };
    let last_user = || {
        last_pull_auth(&fake)
            .map(|a| a.username)
            .unwrap_or_default()
    };
    pull().await.unwrap();
    assert_eq!(last_user(), "", "anonymous before any credentials");

    let dir = tempfile::tempdir().unwrap();
    let config_json = dir.path().join("config.json");
    let auths = r#"{"auths": {"registry.example.com": {"username": "u", "password": "p"}}}"#;
    std::fs::write(&config_json, auths).unwrap();
    let reload = |text: String| reload_credentials(&shim, &fake, &text);
    reload(format!(
        "docker_config = [{:?}]\n",
        config_json.display().to_string()
    ))
    .unwrap();
    pull().await.unwrap();
    assert_eq!(last_user(), "u", "reloaded credentials are injected");
    let injected = last_pull_auth(&fake).unwrap();
    assert_eq!(injected.server_address, "", "no server_address is injected");

    let bad = "provider_config = \"/no/such.yaml\"\nprovider_bin_dir = \"/no\"\n";
    let err = reload(bad.into()).unwrap_err();
    assert!(err.contains("/no/such.yaml"), "{err}");
    pull().await.unwrap();
    assert_eq!(
        last_user(),
        "u",
        "a bad reload leaves the previous credentials in force"
    );
}

/// The `auth` of the last PullImage the fake backend received.
fn last_pull_auth(fake: &FakeBackend) -> Option<cri::AuthConfig> {
    let calls = fake.calls_to(paths::PULL_IMAGE);
    let request: cri::PullImageRequest = calls.last().unwrap().decode();
    request.auth
}

/// Reloads `shim`'s config with a new `[credentials]` body; `Err` lists what was refused.
fn reload_credentials(shim: &Shim, fake: &FakeBackend, credentials: &str) -> Result<(), String> {
    let backend = backend_toml("fake", "containerd", &fake.socket, true, &[], "");
    let config =
        imageshim::config::Config::parse(&format!("{backend}[credentials]\n{credentials}"))
            .unwrap();
    let report = shim.running.as_ref().unwrap().reload(config);
    assert!(report.needs_restart.contains(&"socket"), "{report:?}");
    assert!(report.applied.contains(&"pull"), "{report:?}");
    match report.refused.is_empty() {
        true => Ok(()),
        false => Err(report.refused.join("; ")),
    }
}
