//! Current-profile KeyPackage events, made the way MDK ≥ 0.9.7 makes them
//! (`cgka-engine` `Engine::fresh_key_package` and `transport-nostr-adapter`
//! `NostrKeyPackagePublication`): a kind 30443 with no `encoding` tag,
//! content the base64 of an MLSMessage, the leaf's `app_data_dictionary`
//! holding the supported components (`0x0001`), safe AAD (`0x0002`) and the
//! `0x8009` account-identity proof signed with the nostr key, and last resort
//! as component `0x0004` in the KeyPackage's own `app_data_dictionary`.
//!
//! Everything is made with the real libraries (OpenMLS for the KeyPackage,
//! nostr's `EventBuilder` for the proof template) and none of the service's
//! code, so the validator is checked against an independent maker; the bytes
//! are also cross-checked with MDK's own events in kp-domain's vectors.

use base64::Engine as _;
use nostr::prelude::{EventBuilder, FinalizeEvent as _, Keys, Kind, Tag, Timestamp};
use openmls::prelude::{
    BasicCredential, Capabilities, Ciphersuite, CredentialWithKey, Extension, ExtensionType, Extensions, KeyPackage,
    Lifetime, ProposalType, UnknownExtension,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider as _;
use tls_codec::Serialize as _;

use crate::NOW;
use crate::factory::Owner;

/// The app components a current MDK leaf lists as supported (private use,
/// as its `app_components` tag names them), `0x8009` among them.
pub const MDK_APP_COMPONENTS: [u16; 11] = [
    0x8001, 0x8002, 0x8003, 0x8004, 0x8005, 0x8006, 0x8007, 0x8008, 0x8009, 0x800b, 0x800c,
];

/// The extension types a current MDK leaf lists in its capabilities.
pub const MDK_EXTENSIONS: [u16; 5] = [0x0003, 0x0006, 0xf2d1, 0xf2d2, 0xf2d4];

/// The proposal types a current MDK leaf lists in its capabilities.
pub const MDK_PROPOSALS: [u16; 2] = [0x0008, 0x000a];

/// What the leaf's `0x8009` proof is.
#[derive(Debug, Clone, Default)]
pub enum ProofMode {
    /// A correct proof by the owner's key.
    #[default]
    Valid,
    /// The owner's proof with the signature's last byte flipped.
    BadSignature,
    /// A correct proof for this leaf, but by another account's key.
    OtherSigner(Keys),
    /// No `0x8009` component, and the leaf does not list it as supported.
    Missing,
}

/// How to make a current-profile KeyPackage.
#[derive(Debug, Clone)]
pub struct CurrentSpec {
    /// Mark it last resort with component `0x0004` (MDK marks every one).
    pub last_resort: bool,
    /// Lifetime `not_before`.
    pub not_before: u64,
    /// Lifetime `not_after`.
    pub not_after: u64,
    /// The account-identity proof.
    pub proof: ProofMode,
}

impl Default for CurrentSpec {
    fn default() -> Self {
        Self::last_resort_at(NOW)
    }
}

impl CurrentSpec {
    /// A last resort, as MDK makes them: valid from an hour before `now`
    /// for 84 days and one hour (the profile's longest lifetime).
    pub fn last_resort_at(now: u64) -> Self {
        Self {
            last_resort: true,
            not_before: now - 3_600,
            not_after: now - 3_600 + 7_261_200,
            proof: ProofMode::Valid,
        }
    }

    /// A one-time KeyPackage (same capabilities and proof, no `0x0004`).
    pub fn one_time_at(now: u64) -> Self {
        Self {
            last_resort: false,
            ..Self::last_resort_at(now)
        }
    }
}

/// A current-profile KeyPackage made for tests.
#[derive(Debug, Clone)]
pub struct CurrentKeyPackage {
    /// The TLS-encoded bare KeyPackage.
    pub bytes: Vec<u8>,
    /// Its KeyPackageRef, lowercase hex.
    pub keypackage_ref: String,
    /// The extension types of the leaf's capabilities, GREASE left out.
    pub extensions: Vec<u16>,
    /// The proposal types of the leaf's capabilities.
    pub proposals: Vec<u16>,
    /// The spec it was made from.
    pub spec: CurrentSpec,
}

/// `struct { uint16 component_id; opaque data<V>; } ComponentData`.
#[derive(Debug, tls_codec::TlsSerialize, tls_codec::TlsSize)]
struct ComponentData {
    component_id: u16,
    data: tls_codec::VLBytes,
}

/// An `app_data_dictionary` extension's data: its entries sorted by id.
fn dictionary(mut entries: Vec<(u16, Vec<u8>)>) -> Vec<u8> {
    entries.sort_by_key(|(id, _)| *id);
    entries
        .into_iter()
        .map(|(component_id, data)| ComponentData {
            component_id,
            data: data.into(),
        })
        .collect::<Vec<_>>()
        .tls_serialize_detached()
        .expect("dictionary")
}

/// A component list (`uint16 ids<V>`), sorted.
fn component_list(ids: &[u16]) -> Vec<u8> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    tls_codec::VLBytes::from(bytes).tls_serialize_detached().expect("list")
}

/// The 104-byte `0x8009` proof: the signer's x-only key, `created_at` big
/// endian and the BIP-340 signature of the kind-450 template's id.
fn proof(signer: &Keys, ciphersuite: Ciphersuite, mls_signature_key: &[u8], created_at: u64) -> Vec<u8> {
    let tag = |name: &str, value: String| Tag::parse([name.to_string(), value]).expect("two-value tag");
    let template = EventBuilder::new(Kind::Custom(450), "Authorize this MLS leaf key for my Marmot account")
        .tags([
            tag("d", "marmot.account-identity-proof.v2".into()),
            tag("component", "0x8009".into()),
            tag("ciphersuite", format!("0x{:04x}", u16::from(ciphersuite))),
            tag(
                "signature_scheme",
                format!("0x{:04x}", ciphersuite.signature_algorithm() as u16),
            ),
            tag("mls_signature_key", hex::encode(mls_signature_key)),
        ])
        .custom_created_at(Timestamp::from_secs(created_at))
        .finalize(signer)
        .expect("sign the proof template");
    let mut out = signer.public_key().to_bytes().to_vec();
    out.extend_from_slice(&created_at.to_be_bytes());
    out.extend_from_slice(template.sig.as_bytes());
    out
}

impl Owner {
    /// Makes a current-profile KeyPackage for this owner.
    pub fn current_keypackage(&self, spec: CurrentSpec) -> CurrentKeyPackage {
        let ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(ciphersuite.signature_algorithm()).expect("signature keys");
        let credential = CredentialWithKey {
            credential: BasicCredential::new(self.pubkey_bytes()).into(),
            signature_key: signer.public().to_vec().into(),
        };
        let mut supported = vec![0x0001, 0x0002];
        supported.extend(
            MDK_APP_COMPONENTS
                .iter()
                .filter(|id| !matches!(spec.proof, ProofMode::Missing) || **id != 0x8009),
        );
        let mut leaf_entries = vec![(0x0001, component_list(&supported)), (0x0002, component_list(&[]))];
        let created_at = spec.not_before;
        match &spec.proof {
            ProofMode::Valid => {
                leaf_entries.push((0x8009, proof(&self.keys, ciphersuite, signer.public(), created_at)))
            }
            ProofMode::BadSignature => {
                let mut data = proof(&self.keys, ciphersuite, signer.public(), created_at);
                *data.last_mut().expect("104 bytes") ^= 0x01;
                leaf_entries.push((0x8009, data));
            }
            ProofMode::OtherSigner(other) => {
                leaf_entries.push((0x8009, proof(other, ciphersuite, signer.public(), created_at)));
            }
            ProofMode::Missing => {}
        }
        let extension_types: Vec<ExtensionType> = MDK_EXTENSIONS.iter().map(|e| ExtensionType::from(*e)).collect();
        let proposal_types: Vec<ProposalType> = MDK_PROPOSALS.iter().map(|p| ProposalType::from(*p)).collect();
        let mut builder = KeyPackage::builder()
            .key_package_lifetime(Lifetime::init(spec.not_before, spec.not_after))
            .leaf_node_capabilities(Capabilities::new(
                None,
                None,
                Some(&extension_types),
                Some(&proposal_types),
                None,
            ))
            .leaf_node_extensions(
                Extensions::single(Extension::Unknown(0x0006, UnknownExtension(dictionary(leaf_entries))))
                    .expect("one leaf extension"),
            );
        if spec.last_resort {
            builder = builder.key_package_extensions(
                Extensions::single(Extension::Unknown(
                    0x0006,
                    UnknownExtension(dictionary(vec![(0x0004, Vec::new())])),
                ))
                .expect("one extension"),
            );
        }
        let bundle = builder
            .build(ciphersuite, &provider, &signer, credential)
            .expect("build keypackage");
        let key_package = bundle.key_package();
        let capabilities = key_package.leaf_node().capabilities();
        CurrentKeyPackage {
            bytes: key_package.tls_serialize_detached().expect("serialize"),
            keypackage_ref: hex::encode(key_package.hash_ref(provider.crypto()).expect("hash ref").as_slice()),
            extensions: capabilities
                .extensions()
                .iter()
                .filter(|e| !e.is_grease())
                .map(|e| u16::from(*e))
                .collect(),
            proposals: capabilities.proposals().iter().map(|p| u16::from(*p)).collect(),
            spec,
        }
    }
}

fn codes(name: &str, values: impl IntoIterator<Item = u16>) -> Vec<String> {
    let mut values: Vec<u16> = values.into_iter().collect();
    values.sort_unstable();
    values.dedup();
    std::iter::once(name.to_string())
        .chain(values.into_iter().map(|v| format!("0x{v:04x}")))
        .collect()
}

impl CurrentKeyPackage {
    /// Base64 (standard, padded) of the MLSMessage-framed KeyPackage.
    pub fn content(&self) -> String {
        let mut framed = vec![0x00, 0x01, 0x00, 0x05];
        framed.extend_from_slice(&self.bytes);
        base64::engine::general_purpose::STANDARD.encode(framed)
    }

    /// Base64 of the bare KeyPackage (what the current profile refuses).
    pub fn bare_content(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    /// The tags MDK writes, in its order, for slot `d`.
    pub fn tags(&self, d: &str) -> Vec<Vec<String>> {
        vec![
            vec!["d".into(), d.into()],
            vec!["mls_protocol_version".into(), "1.0".into()],
            vec!["i".into(), self.keypackage_ref.clone()],
            vec!["mls_ciphersuite".into(), "0x0001".into()],
            codes("mls_extensions", self.extensions.iter().copied()),
            codes("mls_proposals", self.proposals.iter().copied()),
            codes("app_components", MDK_APP_COMPONENTS),
        ]
    }

    /// The kind 30443 event in slot `d`, signed by `owner`.
    pub fn event(&self, owner: &Owner, d: &str, created_at: u64) -> String {
        owner.sign(30443, &self.tags(d), &self.content(), created_at)
    }
}

/// A random device slot id: 64 lowercase hex characters, as MDK makes them.
pub fn random_slot() -> String {
    Keys::generate().public_key().to_hex()
}
