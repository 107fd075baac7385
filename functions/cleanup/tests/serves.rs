//! The cleanup binary serves its own route on Firestore (the emulator), and
//! only that one.

use kp_testkit::process::FunctionProcess;

#[test]
fn cleanup_serves_its_route_on_firestore() {
    let function = FunctionProcess::start_on_firestore(env!("CARGO_BIN_EXE_cleanup"));
    let (status, body) = function.post("/v1/cleanup", "{}");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"complete\":true"), "{body}");
    let (status, body) = function.post("/v1/cleanup", "{\"dry_run\": true, \"time_budget_ms\": 1000}");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        function.post("/events", "{}").0,
        404,
        "the scheduler route exists only under Lambda"
    );
    assert_eq!(function.post("/v1/keypackages/query", "{\"filters\":[]}").0, 404);
}
