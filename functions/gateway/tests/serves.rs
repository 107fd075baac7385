//! The gateway binary serves every route on Firestore (the emulator),
//! including `POST /v1/events`.

use kp_testkit::factory::system_now;
use kp_testkit::process::FunctionProcess;
use kp_testkit::{KeyPackageSpec, Owner};

#[test]
fn gateway_serves_every_route_on_firestore() {
    let function = FunctionProcess::start_on_firestore(env!("CARGO_BIN_EXE_gateway"));
    let owner = Owner::new();
    let now = system_now();
    let event = owner
        .keypackage(KeyPackageSpec::one_time_at(now))
        .event_443(&owner, now);
    let (status, body) = function.post("/v1/events", &event);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"accepted\":true"), "{body}");
    let (_, body) = function.post(
        "/v1/keypackages/query",
        &format!("{{\"filters\":[{{\"authors\":[\"{}\"]}}]}}", owner.pubkey()),
    );
    assert!(body.contains(&owner.pubkey()), "the stored event is served: {body}");
    let note = owner.sign(1, &[], "hi", now);
    let (_, body) = function.post("/v1/events", &note);
    assert!(body.contains("blocked: kind 1 is not handled here"), "{body}");
    assert_eq!(function.post("/v1/keypackages/query", "{\"filters\":[]}").0, 200);
    assert_eq!(function.post("/v1/cleanup", "{}").0, 200);
    assert_eq!(function.get("/metrics").0, 200);
    let status = function.terminate().expect("the gateway stops within 10 s of SIGTERM");
    assert!(status.success(), "graceful shutdown exits cleanly: {status}");
}
