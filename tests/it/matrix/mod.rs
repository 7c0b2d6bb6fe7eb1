//! The authorization matrix: every API operation (from the OpenAPI document) and every web
//! route (from every module's pages and the kernel's routes) has a probe — written by its module
//! in `crates/linli-server/src/<module>/probes.rs` — saying how to call it with community A's
//! objects and who must get what. Each probe is run by every kind of caller (`Caller::STANDARD`):
//!
//! - an allowed caller must succeed (run last, on fresh fixtures for writes, so it proves the
//!   body is valid without disturbing the others);
//! - a filtered caller is answered, but the answer holds nothing of A;
//! - every other caller is refused (401, 403, 404, or a redirect to the sign-in page), the
//!   answer holds nothing of A, and nothing changed (row counts of every table, the audit log
//!   among them).
//!
//! "Nothing of A" means: no id of a fixture, no full ID card or phone number of their persons,
//! and not the marker `矩阵` that every fixture text carries (names, titles, notes), unless the
//! request itself carried it. See `docs/security.md` ("The authorization matrix").

mod fixtures;
mod run;

use std::collections::BTreeSet;

use linli_server::manifest::Probe;

/// Every (method, route) the server answers: the OpenAPI operations, every module's pages, and
/// the kernel's routes.
pub fn all_routes() -> BTreeSet<(String, String)> {
    let (api, pages, kernel) = routes_by_source();
    api.into_iter().chain(pages).chain(kernel).collect()
}

/// The OpenAPI operations, the modules' pages, the kernel's routes.
fn routes_by_source() -> (
    BTreeSet<(String, String)>,
    BTreeSet<(String, String)>,
    BTreeSet<(String, String)>,
) {
    let mut api = BTreeSet::new();
    let (_, spec) = linli_server::api_parts();
    let v = serde_json::to_value(&spec).unwrap();
    for (path, item) in v["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            api.insert((method.to_uppercase(), path.clone()));
        }
    }
    let mut pages = BTreeSet::new();
    for m in linli_server::modules::ALL {
        if let Some(p) = m.pages {
            for (method, path) in p().routes() {
                pages.insert((method.to_string(), path.to_string()));
            }
        }
    }
    let kernel = linli_server::kernel_routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    (api, pages, kernel)
}

/// Every module's probes, with the module's name.
pub fn all_probes() -> Vec<(&'static str, &'static Probe)> {
    linli_server::modules::ALL
        .iter()
        .flat_map(|m| m.probes.iter().map(move |p| (m.name, p)))
        .collect()
}

/// How well a route pattern matches a probe path (its query string removed): the number of
/// literal segments, or `None`. `{x}` in the route matches one segment, `{*x}` the rest.
pub fn route_score(route: &str, path: &str) -> Option<usize> {
    let path = path.split('?').next().unwrap_or(path);
    let r: Vec<&str> = route.split('/').collect();
    let p: Vec<&str> = path.split('/').collect();
    let mut literal = 0;
    for (i, seg) in r.iter().enumerate() {
        if seg.starts_with("{*") {
            return (p.len() > i).then_some(literal);
        }
        let other = p.get(i)?;
        if seg.starts_with('{') && seg.ends_with('}') {
            if other.is_empty() {
                return None;
            }
        } else if seg != other {
            return None;
        } else {
            literal += 1;
        }
    }
    (r.len() == p.len()).then_some(literal)
}

/// The route a probe exercises: the best match of its method.
pub fn route_of<'a>(
    routes: &'a BTreeSet<(String, String)>,
    probe: &Probe,
) -> Option<&'a (String, String)> {
    routes
        .iter()
        .filter(|(m, _)| m == probe.method)
        .filter_map(|r| route_score(&r.1, probe.path).map(|s| (s, r)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, r)| r)
}

#[test]
fn every_route_has_a_probe_and_every_probe_a_route() {
    let routes = all_routes();
    let mut covered = BTreeSet::new();
    let mut stale = Vec::new();
    for (module, p) in all_probes() {
        match route_of(&routes, p) {
            Some(r) => {
                covered.insert(r.clone());
            }
            None => stale.push(format!("{module}: {} {}", p.method, p.path)),
        }
    }
    let (api, pages, kernel) = routes_by_source();
    eprintln!(
        "authorization matrix: {} API operations, {} module pages, {} kernel routes; {} probes",
        api.len(),
        pages.len(),
        kernel.len(),
        all_probes().len()
    );
    let missing: Vec<String> = routes
        .difference(&covered)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a probe (add one to the module's probes.rs):\n  {}",
        missing.join("\n  ")
    );
    assert!(
        stale.is_empty(),
        "probes that match no route:\n  {}",
        stale.join("\n  ")
    );
}

#[test]
fn route_patterns_match_probe_paths() {
    // The empty segment before the first slash counts as a literal.
    assert_eq!(route_score("/a/{id}", "/a/{report}"), Some(2));
    assert_eq!(route_score("/a/{id}", "/a/{report}/b"), None);
    assert_eq!(route_score("/a/b", "/a/{report}"), None);
    assert_eq!(route_score("/x/{*rest}", "/x/a/b"), Some(2));
    assert_eq!(route_score("/x/{*rest}", "/x"), None);
    assert_eq!(
        route_score("/o/v2/{file}", "/o/v2/services.json?x=1"),
        Some(3)
    );
    assert_eq!(
        route_score("/o/v2/services/{file}", "/o/v2/services.json"),
        None
    );
}

#[tokio::test]
async fn authorization_matrix() {
    run::run().await;
}
