//! Validation of kind 443 and kind 30443 KeyPackage events, cheapest check
//! first. A pure function of (event, config, now).
//!
//! Two profiles are in the field. A *current* one (the Marmot spec adopted in
//! July 2026: kind 30443, no `encoding` tag, an `app_components` tag, the
//! `0x8009` account-identity proof in the leaf) is held to every rule a
//! receiver MUST apply, as MDK's receiver applies them. A *legacy* one (MDK ≤
//! 0.8: 443/30443 twins, `encoding` tag, `relays`, `0x000a`) is checked as
//! NIP-EE had it, and accepted only while `accept_legacy` is on.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use nostr::prelude::{Event, RelayUrl};

use crate::config::{CURRENT_PROFILE_MAX_LIFETIME_SECS, ValidationConfig};
use crate::ids::{format_u16_code, is_lower_hex64, parse_u16_code};
use crate::mls::{
    APP_COMPONENT_ACCOUNT_IDENTITY_PROOF, APP_COMPONENT_SUPPORTED, EXTENSION_LAST_RESORT,
    MLS_MESSAGE_KEYPACKAGE_PREFIX, MlsError, PRIVATE_USE_APP_COMPONENT_START, ParsedKeyPackage, decode_component_list,
    parse_keypackage,
};
use crate::model::Profile;
use crate::proof::{ProofError, verify_account_identity_proof};
use crate::{KIND_KEYPACKAGE, KIND_KEYPACKAGE_ADDRESSABLE};

/// Most tags a KeyPackage event may carry.
pub const MAX_TAGS: usize = 64;

/// Most values one tag may carry (the relay list is the longest in practice).
pub const MAX_TAG_VALUES: usize = 32;

/// Tags that may appear at most once (both profiles).
const SINGLE_VALUED_TAGS: &[&str] = &[
    "app_components",
    "mls_protocol_version",
    "mls_ciphersuite",
    "ciphersuite",
    "mls_extensions",
    "extensions",
    "mls_proposals",
    "relays",
    "i",
    "client",
    "encoding",
    "-",
    "d",
    "expiration",
];

/// The current profile's content: standard base64 with padding, as MDK
/// writes and reads it.
const BASE64_STRICT: GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Legacy content: base64 as MDK 0.7/0.8 wrote it, with or without padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a KeyPackage event was refused. `Display` gives the text after the
/// NIP-01 `invalid:` prefix; [`Invalid::message`] gives the whole message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// The event JSON is larger than the configured limit.
    #[error("event is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        /// Size of the event JSON.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Too many tags, or a tag with too many values.
    #[error("too many tags or tag values")]
    TooManyTags,
    /// The JSON is not a NIP-01 event.
    #[error("malformed event: {0}")]
    Malformed(String),
    /// The id is not the hash of the event's content.
    #[error("event id does not match the event")]
    BadId,
    /// The Schnorr signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Not a KeyPackage kind.
    #[error("kind {0} is not a keypackage kind (443 or 30443)")]
    WrongKind(u16),
    /// A required tag is absent.
    #[error("missing required tag {0}")]
    MissingTag(&'static str),
    /// A single-valued tag appears more than once.
    #[error("tag {0} appears more than once")]
    RepeatedTag(String),
    /// A tag's value is not of the expected form.
    #[error("bad {tag} tag: {reason}")]
    BadTag {
        /// The tag name.
        tag: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The content is empty.
    #[error("content is empty")]
    EmptyContent,
    /// The content does not decode in the encoding its tags name.
    #[error("content is not valid {0}")]
    BadEncoding(&'static str),
    /// The KeyPackage does not parse or verify.
    #[error("{0}")]
    KeyPackage(#[from] MlsError),
    /// The credential identity is not the event's pubkey.
    #[error("keypackage credential identity is not the event pubkey")]
    IdentityMismatch,
    /// The ciphersuite tag disagrees with the KeyPackage.
    #[error("ciphersuite tag {tag} does not match the keypackage ciphersuite {actual}")]
    CiphersuiteMismatch {
        /// What the tag says.
        tag: String,
        /// What the KeyPackage says.
        actual: String,
    },
    /// The `i` tag is not the KeyPackageRef.
    #[error("i tag does not match the keypackage reference {0}")]
    RefMismatch(String),
    /// The KeyPackage carries last_resort but the tags do not advertise it.
    #[error("keypackage is last resort (0x000a) but mls_extensions does not list 0x000a")]
    LastResortNotAdvertised,
    /// `not_after - not_before` is longer than allowed.
    #[error("keypackage lifetime of {lifetime} s is longer than the limit of {limit} s")]
    LifetimeTooLong {
        /// The KeyPackage's lifetime.
        lifetime: u64,
        /// The configured limit.
        limit: u64,
    },
    /// `not_before` is still ahead.
    #[error("keypackage is not valid before {0}")]
    NotYetValid(u64),
    /// `created_at` is too far ahead.
    #[error("created_at {created_at} is more than {skew} s in the future")]
    FromTheFuture {
        /// The event's `created_at`.
        created_at: u64,
        /// The allowed skew.
        skew: u64,
    },
    /// Already expired.
    #[error("expired")]
    Expired,
    /// A legacy-profile KeyPackage where only current ones are accepted.
    #[error("legacy profile KeyPackages are not accepted here ({0}); publish a current-profile kind 30443")]
    LegacyRefused(&'static str),
    /// The current profile's `app_components` tag does not list `0x8009`.
    #[error("app_components must list 0x8009")]
    ProofNotListed,
    /// Current-profile content that is not an MLSMessage.
    #[error("content must be an MLSMessage carrying a KeyPackage (00 01 00 05), not a bare KeyPackage")]
    NotMlsMessage,
    /// Current-profile content written in hex.
    #[error("content is hex; kind 30443 content is standard base64")]
    HexContent,
    /// An id-list tag does not describe the KeyPackage.
    #[error("{tag} tag does not match the keypackage: it lists {tagged}, the keypackage has {actual}")]
    ListMismatch {
        /// The tag name.
        tag: &'static str,
        /// What the tag lists.
        tagged: String,
        /// What the KeyPackage carries.
        actual: String,
    },
    /// The `0x8009` account-identity proof is missing or does not verify.
    #[error("account identity proof: {0}")]
    Proof(#[from] ProofError),
}

impl Invalid {
    /// The NIP-01 `OK` message: `invalid: <what is wrong>`.
    pub fn message(&self) -> String {
        format!("invalid: {self}")
    }
}

/// A KeyPackage event that passed validation, with what the service derives
/// from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackageEvent {
    /// The signed event, as received.
    pub event: Event,
    /// The event serialised once, compactly: what is stored and served.
    pub json: String,
    /// Event id, lowercase hex.
    pub id: String,
    /// The owner: the event pubkey, which equals the credential identity.
    pub owner: String,
    /// 443 or 30443.
    pub kind: u16,
    /// The event's `created_at`.
    pub created_at: u64,
    /// The KeyPackageRef, lowercase hex: the KeyPackage's identity.
    pub keypackage_ref: String,
    /// The MLS ciphersuite.
    pub ciphersuite: u16,
    /// Whether the KeyPackage is a reusable last resort.
    pub last_resort: bool,
    /// `not_after` of the KeyPackage lifetime.
    pub not_after: u64,
    /// When the event stops being served: the earliest of `not_after`, the
    /// NIP-40 `expiration` tag and `created_at + ttl`.
    pub expires_at: u64,
    /// The `d` tag of a 30443.
    pub slot: Option<String>,
    /// The Marmot profile it follows.
    pub profile: Profile,
}

/// The tags of a KeyPackage event, read once. A current and a legacy name
/// of one tag (`mls_ciphersuite`/`ciphersuite`) together are a repeat.
#[derive(Default)]
struct Tags<'a> {
    protocol_version: Option<&'a [String]>,
    ciphersuite: Option<(&'a str, &'a [String])>,
    extensions: Option<(&'a str, &'a [String])>,
    proposals: Option<&'a [String]>,
    app_components: Option<&'a [String]>,
    relays: Option<&'a [String]>,
    i: Option<&'a [String]>,
    encoding: Option<&'a [String]>,
    d: Option<&'a [String]>,
    expiration: Option<&'a [String]>,
}

/// What both profiles read off the tags before the content is decoded.
struct Common<'a> {
    ciphersuite_tag: &'a str,
    ciphersuite: u16,
    advertised_ref: Option<&'a str>,
    slot: Option<String>,
    expiration: Option<u64>,
}

/// Validates a KeyPackage event given as JSON.
pub fn validate_keypackage_event(json: &str, config: &ValidationConfig, now: u64) -> Result<KeyPackageEvent, Invalid> {
    if json.len() > config.max_event_bytes {
        return Err(Invalid::TooLarge {
            size: json.len(),
            limit: config.max_event_bytes,
        });
    }
    let event = Event::from_json(json).map_err(|e| Invalid::Malformed(e.to_string()))?;
    validate_parsed_event(event, config, now)
}

/// Validates a KeyPackage event already parsed (its size checked by the caller).
pub fn validate_parsed_event(event: Event, config: &ValidationConfig, now: u64) -> Result<KeyPackageEvent, Invalid> {
    check_envelope(&event, config)?;
    let kind = event.kind.as_u16();
    let tags = read_tags(&event)?;
    let (profile, parsed, common) = match classify(kind, &tags) {
        Profile::Current => {
            let common = current_tags(&tags)?;
            let bytes = decode_current_content(&event.content)?;
            let parsed = parse_keypackage(&bytes)?;
            if !parsed.framed {
                return Err(Invalid::NotMlsMessage);
            }
            check_binding(&event, &parsed, &common)?;
            check_current_keypackage(&event, &parsed, &tags)?;
            (Profile::Current, parsed, common)
        }
        Profile::Legacy => {
            if !config.accept_legacy {
                return Err(Invalid::LegacyRefused(legacy_reason(kind, &tags)));
            }
            let (common, advertised_extensions) = legacy_tags(kind, &tags)?;
            let bytes = decode_legacy_content(&event.content, tags.encoding, kind == KIND_KEYPACKAGE_ADDRESSABLE)?;
            let parsed = parse_keypackage(&bytes)?;
            check_binding(&event, &parsed, &common)?;
            if config.require_last_resort
                && parsed.last_resort_extension
                && !advertised_extensions.contains(&EXTENSION_LAST_RESORT)
            {
                return Err(Invalid::LastResortNotAdvertised);
            }
            (Profile::Legacy, parsed, common)
        }
    };
    let max_lifetime = match profile {
        Profile::Current => config.max_lifetime_secs.min(CURRENT_PROFILE_MAX_LIFETIME_SECS),
        Profile::Legacy => config.max_lifetime_secs,
    };
    let expires_at = check_times(&event, &parsed, common.expiration, max_lifetime, config, now)?;
    Ok(KeyPackageEvent {
        json: event.as_json(),
        id: event.id.to_hex(),
        owner: event.pubkey.to_hex(),
        kind,
        created_at: event.created_at.as_secs(),
        keypackage_ref: parsed.keypackage_ref,
        ciphersuite: parsed.ciphersuite,
        last_resort: parsed.last_resort,
        not_after: parsed.not_after,
        expires_at,
        slot: common.slot,
        profile,
        event,
    })
}

/// Size limits, id, signature and kind: what holds for any KeyPackage event.
fn check_envelope(event: &Event, config: &ValidationConfig) -> Result<(), Invalid> {
    if event.tags.len() > MAX_TAGS || event.tags.iter().any(|t| t.as_slice().len() > MAX_TAG_VALUES + 1) {
        return Err(Invalid::TooManyTags);
    }
    if event.content.len() > config.max_event_bytes {
        return Err(Invalid::TooLarge {
            size: event.content.len(),
            limit: config.max_event_bytes,
        });
    }
    if !event.verify_id() {
        return Err(Invalid::BadId);
    }
    if !event.verify_signature() {
        return Err(Invalid::BadSignature);
    }
    let kind = event.kind.as_u16();
    if kind != KIND_KEYPACKAGE && kind != KIND_KEYPACKAGE_ADDRESSABLE {
        return Err(Invalid::WrongKind(kind));
    }
    Ok(())
}

/// Which profile an event claims. A kind 30443 with an `app_components` tag
/// is current, and so is one with neither `encoding` nor `relays` (which a
/// legacy one always has), so that a current event missing a tag is told
/// which. Everything else is legacy.
fn classify(kind: u16, tags: &Tags<'_>) -> Profile {
    let current = kind == KIND_KEYPACKAGE_ADDRESSABLE
        && (tags.app_components.is_some() || (tags.encoding.is_none() && tags.relays.is_none()));
    if current { Profile::Current } else { Profile::Legacy }
}

/// What makes an event legacy, for the refusal's message.
fn legacy_reason(kind: u16, tags: &Tags<'_>) -> &'static str {
    if kind == KIND_KEYPACKAGE {
        "kind 443"
    } else if tags.encoding.is_some() {
        "encoding tag without app_components"
    } else {
        "relays tag without app_components"
    }
}

/// The current profile's tags: each required one exactly once, single
/// values where one is meant, id lists in `0x` + 4 lowercase hex digits, at
/// least one and no repeats, and `app_components` listing `0x8009`.
fn current_tags<'a>(tags: &Tags<'a>) -> Result<Common<'a>, Invalid> {
    let slot = single_value(tags.d, "d")?;
    if !is_lower_hex64(slot) {
        return Err(bad_tag("d", "expected 64 lowercase hex characters".into()));
    }
    check_protocol_version(tags)?;
    let advertised_ref = single_value(tags.i, "i")?;
    if !is_lower_hex64(advertised_ref) {
        return Err(bad_tag("i", "expected 64 lowercase hex characters".into()));
    }
    let (ciphersuite_name, ciphersuite_values) = tags.ciphersuite.ok_or(Invalid::MissingTag("mls_ciphersuite"))?;
    if ciphersuite_name != "mls_ciphersuite" {
        return Err(Invalid::MissingTag("mls_ciphersuite"));
    }
    let ciphersuite_tag = single_value(Some(ciphersuite_values), "mls_ciphersuite")?;
    let ciphersuite = strict_code(ciphersuite_tag).ok_or_else(|| {
        bad_tag(
            "mls_ciphersuite",
            format!("expected 0x and 4 lowercase hex digits, got {ciphersuite_tag:?}"),
        )
    })?;
    match tags.extensions {
        Some(("mls_extensions", values)) => strict_code_list(values, "mls_extensions")?,
        _ => return Err(Invalid::MissingTag("mls_extensions")),
    };
    strict_code_list(
        tags.proposals.ok_or(Invalid::MissingTag("mls_proposals"))?,
        "mls_proposals",
    )?;
    let components = strict_code_list(
        tags.app_components.ok_or(Invalid::MissingTag("app_components"))?,
        "app_components",
    )?;
    if !components.contains(&APP_COMPONENT_ACCOUNT_IDENTITY_PROOF) {
        return Err(Invalid::ProofNotListed);
    }
    Ok(Common {
        ciphersuite_tag,
        ciphersuite,
        advertised_ref: Some(advertised_ref),
        slot: Some(slot.to_owned()),
        expiration: expiration(tags)?,
    })
}

/// The legacy profile's tags, as NIP-EE and MDK ≤ 0.8 wrote them; also the
/// code points `mls_extensions` advertises.
fn legacy_tags<'a>(kind: u16, tags: &Tags<'a>) -> Result<(Common<'a>, Vec<u16>), Invalid> {
    let addressable = kind == KIND_KEYPACKAGE_ADDRESSABLE;
    check_protocol_version(tags)?;
    let ciphersuite_tag = single_value(tags.ciphersuite.map(|(_, v)| v), "mls_ciphersuite")?;
    let ciphersuite = parse_u16_code(ciphersuite_tag).ok_or_else(|| {
        bad_tag(
            "mls_ciphersuite",
            format!("not a ciphersuite code: {ciphersuite_tag:?}"),
        )
    })?;
    let advertised_extensions = parse_code_list(
        tags.extensions
            .map(|(_, v)| v)
            .ok_or(Invalid::MissingTag("mls_extensions"))?,
        "mls_extensions",
    )?;
    if let Some(proposals) = tags.proposals {
        parse_code_list(proposals, "mls_proposals")?;
    }
    let relays = tags.relays.ok_or(Invalid::MissingTag("relays"))?;
    if relays.is_empty() {
        return Err(bad_tag("relays", "no relay listed".into()));
    }
    for relay in relays {
        RelayUrl::parse(relay).map_err(|_| bad_tag("relays", format!("not a ws:// or wss:// URL: {relay:?}")))?;
    }
    let advertised_ref = match tags.i {
        Some(values) => {
            let value = single_value(Some(values), "i")?;
            if !is_lower_hex64(value) {
                return Err(bad_tag("i", "expected 64 lowercase hex characters".into()));
            }
            Some(value)
        }
        None if addressable => return Err(Invalid::MissingTag("i")),
        None => None,
    };
    let slot = match tags.d {
        Some(values) if addressable => {
            let value = single_value(Some(values), "d")?;
            if !is_lower_hex64(value) {
                return Err(bad_tag("d", "expected 64 lowercase hex characters".into()));
            }
            Some(value.to_owned())
        }
        None if addressable => return Err(Invalid::MissingTag("d")),
        _ => None,
    };
    let common = Common {
        ciphersuite_tag,
        ciphersuite,
        advertised_ref,
        slot,
        expiration: expiration(tags)?,
    };
    Ok((common, advertised_extensions))
}

fn check_protocol_version(tags: &Tags<'_>) -> Result<(), Invalid> {
    let protocol_version = single_value(tags.protocol_version, "mls_protocol_version")?;
    if protocol_version != "1.0" {
        return Err(bad_tag(
            "mls_protocol_version",
            format!("expected 1.0, got {protocol_version:?}"),
        ));
    }
    Ok(())
}

/// The NIP-40 `expiration` tag, when present.
fn expiration(tags: &Tags<'_>) -> Result<Option<u64>, Invalid> {
    let Some(values) = tags.expiration else {
        return Ok(None);
    };
    let value = single_value(Some(values), "expiration")?;
    value
        .parse::<u64>()
        .map(Some)
        .map_err(|_| bad_tag("expiration", format!("not a timestamp: {value:?}")))
}

/// What binds the KeyPackage to the event: the credential identity is the
/// author, the ciphersuite tag and the `i` tag are the KeyPackage's.
fn check_binding(event: &Event, parsed: &ParsedKeyPackage, common: &Common<'_>) -> Result<(), Invalid> {
    if parsed.identity.as_slice() != event.pubkey.to_bytes().as_slice() {
        return Err(Invalid::IdentityMismatch);
    }
    if parsed.ciphersuite != common.ciphersuite {
        return Err(Invalid::CiphersuiteMismatch {
            tag: common.ciphersuite_tag.to_owned(),
            actual: format_u16_code(parsed.ciphersuite),
        });
    }
    if let Some(advertised) = common.advertised_ref
        && advertised != parsed.keypackage_ref
    {
        return Err(Invalid::RefMismatch(parsed.keypackage_ref.clone()));
    }
    Ok(())
}

/// The current profile's rules on the KeyPackage itself: the leaf's
/// `0x8009` proof verifies for the author, and the id-list tags describe
/// the KeyPackage exactly (MDK's receiver compares `mls_extensions` with the
/// leaf's capabilities, `mls_proposals` with its proposals and
/// `app_components` with its private-use components, and refuses a
/// KeyPackage whose tags say otherwise).
fn check_current_keypackage(event: &Event, parsed: &ParsedKeyPackage, tags: &Tags<'_>) -> Result<(), Invalid> {
    let leaf = &parsed.leaf;
    let proof = leaf.component(APP_COMPONENT_ACCOUNT_IDENTITY_PROOF);
    if leaf.legacy_proof && proof.is_some() {
        return Err(ProofError::Mixed.into());
    }
    let proof = proof.ok_or(ProofError::Missing)?;
    let supported = match leaf.component(APP_COMPONENT_SUPPORTED) {
        Some(data) => decode_component_list(data).map_err(|e| MlsError::Parse(format!("leaf app_components: {e}")))?,
        None => Vec::new(),
    };
    if !supported.contains(&APP_COMPONENT_ACCOUNT_IDENTITY_PROOF) {
        return Err(ProofError::NotAdvertised.into());
    }
    verify_account_identity_proof(proof, &event.pubkey, parsed.ciphersuite, &leaf.signature_key)?;

    let private_components: Vec<u16> = supported
        .into_iter()
        .filter(|id| *id >= PRIVATE_USE_APP_COMPONENT_START)
        .collect();
    let lists = [
        (
            "mls_extensions",
            tags.extensions.map(|(_, v)| v),
            &leaf.capability_extensions,
        ),
        ("mls_proposals", tags.proposals, &leaf.capability_proposals),
        ("app_components", tags.app_components, &private_components),
    ];
    for (name, values, actual) in lists {
        let tagged: BTreeSet<u16> = values
            .unwrap_or_default()
            .iter()
            .filter_map(|v| strict_code(v))
            .collect();
        let actual_set: BTreeSet<u16> = actual.iter().copied().collect();
        if tagged != actual_set {
            return Err(Invalid::ListMismatch {
                tag: name,
                tagged: format_codes(&tagged),
                actual: format_codes(&actual_set),
            });
        }
    }
    Ok(())
}

fn format_codes(codes: &BTreeSet<u16>) -> String {
    if codes.is_empty() {
        return "nothing".into();
    }
    codes.iter().map(|c| format_u16_code(*c)).collect::<Vec<_>>().join(",")
}

/// Lifetime, `not_before` and `created_at` against `now`; gives when the
/// event stops being served.
fn check_times(
    event: &Event,
    parsed: &ParsedKeyPackage,
    expiration: Option<u64>,
    max_lifetime: u64,
    config: &ValidationConfig,
    now: u64,
) -> Result<u64, Invalid> {
    let lifetime = parsed.not_after.saturating_sub(parsed.not_before);
    if lifetime > max_lifetime {
        return Err(Invalid::LifetimeTooLong {
            lifetime,
            limit: max_lifetime,
        });
    }
    if parsed.not_before > now.saturating_add(config.future_skew_secs) {
        return Err(Invalid::NotYetValid(parsed.not_before));
    }
    let created_at = event.created_at.as_secs();
    if created_at > now.saturating_add(config.future_skew_secs) {
        return Err(Invalid::FromTheFuture {
            created_at,
            skew: config.future_skew_secs,
        });
    }
    let expires_at = [
        Some(parsed.not_after),
        expiration,
        Some(created_at.saturating_add(config.ttl_secs)),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(parsed.not_after);
    if expires_at <= now {
        return Err(Invalid::Expired);
    }
    Ok(expires_at)
}

fn bad_tag(tag: &'static str, reason: String) -> Invalid {
    Invalid::BadTag { tag, reason }
}

/// Collects the tags the service reads, refusing repeats of single-valued
/// ones (a repeated id-list tag is refused, never read first-only).
fn read_tags(event: &Event) -> Result<Tags<'_>, Invalid> {
    let mut tags = Tags::default();
    let mut seen = BTreeSet::new();
    for tag in event.tags.iter() {
        let Some((name, values)) = tag.as_slice().split_first() else {
            continue;
        };
        let name = name.as_str();
        if SINGLE_VALUED_TAGS.contains(&name) && !seen.insert(name) {
            return Err(Invalid::RepeatedTag(name.to_owned()));
        }
        let repeated = match name {
            "mls_ciphersuite" | "ciphersuite" => tags.ciphersuite.replace((name, values)).is_some(),
            "mls_extensions" | "extensions" => tags.extensions.replace((name, values)).is_some(),
            _ => {
                let slot = match name {
                    "mls_protocol_version" => &mut tags.protocol_version,
                    "mls_proposals" => &mut tags.proposals,
                    "app_components" => &mut tags.app_components,
                    "relays" => &mut tags.relays,
                    "i" => &mut tags.i,
                    "encoding" => &mut tags.encoding,
                    "d" => &mut tags.d,
                    "expiration" => &mut tags.expiration,
                    _ => continue,
                };
                slot.replace(values).is_some()
            }
        };
        if repeated {
            return Err(Invalid::RepeatedTag(name.to_owned()));
        }
    }
    Ok(tags)
}

/// The one value of a single-valued tag.
fn single_value<'a>(values: Option<&'a [String]>, name: &'static str) -> Result<&'a str, Invalid> {
    match values {
        None => Err(Invalid::MissingTag(name)),
        Some([value]) => Ok(value.as_str()),
        Some(_) => Err(bad_tag(name, "expected exactly one value".into())),
    }
}

/// A code point as the current profile writes it: `0x` and exactly four
/// lowercase hex digits.
fn strict_code(value: &str) -> Option<u16> {
    let digits = value.strip_prefix("0x")?;
    (digits.len() == 4 && digits.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .then(|| u16::from_str_radix(digits, 16).ok())
        .flatten()
}

/// A current-profile id list: at least one value, each a strict code point,
/// no repeats.
fn strict_code_list(values: &[String], name: &'static str) -> Result<Vec<u16>, Invalid> {
    if values.is_empty() {
        return Err(bad_tag(name, "lists no value".into()));
    }
    let mut seen = BTreeSet::new();
    values
        .iter()
        .map(|value| {
            let code = strict_code(value)
                .ok_or_else(|| bad_tag(name, format!("expected 0x and 4 lowercase hex digits, got {value:?}")))?;
            if !seen.insert(code) {
                return Err(bad_tag(name, format!("{value} is listed twice")));
            }
            Ok(code)
        })
        .collect()
}

/// Parses a list of code points, either one per value or one comma-joined
/// string (legacy NIP-EE).
fn parse_code_list(values: &[String], name: &'static str) -> Result<Vec<u16>, Invalid> {
    values
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(|value| parse_u16_code(value).ok_or_else(|| bad_tag(name, format!("not a code point: {value:?}"))))
        .collect()
}

/// Current-profile content: standard base64, whatever an `encoding` tag
/// says. Hex that also reads as base64 is named as hex, not misread.
fn decode_current_content(content: &str) -> Result<Vec<u8>, Invalid> {
    if content.is_empty() {
        return Err(Invalid::EmptyContent);
    }
    let looks_hex =
        |content: &str| hex::decode(content).is_ok_and(|bytes| bytes.starts_with(&MLS_MESSAGE_KEYPACKAGE_PREFIX));
    match BASE64_STRICT.decode(content) {
        Ok(bytes) if bytes.starts_with(&MLS_MESSAGE_KEYPACKAGE_PREFIX) || !looks_hex(content) => Ok(bytes),
        Ok(_) => Err(Invalid::HexContent),
        Err(_) if looks_hex(content) => Err(Invalid::HexContent),
        Err(_) => Err(Invalid::BadEncoding("base64")),
    }
}

/// Legacy content in the encoding its tags name; never guessed. Kind 30443
/// content is always base64: an `encoding` tag never switches its decoder.
fn decode_legacy_content(content: &str, encoding: Option<&[String]>, addressable: bool) -> Result<Vec<u8>, Invalid> {
    if content.is_empty() {
        return Err(Invalid::EmptyContent);
    }
    if addressable {
        return BASE64.decode(content).map_err(|_| Invalid::BadEncoding("base64"));
    }
    let encoding = match encoding {
        None => "hex",
        Some(values) => single_value(Some(values), "encoding")?,
    };
    match encoding {
        "base64" => BASE64.decode(content).map_err(|_| Invalid::BadEncoding("base64")),
        "hex" => hex::decode(content).map_err(|_| Invalid::BadEncoding("hex")),
        other => Err(bad_tag("encoding", format!("unknown encoding {other:?}"))),
    }
}
