//! Prints a fresh, signed kind 443 KeyPackage event (a real OpenMLS
//! KeyPackage for a new random nostr key), for trying the API with curl:
//!
//! ```sh
//! cargo run -q -p kp-testkit --example keypackage_event > kp.json
//! curl -s -d @kp.json http://127.0.0.1:8080/v1/keypackages
//! ```

use kp_testkit::factory::system_now;
use kp_testkit::{KeyPackageSpec, Owner};

fn main() {
    let now = system_now();
    let owner = Owner::new();
    let spec = KeyPackageSpec::one_time_at(now);
    let kind = std::env::args().nth(1).unwrap_or_else(|| "443".into());
    let keypackage = owner.keypackage(spec);
    let event = match kind.as_str() {
        "30443" => keypackage.event_30443(&owner, &keypackage.default_slot(), now),
        _ => keypackage.event_443(&owner, now),
    };
    println!("{event}");
}
