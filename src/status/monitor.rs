//! The progress monitor: once a second, for every containerd backend with running
//! pulls, reads the content store's active ingests (and, when needed, the manifests
//! those pulls committed), attributes them (`attribution`) and records each pull's
//! bytes in its `pull::Progress`. A backend it cannot read leaves its pulls unmeasured
//! (so no pull is declared stalled on missing data). CRI-O backends are never measured.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::attribution::{attribute, PullTrack};
use crate::backend::content::{ContentError, ContentStore, Ingest};
use crate::backend::Backend;
use crate::config::BackendKind;
use crate::pull::{FlightPhase, Progress};
use crate::reference::Reference;
use crate::server::pull_image::Pulls;

/// How often running pulls are measured.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Manifests committed this long before a pull started still count as its own
/// (containerd and imageshim read the same clock; this absorbs rounding).
const CLOCK_SLACK: Duration = Duration::from_secs(2);
/// While an ingest belongs to no pull, a pull's manifests are looked up again this often.
const MANIFEST_REFRESH: Duration = Duration::from_secs(5);

/// A running pull as the monitor sees it.
struct RunningPull {
    sequence: u64,
    image: String,
    started_wall: SystemTime,
    progress: Arc<Progress>,
}

/// Measures the running pulls of the containerd backends forever.
pub async fn measure_forever(pulls: Pulls, backends: Vec<Arc<Backend>>) {
    let stores: Vec<(Arc<Backend>, ContentStore)> = backends
        .into_iter()
        .filter(|b| b.kind == BackendKind::Containerd)
        .map(|b| {
            let store = ContentStore::new(b.channel());
            (b, store)
        })
        .collect();
    let mut tracks: HashMap<u64, PullTrack> = HashMap::new();
    let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut live = HashSet::new();
        for (backend, store) in &stores {
            let running = running_on(&pulls, &backend.name);
            live.extend(running.iter().map(|p| p.sequence));
            if running.is_empty() {
                continue;
            }
            let sampled =
                tokio::time::timeout(Duration::from_secs(5), sample(store, &running, &mut tracks))
                    .await;
            if let Err(err) = sampled.unwrap_or(Err(ContentError::Call(
                tonic::Status::deadline_exceeded("no answer within 5s"),
            ))) {
                tracing::debug!(backend = %backend.name, error = %crate::error_chain(&err), "cannot measure pull progress");
                running.iter().for_each(|p| p.progress.unmeasured());
            }
        }
        tracks.retain(|sequence, _| live.contains(sequence));
    }
}

fn running_on(pulls: &Pulls, backend: &str) -> Vec<RunningPull> {
    pulls
        .flights()
        .into_iter()
        .filter(|f| f.key.backend == backend)
        .filter_map(|f| match f.phase {
            FlightPhase::Running {
                started_at,
                progress,
            } => Some(RunningPull {
                sequence: f.sequence,
                image: f.key.image,
                started_wall: SystemTime::now() - started_at.elapsed(),
                progress,
            }),
            FlightPhase::Queued => None,
        })
        .collect()
}

/// One measurement of the running pulls of one backend.
async fn sample(
    store: &ContentStore,
    running: &[RunningPull],
    tracks: &mut HashMap<u64, PullTrack>,
) -> Result<(), ContentError> {
    let ingests = store.ingests().await?;
    let mut mine: HashMap<u64, PullTrack> = running
        .iter()
        .map(|p| (p.sequence, tracks.remove(&p.sequence).unwrap_or_default()))
        .collect();
    let stray = |tracks: &HashMap<u64, PullTrack>| {
        ingests
            .iter()
            .any(|i| !tracks.values().any(|t| t.owns(&i.digest)))
    };
    let stray = stray(&mine);
    for pull in running {
        let track = mine.entry(pull.sequence).or_default();
        let stale = track
            .refreshed_at
            .is_none_or(|at| at.elapsed() >= MANIFEST_REFRESH);
        if track.manifests.is_empty() || (stray && stale) {
            track.manifests = own_manifests(store, pull).await?;
            track.refreshed_at = Some(Instant::now());
        }
    }
    let attributed = attribute(&mine, &ingests);
    let active: HashSet<&str> = ingests.iter().map(|i| i.digest.as_str()).collect();
    for pull in running {
        let track = mine.entry(pull.sequence).or_default();
        let own: Vec<&Ingest> = attributed.get(&pull.sequence).cloned().unwrap_or_default();
        track.observe(&own);
        for digest in track.unknown_blobs(&active) {
            if store.committed(&digest).await? {
                track.committed.insert(digest);
            }
        }
        let measured = track.measure(&active);
        pull.progress.record(
            measured.bytes_done,
            measured.bytes_total,
            measured.downloads_complete,
        );
    }
    tracks.extend(mine);
    Ok(())
}

/// The image manifests committed for the pull's repository since it started.
async fn own_manifests(
    store: &ContentStore,
    pull: &RunningPull,
) -> Result<Vec<crate::backend::content::Manifest>, ContentError> {
    let Ok(reference) = Reference::parse(&pull.image) else {
        return Ok(Vec::new());
    };
    let since = pull.started_wall - CLOCK_SLACK;
    let manifests = store.manifests(&reference.domain, &reference.path).await?;
    Ok(manifests
        .into_iter()
        .filter(|m| m.created_at >= since)
        .collect())
}
