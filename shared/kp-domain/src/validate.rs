//! Validation of kind 443 and kind 30443 KeyPackage events (DESIGN.md section
//! 5), cheapest check first. A pure function of (event, config, now).

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use nostr::prelude::{Event, RelayUrl};

use crate::config::ValidationConfig;
use crate::ids::{format_u16_code, is_lower_hex64, parse_u16_code};
use crate::mls::{EXTENSION_LAST_RESORT, MlsError, parse_keypackage};
use crate::{KIND_KEYPACKAGE, KIND_KEYPACKAGE_ADDRESSABLE};

/// Most tags a KeyPackage event may carry.
pub const MAX_TAGS: usize = 64;

/// Most values one tag may carry (the relay list is the longest in practice).
pub const MAX_TAG_VALUES: usize = 32;

/// Tags that may appear at most once.
const SINGLE_VALUED_TAGS: &[&str] = &[
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

/// Base64 as MDK writes it, accepting input with or without padding.
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
}

/// The tags of a KeyPackage event, read once.
#[derive(Default)]
struct Tags<'a> {
    protocol_version: Option<&'a [String]>,
    ciphersuite: Option<&'a [String]>,
    extensions: Option<&'a [String]>,
    proposals: Option<&'a [String]>,
    relays: Option<&'a [String]>,
    i: Option<&'a [String]>,
    encoding: Option<&'a [String]>,
    d: Option<&'a [String]>,
    expiration: Option<&'a [String]>,
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
    let addressable = kind == KIND_KEYPACKAGE_ADDRESSABLE;

    let tags = read_tags(&event)?;
    let protocol_version = single_value(tags.protocol_version, "mls_protocol_version")?;
    if protocol_version != "1.0" {
        return Err(bad_tag(
            "mls_protocol_version",
            format!("expected 1.0, got {protocol_version:?}"),
        ));
    }
    let ciphersuite_tag = single_value(tags.ciphersuite, "mls_ciphersuite")?;
    let tag_ciphersuite = parse_u16_code(ciphersuite_tag).ok_or_else(|| {
        bad_tag(
            "mls_ciphersuite",
            format!("not a ciphersuite code: {ciphersuite_tag:?}"),
        )
    })?;
    let advertised_extensions = parse_code_list(
        tags.extensions.ok_or(Invalid::MissingTag("mls_extensions"))?,
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
    let expiration = match tags.expiration {
        Some(values) => {
            let value = single_value(Some(values), "expiration")?;
            Some(
                value
                    .parse::<u64>()
                    .map_err(|_| bad_tag("expiration", format!("not a timestamp: {value:?}")))?,
            )
        }
        None => None,
    };

    let bytes = decode_content(&event.content, tags.encoding, addressable)?;
    let parsed = parse_keypackage(&bytes)?;
    if parsed.identity.as_slice() != event.pubkey.to_bytes().as_slice() {
        return Err(Invalid::IdentityMismatch);
    }
    if parsed.ciphersuite != tag_ciphersuite {
        return Err(Invalid::CiphersuiteMismatch {
            tag: ciphersuite_tag.to_owned(),
            actual: format_u16_code(parsed.ciphersuite),
        });
    }
    if let Some(advertised) = advertised_ref
        && advertised != parsed.keypackage_ref
    {
        return Err(Invalid::RefMismatch(parsed.keypackage_ref));
    }
    if config.require_last_resort
        && parsed.last_resort_extension
        && !advertised_extensions.contains(&EXTENSION_LAST_RESORT)
    {
        return Err(Invalid::LastResortNotAdvertised);
    }
    let lifetime = parsed.not_after.saturating_sub(parsed.not_before);
    if lifetime > config.max_lifetime_secs {
        return Err(Invalid::LifetimeTooLong {
            lifetime,
            limit: config.max_lifetime_secs,
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

    Ok(KeyPackageEvent {
        json: event.as_json(),
        id: event.id.to_hex(),
        owner: event.pubkey.to_hex(),
        kind,
        created_at,
        keypackage_ref: parsed.keypackage_ref,
        ciphersuite: parsed.ciphersuite,
        last_resort: parsed.last_resort,
        not_after: parsed.not_after,
        expires_at,
        slot,
        event,
    })
}

fn bad_tag(tag: &'static str, reason: String) -> Invalid {
    Invalid::BadTag { tag, reason }
}

/// Collects the tags the service reads, refusing repeats of single-valued ones.
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
        let slot = match name {
            "mls_protocol_version" => &mut tags.protocol_version,
            "mls_ciphersuite" | "ciphersuite" => &mut tags.ciphersuite,
            "mls_extensions" | "extensions" => &mut tags.extensions,
            "mls_proposals" => &mut tags.proposals,
            "relays" => &mut tags.relays,
            "i" => &mut tags.i,
            "encoding" => &mut tags.encoding,
            "d" => &mut tags.d,
            "expiration" => &mut tags.expiration,
            _ => continue,
        };
        // The current and the legacy name of one tag together are a repeat.
        if slot.is_some() {
            return Err(Invalid::RepeatedTag(name.to_owned()));
        }
        *slot = Some(values);
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

/// Decodes the content in the encoding its tags name; never guesses.
fn decode_content(content: &str, encoding: Option<&[String]>, addressable: bool) -> Result<Vec<u8>, Invalid> {
    if content.is_empty() {
        return Err(Invalid::EmptyContent);
    }
    let encoding = match encoding {
        None if addressable => return Err(Invalid::MissingTag("encoding")),
        None => "hex",
        Some(values) => single_value(Some(values), "encoding")?,
    };
    match encoding {
        "base64" => BASE64.decode(content).map_err(|_| Invalid::BadEncoding("base64")),
        "hex" if addressable => Err(bad_tag("encoding", "kind 30443 content must be base64".into())),
        "hex" => hex::decode(content).map_err(|_| Invalid::BadEncoding("hex")),
        other => Err(bad_tag("encoding", format!("unknown encoding {other:?}"))),
    }
}
