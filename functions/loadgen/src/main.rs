//! `loadgen`: measures the KeyPackage service against baselines of the same
//! run and draws BENCHMARKS.md's charts. `loadgen all` reproduces every
//! figure; each subcommand reproduces one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use loadgen::scenarios::{self, Env, Kind, SharedCorpus};

#[derive(Parser)]
#[command(about = "Load generator and benchmark report of the KeyPackage service")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Where results (JSON), charts (SVG) and scratch databases go.
    #[arg(long, default_value = "target/bench-results")]
    out: PathBuf,
    /// Directory of the release function binaries; by default the one this
    /// executable is in. `--in-process` serves the gateway's router here instead.
    #[arg(long)]
    bins: Option<PathBuf>,
    /// Serve the gateway's router in this process (no binaries needed).
    #[arg(long)]
    in_process: bool,
    /// Backends to run on.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,firestore")]
    backends: Vec<Kind>,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest, query, count and claim at each concurrency, vs the baseline.
    Load {
        #[command(flatten)]
        common: Common,
        /// Owners (10 KeyPackages each).
        #[arg(long, default_value_t = 200)]
        owners: usize,
        /// Concurrent clients, one run each.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
        concurrency: Vec<usize>,
    },
    /// Query latency at each store size (KeyPackages, 10 per owner).
    Size {
        #[command(flatten)]
        common: Common,
        #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
        sizes: Vec<usize>,
    },
    /// Concurrent claimers of one owner.
    Claimers {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 50)]
        claimers: usize,
        #[arg(long, default_value_t = 40)]
        one_time: usize,
        /// Retries of a claim answered 503 (retry safe), as a client would.
        #[arg(long, default_value_t = 3)]
        retries: usize,
    },
    /// Cleanup of expired KeyPackages vs a direct batched delete.
    Cleanup {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100_000)]
        expired: usize,
    },
    /// Cold start, idle memory and binary size of each function.
    Serverless {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Every scenario above with its defaults, then the report.
    All {
        #[command(flatten)]
        common: Common,
        /// Expired KeyPackages of the Firestore cleanup (the emulator is slow).
        #[arg(long, default_value_t = 20_000)]
        firestore_cleanup: usize,
    },
    /// Tables (Markdown, on stdout) and SVG charts from the results.
    Report {
        #[arg(long, default_value = "target/bench-results")]
        out: PathBuf,
        /// Criterion's output directory (the validation bench).
        #[arg(long, default_value = "target/criterion")]
        criterion: PathBuf,
    },
}

fn env(common: &Common) -> anyhow::Result<Env> {
    let bins = if common.in_process {
        None
    } else {
        Some(match &common.bins {
            Some(bins) => bins.clone(),
            None => std::env::current_exe()?.parent().map(PathBuf::from).unwrap_or_default(),
        })
    };
    let emulator = common
        .backends
        .contains(&Kind::Firestore)
        .then(|| kp_testkit::emulator::firestore_emulator_host().to_owned());
    Env::new(common.out.clone(), bins, emulator)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Load {
            common,
            owners,
            concurrency,
        } => {
            let env = env(&common)?;
            for &kind in &common.backends {
                scenarios::load(&env, kind, owners, &concurrency).await?;
            }
        }
        Command::Size { common, sizes } => {
            let (env, corpus) = (env(&common)?, SharedCorpus::default());
            for &kind in &common.backends {
                scenarios::store_size(&env, kind, &sizes, &corpus).await?;
            }
        }
        Command::Claimers {
            common,
            claimers,
            one_time,
            retries,
        } => {
            let env = env(&common)?;
            for &kind in &common.backends {
                scenarios::claimers(&env, kind, claimers, one_time, retries).await?;
            }
        }
        Command::Cleanup { common, expired } => {
            let (env, corpus) = (env(&common)?, SharedCorpus::default());
            for &kind in &common.backends {
                scenarios::cleanup(&env, kind, expired, &corpus).await?;
            }
        }
        Command::Serverless { common, runs } => {
            let env = env(&common)?;
            scenarios::serverless(&env, &common.backends, runs).await?;
        }
        Command::All {
            common,
            firestore_cleanup,
        } => {
            let (env, corpus) = (env(&common)?, SharedCorpus::default());
            scenarios::serverless(&env, &common.backends, 20).await?;
            for &kind in &common.backends {
                scenarios::claimers(&env, kind, 50, 40, 3).await?;
                scenarios::load(&env, kind, 200, &[1, 4, 16, 64]).await?;
                scenarios::store_size(&env, kind, &[1_000, 10_000, 100_000], &corpus).await?;
                let expired = if kind == Kind::Firestore {
                    firestore_cleanup
                } else {
                    100_000
                };
                scenarios::cleanup(&env, kind, expired, &corpus).await?;
            }
            println!(
                "{}",
                loadgen::report::report(&common.out, &PathBuf::from("target/criterion"))?
            );
        }
        Command::Report { out, criterion } => {
            println!("{}", loadgen::report::report(&out, &criterion)?);
        }
    }
    Ok(())
}
