//! Ring 3 faults (issue 8): a private containerd killed under load and started again.
//! imageshim must never exit, answer `Unavailable` naming the backend within a second
//! while containerd is gone, and serve again within a second of its socket coming back;
//! every call gets exactly one answer.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{backend_toml, CriClient, RealEnv, Shim};
use imageshim::cri::{self, paths};
use parking_lot::Mutex;
use tonic::Code;

const VERSION: &str = "/runtime.v1.RuntimeService/Version";

/// The containerd flavor of this run (hack/containerd.sh's argument): 2 in the
/// containerd 2.x run, else Debian's 1.6.
fn containerd_flavor() -> String {
    match std::env::var("IMAGESHIM_TEST_RUNTIME").as_deref() {
        Ok("containerd-2") => "2".into(),
        _ => "1.6".into(),
    }
}

/// A containerd of this test's own (the shared one must stay up for the other tests).
pub(crate) struct PrivateContainerd {
    dir: PathBuf,
}

impl PrivateContainerd {
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/containerd.sh")
    }

    pub(crate) fn start(dir: &Path) -> PrivateContainerd {
        let status = Command::new(Self::script())
            .args(["start", &dir.display().to_string(), &containerd_flavor()])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "hack/containerd.sh start");
        PrivateContainerd {
            dir: dir.to_path_buf(),
        }
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    /// SIGKILL, as a crash would; the socket file stays behind, refusing connections.
    pub(crate) fn kill(&self) {
        let pid = std::fs::read_to_string(self.dir.join("containerd.pid")).unwrap();
        let pid: i32 = pid.trim().parse().unwrap();
        // SAFETY: plain kill(2) of the containerd this test started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        while Path::new(&format!("/proc/{pid}/stat")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        let _ = Command::new(Self::script())
            .args(["stop", &self.dir.display().to_string()])
            .status();
    }
}

#[derive(Debug, Clone)]
struct Outcome {
    sent: Instant,
    took: Duration,
    code: Code,
    message: String,
}

/// Calls Version in a loop on `client` until `stop`, recording every answer.
async fn load(client: CriClient, stop: Arc<Mutex<bool>>, log: Arc<Mutex<Vec<Outcome>>>) {
    while !*stop.lock() {
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            client.call::<_, cri::VersionResponse>(VERSION, cri::VersionRequest::default()),
        )
        .await
        .expect("no call hangs");
        let (code, message) = match answer {
            Ok(_) => (Code::Ok, String::new()),
            Err(status) => (status.code(), status.message().to_string()),
        };
        log.lock().push(Outcome {
            sent,
            took: sent.elapsed(),
            code,
            message,
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_killed_under_load_gives_prompt_unavailable_and_prompt_recovery() {
    let Some((_env, _turn)) = RealEnv::acquire_containerd(module_path!()).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let containerd = PrivateContainerd::start(dir.path());
    let config = backend_toml("private", "containerd", &containerd.socket(), true, &[], "");
    let shim = Shim::start(&config).await;
    let _: cri::ImageFsInfoResponse = shim
        .client
        .call(paths::IMAGE_FS_INFO, cri::ImageFsInfoRequest::default())
        .await
        .expect("serving before the fault");
    let (stop, log) = (
        Arc::new(Mutex::new(false)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let callers: Vec<_> = (0..4)
        .map(|_| {
            tokio::spawn(load(
                CriClient::new(&shim.socket),
                stop.clone(),
                log.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Instant::now();
    containerd.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let restarting = Instant::now();
    let containerd = PrivateContainerd::start(dir.path());
    let back = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    *stop.lock() = true;
    for caller in callers {
        caller.await.unwrap();
    }
    drop(containerd);
    let log = log.lock().clone();
    check_the_gap(&log, killed, restarting);
    check_the_recovery(&log, back);
}

/// Every call made while containerd was gone got a prompt `Unavailable` naming it.
fn check_the_gap(log: &[Outcome], killed: Instant, restarting: Instant) {
    let during_gap: Vec<_> = log
        .iter()
        .filter(|o| o.sent > killed + Duration::from_millis(200) && o.sent + o.took < restarting)
        .collect();
    assert!(
        during_gap.len() > 20,
        "load ran during the gap: {}",
        during_gap.len()
    );
    for outcome in &during_gap {
        assert_eq!(outcome.code, Code::Unavailable, "{outcome:?}");
        assert!(outcome.message.contains("backend private"), "{outcome:?}");
        assert!(
            outcome.took < Duration::from_secs(1),
            "prompt answer: {outcome:?}"
        );
    }
    let slowest = log.iter().max_by_key(|o| o.took).unwrap();
    assert!(
        slowest.took < Duration::from_secs(1),
        "no call waits: {slowest:?}"
    );
    let gap_max = during_gap.iter().map(|o| o.took).max().unwrap();
    println!(
        "calls: {}; during the gap: {} (slowest {gap_max:?})",
        log.len(),
        during_gap.len()
    );
}

/// Calls succeed within a second of containerd's socket coming back, and keep doing so.
fn check_the_recovery(log: &[Outcome], back: Instant) {
    let first_ok_after = log
        .iter()
        .filter(|o| o.sent > back && o.code == Code::Ok)
        .map(|o| o.sent + o.took)
        .min()
        .expect("calls succeed again");
    let recovery = first_ok_after - back;
    assert!(
        recovery < Duration::from_secs(1),
        "recovered {recovery:?} after containerd came back"
    );
    let late_failures: Vec<_> = log
        .iter()
        .filter(|o| o.sent > back + Duration::from_secs(1) && o.code != Code::Ok)
        .collect();
    assert!(late_failures.is_empty(), "{late_failures:?}");
    println!("recovery {recovery:?}");
}

fn pull_request(image: &str) -> cri::PullImageRequest {
    cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_killed_mid_merged_pull_answers_every_waiter_and_the_next_pull_works() {
    use crate::support::stallproxy::StallProxy;
    let Some((env, _turn)) = RealEnv::acquire(module_path!()).await else {
        return;
    };
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let repo = format!("it/stalled-{run}");
    crate::support::oci::push_sized_image(&env.registry, &repo, "v1", 4 << 20);
    let proxy = StallProxy::start(&env.registry, 0, true).await;
    let address = proxy.address.clone();
    env.plain_http_registry(&address);
    let shim = Shim::start(&env.runtime_backend("")).await;
    let image = format!("{address}/{repo}:v1");
    let started = Instant::now();
    let waiters = pull_with_deadlines(&shim.client, &image, 20, started);
    while proxy.blob_gets.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the pull reached the blob"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let port: u16 = address.rsplit(':').next().unwrap().parse().unwrap();
    proxy.kill();
    let killed = started.elapsed();
    every_waiter_gets_one_backend_error(waiters, killed).await;
    let proxy = StallProxy::start(&env.registry, port, false).await;
    let pulled = shim.client.pull(&image).await;
    assert!(pulled.is_ok(), "the next pull works: {pulled:?}");
    proxy.kill();
}

const WAITER_DEADLINE: Duration = Duration::from_secs(60);

type Waiter = tokio::task::JoinHandle<(Result<cri::PullImageResponse, tonic::Status>, Duration)>;

/// `callers` pulls of `image`, each with a 60 s deadline; each answer with its time.
fn pull_with_deadlines(
    client: &CriClient,
    image: &str,
    callers: usize,
    started: Instant,
) -> Vec<Waiter> {
    (0..callers)
        .map(|_| {
            let (client, image) = (client.clone(), image.to_string());
            tokio::spawn(async move {
                let answer = client
                    .call_with_deadline(paths::PULL_IMAGE, pull_request(&image), WAITER_DEADLINE)
                    .await;
                (answer, started.elapsed())
            })
        })
        .collect()
}

async fn every_waiter_gets_one_backend_error(waiters: Vec<Waiter>, killed: Duration) {
    let mut messages = std::collections::HashSet::new();
    let mut slowest = Duration::ZERO;
    for waiter in waiters {
        let (answer, at) = tokio::time::timeout(WAITER_DEADLINE, waiter)
            .await
            .expect("no waiter hangs")
            .unwrap();
        let status = answer.expect_err("the registry died mid-pull");
        assert_ne!(
            status.code(),
            Code::DeadlineExceeded,
            "answered before the deadline"
        );
        assert!(at < WAITER_DEADLINE, "{at:?}");
        messages.insert((status.code(), status.message().to_string()));
        slowest = slowest.max(at.saturating_sub(killed));
    }
    println!("waiters answered within {slowest:?} of the registry's death: {messages:?}");
    assert_eq!(
        messages.len(),
        1,
        "every waiter got the one backend error: {messages:?}"
    );
}
