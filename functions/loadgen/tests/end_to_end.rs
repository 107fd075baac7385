//! The load generator end to end with tiny parameters, against the gateway's
//! router on SQLite over real HTTP: what it reports is what a user would see.
//! Nothing here checks a timing.

use loadgen::scenarios::{self, Env, Kind};

fn env(dir: &std::path::Path) -> Env {
    Env::new(dir.to_owned(), None, None).expect("an output directory")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_load_run_accepts_every_ingest_and_never_hands_a_keypackage_out_twice() {
    let dir = std::env::temp_dir().join(format!("kp-loadgen-test-{}", std::process::id()));
    let env = env(&dir);
    let report = scenarios::load(&env, Kind::Sqlite, 3, &[4])
        .await
        .expect("the load run");
    for path in ["gateway", "store", "direct"] {
        let row = |op: &str| {
            report
                .rows
                .iter()
                .find(|r| r.path == path && r.op == op)
                .unwrap_or_else(|| panic!("no {path} {op} row"))
        };
        assert_eq!(row("ingest").summary.ops, 30, "{path}: every ingest accepted");
        assert_eq!(
            row("query").summary.errors,
            0,
            "{path}: every owner's KeyPackages found"
        );
        assert_eq!(row("count").summary.errors, 0, "{path}: every count answered");
        assert_eq!(
            row("claim").summary.ops,
            15,
            "{path}: every claim got a one-time KeyPackage"
        );
        assert_eq!(row("claim").duplicates, 0, "{path}: no KeyPackage handed out twice");
    }

    let claimers = scenarios::claimers(&env, Kind::Sqlite, 12, 8, 0)
        .await
        .expect("the claimers run");
    assert_eq!(claimers.succeeded, 12, "every claimer got a KeyPackage");
    assert_eq!(
        claimers.distinct_one_time, 8,
        "each one-time KeyPackage went to one claimer"
    );
    assert_eq!(claimers.last_resort, 4, "the others got the last resort");
    assert_eq!(claimers.duplicates, 0);

    let report = loadgen::report::report(&dir, &dir.join("no-criterion")).expect("the report");
    assert!(report.contains("| ingest | 4 |"), "{report}");
    assert!(dir.join("latency-vs-concurrency-sqlite.svg").exists());
    let _ = std::fs::remove_dir_all(&dir);
}
