//! Fuzzes the whole validation path: event JSON (size limits, id and
//! signature, tags, content decoding, the MLS KeyPackage through OpenMLS),
//! Welcome and deletion parsing, and the KeyPackage parser on raw bytes.
//! Nothing may panic; every input is either accepted or refused.

#![no_main]

use kp_domain::ValidationConfig;
use libfuzzer_sys::fuzz_target;

/// 2026-11-26, inside the lifetime of the seed events.
const NOW: u64 = 1_795_737_600;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = std::str::from_utf8(data) {
        let config = ValidationConfig {
            ttl_secs: 90 * 86_400,
            ..ValidationConfig::default()
        };
        let _ = kp_domain::validate_keypackage_event(json, &config, NOW);
        let _ = kp_domain::signals::parse_welcome(json, 65_536);
        let _ = kp_domain::signals::parse_deletion(json, 65_536);
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(json) {
            let _ = kp_domain::filter::Filter::from_json(&value);
        }
    }
    let _ = kp_domain::mls::parse_keypackage(data);
});
