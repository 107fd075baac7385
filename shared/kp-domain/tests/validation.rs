//! Validation of KeyPackage events: real KeyPackages made with OpenMLS are
//! accepted, and every kind of tampering is refused with its own message.

use base64::Engine as _;
use kp_domain::validate::Invalid;
use kp_domain::{ValidationConfig, validate_keypackage_event};
use kp_testkit::factory::{event_id, make_keypackage};
use kp_testkit::{KeyPackageSpec, NOW, Owner};
use serde_json::Value;

fn config() -> ValidationConfig {
    ValidationConfig::default()
}

fn validate(json: &str) -> Result<kp_domain::KeyPackageEvent, Invalid> {
    validate_keypackage_event(json, &config(), NOW)
}

fn rejection(json: &str) -> String {
    validate(json).expect_err("must be rejected").message()
}

fn set_tag(tags: &mut Vec<Vec<String>>, name: &str, values: &[&str]) {
    tags.retain(|t| t[0] != name);
    let mut tag = vec![name.to_string()];
    tag.extend(values.iter().map(|v| v.to_string()));
    tags.push(tag);
}

fn without_tag(tags: &[Vec<String>], name: &str) -> Vec<Vec<String>> {
    tags.iter().filter(|t| t[0] != name).cloned().collect()
}

#[test]
fn accepts_an_mdk_style_443_and_derives_its_identity() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec::last_resort());
    let json = kp.event_443(&owner, NOW - 60);
    let event = validate(&json).expect("valid");
    assert_eq!(event.owner, owner.pubkey());
    assert_eq!(event.keypackage_ref, kp.keypackage_ref);
    assert_eq!(event.kind, 443);
    assert_eq!(event.ciphersuite, 1);
    assert!(event.last_resort);
    assert_eq!(event.id, event_id(&json));
    assert_eq!(event.slot, None);
    // created_at + 30 days comes before not_after (84 days).
    assert_eq!(event.expires_at, NOW - 60 + 2_592_000);
}

#[test]
fn accepts_a_framed_30443_twin_with_the_same_ref() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec::one_time());
    let d = "ab".repeat(32);
    let event = validate(&kp.event_30443(&owner, &d, NOW)).expect("valid");
    assert_eq!(event.kind, 30443);
    assert_eq!(event.slot.as_deref(), Some(d.as_str()));
    assert_eq!(event.keypackage_ref, kp.keypackage_ref);
    assert!(!event.last_resort);
}

#[test]
fn accepts_legacy_tags_and_hex_content() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec::last_resort());
    let tags = vec![
        vec!["mls_protocol_version".into(), "1.0".into()],
        vec!["ciphersuite".into(), "0x0001".into()],
        vec!["extensions".into(), "0x0001,0x0002,0x000a".into()],
        vec![
            "relays".into(),
            "wss://relay.example.com".into(),
            "ws://127.0.0.1:7777".into(),
        ],
        vec!["client".into(), "legacy".into()],
    ];
    let json = owner.sign(443, &tags, &hex::encode(&kp.bytes), NOW);
    let event = validate(&json).expect("legacy hex 443 without encoding tag");
    assert_eq!(event.keypackage_ref, kp.keypackage_ref);

    let mut explicit_hex = tags.clone();
    explicit_hex.push(vec!["encoding".into(), "hex".into()]);
    validate(&owner.sign(443, &explicit_hex, &hex::encode(&kp.bytes), NOW)).expect("explicit hex encoding");
}

#[test]
fn reads_last_resort_from_the_newest_profile_app_component() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec {
        last_resort_component: true,
        ..KeyPackageSpec::one_time()
    });
    let event = validate(&kp.event_30443(&owner, &"cd".repeat(32), NOW)).expect("valid");
    assert!(event.last_resort, "app component 0x0004 marks last resort");
}

#[test]
fn expiry_is_the_earliest_of_not_after_expiration_and_ttl() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec {
        not_after: NOW + 5_000,
        ..KeyPackageSpec::one_time()
    });
    assert_eq!(validate(&kp.event_443(&owner, NOW)).unwrap().expires_at, NOW + 5_000);
    let mut tags = kp.tags_443();
    tags.push(vec!["expiration".into(), (NOW + 100).to_string()]);
    let event = validate(&owner.sign(443, &tags, &kp.base64(), NOW)).unwrap();
    assert_eq!(event.expires_at, NOW + 100);
}

#[test]
fn the_real_mdk_071_event_validates_at_its_time() {
    let json = include_str!("vectors/mdk071_kind443.json");
    let event = validate_keypackage_event(json.trim(), &config(), 1_791_424_425 + 60).expect("field vector is valid");
    assert_eq!(
        event.keypackage_ref,
        "f3b8f97110e7d7f4f970ae9ac038f19fe5416658de5279e66b44f838d4a69920"
    );
    assert_eq!(
        event.owner,
        "74eb3a135097e9d7d8f4c672cb99002a1281488429b444488f8c7b666afa84cd"
    );
    assert!(event.last_resort);
    // And once its KeyPackage lifetime has ended, it is expired.
    let late = validate_keypackage_event(json.trim(), &config(), 1_799_000_000).unwrap_err();
    assert_eq!(late.message(), "invalid: expired");
}

#[test]
fn the_real_mdk_0920_content_parses_with_its_advertised_ref() {
    let fixture: Value = serde_json::from_str(include_str!("vectors/mdk0920_kind30443_content_only.json")).unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(fixture["content"].as_str().unwrap())
        .unwrap();
    assert_eq!(&bytes[..4], &[0, 1, 0, 5], "MLSMessage-framed");
    let parsed = kp_domain::mls::parse_keypackage(&bytes).expect("parses and verifies");
    assert_eq!(parsed.keypackage_ref, fixture["tags"][0][1].as_str().unwrap());
    assert!(parsed.last_resort, "last resort as app component 0x0004");
    assert!(!parsed.last_resort_extension);
    assert_eq!(parsed.ciphersuite, 1);
}

#[test]
fn rejects_a_bad_signature_and_a_wrong_id() {
    let owner = Owner::new();
    let json = owner.keypackage(KeyPackageSpec::one_time()).event_443(&owner, NOW);
    let mut event: Value = serde_json::from_str(&json).unwrap();
    let sig = event["sig"].as_str().unwrap().to_string();
    let flipped = format!("{}{}", if sig.starts_with('0') { "1" } else { "0" }, &sig[1..]);
    event["sig"] = Value::String(flipped);
    assert_eq!(rejection(&event.to_string()), "invalid: bad signature");

    let mut event: Value = serde_json::from_str(&json).unwrap();
    event["created_at"] = Value::from(NOW - 1);
    assert_eq!(
        rejection(&event.to_string()),
        "invalid: event id does not match the event"
    );
}

#[test]
fn rejects_a_flipped_byte_inside_the_keypackage() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec::one_time());
    let mut bytes = kp.bytes.clone();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    let content = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let message = rejection(&owner.sign(443, &without_tag(&kp.tags_443(), "i"), &content, NOW));
    assert!(message.starts_with("invalid: keypackage"), "{message}");
}

#[test]
fn rejects_a_keypackage_of_someone_else() {
    let alice = Owner::new();
    let mallory = Owner::new();
    let alices = alice.keypackage(KeyPackageSpec::one_time());
    let json = alices.event_443(&mallory, NOW);
    assert_eq!(
        rejection(&json),
        "invalid: keypackage credential identity is not the event pubkey"
    );
}

#[test]
fn rejects_tags_that_disagree_with_the_keypackage() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec::last_resort());
    let mut tags = kp.tags_443();
    set_tag(&mut tags, "mls_ciphersuite", &["0x0003"]);
    assert_eq!(
        rejection(&owner.sign(443, &tags, &kp.base64(), NOW)),
        "invalid: ciphersuite tag 0x0003 does not match the keypackage ciphersuite 0x0001"
    );

    let mut tags = kp.tags_443();
    set_tag(&mut tags, "i", &[&"00".repeat(32)]);
    assert!(rejection(&owner.sign(443, &tags, &kp.base64(), NOW)).starts_with("invalid: i tag does not match"));

    let mut tags = kp.tags_443();
    set_tag(&mut tags, "mls_extensions", &["0xf2ee"]);
    assert_eq!(
        rejection(&owner.sign(443, &tags, &kp.base64(), NOW)),
        "invalid: keypackage is last resort (0x000a) but mls_extensions does not list 0x000a"
    );
    let lenient = ValidationConfig {
        require_last_resort: false,
        ..config()
    };
    validate_keypackage_event(&owner.sign(443, &tags, &kp.base64(), NOW), &lenient, NOW)
        .expect("with KP_REQUIRE_LAST_RESORT off the tag need not list it");
}

#[test]
fn rejects_missing_repeated_and_malformed_tags() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec::one_time());
    for (tag, expected) in [
        (
            "mls_protocol_version",
            "invalid: missing required tag mls_protocol_version",
        ),
        ("mls_ciphersuite", "invalid: missing required tag mls_ciphersuite"),
        ("mls_extensions", "invalid: missing required tag mls_extensions"),
        ("relays", "invalid: missing required tag relays"),
    ] {
        let json = owner.sign(443, &without_tag(&kp.tags_443(), tag), &kp.base64(), NOW);
        assert_eq!(rejection(&json), expected);
    }
    let d = "ef".repeat(32);
    for (tag, expected) in [
        ("i", "invalid: missing required tag i"),
        ("d", "invalid: missing required tag d"),
    ] {
        let json = owner.sign(30443, &without_tag(&kp.tags_30443(&d), tag), &kp.base64_framed(), NOW);
        assert_eq!(rejection(&json), expected);
    }
    // Kind 30443 content is always base64: a legacy 30443 without an
    // `encoding` tag is accepted when everything else holds.
    let json = owner.sign(
        30443,
        &without_tag(&kp.tags_30443(&d), "encoding"),
        &kp.base64_framed(),
        NOW,
    );
    let accepted = validate(&json).expect("a 30443 needs no encoding tag");
    assert_eq!(accepted.profile, kp_domain::Profile::Legacy);

    let mut tags = kp.tags_443();
    tags.push(vec!["i".into(), kp.keypackage_ref.clone()]);
    assert_eq!(
        rejection(&owner.sign(443, &tags, &kp.base64(), NOW)),
        "invalid: tag i appears more than once"
    );

    let mut tags = kp.tags_443();
    tags.push(vec!["ciphersuite".into(), "0x0001".into()]);
    assert_eq!(
        rejection(&owner.sign(443, &tags, &kp.base64(), NOW)),
        "invalid: tag ciphersuite appears more than once"
    );

    let mut tags = kp.tags_443();
    set_tag(&mut tags, "relays", &["https://relay.example.com"]);
    assert!(rejection(&owner.sign(443, &tags, &kp.base64(), NOW)).starts_with("invalid: bad relays tag"));

    let mut tags = kp.tags_30443(&d);
    set_tag(&mut tags, "d", &["not-hex"]);
    assert!(rejection(&owner.sign(30443, &tags, &kp.base64_framed(), NOW)).starts_with("invalid: bad d tag"));

    let mut tags = kp.tags_443();
    set_tag(&mut tags, "mls_protocol_version", &["2.0"]);
    assert!(rejection(&owner.sign(443, &tags, &kp.base64(), NOW)).starts_with("invalid: bad mls_protocol_version tag"));

    let json = owner.sign(1, &kp.tags_443(), &kp.base64(), NOW);
    assert_eq!(
        rejection(&json),
        "invalid: kind 1 is not a keypackage kind (443 or 30443)"
    );
}

#[test]
fn rejects_content_that_does_not_decode_as_its_tags_say() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec::one_time());
    assert_eq!(
        rejection(&owner.sign(443, &kp.tags_443(), "", NOW)),
        "invalid: content is empty"
    );
    assert_eq!(
        rejection(&owner.sign(443, &kp.tags_443(), "not base64 at all!", NOW)),
        "invalid: content is not valid base64"
    );
    // Hex content under a base64 tag is decoded as base64, never guessed: it
    // is not a KeyPackage then.
    let hex_content = hex::encode(&kp.bytes);
    let message = rejection(&owner.sign(443, &kp.tags_443(), &hex_content, NOW));
    assert!(message.starts_with("invalid: keypackage"), "{message}");

    let legacy = without_tag(&kp.tags_443(), "encoding");
    assert_eq!(
        rejection(&owner.sign(443, &legacy, &kp.base64(), NOW)),
        "invalid: content is not valid hex"
    );

    // An `encoding` tag never switches a 30443's decoder: hex content under
    // `["encoding","hex"]` is read as base64, and is no KeyPackage then.
    let mut hex_30443 = kp.tags_30443(&"ab".repeat(32));
    set_tag(&mut hex_30443, "encoding", &["hex"]);
    let message = rejection(&owner.sign(30443, &hex_30443, &hex_content, NOW));
    assert!(message.starts_with("invalid: keypackage"), "{message}");

    let mut unknown = kp.tags_443();
    set_tag(&mut unknown, "encoding", &["base85"]);
    assert!(rejection(&owner.sign(443, &unknown, &kp.base64(), NOW)).starts_with("invalid: bad encoding tag"));
}

#[test]
fn rejects_oversized_events() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec::one_time());
    let small = ValidationConfig {
        max_event_bytes: 600,
        ..config()
    };
    let message = validate_keypackage_event(&kp.event_443(&owner, NOW), &small, NOW)
        .unwrap_err()
        .message();
    assert!(message.starts_with("invalid: event is"), "{message}");
    let mut tags = kp.tags_443();
    for n in 0..70 {
        tags.push(vec!["t".into(), n.to_string()]);
    }
    assert_eq!(
        rejection(&owner.sign(443, &tags, &kp.base64(), NOW)),
        "invalid: too many tags or tag values"
    );
}

#[test]
fn rejects_future_expired_and_overlong_keypackages() {
    let owner = Owner::new();
    let kp = owner.keypackage(KeyPackageSpec::one_time());
    let message = rejection(&kp.event_443(&owner, NOW + 3_600));
    assert!(message.contains("in the future"), "{message}");
    validate(&kp.event_443(&owner, NOW + 600)).expect("within the skew");

    assert_eq!(rejection(&kp.event_443(&owner, NOW - 2_592_000)), "invalid: expired");
    let mut tags = kp.tags_443();
    tags.push(vec!["expiration".into(), (NOW - 1).to_string()]);
    assert_eq!(
        rejection(&owner.sign(443, &tags, &kp.base64(), NOW)),
        "invalid: expired"
    );

    let ended = owner.keypackage(KeyPackageSpec {
        not_before: NOW - 10_000,
        not_after: NOW - 5_000,
        ..KeyPackageSpec::one_time()
    });
    assert_eq!(rejection(&ended.event_443(&owner, NOW - 9_000)), "invalid: expired");

    let not_yet = owner.keypackage(KeyPackageSpec {
        not_before: NOW + 86_400,
        not_after: NOW + 2 * 86_400,
        ..KeyPackageSpec::one_time()
    });
    assert!(rejection(&not_yet.event_443(&owner, NOW)).starts_with("invalid: keypackage is not valid before"));

    let long = owner.keypackage(KeyPackageSpec {
        not_before: NOW - 3_600,
        not_after: NOW + 200 * 86_400,
        ..KeyPackageSpec::one_time()
    });
    assert!(rejection(&long.event_443(&owner, NOW)).starts_with("invalid: keypackage lifetime of"));
}

#[test]
fn rejects_malformed_json() {
    assert!(rejection("{\"kind\":443}").starts_with("invalid: malformed event"));
    assert!(rejection("not json").starts_with("invalid: malformed event"));
}

#[test]
fn a_keypackage_made_for_another_identity_length_is_refused() {
    let owner = Owner::new();
    let odd = make_keypackage(b"short identity", KeyPackageSpec::one_time());
    let json = owner.sign(443, &without_tag(&odd.tags_443(), "i"), &odd.base64(), NOW);
    assert_eq!(
        rejection(&json),
        "invalid: keypackage credential identity is not the event pubkey"
    );
}
