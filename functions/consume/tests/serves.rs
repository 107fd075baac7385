//! The consume binary serves its own routes on Firestore (the emulator), and
//! only those.

use kp_testkit::process::FunctionProcess;
use kp_testkit::{NOW, Owner};

#[test]
fn consume_serves_its_routes_on_firestore() {
    let function = FunctionProcess::start_on_firestore(env!("CARGO_BIN_EXE_consume"));
    let owner = Owner::new();
    let (status, body) = function.post(
        "/v1/keypackages/claim",
        &format!("{{\"owners\":[\"{}\"]}}", owner.pubkey()),
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"event\":null"), "{body}");
    let (status, _) = function.post(&format!("/v1/keypackages/{}/consume", "cd".repeat(32)), "{}");
    assert_eq!(status, 404);
    let (status, body) = function.post("/v1/welcomes", &owner.welcome(&"ef".repeat(32), NOW));
    assert_eq!(status, 200);
    assert!(body.contains("\"accepted\":true"), "{body}");
    let (status, body) = function.post("/v1/deletions", &owner.deletion(&[&"ef".repeat(32)], &[], NOW));
    assert_eq!(status, 200);
    assert!(body.contains("\"accepted\":true"), "{body}");
    assert_eq!(
        function.post("/v1/cleanup", "{}").0,
        404,
        "cleanup is the cleanup function's"
    );
}
