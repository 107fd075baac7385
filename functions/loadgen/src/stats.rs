//! Latency recording and the summary every figure is made of: throughput and
//! percentiles, from an HDR histogram (microseconds, 3 significant digits).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// What one phase of a load run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Operations that succeeded.
    pub ops: u64,
    /// Operations that failed (an HTTP error or an unexpected answer).
    pub errors: u64,
    /// Wall time of the phase, seconds.
    pub secs: f64,
    /// Successful operations per second.
    pub per_sec: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 90th percentile latency, milliseconds.
    pub p90_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Slowest operation, milliseconds.
    pub max_ms: f64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Runs `total` operations with `concurrency` workers, each taking the next
/// index until none is left, and summarises their latencies. An operation
/// answers `Ok(true)` when it did what it should, `Ok(false)` when the
/// service answered something else (counted as an error, not timed).
pub async fn run<F, Fut>(total: usize, concurrency: usize, op: F) -> Summary
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<bool>> + Send,
{
    let recorded = record(total, concurrency, op).await;
    recorded.summary()
}

/// Latencies recorded over one or more rounds, summarised at the end: lets
/// two targets take turns, round by round, so both see the same load.
pub struct Recorded {
    latencies: Histogram<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Default for Recorded {
    fn default() -> Self {
        Self {
            latencies: histogram(),
            errors: 0,
            elapsed: Duration::ZERO,
        }
    }
}

impl Recorded {
    /// Adds another round.
    pub fn add(&mut self, other: Recorded) {
        self.latencies.add(other.latencies).expect("same bounds");
        self.errors += other.errors;
        self.elapsed += other.elapsed;
    }

    /// Throughput over the rounds' wall time, and percentiles.
    pub fn summary(&self) -> Summary {
        summarise(&self.latencies, self.errors, self.elapsed)
    }
}

/// [`run`], answering the recorded latencies rather than their summary.
pub async fn record<F, Fut>(total: usize, concurrency: usize, op: F) -> Recorded
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<bool>> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = histogram();
                let mut errors = 0u64;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    let t = Instant::now();
                    match op(i).await {
                        Ok(true) => latencies.saturating_record(t.elapsed().as_micros().max(1) as u64),
                        Ok(false) | Err(_) => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut latencies = histogram();
    let mut errors = 0;
    for worker in workers {
        let (h, e) = worker.await.expect("a load worker panicked");
        latencies.add(h).expect("same bounds");
        errors += e;
    }
    Recorded {
        latencies,
        errors,
        elapsed: started.elapsed(),
    }
}

/// The summary of recorded latencies (microseconds) over `elapsed`.
pub fn summarise(latencies: &Histogram<u64>, errors: u64, elapsed: Duration) -> Summary {
    let ms = |us: u64| us as f64 / 1000.0;
    let secs = elapsed.as_secs_f64();
    Summary {
        ops: latencies.len(),
        errors,
        secs,
        per_sec: latencies.len() as f64 / secs.max(1e-9),
        p50_ms: ms(latencies.value_at_quantile(0.50)),
        p90_ms: ms(latencies.value_at_quantile(0.90)),
        p99_ms: ms(latencies.value_at_quantile(0.99)),
        max_ms: ms(latencies.max()),
    }
}

/// The median of some durations, milliseconds.
pub fn median_ms(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples.get(samples.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}
