//! The query binary serves its own routes on Firestore (the emulator), and
//! only those.

use kp_testkit::process::FunctionProcess;

#[test]
fn query_serves_its_routes_on_firestore() {
    let function = FunctionProcess::start_on_firestore(env!("CARGO_BIN_EXE_query"));
    let owner = "ab".repeat(32);
    let (status, body) = function.post(
        "/v1/keypackages/query",
        &format!("{{\"filters\":[{{\"authors\":[\"{owner}\"]}}]}}"),
    );
    assert_eq!((status, body.as_str()), (200, "{\"events\":[]}"));
    let (status, body) = function.get(&format!("/v1/keypackages/count?owner={owner}"));
    assert_eq!(status, 200);
    assert!(body.contains("\"available\":0"), "{body}");
    assert_eq!(
        function.post("/v1/keypackages", "{}").0,
        404,
        "ingest is the ingest function's"
    );
    assert_eq!(function.get("/readyz").0, 200);
}
