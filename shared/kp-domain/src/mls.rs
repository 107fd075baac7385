//! The MLS half of validation: parse and verify a TLS-encoded KeyPackage with
//! OpenMLS and read off what the service needs (owner, ciphersuite, lifetime,
//! last resort, KeyPackageRef).

use openmls::credentials::{BasicCredential, CredentialType};
use openmls::prelude::{KeyPackage, KeyPackageIn, KeyPackageVerifyError, ProtocolVersion};
use openmls_rust_crypto::RustCrypto;
use tls_codec::Deserialize as _;

/// MLSMessage framing of a KeyPackage: protocol version `mls10` then wire
/// format `mls_key_package`.
pub const MLS_MESSAGE_KEYPACKAGE_PREFIX: [u8; 4] = [0x00, 0x01, 0x00, 0x05];

/// The last_resort KeyPackage extension (RFC 9420 registry, MDK 0.7/0.8).
pub const EXTENSION_LAST_RESORT: u16 = 0x000a;

/// The app component id that marks a last resort KeyPackage in the newest
/// Marmot profile (inside the `app_data_dictionary` extension).
pub const APP_COMPONENT_LAST_RESORT: u16 = 0x0004;

/// The `app_data_dictionary` extension of the MLS extensions draft, which
/// carries app components in the newest Marmot profile.
pub const EXTENSION_APP_DATA_DICTIONARY: u16 = 0x0006;

/// The app component that lists the components a leaf supports
/// (`app_components`, inside the leaf's `app_data_dictionary`).
pub const APP_COMPONENT_SUPPORTED: u16 = 0x0001;

/// The app component carrying the account-identity proof
/// (`marmot.member.account-identity-proof.v2`).
pub const APP_COMPONENT_ACCOUNT_IDENTITY_PROOF: u16 = 0x8009;

/// The legacy account-identity proof LeafNode extension, which the current
/// profile does not accept in place of `0x8009`.
pub const EXTENSION_LEGACY_IDENTITY_PROOF: u16 = 0xf2f1;

/// The first private-use app component id: the ids a KeyPackage event's
/// `app_components` tag lists.
pub const PRIVATE_USE_APP_COMPONENT_START: u16 = 0x8000;

/// One entry of an `app_data_dictionary`: `struct { uint16 component_id;
/// opaque data<V>; } ComponentData`.
#[derive(tls_codec::TlsDeserialize, tls_codec::TlsSize)]
struct ComponentData {
    component_id: u16,
    data: tls_codec::VLBytes,
}

/// The entries of an `app_data_dictionary` extension's data
/// (`ComponentData component_data<V>`), in order. OpenMLS parses this
/// extension only behind a draft feature its storage crates do not build
/// with yet.
fn app_data_dictionary(data: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, MlsError> {
    let entries = Vec::<ComponentData>::tls_deserialize_exact(data)
        .map_err(|e| MlsError::Parse(format!("app_data_dictionary: {e}")))?;
    Ok(entries
        .into_iter()
        .map(|entry| (entry.component_id, entry.data.as_slice().to_vec()))
        .collect())
}

/// Decodes an `app_components` list (`uint16 component_ids<V>`): sorted, no
/// repeats, as MDK writes and requires it.
pub fn decode_component_list(data: &[u8]) -> Result<Vec<u16>, String> {
    let bytes = tls_codec::VLBytes::tls_deserialize_exact(data).map_err(|e| format!("not a component list: {e}"))?;
    let bytes = bytes.as_slice();
    if bytes.len() % 2 != 0 {
        return Err("component list has an odd length".into());
    }
    let ids: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    if ids.windows(2).any(|pair| pair[0] >= pair[1]) {
        return Err("component list is not sorted or repeats an id".into());
    }
    Ok(ids)
}

/// What the current profile reads off the KeyPackage's LeafNode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeafInfo {
    /// The MLS signature key the leaf signs with.
    pub signature_key: Vec<u8>,
    /// Extension types in the leaf's capabilities, GREASE left out.
    pub capability_extensions: Vec<u16>,
    /// Proposal types in the leaf's capabilities.
    pub capability_proposals: Vec<u16>,
    /// The leaf's `app_data_dictionary` entries, when it has one.
    pub app_data: Option<Vec<(u16, Vec<u8>)>>,
    /// Whether the leaf carries the legacy `0xf2f1` proof extension.
    pub legacy_proof: bool,
}

impl LeafInfo {
    /// The data of one app component of the leaf.
    pub fn component(&self, id: u16) -> Option<&[u8]> {
        self.app_data
            .as_ref()?
            .iter()
            .find(|(component, _)| *component == id)
            .map(|(_, data)| data.as_slice())
    }
}

/// What the service reads off a verified KeyPackage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKeyPackage {
    /// The BasicCredential identity: for Marmot, the owner's 32-byte pubkey.
    pub identity: Vec<u8>,
    /// The MLS ciphersuite code point.
    pub ciphersuite: u16,
    /// `not_before` of the leaf node lifetime, seconds since the epoch.
    pub not_before: u64,
    /// `not_after` of the leaf node lifetime, seconds since the epoch.
    pub not_after: u64,
    /// Whether the KeyPackage marks itself reusable (extension `0x000a` or app
    /// component `0x0004`).
    pub last_resort: bool,
    /// Whether the last resort mark is the `0x000a` extension.
    pub last_resort_extension: bool,
    /// The KeyPackageRef, lowercase hex.
    pub keypackage_ref: String,
    /// Whether the bytes were an MLSMessage (`mls_key_package`) rather than
    /// a bare KeyPackage.
    pub framed: bool,
    /// What the leaf says about itself.
    pub leaf: LeafInfo,
}

/// Why a KeyPackage was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MlsError {
    /// The bytes are not a TLS-encoded KeyPackage.
    #[error("keypackage does not parse: {0}")]
    Parse(String),
    /// OpenMLS refused it (signatures, protocol version, keys, extensions).
    #[error("keypackage fails MLS validation: {0}")]
    Verify(String),
    /// The credential is not a BasicCredential.
    #[error("keypackage credential is not a basic credential")]
    NotBasicCredential,
}

/// Parses and verifies a KeyPackage, bare or MLSMessage-framed.
///
/// OpenMLS's `validate` checks both signatures, the protocol version, that the
/// init key differs from the encryption key, that extensions are listed in the
/// capabilities, and, last, the lifetime against the system clock. Validation
/// here must not read a clock, so a lifetime error from OpenMLS (which means
/// every other check passed) is set aside: the caller checks the lifetime
/// against its own `now`.
pub fn parse_keypackage(bytes: &[u8]) -> Result<ParsedKeyPackage, MlsError> {
    let (bare, framed) = match bytes.strip_prefix(&MLS_MESSAGE_KEYPACKAGE_PREFIX) {
        // A bare KeyPackage of ciphersuite 0x0005 starts with the same four
        // bytes, so a framed reading that fails falls back to the bare one.
        Some(inner) if KeyPackageIn::tls_deserialize_exact(inner).is_ok() => (inner, true),
        _ => (bytes, false),
    };
    let key_package_in = KeyPackageIn::tls_deserialize_exact(bare).map_err(|e| MlsError::Parse(e.to_string()))?;
    let crypto = RustCrypto::default();
    let key_package: KeyPackage = match key_package_in.clone().validate(&crypto, ProtocolVersion::Mls10) {
        Ok(key_package) => key_package,
        Err(KeyPackageVerifyError::LifetimeError(_)) => key_package_in.into_unchecked(),
        Err(other) => return Err(MlsError::Verify(other.to_string())),
    };

    let credential = key_package.leaf_node().credential();
    if credential.credential_type() != CredentialType::Basic {
        return Err(MlsError::NotBasicCredential);
    }
    let identity = BasicCredential::try_from(credential.clone())
        .map_err(|_| MlsError::NotBasicCredential)?
        .identity()
        .to_vec();

    let lifetime = key_package.life_time();
    let extensions = key_package.extensions();
    let last_resort_extension = key_package.last_resort();
    let last_resort_component = match extensions.unknown(EXTENSION_APP_DATA_DICTIONARY) {
        Some(ext) => app_data_dictionary(&ext.0)?
            .iter()
            .any(|(id, _)| *id == APP_COMPONENT_LAST_RESORT),
        None => false,
    };
    let leaf_node = key_package.leaf_node();
    let capabilities = leaf_node.capabilities();
    let leaf = LeafInfo {
        signature_key: leaf_node.signature_key().as_slice().to_vec(),
        capability_extensions: capabilities
            .extensions()
            .iter()
            .filter(|ext| !ext.is_grease())
            .map(|ext| u16::from(*ext))
            .collect(),
        capability_proposals: capabilities.proposals().iter().map(|p| u16::from(*p)).collect(),
        app_data: leaf_node
            .extensions()
            .unknown(EXTENSION_APP_DATA_DICTIONARY)
            .map(|ext| app_data_dictionary(&ext.0))
            .transpose()?,
        legacy_proof: leaf_node
            .extensions()
            .unknown(EXTENSION_LEGACY_IDENTITY_PROOF)
            .is_some(),
    };
    let keypackage_ref = key_package
        .hash_ref(&crypto)
        .map_err(|e| MlsError::Verify(e.to_string()))?;

    Ok(ParsedKeyPackage {
        identity,
        ciphersuite: u16::from(key_package.ciphersuite()),
        not_before: lifetime.not_before(),
        not_after: lifetime.not_after(),
        last_resort: last_resort_extension || last_resort_component,
        last_resort_extension,
        keypackage_ref: hex::encode(keypackage_ref.as_slice()),
        framed,
        leaf,
    })
}
