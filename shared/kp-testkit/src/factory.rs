//! Real KeyPackages, made with OpenMLS the way MDK makes them (BasicCredential
//! holding the 32-byte nostr pubkey, ciphersuite 0x0001, last_resort marked),
//! and the nostr events that carry them, signed with real keys.

use base64::Engine as _;
use nostr::prelude::{EventBuilder, FinalizeEvent as _, Keys, Kind, Tag, Timestamp};
use openmls::prelude::{
    BasicCredential, Capabilities, Ciphersuite, CredentialWithKey, Extension, ExtensionType, Extensions, KeyPackage,
    Lifetime, UnknownExtension,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider as _;
use tls_codec::Serialize as _;

use crate::NOW;

/// A nostr identity that owns KeyPackages.
#[derive(Debug, Clone)]
pub struct Owner {
    /// The nostr keys.
    pub keys: Keys,
}

impl Default for Owner {
    fn default() -> Self {
        Self::new()
    }
}

impl Owner {
    /// A fresh random identity.
    pub fn new() -> Self {
        Self { keys: Keys::generate() }
    }

    /// The pubkey, lowercase hex.
    pub fn pubkey(&self) -> String {
        self.keys.public_key().to_hex()
    }

    /// The raw 32-byte pubkey.
    pub fn pubkey_bytes(&self) -> Vec<u8> {
        self.keys.public_key().to_bytes().to_vec()
    }

    /// Signs an event with the given kind, tags, content and `created_at`.
    pub fn sign(&self, kind: u16, tags: &[Vec<String>], content: &str, created_at: u64) -> String {
        let tags = tags
            .iter()
            .map(|t| Tag::parse(t.clone()).expect("non-empty tag"))
            .collect::<Vec<_>>();
        EventBuilder::new(Kind::from(kind), content)
            .tags(tags)
            .custom_created_at(Timestamp::from(created_at))
            .finalize(&self.keys)
            .expect("signing with local keys")
            .as_json()
    }

    /// Makes a KeyPackage for this owner.
    pub fn keypackage(&self, spec: KeyPackageSpec) -> MadeKeyPackage {
        make_keypackage(&self.pubkey_bytes(), spec)
    }

    /// A Welcome (kind 444) naming a KeyPackage event.
    pub fn welcome(&self, keypackage_event_id: &str, created_at: u64) -> String {
        self.sign(
            444,
            &[vec!["e".into(), keypackage_event_id.into()]],
            "d2VsY29tZQ==",
            created_at,
        )
    }

    /// A NIP-98 `Authorization` header value for `method` on `url`, hashing
    /// `payload` when given.
    pub fn nip98(&self, url: &str, method: &str, payload: Option<&[u8]>, created_at: u64) -> String {
        use sha2::Digest as _;
        let mut tags = vec![
            vec!["u".to_string(), url.to_string()],
            vec!["method".into(), method.into()],
        ];
        if let Some(body) = payload {
            tags.push(vec!["payload".into(), hex::encode(sha2::Sha256::digest(body))]);
        }
        let event = self.sign(27235, &tags, "", created_at);
        format!("Nostr {}", base64::engine::general_purpose::STANDARD.encode(event))
    }

    /// A NIP-09 deletion (kind 5) of events by id and of 30443 slots by `d`.
    pub fn deletion(&self, event_ids: &[&str], slots: &[&str], created_at: u64) -> String {
        let mut tags: Vec<Vec<String>> = event_ids.iter().map(|id| vec!["e".into(), (*id).into()]).collect();
        tags.extend(
            slots
                .iter()
                .map(|d| vec!["a".into(), format!("30443:{}:{d}", self.pubkey())]),
        );
        tags.push(vec!["k".into(), "443".into()]);
        self.sign(5, &tags, "", created_at)
    }
}

/// How to make a KeyPackage.
#[derive(Debug, Clone, Copy)]
pub struct KeyPackageSpec {
    /// MLS ciphersuite.
    pub ciphersuite: Ciphersuite,
    /// Mark it last resort with extension 0x000a (as MDK 0.7/0.8 does).
    pub last_resort: bool,
    /// Mark it last resort with app component 0x0004 (newest profile).
    pub last_resort_component: bool,
    /// Lifetime `not_before`.
    pub not_before: u64,
    /// Lifetime `not_after`.
    pub not_after: u64,
}

impl Default for KeyPackageSpec {
    fn default() -> Self {
        Self {
            ciphersuite: Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
            last_resort: false,
            last_resort_component: false,
            not_before: NOW - 3_600,
            not_after: NOW + 84 * 86_400,
        }
    }
}

impl KeyPackageSpec {
    /// A one-time KeyPackage valid around [`NOW`].
    pub fn one_time() -> Self {
        Self::default()
    }

    /// A one-time KeyPackage valid around `now` (84 days, as OpenMLS's default).
    pub fn one_time_at(now: u64) -> Self {
        Self {
            not_before: now - 3_600,
            not_after: now + 84 * 86_400,
            ..Self::default()
        }
    }

    /// A last resort KeyPackage (extension 0x000a) valid around [`NOW`].
    pub fn last_resort() -> Self {
        Self {
            last_resort: true,
            ..Self::default()
        }
    }
}

/// A KeyPackage made for tests.
#[derive(Debug, Clone)]
pub struct MadeKeyPackage {
    /// The TLS-encoded KeyPackage.
    pub bytes: Vec<u8>,
    /// Its KeyPackageRef, lowercase hex.
    pub keypackage_ref: String,
    /// The spec it was made from.
    pub spec: KeyPackageSpec,
}

/// Makes a KeyPackage whose BasicCredential holds `identity`.
pub fn make_keypackage(identity: &[u8], spec: KeyPackageSpec) -> MadeKeyPackage {
    let provider = OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(spec.ciphersuite.signature_algorithm()).expect("signature keys");
    let credential = CredentialWithKey {
        credential: BasicCredential::new(identity.to_vec()).into(),
        signature_key: signer.public().to_vec().into(),
    };
    let mut extension_types = Vec::new();
    let mut builder = KeyPackage::builder().key_package_lifetime(Lifetime::init(spec.not_before, spec.not_after));
    if spec.last_resort {
        extension_types.push(ExtensionType::LastResort);
        builder = builder.mark_as_last_resort();
    }
    if spec.last_resort_component {
        // app_data_dictionary holding component 0x0004 with empty data.
        extension_types.push(ExtensionType::Unknown(0x0006));
        let dictionary = vec![0x03, 0x00, 0x04, 0x00];
        builder = builder.key_package_extensions(
            Extensions::single(Extension::Unknown(0x0006, UnknownExtension(dictionary))).expect("one extension"),
        );
    }
    builder = builder.leaf_node_capabilities(Capabilities::new(None, None, Some(&extension_types), None, None));
    let bundle = builder
        .build(spec.ciphersuite, &provider, &signer, credential)
        .expect("build keypackage");
    let key_package = bundle.key_package();
    let keypackage_ref = hex::encode(key_package.hash_ref(provider.crypto()).expect("hash ref").as_slice());
    MadeKeyPackage {
        bytes: key_package.tls_serialize_detached().expect("serialize"),
        keypackage_ref,
        spec,
    }
}

impl MadeKeyPackage {
    /// The content as MDK writes it: base64 of the bare KeyPackage.
    pub fn base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.bytes)
    }

    /// Base64 of the MLSMessage-framed KeyPackage (current Marmot transport).
    pub fn base64_framed(&self) -> String {
        let mut framed = kp_domain::mls::MLS_MESSAGE_KEYPACKAGE_PREFIX.to_vec();
        framed.extend_from_slice(&self.bytes);
        base64::engine::general_purpose::STANDARD.encode(framed)
    }

    /// The ciphersuite code as tags write it.
    pub fn ciphersuite_code(&self) -> String {
        format!("0x{:04x}", u16::from(self.spec.ciphersuite))
    }

    /// The tags MDK writes on a kind 443.
    pub fn tags_443(&self) -> Vec<Vec<String>> {
        let mut extensions = vec!["mls_extensions".to_string(), "0xf2ee".to_string()];
        if self.spec.last_resort {
            extensions.push("0x000a".into());
        }
        vec![
            vec!["mls_protocol_version".into(), "1.0".into()],
            vec!["mls_ciphersuite".into(), self.ciphersuite_code()],
            extensions,
            vec!["relays".into(), "wss://relay.example.com".into()],
            vec!["i".into(), self.keypackage_ref.clone()],
            vec!["client".into(), "kp-testkit".into()],
            vec!["encoding".into(), "base64".into()],
        ]
    }

    /// The tags of a kind 30443 in slot `d`.
    pub fn tags_30443(&self, d: &str) -> Vec<Vec<String>> {
        let mut tags = self.tags_443();
        tags.push(vec!["d".into(), d.into()]);
        tags
    }

    /// A kind 443 event carrying this KeyPackage.
    pub fn event_443(&self, owner: &Owner, created_at: u64) -> String {
        owner.sign(443, &self.tags_443(), &self.base64(), created_at)
    }

    /// A kind 30443 event carrying this KeyPackage (MLSMessage-framed) in slot `d`.
    pub fn event_30443(&self, owner: &Owner, d: &str, created_at: u64) -> String {
        owner.sign(30443, &self.tags_30443(d), &self.base64_framed(), created_at)
    }

    /// The slot a twin 30443 uses by default: derived from the ref.
    pub fn default_slot(&self) -> String {
        self.keypackage_ref.chars().rev().collect()
    }
}

/// The system clock, in seconds: for tests of whole processes, which read it.
pub fn system_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// The event id of an event JSON.
pub fn event_id(json: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(json).expect("event JSON");
    value["id"].as_str().expect("id").to_owned()
}
