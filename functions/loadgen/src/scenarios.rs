//! Each figure of BENCHMARKS.md: a scenario that measures the service and
//! its baseline in the same run and writes what it saw to `<out>/<name>.json`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use kp_domain::{KeyPackageEvent, Policy};
use kp_store::CleanupOptions;
use serde::{Deserialize, Serialize};

use crate::corpus::Corpus;
use crate::direct_firestore::DirectFirestore;
use crate::direct_sqlite::DirectSqlite;
use crate::gateway::{Backend, Memory, Process, free_port, healthy, memory_of, serve_in_process};
use crate::stats::{Recorded, Summary, median_ms, record, run};
use crate::target::{Http, InProcess, Target};

/// KeyPackages per owner in every corpus.
pub const PER_OWNER: usize = 10;

/// Which store a scenario runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A SQLite file.
    Sqlite,
    /// The Firestore emulator.
    Firestore,
}

impl Kind {
    /// Its name in files and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Firestore => "firestore",
        }
    }
}

/// Where scenarios find what they need and put what they measure.
pub struct Env {
    /// Results, scratch databases.
    pub out: PathBuf,
    /// Directory of the function binaries (`gateway`, `ingest`, ...);
    /// `None` serves the gateway's router in this process.
    pub bins: Option<PathBuf>,
    /// Emulator host, when a scenario runs on Firestore.
    pub emulator: Option<String>,
    run_id: String,
    fresh: std::sync::atomic::AtomicUsize,
}

impl Env {
    /// An environment writing to `out`.
    pub fn new(out: PathBuf, bins: Option<PathBuf>, emulator: Option<String>) -> anyhow::Result<Self> {
        std::fs::create_dir_all(out.join("scratch"))?;
        Ok(Self {
            out,
            bins,
            emulator,
            run_id: format!("{}{}", std::process::id(), crate::now() % 100_000),
            fresh: Default::default(),
        })
    }

    /// A store nobody has used yet.
    pub fn fresh(&self, kind: Kind) -> anyhow::Result<Backend> {
        let n = self.fresh.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(match kind {
            Kind::Sqlite => {
                let path = self.out.join("scratch").join(format!("{}-{n}.db", self.run_id));
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                Backend::Sqlite(path)
            }
            Kind::Firestore => Backend::Firestore {
                host: self.emulator.clone().context("no Firestore emulator")?,
                prefix: format!("lg{}_{n}_", self.run_id),
            },
        })
    }

    /// The policy every gateway of a run has (see [`Backend::env`]).
    pub fn policy(backend: &Backend) -> Policy {
        let env = backend.env(0);
        kp_http::Config::from_vars(|name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
            .expect("the load configuration is valid")
            .policy
    }

    /// The gateway on `backend`: its URL, and its process when it has one.
    pub async fn gateway(&self, backend: &Backend) -> anyhow::Result<(String, Option<Process>)> {
        match &self.bins {
            Some(bins) => {
                let process = Process::start(&bins.join("gateway"), backend)?;
                Ok((process.base.clone(), Some(process)))
            }
            None => Ok((serve_in_process(backend).await?, None)),
        }
    }

    /// The baseline on `backend`.
    pub async fn direct(&self, backend: &Backend, events: Arc<Vec<KeyPackageEvent>>) -> anyhow::Result<Direct> {
        let policy = Self::policy(backend);
        Ok(match backend {
            Backend::Sqlite(path) => Direct::Sqlite(DirectSqlite::open(path, policy, events)?),
            Backend::Firestore { host, prefix } => {
                Direct::Firestore(DirectFirestore::connect(host, prefix, policy, events).await?)
            }
        })
    }

    /// Writes `value` to `<out>/<name>.json`.
    pub fn save<T: Serialize>(&self, name: &str, value: &T) -> anyhow::Result<()> {
        let path = self.out.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string_pretty(value)?)?;
        eprintln!("wrote {}", path.display());
        Ok(())
    }
}

/// A baseline.
#[derive(Clone)]
pub enum Direct {
    /// Through `rusqlite`.
    Sqlite(DirectSqlite),
    /// Through the `firestore` crate.
    Firestore(DirectFirestore),
}

impl Direct {
    fn target(&self) -> Arc<dyn Target> {
        match self {
            Self::Sqlite(d) => Arc::new(d.clone()),
            Self::Firestore(d) => Arc::new(d.clone()),
        }
    }

    async fn fill(&self, events: &Arc<Vec<KeyPackageEvent>>, now: u64) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(d) => d.fill(events.clone(), now, 2_000).await,
            Self::Firestore(d) => d.fill(events, now, PER_OWNER, 450).await,
        }
    }

    async fn delete_purgeable(&self, now: u64, batch: usize) -> anyhow::Result<u64> {
        match self {
            Self::Sqlite(d) => d.delete_purgeable(now, batch).await,
            Self::Firestore(d) => d.delete_purgeable(now, batch).await,
        }
    }

    async fn records(&self) -> anyhow::Result<u64> {
        match self {
            Self::Sqlite(d) => d.records().await,
            Self::Firestore(d) => d.records().await,
        }
    }
}

/// One phase of a load run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadRow {
    /// `sqlite` or `firestore`.
    pub backend: Kind,
    /// Concurrent clients.
    pub concurrency: usize,
    /// `gateway` (HTTP), `store` (the backend in process) or `direct` (the baseline).
    pub path: String,
    /// `ingest`, `query`, `count` or `claim`.
    pub op: String,
    /// What it measured.
    pub summary: Summary,
    /// One-time KeyPackages handed out more than once (claims only).
    pub duplicates: usize,
}

/// Ingest every event, then query and count random owners, then claim half
/// of every owner's KeyPackages, at `concurrency`.
async fn phases(
    target: Arc<dyn Target>,
    corpus: &Corpus,
    concurrency: usize,
    reads: usize,
) -> Vec<(String, Summary, usize)> {
    let owners = Arc::new(corpus.owners.clone());
    let n = corpus.events.len();
    let t = target.clone();
    let ingest = run(n, concurrency, move |i| {
        let t = t.clone();
        async move { t.ingest(i).await }
    })
    .await;
    let pick = |i: usize, owners: &Arc<Vec<String>>| owners[(i * 7919) % owners.len()].clone();
    let (t, o) = (target.clone(), owners.clone());
    let query = run(reads, concurrency, move |i| {
        let (t, owner) = (t.clone(), pick(i, &o));
        async move { t.query(&owner).await }
    })
    .await;
    let (t, o) = (target.clone(), owners.clone());
    let count = run(reads, concurrency, move |i| {
        let (t, owner) = (t.clone(), pick(i, &o));
        async move { t.count(&owner).await }
    })
    .await;
    let claimed = Arc::new(Mutex::new(HashSet::new()));
    let duplicates = Arc::new(Mutex::new(0usize));
    let (t, o, c, d) = (target.clone(), owners.clone(), claimed.clone(), duplicates.clone());
    let claim = run(n / 2, concurrency, move |i| {
        let (t, owner, c, d) = (t.clone(), o[i % o.len()].clone(), c.clone(), d.clone());
        async move {
            let requester = format!("{:064x}", i + 1);
            let Some((id, last_resort)) = t.claim(&owner, &requester).await? else {
                return Ok(false);
            };
            if !last_resort && !c.lock().expect("claimed").insert(id) {
                *d.lock().expect("duplicates") += 1;
            }
            Ok(!last_resort)
        }
    })
    .await;
    let duplicates = *duplicates.lock().expect("duplicates");
    vec![
        ("ingest".into(), ingest, 0),
        ("query".into(), query, 0),
        ("count".into(), count, 0),
        ("claim".into(), claim, duplicates),
    ]
}

/// Load rows and the gateway's memory at each concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// Every phase.
    pub rows: Vec<LoadRow>,
    /// The gateway's memory after each run: (concurrency, memory).
    pub gateway_memory: Vec<(usize, Memory)>,
    /// The gateway's memory right after start, before any request.
    pub idle_memory: Option<Memory>,
}

/// Throughput and latency of ingest, query, count and claim through the
/// gateway, the backend in process and the baseline, at each concurrency.
pub async fn load(env: &Env, kind: Kind, owners: usize, concurrency: &[usize]) -> anyhow::Result<LoadReport> {
    let started = Instant::now();
    let corpus = Corpus::generate(owners, PER_OWNER, crate::now());
    let validated = Arc::new(corpus.validated(crate::now()));
    let events = Arc::new(corpus.events.clone());
    eprintln!(
        "{}: {} events generated in {:?}",
        kind.name(),
        events.len(),
        started.elapsed()
    );
    let reads = corpus.events.len().min(2_000);
    let mut report = LoadReport {
        rows: Vec::new(),
        gateway_memory: Vec::new(),
        idle_memory: None,
    };
    let mut record = |concurrency: usize, path: &str, phases: Vec<(String, Summary, usize)>| {
        for (op, summary, duplicates) in phases {
            eprintln!(
                "{} c={concurrency} {path} {op}: {:.0}/s p50 {:.2} ms p99 {:.2} ms errors {}",
                kind.name(),
                summary.per_sec,
                summary.p50_ms,
                summary.p99_ms,
                summary.errors
            );
            report.rows.push(LoadRow {
                backend: kind,
                concurrency,
                path: path.into(),
                op,
                summary,
                duplicates,
            });
        }
    };
    for &c in concurrency {
        let backend = env.fresh(kind)?;
        let (base, process) = env.gateway(&backend).await?;
        let idle = process.as_ref().map(Process::memory);
        let phases_http = phases(Arc::new(Http::new(base, events.clone())), &corpus, c, reads).await;
        let memory = process.as_ref().map(Process::memory);
        drop(process);
        record(c, "gateway", phases_http);

        let backend = env.fresh(kind)?;
        let store = kp_http::open_store(&config_of(&backend)?).await?;
        let phases_store = phases(Arc::new(InProcess::new(store, validated.clone())), &corpus, c, reads).await;
        record(c, "store", phases_store);

        let backend = env.fresh(kind)?;
        let direct = env.direct(&backend, validated.clone()).await?;
        let phases_direct = phases(direct.target(), &corpus, c, reads).await;
        record(c, "direct", phases_direct);

        if let Some(memory) = memory {
            report.gateway_memory.push((c, memory));
        }
        report.idle_memory = report.idle_memory.or(idle);
    }
    env.save(&format!("load-{}", kind.name()), &report)?;
    Ok(report)
}

fn config_of(backend: &Backend) -> anyhow::Result<kp_http::Config> {
    let env = backend.env(0);
    Ok(kp_http::Config::from_vars(|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })?)
}

/// Query latency at one store size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SizeRow {
    /// `sqlite` or `firestore`.
    pub backend: Kind,
    /// KeyPackages stored.
    pub stored: usize,
    /// Owners holding them.
    pub owners: usize,
    /// Queries by author through the gateway.
    pub query: Summary,
    /// Counts through the gateway.
    pub count: Summary,
}

/// Concurrent clients of the store-size figure.
pub const SIZE_CONCURRENCY: usize = 8;

/// Rounds the store-size figure's queries are split into; the stores take
/// turns, round by round, so every size sees the same load on the machine.
pub const SIZE_ROUNDS: usize = 10;

/// Query and count latency through the gateway on stores of each size
/// (filled directly, then each served by its own gateway). All the gateways
/// run at once and the sizes take turns, a round each, so a change in the
/// machine's load falls on every size alike.
pub async fn store_size(env: &Env, kind: Kind, sizes: &[usize], corpus: &SharedCorpus) -> anyhow::Result<Vec<SizeRow>> {
    let largest = sizes.iter().copied().max().unwrap_or(0) / PER_OWNER;
    let (corpus, validated) = corpus.get(largest);
    let mut served = Vec::new();
    for &size in sizes {
        let owners = size / PER_OWNER;
        let events = Arc::new(validated[..owners * PER_OWNER].to_vec());
        let backend = env.fresh(kind)?;
        let started = Instant::now();
        let direct = env.direct(&backend, events.clone()).await?;
        direct.fill(&events, crate::now()).await?;
        drop(direct);
        eprintln!("{}: filled {size} in {:?}", kind.name(), started.elapsed());
        let (base, process) = env.gateway(&backend).await?;
        let http: Arc<dyn Target> = Arc::new(Http::new(base, Arc::new(Vec::new())));
        let owner_list = Arc::new(corpus.owners[..owners].to_vec());
        served.push((size, owners, http, owner_list, process));
    }
    let op = |http: &Arc<dyn Target>, owners: &Arc<Vec<String>>, count: bool, offset: usize| {
        let (t, o) = (http.clone(), owners.clone());
        move |i: usize| {
            let (t, owner) = (t.clone(), o[((i + offset) * 7919 + 13) % o.len()].clone());
            async move {
                if count {
                    t.count(&owner).await
                } else {
                    t.query(&owner).await
                }
            }
        }
    };
    // Warm the connections and the caches the same way at every size.
    for (_, _, http, owners, _) in &served {
        record(500, SIZE_CONCURRENCY, op(http, owners, false, 0)).await;
    }
    let per_round = 3_000 / SIZE_ROUNDS;
    let mut recorded: Vec<(Recorded, Recorded)> = served.iter().map(|_| Default::default()).collect();
    for round in 0..SIZE_ROUNDS {
        let offset = 500 + round * per_round;
        for ((_, _, http, owners, _), (query, count)) in served.iter().zip(recorded.iter_mut()) {
            query.add(record(per_round, SIZE_CONCURRENCY, op(http, owners, false, offset)).await);
            count.add(record(per_round, SIZE_CONCURRENCY, op(http, owners, true, offset)).await);
        }
    }
    let mut rows = Vec::new();
    for ((size, owners, ..), (query, count)) in served.iter().zip(recorded) {
        let (query, count) = (query.summary(), count.summary());
        eprintln!(
            "{} {size}: query p50 {:.2} p99 {:.2} ms, errors {}",
            kind.name(),
            query.p50_ms,
            query.p99_ms,
            query.errors
        );
        rows.push(SizeRow {
            backend: kind,
            stored: *size,
            owners: *owners,
            query,
            count,
        });
    }
    env.save(&format!("size-{}", kind.name()), &rows)?;
    Ok(rows)
}

/// A corpus and its events, validated.
type CorpusAndEvents = (Arc<Corpus>, Arc<Vec<KeyPackageEvent>>);

/// A corpus generated once per process and shared by the scenarios.
#[derive(Default)]
pub struct SharedCorpus {
    made: Mutex<Option<CorpusAndEvents>>,
}

impl SharedCorpus {
    /// At least `owners` owners' events, and the events validated.
    pub fn get(&self, owners: usize) -> CorpusAndEvents {
        let mut made = self.made.lock().expect("corpus");
        if let Some((corpus, validated)) = made.as_ref()
            && corpus.owners.len() >= owners
        {
            return (corpus.clone(), validated.clone());
        }
        let started = Instant::now();
        let corpus = Arc::new(Corpus::generate(owners, PER_OWNER, crate::now()));
        let validated = Arc::new(corpus.validated(crate::now()));
        eprintln!(
            "generated and validated {} events in {:?}",
            corpus.events.len(),
            started.elapsed()
        );
        *made = Some((corpus.clone(), validated.clone()));
        (corpus, validated)
    }
}

/// Many claimers of one owner at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimersReport {
    /// `sqlite` or `firestore`.
    pub backend: Kind,
    /// Concurrent claimers.
    pub claimers: usize,
    /// One-time KeyPackages the owner had.
    pub one_time: usize,
    /// Claims answered with a KeyPackage.
    pub succeeded: usize,
    /// Distinct one-time KeyPackages handed out.
    pub distinct_one_time: usize,
    /// Claims answered with the last resort.
    pub last_resort: usize,
    /// One-time KeyPackages handed out twice or more.
    pub duplicates: usize,
    /// Claims answered with a KeyPackage on their first request.
    #[serde(default)]
    pub first_try: usize,
    /// 503 answers (the service gave up within its deadline; retry safe),
    /// each retried by its claimer.
    #[serde(default)]
    pub unavailable: usize,
    /// Retries a claimer may make after a 503.
    #[serde(default)]
    pub retries: usize,
    /// Latency of the claims, retries included.
    pub summary: Summary,
}

/// Whether an error is the service's 503, which a client may retry.
fn is_unavailable(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<reqwest::Error>()
        .and_then(reqwest::Error::status)
        .is_some_and(|s| s == reqwest::StatusCode::SERVICE_UNAVAILABLE)
}

/// `claimers` concurrent claims of one owner holding `one_time` one-time
/// KeyPackages and a last resort. A claim answered 503 (the service's
/// deadline passed while the owner kept changing under it; nothing was
/// handed out) is retried up to `retries` times, as a client would.
pub async fn claimers(
    env: &Env,
    kind: Kind,
    claimers: usize,
    one_time: usize,
    retries: usize,
) -> anyhow::Result<ClaimersReport> {
    let now = crate::now();
    let owner = kp_testkit::Owner::new();
    let mut events: Vec<String> = (0..one_time)
        .map(|_| {
            owner
                .keypackage(kp_testkit::KeyPackageSpec::one_time_at(now))
                .event_443(&owner, now)
        })
        .collect();
    let last_resort = kp_testkit::KeyPackageSpec {
        last_resort: true,
        ..kp_testkit::KeyPackageSpec::one_time_at(now)
    };
    events.push(owner.keypackage(last_resort).event_443(&owner, now));
    let backend = env.fresh(kind)?;
    let (base, _process) = env.gateway(&backend).await?;
    let http = Arc::new(Http::new(base, Arc::new(events.clone())));
    let ingest = run(events.len(), 4, {
        let http = http.clone();
        move |i| {
            let http = http.clone();
            async move { http.ingest(i).await }
        }
    })
    .await;
    ensure!(
        ingest.ops as usize == events.len(),
        "ingest refused some events: {ingest:?}"
    );
    let got = Arc::new(Mutex::new(Vec::new()));
    let (first_try, unavailable) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let pubkey = owner.pubkey();
    let summary = run(claimers, claimers, {
        let (http, got) = (http.clone(), got.clone());
        let (first_try, unavailable) = (first_try.clone(), unavailable.clone());
        move |i| {
            let (http, got, owner) = (http.clone(), got.clone(), pubkey.clone());
            let (first_try, unavailable) = (first_try.clone(), unavailable.clone());
            async move {
                let requester = format!("{:064x}", i + 1);
                let mut attempt = 0;
                let claimed = loop {
                    match http.claim(&owner, &requester).await {
                        Err(e) if is_unavailable(&e) && attempt < retries => {
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            attempt += 1;
                        }
                        Err(e) => {
                            if is_unavailable(&e) {
                                unavailable.fetch_add(1, Ordering::Relaxed);
                            }
                            return Err(e);
                        }
                        Ok(claimed) => break claimed,
                    }
                };
                let ok = claimed.is_some();
                if ok && attempt == 0 {
                    first_try.fetch_add(1, Ordering::Relaxed);
                }
                got.lock().expect("got").extend(claimed);
                Ok(ok)
            }
        }
    })
    .await;
    let got = got.lock().expect("got").clone();
    let one_time_ids: Vec<&String> = got.iter().filter(|(_, lr)| !lr).map(|(id, _)| id).collect();
    let distinct: HashSet<&String> = one_time_ids.iter().copied().collect();
    let report = ClaimersReport {
        backend: kind,
        claimers,
        one_time,
        succeeded: got.len(),
        distinct_one_time: distinct.len(),
        last_resort: got.iter().filter(|(_, lr)| *lr).count(),
        duplicates: one_time_ids.len() - distinct.len(),
        first_try: first_try.load(Ordering::Relaxed),
        unavailable: unavailable.load(Ordering::Relaxed),
        retries,
        summary,
    };
    eprintln!("{report:?}");
    env.save(&format!("claimers-{}", kind.name()), &report)?;
    Ok(report)
}

/// Cleanup of a store full of expired KeyPackages.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CleanupReport {
    /// `sqlite` or `firestore`.
    pub backend: Kind,
    /// Expired KeyPackages stored.
    pub expired: usize,
    /// The backend's cleanup: seconds, KeyPackages removed.
    pub cleanup_secs: f64,
    /// KeyPackages the backend's cleanup removed.
    pub cleanup_removed: u64,
    /// The baseline's batched delete: seconds.
    pub direct_secs: f64,
    /// KeyPackages the baseline removed.
    pub direct_removed: u64,
    /// The time budget of each run of the split cleanup, milliseconds.
    pub split_budget_ms: u64,
    /// Runs the split cleanup took until one reported `complete`.
    pub split_runs: usize,
    /// KeyPackages the split runs removed together.
    pub split_removed: u64,
    /// Records left after the split runs.
    pub split_left: u64,
}

/// Cleanup of `expired` KeyPackages by the backend vs the baseline's
/// batched delete, and the same cleanup split by a time budget.
pub async fn cleanup(env: &Env, kind: Kind, expired: usize, corpus: &SharedCorpus) -> anyhow::Result<CleanupReport> {
    let owners = expired / PER_OWNER;
    let (_, validated) = corpus.get(owners);
    let events = Arc::new(validated[..owners * PER_OWNER].to_vec());
    // Everything has expired a hundred days from now, and its purge time has come.
    let later = crate::now() + 100 * 86_400;
    let batch = CleanupOptions::default().batch_size;
    let mut filled = Vec::new();
    for _ in 0..3 {
        let backend = env.fresh(kind)?;
        let direct = env.direct(&backend, events.clone()).await?;
        let started = Instant::now();
        direct.fill(&events, crate::now()).await?;
        eprintln!("{}: filled {} in {:?}", kind.name(), events.len(), started.elapsed());
        filled.push((backend, direct));
    }
    let store_of = |backend: &Backend| {
        let backend = backend.clone();
        async move {
            kp_http::open_store(&config_of(&backend)?)
                .await
                .map_err(anyhow::Error::from)
        }
    };

    let store = store_of(&filled[0].0).await?;
    let started = Instant::now();
    let options = CleanupOptions {
        time_budget: Duration::from_secs(3_600),
        ..CleanupOptions::default()
    };
    let done = store.cleanup(options, later).await?;
    let cleanup_secs = started.elapsed().as_secs_f64();
    ensure!(done.complete, "cleanup did not complete: {done:?}");

    let started = Instant::now();
    let direct_removed = filled[1].1.delete_purgeable(later, batch).await?;
    let direct_secs = started.elapsed().as_secs_f64();

    let store = store_of(&filled[2].0).await?;
    let split_budget = Duration::from_secs_f64((cleanup_secs / 5.0).max(0.05));
    let (mut split_runs, mut split_removed) = (0, 0);
    loop {
        split_runs += 1;
        let options = CleanupOptions {
            time_budget: split_budget,
            ..CleanupOptions::default()
        };
        let report = store.cleanup(options, later).await?;
        split_removed += report.expired_deleted + report.tombstones_purged;
        if report.complete || split_runs > 1_000 {
            break;
        }
    }
    let split_left = filled[2].1.records().await?;
    let report = CleanupReport {
        backend: kind,
        expired: events.len(),
        cleanup_secs,
        cleanup_removed: done.expired_deleted + done.tombstones_purged,
        direct_secs,
        direct_removed,
        split_budget_ms: split_budget.as_millis() as u64,
        split_runs,
        split_removed,
        split_left,
    };
    eprintln!("{report:?}");
    env.save(&format!("cleanup-{}", kind.name()), &report)?;
    Ok(report)
}

/// Start-up and size of one function binary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ColdStart {
    /// The binary.
    pub function: String,
    /// `sqlite` or `firestore`.
    pub backend: Kind,
    /// Median time from exec to an accepted TCP connection, ms.
    pub listening_ms: f64,
    /// Median time from exec to the first 200 on `/healthz`, ms.
    pub healthz_ms: f64,
    /// Starts measured.
    pub runs: usize,
    /// Resident memory right after the first 200.
    pub idle: Memory,
    /// Size of the release binary, MiB.
    pub binary_mib: f64,
}

/// Baseline of a cold start: exec of `/bin/true`, the cost of a process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Serverless {
    /// Median exec-to-exit of `/bin/true`, ms, same run.
    pub exec_true_ms: f64,
    /// Each binary.
    pub functions: Vec<ColdStart>,
}

/// The functions whose cold start is measured.
pub const FUNCTIONS: &[&str] = &["gateway", "ingest", "query", "consume", "cleanup"];

/// Cold start (median of `runs`), idle memory and size of each function binary.
pub async fn serverless(env: &Env, kinds: &[Kind], runs: usize) -> anyhow::Result<Serverless> {
    let bins = env
        .bins
        .clone()
        .context("cold starts need the function binaries (--bins)")?;
    let exec_true: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            std::process::Command::new("true").status().map(|_| t.elapsed())
        })
        .collect::<Result<_, _>>()?;
    let mut functions = Vec::new();
    for &kind in kinds {
        // One store per backend, its schema made before the clock starts, as
        // a deployed function finds it.
        let backend = env.fresh(kind)?;
        drop(Process::start(&bins.join("gateway"), &backend)?);
        for function in FUNCTIONS {
            let binary = bins.join(function);
            let (mut listening, mut healthz, mut idle) = (Vec::new(), Vec::new(), Memory::default());
            for _ in 0..runs {
                let (l, h, m) = cold_start(&binary, &backend)?;
                listening.push(l);
                healthz.push(h);
                idle = m;
            }
            let row = ColdStart {
                function: (*function).into(),
                backend: kind,
                listening_ms: median_ms(listening),
                healthz_ms: median_ms(healthz),
                runs,
                idle,
                binary_mib: std::fs::metadata(&binary)?.len() as f64 / 1_048_576.0,
            };
            eprintln!("{row:?}");
            functions.push(row);
        }
    }
    let report = Serverless {
        exec_true_ms: median_ms(exec_true),
        functions,
    };
    env.save("serverless", &report)?;
    Ok(report)
}

/// One start: exec to listening, exec to the first 200, memory then.
fn cold_start(binary: &Path, backend: &Backend) -> anyhow::Result<(Duration, Duration, Memory)> {
    let port = free_port();
    let started = Instant::now();
    let mut child = std::process::Command::new(binary)
        .env_clear()
        .envs(backend.env(port))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let mut listening = None;
    let deadline = started + Duration::from_secs(30);
    let result = loop {
        if Instant::now() > deadline {
            break Err(anyhow::anyhow!("{} did not start", binary.display()));
        }
        if listening.is_none() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            listening = Some(started.elapsed());
        }
        if listening.is_some() && healthy(port) {
            let healthz = started.elapsed();
            break Ok((listening.unwrap_or(healthz), healthz, memory_of(child.id())));
        }
        std::thread::sleep(Duration::from_micros(200));
    };
    let _ = child.kill();
    let _ = child.wait();
    result
}
