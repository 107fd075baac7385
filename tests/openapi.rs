//! The OpenAPI spec of the deployments (`terraform/gcp/openapi.yaml`, which
//! API Gateway serves and from which `terraform/aws` builds its HTTP API
//! routes) routes exactly the API routes the code serves, each to a function
//! that serves it.

use std::collections::BTreeSet;

use kp_http::{Function, routes};
use serde_json::Value;

const SPEC: &str = include_str!("../terraform/gcp/openapi.yaml");

/// The spec's template variable naming each backend, and the function behind it.
const BACKENDS: [(&str, Function); 5] = [
    ("${ingest_url}", Function::Ingest),
    ("${query_url}", Function::Query),
    ("${consume_url}", Function::Consume),
    ("${cleanup_url}", Function::Cleanup),
    ("${gateway_url}", Function::Gateway),
];

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

fn spec() -> Value {
    serde_norway::from_str(SPEC).expect("openapi.yaml is YAML")
}

/// Every operation of the spec: (METHOD, path, operation).
fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let paths = spec["paths"].as_object().expect("paths");
    let mut found = Vec::new();
    for (path, item) in paths {
        for (method, operation) in item.as_object().expect("a path item") {
            assert!(METHODS.contains(&method.as_str()), "{path}: unexpected key {method}");
            found.push((method.to_ascii_uppercase(), path.clone(), operation.clone()));
        }
    }
    found
}

#[test]
fn the_spec_is_swagger_2_for_api_gateway() {
    assert_eq!(spec()["swagger"], "2.0", "API Gateway takes OpenAPI 2.0 only");
}

#[test]
fn the_spec_lists_exactly_the_routes_the_code_serves() {
    let listed: BTreeSet<(String, String)> = operations(&spec())
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let served: BTreeSet<(String, String)> = routes(Function::Gateway)
        .into_iter()
        .map(|(method, path)| (method.to_string(), path.to_owned()))
        .collect();
    let missing: Vec<_> = served.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "openapi.yaml differs from kp_http::routes(Function::Gateway): missing {missing:?}, not served {extra:?}"
    );
}

#[test]
fn each_route_goes_to_the_function_that_serves_it() {
    for (method, path, operation) in operations(&spec()) {
        let backend = &operation["x-google-backend"];
        let address = backend["address"].as_str().unwrap_or_default();
        let (_, function) = BACKENDS
            .iter()
            .find(|(variable, _)| *variable == address)
            .unwrap_or_else(|| panic!("{method} {path}: backend address {address:?} is not one of {BACKENDS:?}"));
        let serves = |f: Function| routes(f).iter().any(|(m, p)| m.as_str() == method && *p == path);
        assert!(
            serves(*function),
            "{method} {path} is routed to {function:?}, which does not serve it"
        );
        // The gateway binary serves everything; a route one of the single
        // functions serves goes to that function.
        let own = BACKENDS
            .iter()
            .map(|(_, f)| *f)
            .find(|f| *f != Function::Gateway && serves(*f))
            .unwrap_or(Function::Gateway);
        assert_eq!(*function, own, "{method} {path} should go to {own:?}");
        assert_eq!(
            backend["path_translation"], "APPEND_PATH_TO_ADDRESS",
            "{method} {path}: the function needs the request path"
        );
        // The gateway authenticates to the IAM-only Cloud Run service with
        // an ID token for the service's URL, and moves the relay's
        // Authorization header to X-Forwarded-Authorization, where the
        // functions read it.
        assert!(
            backend["disable_auth"].is_null(),
            "{method} {path}: backend authentication must stay on, the Cloud Run services are IAM-only"
        );
        assert_eq!(
            backend["jwt_audience"].as_str(),
            Some(address),
            "{method} {path}: the ID token must be for the service it calls"
        );
        // Each `{name}` in the path is declared as a path parameter.
        for segment in path.split('/').filter(|s| s.starts_with('{')) {
            let name = segment.trim_matches(|c| c == '{' || c == '}');
            let declared = operation["parameters"].as_array().is_some_and(|params| {
                params
                    .iter()
                    .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true)
            });
            assert!(declared, "{method} {path}: path parameter {name} is not declared");
        }
    }
}

#[test]
fn the_template_uses_only_the_backend_variables() {
    let mut rest = SPEC;
    while let Some(at) = rest.find("${") {
        let end = rest[at..].find('}').expect("closing brace") + at;
        let variable = &rest[at..=end];
        assert!(
            BACKENDS.iter().any(|(v, _)| *v == variable),
            "openapi.yaml uses {variable}, which terraform does not provide"
        );
        rest = &rest[end..];
    }
}
