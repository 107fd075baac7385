//! The tables and charts of BENCHMARKS.md, drawn from the JSON files the
//! scenarios wrote (and criterion's estimates of the validation bench).

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use serde::de::DeserializeOwned;

use crate::scenarios::{ClaimersReport, CleanupReport, LoadReport, LoadRow, Serverless, SizeRow};

fn read<T: DeserializeOwned>(dir: &Path, name: &str) -> Option<T> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).ok()?;
    serde_json::from_str(&text).ok()
}

/// Criterion's mean estimate of one bench, nanoseconds.
fn criterion_mean(criterion: &Path, group: &str, bench: &str) -> Option<f64> {
    let text = std::fs::read_to_string(criterion.join(group).join(bench).join("new/estimates.json")).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["mean"]["point_estimate"].as_f64()
}

const BACKENDS: &[&str] = &["sqlite", "firestore"];
const OPS: &[&str] = &["ingest", "query", "count", "claim"];

/// Writes the charts into `dir` and answers the tables as Markdown.
pub fn report(dir: &Path, criterion: &Path) -> anyhow::Result<String> {
    let mut md = String::new();
    validation_table(&mut md, criterion);
    for backend in BACKENDS {
        if let Some(load) = read::<LoadReport>(dir, &format!("load-{backend}")) {
            load_table(&mut md, backend, &load);
            latency_chart(
                &dir.join(format!("latency-vs-concurrency-{backend}.svg")),
                backend,
                &load.rows,
            )?;
        }
    }
    let sizes: Vec<SizeRow> = BACKENDS
        .iter()
        .filter_map(|b| read::<Vec<SizeRow>>(dir, &format!("size-{b}")))
        .flatten()
        .collect();
    if !sizes.is_empty() {
        size_table(&mut md, &sizes);
        size_chart(&dir.join("query-vs-store-size.svg"), &sizes)?;
    }
    for backend in BACKENDS {
        if let Some(c) = read::<ClaimersReport>(dir, &format!("claimers-{backend}")) {
            let _ = writeln!(
                md,
                "\n**{backend}, {} concurrent claimers of one owner** ({} one-time + 1 last resort): {} succeeded \
                 ({} on the first request; {} answers 503, each retried, at most {} retries a claimer), \
                 {} distinct one-time, {} last resort, {} duplicates; claim p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms.",
                c.claimers,
                c.one_time,
                c.succeeded,
                c.first_try,
                c.unavailable,
                c.retries,
                c.distinct_one_time,
                c.last_resort,
                c.duplicates,
                c.summary.p50_ms,
                c.summary.p99_ms,
                c.summary.max_ms
            );
        }
    }
    let cleanups: Vec<CleanupReport> = BACKENDS
        .iter()
        .filter_map(|b| read(dir, &format!("cleanup-{b}")))
        .collect();
    if !cleanups.is_empty() {
        let _ = writeln!(
            md,
            "\n| backend | expired | cleanup | KeyPackages/s | direct batched delete | KeyPackages/s | ratio (target ≥ 0.8) | split runs (budget) | removed across runs | left |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for c in &cleanups {
            let (rate, direct) = (
                c.cleanup_removed as f64 / c.cleanup_secs,
                c.direct_removed as f64 / c.direct_secs,
            );
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} s | {rate:.0} | {:.1} s | {direct:.0} | **{:.2}×** | {} ({} ms) | {} | {} |",
                c.backend.name(),
                c.expired,
                c.cleanup_secs,
                c.direct_secs,
                rate / direct,
                c.split_runs,
                c.split_budget_ms,
                c.split_removed,
                c.split_left
            );
        }
    }
    if let Some(s) = read::<Serverless>(dir, "serverless") {
        let _ = writeln!(
            md,
            "\nexec of `/bin/true` (the cost of a process, same run): median {:.2} ms\n\n| function | backend | exec → listening | exec → first 200 on /healthz | ratio to `true` | RSS idle | binary |\n|---|---|---|---|---|---|---|",
            s.exec_true_ms
        );
        for f in &s.functions {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} ms | {:.1} ms | {:.1}× | {:.1} MiB | {:.1} MiB |",
                f.function,
                f.backend.name(),
                f.listening_ms,
                f.healthz_ms,
                f.healthz_ms / s.exec_true_ms.max(1e-6),
                f.idle.rss_mib,
                f.binary_mib
            );
        }
    }
    Ok(md)
}

fn validation_table(md: &mut String, criterion: &Path) {
    let get = |g: &str, b: &str| criterion_mean(criterion, g, b);
    if let (Some(full), Some(floor)) = (get("validation", "full"), get("validation", "crypto_floor")) {
        let part = |b: &str| get("validation", b).map_or("?".into(), |ns| format!("{:.1} µs", ns / 1000.0));
        let _ = writeln!(
            md,
            "| full validation | crypto floor (Schnorr + 2 MLS signatures) | ratio (target ≤ 1.3) | Schnorr | KeyPackage signature | leaf node signature |\n|---|---|---|---|---|---|\n| {:.1} µs | {:.1} µs | **{:.2}×** | {} | {} | {} |",
            full / 1000.0,
            floor / 1000.0,
            full / floor,
            part("schnorr"),
            part("mls_keypackage_signature"),
            part("mls_leaf_node_signature")
        );
    }
    let paired = std::fs::read_to_string(criterion.join("validation_paired.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok());
    if let Some(paired) = &paired {
        let _ = writeln!(
            md,
            "\nPaired: each pair taking turns, round by round, order alternating; each side estimated by the 10th \
             percentile of its turns (the ones no other process interrupted).\n\n\
             | pair | rounds × per turn | ours | baseline | **ratio** | ratio of minima | ratio of medians |\n|---|---|---|---|---|---|---|"
        );
        for (key, what) in [
            ("validation", "full validation / crypto floor"),
            ("parse", "parse: nostr `Event` / `serde_json::Value`"),
            ("serialize", "serialize: nostr `Event` / `serde_json::Value`"),
        ] {
            let p = &paired[key];
            let f = |k: &str| p[k].as_f64().unwrap_or(f64::NAN);
            let _ = writeln!(
                md,
                "| {what} | {} × {} | {:.2} µs | {:.2} µs | **{:.2}×** | {:.2}× | {:.2}× |",
                f("rounds"),
                f("per_turn"),
                f("a_ns") / 1000.0,
                f("b_ns") / 1000.0,
                f("ratio"),
                f("min_ratio"),
                f("median_ratio")
            );
        }
    }
    let pairs = [
        ("parse", "parse_event", "parse_value"),
        ("serialize", "serialize_event", "serialize_value"),
    ];
    let mut lines = String::new();
    for (what, ours, base) in pairs {
        if let (Some(a), Some(b)) = (get("json", ours), get("json", base)) {
            let _ = writeln!(
                lines,
                "| {what} | {:.2} µs | {:.2} µs | **{:.2}×** |",
                a / 1000.0,
                b / 1000.0,
                a / b
            );
        }
    }
    if !lines.is_empty() {
        let _ = writeln!(
            md,
            "\n| event JSON | nostr `Event` | `serde_json::Value` | ratio |\n|---|---|---|---|\n{lines}"
        );
    }
}

fn find<'a>(rows: &'a [LoadRow], c: usize, path: &str, op: &str) -> Option<&'a LoadRow> {
    rows.iter().find(|r| r.concurrency == c && r.path == path && r.op == op)
}

fn concurrencies(rows: &[LoadRow]) -> Vec<usize> {
    let mut c: Vec<usize> = rows.iter().map(|r| r.concurrency).collect();
    c.sort_unstable();
    c.dedup();
    c
}

fn load_table(md: &mut String, backend: &str, load: &LoadReport) {
    let _ = writeln!(
        md,
        "\n**{backend}**: gateway over HTTP vs the direct baseline (and the backend called in process)\n\n| op | clients | gateway ops/s | direct ops/s | **ratio** | store in process ops/s | gateway p50 / p90 / p99 / max ms | direct p50 / p99 ms | p99 ratio | errors | duplicates |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for op in OPS {
        for c in concurrencies(&load.rows) {
            let (Some(g), Some(d)) = (find(&load.rows, c, "gateway", op), find(&load.rows, c, "direct", op)) else {
                continue;
            };
            let s = find(&load.rows, c, "store", op).map_or("".into(), |s| format!("{:.0}", s.summary.per_sec));
            let (g, gd, d) = (&g.summary, g.duplicates, &d.summary);
            let _ = writeln!(
                md,
                "| {op} | {c} | {:.0} | {:.0} | **{:.2}×** | {s} | {:.1} / {:.1} / {:.1} / {:.1} | {:.1} / {:.1} | {:.2}× | {} | {gd} |",
                g.per_sec,
                d.per_sec,
                g.per_sec / d.per_sec.max(1e-9),
                g.p50_ms,
                g.p90_ms,
                g.p99_ms,
                g.max_ms,
                d.p50_ms,
                d.p99_ms,
                g.p99_ms / d.p99_ms.max(1e-9),
                g.errors
            );
        }
    }
    if let Some(idle) = load.idle_memory {
        let peak = load.gateway_memory.iter().map(|(_, m)| m.peak_mib).fold(0.0, f64::max);
        let _ = writeln!(
            md,
            "\nGateway memory ({backend}): {:.1} MiB resident idle, {:.1} MiB peak under load (VmHWM).",
            idle.rss_mib, peak
        );
    }
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(127, 127, 127),
];

/// One panel per operation: latency percentiles against concurrency, the
/// gateway's and the baseline's.
fn latency_chart(path: &Path, backend: &str, rows: &[LoadRow]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        &format!("{backend}: latency percentiles vs concurrent clients (gateway over HTTP vs direct store)"),
        ("sans-serif", 20),
    )?;
    let cs = concurrencies(rows);
    let (min_c, max_c) = (*cs.first().unwrap_or(&1) as f64, *cs.last().unwrap_or(&2) as f64);
    for (panel, op) in root.split_evenly((2, 2)).iter().zip(OPS) {
        let series: Vec<(String, Vec<(f64, f64)>)> = [
            ("gateway p50", "gateway", 0),
            ("gateway p90", "gateway", 1),
            ("gateway p99", "gateway", 2),
            ("direct p50", "direct", 0),
            ("direct p99", "direct", 2),
        ]
        .iter()
        .map(|(label, path, p)| {
            let points = cs
                .iter()
                .filter_map(|&c| find(rows, c, path, op))
                .map(|r| {
                    let s = &r.summary;
                    (r.concurrency as f64, [s.p50_ms, s.p90_ms, s.p99_ms][*p].max(0.001))
                })
                .collect();
            ((*label).to_owned(), points)
        })
        .collect();
        let max_y = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
            .fold(0.01, f64::max);
        let min_y = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
            .fold(max_y, f64::min);
        let mut chart = ChartBuilder::on(panel)
            .caption(*op, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(
                (min_c..max_c.max(min_c * 2.0)).log_scale(),
                (min_y * 0.8..max_y * 1.25).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("concurrent clients")
            .y_desc("latency, ms")
            .draw()?;
        for (i, (label, points)) in series.into_iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn size_table(md: &mut String, rows: &[SizeRow]) {
    let _ = writeln!(
        md,
        "\n| backend | stored KeyPackages | owners | query p50 / p99 ms | p99 ratio to the smallest store (target ≤ 1.2) | count p50 / p99 ms | errors |\n|---|---|---|---|---|---|---|"
    );
    for r in rows {
        let smallest = rows
            .iter()
            .filter(|s| s.backend == r.backend)
            .min_by_key(|s| s.stored)
            .map_or(r.query.p99_ms, |s| s.query.p99_ms);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} / {:.2} | **{:.2}×** | {:.2} / {:.2} | {} |",
            r.backend.name(),
            r.stored,
            r.owners,
            r.query.p50_ms,
            r.query.p99_ms,
            r.query.p99_ms / smallest.max(1e-9),
            r.count.p50_ms,
            r.count.p99_ms,
            r.query.errors + r.count.errors
        );
    }
}

/// Query latency (p50, p99) against the number of stored KeyPackages.
fn size_chart(path: &Path, rows: &[SizeRow]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 550)).into_drawing_area();
    root.fill(&WHITE)?;
    let max_x = rows.iter().map(|r| r.stored).max().unwrap_or(10) as f64;
    let min_x = rows.iter().map(|r| r.stored).min().unwrap_or(1) as f64;
    let max_y = rows.iter().map(|r| r.query.p99_ms).fold(0.01, f64::max);
    let min_y = rows.iter().map(|r| r.query.p50_ms).fold(max_y, f64::min);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "query by author through the gateway: latency vs stored KeyPackages",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (min_x * 0.8..max_x * 1.25).log_scale(),
            (min_y * 0.5..max_y * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("stored KeyPackages (10 per owner)")
        .y_desc("latency, ms")
        .draw()?;
    let mut i = 0;
    for backend in BACKENDS {
        for (label, p99) in [("p50", false), ("p99", true)] {
            let mut points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|r| r.backend.name() == *backend)
                .map(|r| (r.stored as f64, if p99 { r.query.p99_ms } else { r.query.p50_ms }))
                .collect();
            if points.is_empty() {
                continue;
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let colour = COLOURS[i % COLOURS.len()];
            i += 1;
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))?
                .label(format!("{backend} {label}"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], colour.stroke_width(2)));
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, colour.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
