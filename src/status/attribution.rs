//! Which downloads belong to which pull, and how far each pull has got. Pure logic over
//! what the content store showed (see `backend::content`):
//!
//! - A pull owns the blobs (config and layers) of the image manifests committed for its
//!   repository since it started (containerd labels everything a pull fetches with
//!   `containerd.io/distribution.source.<host>=<repository>`).
//! - An active ingest belongs to every running pull owning its digest; an ingest no pull
//!   owns (the manifest itself, before it is committed) belongs to the only running
//!   pull of the backend when there is exactly one, else to none.
//! - Bytes done: each owned blob counts its ingest's offset while active and its size
//!   once committed; total is the sum of the owned blobs' sizes. Before the manifest is
//!   known, the pull's own ingests give both. Downloads are complete when every owned
//!   blob is committed (the runtime is unpacking).
//!
//! Limit: two different tags of one repository pulled at the same time share their
//! manifests and are counted together.

use std::collections::{HashMap, HashSet};

use crate::backend::content::{Ingest, Manifest};

/// What the monitor remembers of one running pull between samples.
#[derive(Debug, Default, Clone)]
pub struct PullTrack {
    /// Manifests committed for this pull's repository since it started.
    pub manifests: Vec<Manifest>,
    /// Ingests seen for this pull: digest → (offset, total).
    pub seen: HashMap<String, (u64, u64)>,
    /// Blobs known committed (seen finish, or found in the store).
    pub committed: HashSet<String>,
    /// When the manifests were last looked up.
    pub refreshed_at: Option<tokio::time::Instant>,
}

/// One pull's measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measured {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub downloads_complete: bool,
}

impl PullTrack {
    /// The owned blobs, each once: (digest, size).
    pub fn blobs(&self) -> Vec<(&str, u64)> {
        let mut seen = HashSet::new();
        self.manifests
            .iter()
            .flat_map(|m| m.blobs.iter())
            .filter(|(digest, _)| seen.insert(digest.as_str()))
            .map(|(d, s)| (d.as_str(), *s))
            .collect()
    }

    pub fn owns(&self, digest: &str) -> bool {
        self.manifests
            .iter()
            .any(|m| m.blobs.iter().any(|(d, _)| d == digest))
    }

    /// Folds in this sample's ingests for this pull; ingests seen before and gone now
    /// finished.
    pub fn observe(&mut self, mine: &[&Ingest]) {
        let active: HashSet<&str> = mine.iter().map(|i| i.digest.as_str()).collect();
        let finished: Vec<String> = self
            .seen
            .keys()
            .filter(|d| !active.contains(d.as_str()))
            .cloned()
            .collect();
        for digest in finished {
            if let Some((offset, total)) = self.seen.get_mut(&digest) {
                *offset = (*total).max(*offset);
            }
            self.committed.insert(digest);
        }
        for ingest in mine {
            self.seen
                .insert(ingest.digest.clone(), (ingest.offset, ingest.total));
            self.committed.remove(&ingest.digest);
        }
    }

    /// Owned blobs neither active nor known committed: the monitor asks the store.
    pub fn unknown_blobs(&self, active: &HashSet<&str>) -> Vec<String> {
        self.blobs()
            .into_iter()
            .filter(|(d, _)| !active.contains(d) && !self.committed.contains(*d))
            .map(|(d, _)| d.to_string())
            .collect()
    }

    /// How far the pull has got, given the digests being downloaded now.
    pub fn measure(&self, active: &HashSet<&str>) -> Measured {
        let blobs = self.blobs();
        if blobs.is_empty() {
            let (done, total) = self
                .seen
                .values()
                .fold((0, 0), |(d, t), (offset, total)| (d + offset, t + total));
            return Measured {
                bytes_done: done,
                bytes_total: total,
                downloads_complete: false,
            };
        }
        let mut measured = Measured {
            bytes_done: 0,
            bytes_total: 0,
            downloads_complete: true,
        };
        for (digest, size) in blobs {
            measured.bytes_total += size;
            if active.contains(digest) {
                measured.bytes_done += self.seen.get(digest).map_or(0, |(o, _)| *o).min(size);
                measured.downloads_complete = false;
            } else if self.committed.contains(digest) {
                measured.bytes_done += size;
            } else {
                measured.downloads_complete = false;
            }
        }
        measured
    }
}

/// Splits `ingests` among `tracks` (keyed by pull): by ownership, else to the only pull.
pub fn attribute<'a>(
    tracks: &HashMap<u64, PullTrack>,
    ingests: &'a [Ingest],
) -> HashMap<u64, Vec<&'a Ingest>> {
    let mut mine: HashMap<u64, Vec<&Ingest>> = tracks.keys().map(|k| (*k, Vec::new())).collect();
    let only = (tracks.len() == 1)
        .then(|| tracks.keys().next().copied())
        .flatten();
    for ingest in ingests {
        let owners: Vec<u64> = tracks
            .iter()
            .filter(|(_, t)| t.owns(&ingest.digest))
            .map(|(k, _)| *k)
            .collect();
        let owners = match (owners.is_empty(), only) {
            (true, Some(only)) => vec![only],
            _ => owners,
        };
        for owner in owners {
            mine.entry(owner).or_default().push(ingest);
        }
    }
    mine
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn ingest(digest: &str, offset: u64, total: u64) -> Ingest {
        Ingest {
            digest: digest.into(),
            offset,
            total,
        }
    }

    fn manifest(blobs: &[(&str, u64)]) -> Manifest {
        Manifest {
            digest: "sha256:m".into(),
            created_at: UNIX_EPOCH,
            blobs: blobs.iter().map(|(d, s)| (d.to_string(), *s)).collect(),
        }
    }

    #[test]
    fn ingests_go_to_the_pulls_owning_them_and_strays_to_an_only_pull() {
        let mut tracks = HashMap::new();
        tracks.insert(
            1,
            PullTrack {
                manifests: vec![manifest(&[("a", 10)])],
                ..Default::default()
            },
        );
        tracks.insert(
            2,
            PullTrack {
                manifests: vec![manifest(&[("b", 10), ("shared", 5)])],
                ..Default::default()
            },
        );
        tracks.get_mut(&1).unwrap().manifests[0]
            .blobs
            .push(("shared".into(), 5));
        let ingests = [
            ingest("a", 1, 10),
            ingest("b", 2, 10),
            ingest("shared", 3, 5),
            ingest("stray", 4, 9),
        ];
        let mine = attribute(&tracks, &ingests);
        let digests = |k| {
            mine[&k]
                .iter()
                .map(|i| i.digest.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(digests(1), ["a", "shared"]);
        assert_eq!(digests(2), ["b", "shared"]);
        tracks.remove(&2);
        let mine = attribute(&tracks, &ingests);
        assert_eq!(mine[&1].len(), 4, "the only pull takes the strays");
    }

    #[test]
    fn bytes_count_offsets_while_active_and_sizes_once_committed() {
        let mut track = PullTrack {
            manifests: vec![manifest(&[("c", 5), ("l1", 100), ("l2", 200)])],
            ..Default::default()
        };
        let first = [ingest("l1", 40, 100)];
        track.observe(&first.iter().collect::<Vec<_>>());
        track.committed.insert("c".into());
        let active: HashSet<&str> = ["l1"].into();
        assert_eq!(
            track.measure(&active),
            Measured {
                bytes_done: 45,
                bytes_total: 305,
                downloads_complete: false
            }
        );
        let second = [ingest("l2", 50, 200)];
        track.observe(&second.iter().collect::<Vec<_>>());
        let active: HashSet<&str> = ["l2"].into();
        assert_eq!(track.unknown_blobs(&active), Vec::<String>::new());
        assert_eq!(
            track.measure(&active),
            Measured {
                bytes_done: 155,
                bytes_total: 305,
                downloads_complete: false
            }
        );
        track.observe(&[]);
        assert_eq!(
            track.measure(&HashSet::new()),
            Measured {
                bytes_done: 305,
                bytes_total: 305,
                downloads_complete: true
            }
        );
    }

    #[test]
    fn before_the_manifest_the_pulls_own_ingests_give_the_totals() {
        let mut track = PullTrack::default();
        let seen = [ingest("x", 10, 50), ingest("y", 5, 0)];
        track.observe(&seen.iter().collect::<Vec<_>>());
        let active: HashSet<&str> = ["x", "y"].into();
        assert_eq!(
            track.measure(&active),
            Measured {
                bytes_done: 15,
                bytes_total: 50,
                downloads_complete: false
            }
        );
    }
}
