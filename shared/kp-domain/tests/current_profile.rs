//! The current Marmot profile against KeyPackage events made with MDK's own
//! code (marmot-protocol/mdk 0.9.14, `tests/vectors/current-profile`): every
//! valid one accepted with its ref, slot, profile and last-resort flag, every
//! tampered one refused with the message of its own rule.

use kp_domain::validate::Invalid;
use kp_domain::{Profile, ValidationConfig, validate_keypackage_event};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/current-profile");

/// A moment inside every vector's lifetime (they were made on 2026-12-02).
const AT: u64 = 1_796_210_000;

fn raw_lines(file: &str) -> Vec<String> {
    std::fs::read_to_string(format!("{DIR}/{file}"))
        .expect("vector file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

fn lines(file: &str) -> Vec<Value> {
    raw_lines(file)
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn manifest(id: &str) -> Value {
    lines("manifest.jsonl")
        .into_iter()
        .find(|m| m["id"] == id)
        .expect("every vector is in the manifest")
}

fn validate(event: &Value, config: &ValidationConfig) -> Result<kp_domain::KeyPackageEvent, Invalid> {
    validate_keypackage_event(&event.to_string(), config, AT)
}

#[test]
fn every_mdk_event_is_accepted_as_current_with_its_manifest_facts() {
    let mut seen = 0;
    for file in ["current.jsonl", "current_onetime.jsonl", "rotation.jsonl"] {
        for raw in raw_lines(file) {
            let event: Value = serde_json::from_str(&raw).unwrap();
            let facts = manifest(event["id"].as_str().unwrap());
            let accepted = validate_keypackage_event(&raw, &ValidationConfig::default(), AT)
                .unwrap_or_else(|e| panic!("{file} {}: {}", event["id"], e.message()));
            assert_eq!(accepted.profile, Profile::Current, "{file}");
            assert_eq!(accepted.kind, 30443);
            assert_eq!(accepted.keypackage_ref, facts["i"].as_str().unwrap());
            assert_eq!(accepted.slot.as_deref(), facts["d"].as_str());
            assert_eq!(accepted.owner, facts["pubkey"].as_str().unwrap());
            assert_eq!(accepted.last_resort, facts["last_resort"].as_bool().unwrap(), "{file}");
            assert_eq!(accepted.not_after, facts["not_after"].as_u64().unwrap());
            // The stored JSON is the event as signed: same fields, same order.
            assert_eq!(accepted.json, raw, "stored verbatim");
            seen += 1;
        }
    }
    assert_eq!(seen, 15);
}

#[test]
fn current_events_are_accepted_with_legacy_refused() {
    let strict = ValidationConfig {
        accept_legacy: false,
        ..ValidationConfig::default()
    };
    for event in lines("current.jsonl") {
        assert!(validate(&event, &strict).is_ok());
    }
}

#[test]
fn each_tampered_event_is_refused_by_its_own_rule() {
    let expected: &[(&str, &str)] = &[
        ("bad_proof_signature", "invalid: account identity proof: bad signature"),
        (
            "proof_signed_by_other_key",
            "invalid: account identity proof: signed by another key",
        ),
        (
            "proof_missing",
            "invalid: account identity proof: missing: the leaf carries no 0x8009 component",
        ),
        (
            "lifetime_too_long",
            "invalid: keypackage lifetime of 7261201 s is longer than the limit of 7261200 s",
        ),
        (
            "identity_not_pubkey",
            "invalid: keypackage credential identity is not the event pubkey",
        ),
        (
            "bare_keypackage_not_mlsmessage",
            "invalid: content must be an MLSMessage carrying a KeyPackage (00 01 00 05), not a bare KeyPackage",
        ),
        (
            "content_hex_not_base64",
            "invalid: content is hex; kind 30443 content is standard base64",
        ),
        (
            "app_components_tag_missing_8009",
            "invalid: app_components must list 0x8009",
        ),
        (
            "duplicate_id_list_tag",
            "invalid: tag mls_extensions appears more than once",
        ),
        (
            "d_tag_not_64_hex",
            "invalid: bad d tag: expected 64 lowercase hex characters",
        ),
        (
            "i_tag_mismatch",
            "invalid: i tag does not match the keypackage reference",
        ),
    ];
    let mut checked = 0;
    for case in lines("invalid.jsonl") {
        let name = case["case"].as_str().unwrap();
        let event = &case["event"];
        let event = if event.is_string() {
            serde_json::from_str(event.as_str().unwrap()).unwrap()
        } else {
            event.clone()
        };
        let result = validate(&event, &ValidationConfig::default());
        if !case["must_reject"].as_bool().unwrap() {
            let accepted = result.unwrap_or_else(|e| panic!("{name}: {}", e.message()));
            assert_eq!(accepted.profile, Profile::Current, "{name}");
            continue;
        }
        let message = result.expect_err(name).message();
        let (_, want) = expected
            .iter()
            .find(|(case, _)| *case == name)
            .unwrap_or_else(|| panic!("no expectation for {name}: {message}"));
        assert!(message.starts_with(want), "{name}: got {message:?}, want {want:?}");
        checked += 1;
    }
    assert_eq!(checked, expected.len());
}

mod made_with_the_test_factory {
    //! The same rules against KeyPackages the test factory makes with
    //! OpenMLS and a real `0x8009` proof, valid at any date.

    use kp_domain::validate::Invalid;
    use kp_domain::{Profile, ValidationConfig, validate_keypackage_event};
    use kp_testkit::current::random_slot;
    use kp_testkit::{CurrentSpec, KeyPackageSpec, NOW, Owner, ProofMode};

    fn validate(json: &str) -> Result<kp_domain::KeyPackageEvent, Invalid> {
        validate_keypackage_event(json, &ValidationConfig::default(), NOW)
    }

    fn refusal(json: &str) -> String {
        validate(json).expect_err("must be refused").message()
    }

    fn with_tag(mut tags: Vec<Vec<String>>, name: &str, values: &[&str]) -> Vec<Vec<String>> {
        let at = tags.iter().position(|t| t[0] == name).expect("tag present");
        tags[at] = std::iter::once(name)
            .chain(values.iter().copied())
            .map(String::from)
            .collect();
        tags
    }

    #[test]
    fn one_time_and_last_resort_are_accepted_as_current() {
        let owner = Owner::new();
        for (spec, last_resort) in [
            (CurrentSpec::one_time_at(NOW), false),
            (CurrentSpec::last_resort_at(NOW), true),
        ] {
            let kp = owner.current_keypackage(spec);
            let d = random_slot();
            let accepted = validate(&kp.event(&owner, &d, NOW)).unwrap_or_else(|e| panic!("{}", e.message()));
            assert_eq!(accepted.profile, Profile::Current);
            assert_eq!(accepted.last_resort, last_resort);
            assert_eq!(accepted.keypackage_ref, kp.keypackage_ref);
            assert_eq!(accepted.slot.as_deref(), Some(d.as_str()));
        }
    }

    #[test]
    fn an_encoding_tag_changes_nothing() {
        let owner = Owner::new();
        let kp = owner.current_keypackage(CurrentSpec::one_time_at(NOW));
        let d = random_slot();
        for encoding in ["base64", "hex"] {
            let mut tags = kp.tags(&d);
            tags.push(vec!["encoding".into(), encoding.into()]);
            let accepted = validate(&owner.sign(30443, &tags, &kp.content(), NOW)).expect("accepted");
            assert_eq!(accepted.profile, Profile::Current, "{encoding}");
        }
    }

    #[test]
    fn each_broken_rule_is_named() {
        let owner = Owner::new();
        let other = Owner::new();
        let d = random_slot();
        let kp = owner.current_keypackage(CurrentSpec::one_time_at(NOW));
        let sign = |tags: Vec<Vec<String>>, content: &str| owner.sign(30443, &tags, content, NOW);
        let made = |proof| {
            owner
                .current_keypackage(CurrentSpec {
                    proof,
                    ..CurrentSpec::one_time_at(NOW)
                })
                .event(&owner, &d, NOW)
        };
        let too_long = owner.current_keypackage(CurrentSpec {
            not_after: NOW - 3_600 + 7_261_201,
            ..CurrentSpec::one_time_at(NOW)
        });
        let someone_elses = other.current_keypackage(CurrentSpec::one_time_at(NOW));
        let without_8009: Vec<&str> = ["0x8001", "0x8002", "0x8003"].to_vec();
        let cases: Vec<(&str, String, &str)> = vec![
            (
                "bad proof signature",
                made(ProofMode::BadSignature),
                "invalid: account identity proof: bad signature",
            ),
            (
                "proof by another key",
                made(ProofMode::OtherSigner(other.keys.clone())),
                "invalid: account identity proof: signed by another key",
            ),
            (
                "proof missing",
                made(ProofMode::Missing),
                "invalid: account identity proof: missing: the leaf carries no 0x8009 component",
            ),
            (
                "0x8009 not in the tag",
                sign(with_tag(kp.tags(&d), "app_components", &without_8009), &kp.content()),
                "invalid: app_components must list 0x8009",
            ),
            (
                "repeated id-list tag",
                sign(
                    {
                        let mut tags = kp.tags(&d);
                        tags.push(vec!["mls_proposals".into(), "0x0008".into()]);
                        tags
                    },
                    &kp.content(),
                ),
                "invalid: tag mls_proposals appears more than once",
            ),
            (
                "bad d",
                sign(with_tag(kp.tags(&d), "d", &["ABCD"]), &kp.content()),
                "invalid: bad d tag: expected 64 lowercase hex characters",
            ),
            (
                "wrong i",
                sign(
                    with_tag(kp.tags(&d), "i", &[&someone_elses.keypackage_ref]),
                    &kp.content(),
                ),
                "invalid: i tag does not match the keypackage reference",
            ),
            (
                "bare KeyPackage",
                sign(kp.tags(&d), &kp.bare_content()),
                "invalid: content must be an MLSMessage",
            ),
            (
                "lifetime too long",
                too_long.event(&owner, &d, NOW),
                "invalid: keypackage lifetime of 7261201 s is longer than the limit of 7261200 s",
            ),
            (
                "identity not the pubkey",
                sign(someone_elses.tags(&d), &someone_elses.content()),
                "invalid: keypackage credential identity is not the event pubkey",
            ),
            (
                "id-list value not 0x + 4 lowercase hex",
                sign(
                    with_tag(kp.tags(&d), "mls_proposals", &["0x0008", "0xA"]),
                    &kp.content(),
                ),
                "invalid: bad mls_proposals tag: expected 0x and 4 lowercase hex digits",
            ),
            (
                "id-list value repeated",
                sign(
                    with_tag(kp.tags(&d), "mls_proposals", &["0x0008", "0x0008"]),
                    &kp.content(),
                ),
                "invalid: bad mls_proposals tag: 0x0008 is listed twice",
            ),
            (
                "id-list tag with no value",
                sign(with_tag(kp.tags(&d), "mls_proposals", &[]), &kp.content()),
                "invalid: bad mls_proposals tag: lists no value",
            ),
            (
                "tag disagrees with the capabilities",
                sign(with_tag(kp.tags(&d), "mls_proposals", &["0x0008"]), &kp.content()),
                "invalid: mls_proposals tag does not match the keypackage",
            ),
            (
                "mls_protocol_version repeated",
                sign(
                    {
                        let mut tags = kp.tags(&d);
                        tags.push(vec!["mls_protocol_version".into(), "1.0".into()]);
                        tags
                    },
                    &kp.content(),
                ),
                "invalid: tag mls_protocol_version appears more than once",
            ),
            (
                "app_components tag missing",
                sign(
                    kp.tags(&d).into_iter().filter(|t| t[0] != "app_components").collect(),
                    &kp.content(),
                ),
                "invalid: missing required tag app_components",
            ),
        ];
        for (case, json, want) in cases {
            let got = refusal(&json);
            assert!(got.starts_with(want), "{case}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn legacy_keypackages_are_refused_when_legacy_is_off() {
        let owner = Owner::new();
        let strict = ValidationConfig {
            accept_legacy: false,
            ..ValidationConfig::default()
        };
        let legacy = owner.keypackage(KeyPackageSpec::last_resort());
        for (json, why) in [
            (legacy.event_443(&owner, NOW), "kind 443"),
            (
                legacy.event_30443(&owner, &random_slot(), NOW),
                "encoding tag without app_components",
            ),
        ] {
            let refused = validate_keypackage_event(&json, &strict, NOW).expect_err("legacy refused");
            assert_eq!(
                refused.message(),
                format!(
                    "invalid: legacy profile KeyPackages are not accepted here ({why}); publish a current-profile kind 30443"
                )
            );
            let accepted = validate(&json).expect("legacy accepted by default");
            assert_eq!(accepted.profile, Profile::Legacy);
        }
        let current = owner.current_keypackage(CurrentSpec::one_time_at(NOW));
        let accepted = validate_keypackage_event(&current.event(&owner, &random_slot(), NOW), &strict, NOW)
            .expect("current accepted");
        assert_eq!(accepted.profile, Profile::Current);
    }
}
