//! The account-identity proof of the current Marmot profile (app component
//! `0x8009`, `marmot.member.account-identity-proof.v2`).
//!
//! The MLS BasicCredential names the nostr account, but the leaf signs with
//! its own MLS key. The proof binds the two: the account key signs (BIP-340)
//! the id of a kind-450 event that is never published, whose tags name the
//! ciphersuite, its signature scheme and the leaf's MLS signature key. The
//! component's data is 104 bytes: the signer's x-only pubkey (32), the
//! template's `created_at` as u64 big-endian (8) and the signature (64).
//! The template is rebuilt here exactly as MDK's `AccountIdentityProofRequest`
//! builds it, and the receiver gives proofs no age limit (as MDK).

use nostr::prelude::{Event, EventId, Kind, PublicKey, Signature, Tag, Tags, Timestamp};
use openmls::prelude::Ciphersuite;

use crate::mls::APP_COMPONENT_ACCOUNT_IDENTITY_PROOF;

/// Kind of the unpublished template event the proof signs.
pub const PROOF_TEMPLATE_KIND: u16 = 450;

/// The template's `d` tag.
pub const PROOF_DOMAIN: &str = "marmot.account-identity-proof.v2";

/// The template's content.
pub const PROOF_CONTENT: &str = "Authorize this MLS leaf key for my Marmot account";

/// Length of the component's data.
pub const PROOF_LEN: usize = 32 + 8 + 64;

/// Largest `created_at` NIP-01 allows (an integer JSON can carry exactly).
const MAX_NIP01_TIMESTAMP: u64 = (1 << 53) - 1;

/// Why an account-identity proof was refused. `Display` gives the text after
/// `account identity proof: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf carries no `0x8009` component.
    #[error("missing: the leaf carries no 0x8009 component")]
    Missing,
    /// The leaf's own app_components list does not name `0x8009`.
    #[error("0x8009 is not listed in the leaf's app_components")]
    NotAdvertised,
    /// The leaf carries the legacy `0xf2f1` proof as well.
    #[error("the leaf mixes the legacy 0xf2f1 proof with 0x8009")]
    Mixed,
    /// The data is not 104 bytes.
    #[error("must be {PROOF_LEN} bytes, got {0}")]
    BadLength(usize),
    /// The signer is not the credential identity (the event's pubkey).
    #[error("signed by another key")]
    OtherSigner,
    /// `created_at` is outside NIP-01's range.
    #[error("created_at {0} is out of range")]
    BadTimestamp(u64),
    /// The ciphersuite has no known signature scheme.
    #[error("unknown ciphersuite {0:#06x}")]
    UnknownCiphersuite(u16),
    /// The BIP-340 signature does not verify.
    #[error("bad signature")]
    BadSignature,
}

/// Builds the kind-450 template the proof signs: its id is the message.
pub fn proof_template_id(
    signer: &PublicKey,
    created_at: u64,
    ciphersuite: u16,
    signature_scheme: u16,
    mls_signature_key: &[u8],
) -> (EventId, Tags) {
    let tags = Tags::from_list(vec![
        Tag::parse(["d", PROOF_DOMAIN]).expect("static tag"),
        Tag::parse([
            "component".to_string(),
            format!("0x{APP_COMPONENT_ACCOUNT_IDENTITY_PROOF:04x}"),
        ])
        .expect("static tag"),
        Tag::parse(["ciphersuite".to_string(), format!("0x{ciphersuite:04x}")]).expect("static tag"),
        Tag::parse(["signature_scheme".to_string(), format!("0x{signature_scheme:04x}")]).expect("static tag"),
        Tag::parse(["mls_signature_key".to_string(), hex::encode(mls_signature_key)]).expect("static tag"),
    ]);
    let id = EventId::new(
        signer,
        &Timestamp::from_secs(created_at),
        &Kind::from(PROOF_TEMPLATE_KIND),
        &tags,
        PROOF_CONTENT,
    );
    (id, tags)
}

/// The signature scheme code point of a ciphersuite.
pub fn signature_scheme_of(ciphersuite: u16) -> Result<u16, ProofError> {
    let suite = Ciphersuite::try_from(ciphersuite).map_err(|_| ProofError::UnknownCiphersuite(ciphersuite))?;
    Ok(suite.signature_algorithm() as u16)
}

/// Verifies the `0x8009` component's data for a leaf whose credential
/// identity is `identity` and whose MLS signature key is `mls_signature_key`.
pub fn verify_account_identity_proof(
    data: &[u8],
    identity: &PublicKey,
    ciphersuite: u16,
    mls_signature_key: &[u8],
) -> Result<(), ProofError> {
    if data.len() != PROOF_LEN {
        return Err(ProofError::BadLength(data.len()));
    }
    if data[..32] != identity.to_bytes() {
        return Err(ProofError::OtherSigner);
    }
    let created_at = u64::from_be_bytes(data[32..40].try_into().expect("8 bytes"));
    if !(1..=MAX_NIP01_TIMESTAMP).contains(&created_at) {
        return Err(ProofError::BadTimestamp(created_at));
    }
    let signature = Signature::from_slice(&data[40..]).map_err(|_| ProofError::BadSignature)?;
    let scheme = signature_scheme_of(ciphersuite)?;
    let (id, tags) = proof_template_id(identity, created_at, ciphersuite, scheme, mls_signature_key);
    let template = Event::new(
        id,
        *identity,
        Timestamp::from_secs(created_at),
        Kind::from(PROOF_TEMPLATE_KIND),
        tags,
        PROOF_CONTENT,
        signature,
    );
    if template.verify_signature() {
        Ok(())
    } else {
        Err(ProofError::BadSignature)
    }
}
