//! Validation cost against its floor, measured in the same run: the full
//! validation of a real MDK KeyPackage event beside the cryptography it
//! cannot avoid (the event's Schnorr signature and the KeyPackage's two MLS
//! signatures, each verified alone), and event JSON parsing and
//! serialisation beside `serde_json::Value`.
//!
//! Build with `cargo bench -p kp-domain --bench validation --no-run` and run
//! the executable it names with `--bench`; `loadgen report` reads the
//! estimates criterion leaves under `target/criterion` and prints the ratios.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use base64::Engine as _;
use criterion::{Criterion, criterion_group};
use kp_domain::{ValidationConfig, validate_keypackage_event};
use nostr::prelude::Event;
use openmls::prelude::{KeyPackageIn, ProtocolVersion};
use openmls_rust_crypto::RustCrypto;
use openmls_traits::crypto::OpenMlsCrypto as _;
use openmls_traits::types::SignatureScheme;
use serde_json::Value;
use tls_codec::{Deserialize as _, Serialize as _, VLBytes};

/// A kind 443 KeyPackage event published by an MDK 0.7.1 client.
const MDK_EVENT: &str = include_str!("../tests/vectors/mdk071_kind443.json");

/// A moment inside the vector's validity.
const MDK_NOW: u64 = 1_791_424_425 + 60;

/// One MLS signature check exactly as RFC 9420 `VerifyWithLabel` defines
/// it: the signed bytes are `SignContent { "MLS 1.0 " + label, content }`.
struct MlsSignature {
    sign_content: Vec<u8>,
    public_key: Vec<u8>,
    signature: Vec<u8>,
}

impl MlsSignature {
    /// Splits a TLS-encoded signed struct whose last field is an Ed25519
    /// `signature<V>` (two length bytes, then 64 bytes) into what is signed
    /// and the signature.
    fn from_signed_struct(label: &str, signed: &[u8], public_key: &[u8]) -> Self {
        let (tbs, signature) = signed.split_at(signed.len() - 66);
        assert_eq!(
            &signature[..2],
            &[0x40, 0x40],
            "an Ed25519 signature<V> ends the struct"
        );
        let mut sign_content = VLBytes::new(format!("MLS 1.0 {label}").into_bytes())
            .tls_serialize_detached()
            .expect("label");
        sign_content.extend(VLBytes::new(tbs.to_vec()).tls_serialize_detached().expect("content"));
        Self {
            sign_content,
            public_key: public_key.to_vec(),
            signature: signature[2..].to_vec(),
        }
    }

    fn verify(&self, crypto: &RustCrypto) -> bool {
        crypto
            .verify_signature(
                SignatureScheme::ED25519,
                &self.sign_content,
                &self.public_key,
                &self.signature,
            )
            .is_ok()
    }
}

/// The two MLS signatures of the vector's KeyPackage: the KeyPackage's own
/// and its leaf node's, both by the leaf's signature key.
fn mls_signatures(event: &Event) -> [MlsSignature; 2] {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&event.content)
        .expect("base64 content");
    let key_package = KeyPackageIn::tls_deserialize_exact(bytes.as_slice())
        .expect("a bare KeyPackage")
        .validate(&RustCrypto::default(), ProtocolVersion::Mls10)
        .expect("the vector verifies");
    let leaf = key_package.leaf_node();
    let public_key = leaf.signature_key().as_slice().to_vec();
    let leaf_bytes = leaf.tls_serialize_detached().expect("leaf node");
    let signatures = [
        MlsSignature::from_signed_struct("KeyPackageTBS", &bytes, &public_key),
        MlsSignature::from_signed_struct("LeafNodeTBS", &leaf_bytes, &public_key),
    ];
    let crypto = RustCrypto::default();
    assert!(
        signatures.iter().all(|s| s.verify(&crypto)),
        "the floor must verify the real signatures, or it measures nothing"
    );
    signatures
}

fn validation(c: &mut Criterion) {
    let json = MDK_EVENT.trim();
    let config = ValidationConfig::default();
    validate_keypackage_event(json, &config, MDK_NOW).expect("the vector is valid");
    let event = Event::from_json(json).expect("event");
    let [keypackage_signature, leaf_signature] = mls_signatures(&event);
    let crypto = RustCrypto::default();

    let mut group = c.benchmark_group("validation");
    group.bench_function("full", |b| {
        b.iter(|| validate_keypackage_event(black_box(json), &config, MDK_NOW).expect("valid"))
    });
    group.bench_function("crypto_floor", |b| {
        b.iter(|| {
            assert!(black_box(&event).verify_signature());
            assert!(black_box(&keypackage_signature).verify(&crypto));
            assert!(black_box(&leaf_signature).verify(&crypto));
        })
    });
    group.bench_function("schnorr", |b| b.iter(|| assert!(black_box(&event).verify_signature())));
    group.bench_function("mls_keypackage_signature", |b| {
        b.iter(|| assert!(black_box(&keypackage_signature).verify(&crypto)))
    });
    group.bench_function("mls_leaf_node_signature", |b| {
        b.iter(|| assert!(black_box(&leaf_signature).verify(&crypto)))
    });
    group.finish();
}

fn json(c: &mut Criterion) {
    let json = MDK_EVENT.trim();
    let event = Event::from_json(json).expect("event");
    let value: Value = serde_json::from_str(json).expect("value");

    let mut group = c.benchmark_group("json");
    group.bench_function("parse_event", |b| {
        b.iter(|| Event::from_json(black_box(json)).expect("event"))
    });
    group.bench_function("parse_value", |b| {
        b.iter(|| serde_json::from_str::<Value>(black_box(json)).expect("value"))
    });
    group.bench_function("serialize_event", |b| b.iter(|| black_box(&event).as_json()));
    group.bench_function("serialize_value", |b| {
        b.iter(|| serde_json::to_string(black_box(&value)).expect("json"))
    });
    group.finish();
}

/// Rounds of the paired measurement, and validations (or floors) a turn:
/// short turns (about a millisecond), so that most of them run without
/// being preempted on a loaded machine.
const PAIRED_ROUNDS: usize = 600;
const PAIRED_TURN: u32 = 4;

/// The `q` quantile of some samples.
fn quantile(samples: &[f64], q: f64) -> f64 {
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// `a` and `b` taking turns, round by round (the order alternating), so
/// both see the same load on a shared machine; criterion measures one after
/// the other, seconds apart. On a loaded machine a turn is often preempted
/// and takes a timeslice longer, so each is estimated by a low quantile of
/// its turns (the 10th percentile), the turns nothing interrupted. Answers
/// both estimates (ns) and their ratios.
fn paired_ab(name: &str, turn: u32, mut a: impl FnMut(), mut b: impl FnMut()) -> serde_json::Value {
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..turn {
            f();
        }
        started.elapsed().as_secs_f64() * 1e9 / f64::from(turn)
    };
    for _ in 0..20 {
        time(&mut a);
        time(&mut b);
    }
    let (mut as_, mut bs) = (Vec::new(), Vec::new());
    for round in 0..PAIRED_ROUNDS {
        if round % 2 == 0 {
            as_.push(time(&mut a));
            bs.push(time(&mut b));
        } else {
            bs.push(time(&mut b));
            as_.push(time(&mut a));
        }
    }
    let (a_ns, b_ns) = (quantile(&as_, 0.1), quantile(&bs, 0.1));
    let min_ratio = quantile(&as_, 0.0) / quantile(&bs, 0.0);
    let median_ratio = quantile(&as_, 0.5) / quantile(&bs, 0.5);
    println!(
        "paired {name} ({PAIRED_ROUNDS} rounds of {turn}): 10th percentiles {:.2} / {:.2} µs, ratio {:.3}; \
         ratio of the minima {min_ratio:.3}, of the medians {median_ratio:.3}",
        a_ns / 1000.0,
        b_ns / 1000.0,
        a_ns / b_ns
    );
    serde_json::json!({
        "rounds": PAIRED_ROUNDS,
        "per_turn": turn,
        "a_ns": a_ns,
        "b_ns": b_ns,
        "ratio": a_ns / b_ns,
        "min_ratio": min_ratio,
        "median_ratio": median_ratio,
    })
}

/// The paired measurements: full validation vs its floor, and the event's
/// JSON parse and serialisation vs `serde_json::Value`'s. Written to
/// `target/criterion/validation_paired.json` for `loadgen report`.
fn paired() {
    let json = MDK_EVENT.trim();
    let config = ValidationConfig::default();
    let event = Event::from_json(json).expect("event");
    let value: Value = serde_json::from_str(json).expect("value");
    let [keypackage_signature, leaf_signature] = mls_signatures(&event);
    let crypto = RustCrypto::default();
    let validation = paired_ab(
        "validation full / crypto floor",
        PAIRED_TURN,
        || {
            validate_keypackage_event(black_box(json), &config, MDK_NOW).expect("valid");
        },
        || {
            assert!(black_box(&event).verify_signature());
            assert!(black_box(&keypackage_signature).verify(&crypto));
            assert!(black_box(&leaf_signature).verify(&crypto));
        },
    );
    let parse = paired_ab(
        "parse Event / Value",
        PAIRED_TURN * 100,
        || {
            black_box(Event::from_json(black_box(json)).expect("event"));
        },
        || {
            black_box(serde_json::from_str::<Value>(black_box(json)).expect("value"));
        },
    );
    let serialize = paired_ab(
        "serialize Event / Value",
        PAIRED_TURN * 100,
        || {
            black_box(black_box(&event).as_json());
        },
        || {
            black_box(serde_json::to_string(black_box(&value)).expect("json"));
        },
    );
    let out = std::path::Path::new("target/criterion");
    let report = serde_json::json!({
        "validation": validation,
        "parse": parse,
        "serialize": serialize,
    });
    if std::fs::create_dir_all(out).is_ok() {
        let _ = std::fs::write(out.join("validation_paired.json"), report.to_string());
    }
}

criterion_group!(benches, validation, json);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only when benchmarking (`--bench`), not when `cargo test` runs the
    // benches once as tests.
    if std::env::args().any(|a| a == "--bench") {
        paired();
    }
}
