//! The ingest binary serves its own routes on Firestore (the emulator), and
//! only those.

use kp_testkit::factory::system_now;
use kp_testkit::process::FunctionProcess;

#[test]
fn ingest_serves_its_routes_on_firestore() {
    let function = FunctionProcess::start_on_firestore(env!("CARGO_BIN_EXE_ingest"));
    let owner = kp_testkit::Owner::new();
    let now = system_now();
    let event = owner
        .keypackage(kp_testkit::KeyPackageSpec::one_time_at(now))
        .event_443(&owner, now);
    let (status, body) = function.post("/v1/keypackages", &event);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"accepted\":true,\"message\":\"\""), "{body}");
    let (status, body) = function.post("/v1/keypackages/batch", &format!("{{\"events\": [{event}]}}"));
    assert_eq!(status, 200);
    assert!(body.contains("duplicate: already have this event"), "{body}");
    assert_eq!(
        function.post("/v1/keypackages/claim", "{}").0,
        404,
        "claims are the consume function's"
    );
    assert_eq!(function.get("/readyz").0, 200);
}
