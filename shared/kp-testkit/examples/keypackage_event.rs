//! Prints a fresh, signed KeyPackage event (a real OpenMLS KeyPackage for a
//! new random nostr key), for trying the API with curl: by default a
//! current-profile kind 30443 as MDK ≥ 0.9.7 makes it (with its `0x8009`
//! account-identity proof); `443` or `30443` as the argument make a
//! legacy-profile one instead.
//!
//! ```sh
//! cargo run -q -p kp-testkit --example keypackage_event > kp.json
//! curl -s -d @kp.json http://127.0.0.1:8080/v1/keypackages
//! ```

use kp_testkit::current::random_slot;
use kp_testkit::factory::system_now;
use kp_testkit::{CurrentSpec, KeyPackageSpec, Owner};

fn main() {
    let now = system_now();
    let owner = Owner::new();
    let spec = KeyPackageSpec::one_time_at(now);
    let kind = std::env::args().nth(1).unwrap_or_else(|| "current".into());
    let keypackage = owner.keypackage(spec);
    let event = match kind.as_str() {
        "443" => keypackage.event_443(&owner, now),
        "30443" => keypackage.event_30443(&owner, &keypackage.default_slot(), now),
        _ => owner
            .current_keypackage(CurrentSpec::one_time_at(now))
            .event(&owner, &random_slot(), now),
    };
    println!("{event}");
}
