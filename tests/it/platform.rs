//! The platform's rules that the type system cannot hold alone, checked on the sources and on
//! the module list: who may build a caller or reach the system grant, which store functions may
//! go without a grant (and why), and that every module's declarations are complete.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use linli_core::i18n::{self, Lang};
use linli_server::modules::ALL;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, with its path relative to the repository.
fn sources(dir: &str) -> Vec<(String, String)> {
    fn walk(p: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(p).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join(dir), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(root()).unwrap().display().to_string();
            (rel, std::fs::read_to_string(&f).unwrap())
        })
        .collect()
}

/// Lines of code (comments dropped) containing `needle`, as "file:line".
fn uses(files: &[(String, String)], needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (name, text) in files {
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains(needle) {
                out.push(format!("{name}:{}", i + 1));
            }
        }
    }
    out
}

#[test]
fn handlers_cannot_build_a_caller_or_reach_the_system_grant() {
    let server = sources("crates/linli-server/src");
    for needle in [
        "Principal::system",
        "Principal::assemble",
        "PrincipalParts",
        "Grant::system",
    ] {
        let found = uses(&server, needle);
        assert!(
            found.is_empty(),
            "request handlers must not use {needle} (only the CLI, the store and background jobs may): {found:?}"
        );
    }
    // The account loader is the only place that assembles a caller.
    let mut everywhere = sources("crates");
    everywhere.extend(sources("src"));
    let assembled: Vec<String> = uses(&everywhere, "Principal::assemble(")
        .into_iter()
        .filter(|at| {
            !at.starts_with("crates/linli-store/src/accounts/")
                && !at.starts_with("crates/linli-core/src/auth.rs")
        })
        .collect();
    assert!(
        assembled.is_empty(),
        "Principal::assemble outside the account loader: {assembled:?}"
    );
    // The place resolver is the only reader of a grant's area regardless of its action.
    let any_action: Vec<String> = uses(&everywhere, ".place_scope()")
        .into_iter()
        .filter(|at| !at.starts_with("crates/linli-store/src/registry/places.rs"))
        .collect();
    assert!(
        any_action.is_empty(),
        "Grant::place_scope outside registry/places.rs: {any_action:?}"
    );
}

/// Public store functions that take no grant, principal or viewer, and why that is safe. A new
/// one fails `store_functions_take_the_grant_for_their_action` until it is listed here with its
/// reason — or, better, takes the grant for the action it serves. Demo seeding (`seed_*`) is
/// allowed by its name.
const WITHOUT_GRANT: &[(&str, &str)] = &[
    // The platform itself.
    ("open", "opening the store"),
    ("catalog", "the declared actions and roles: no data"),
    ("backend", "which database"),
    ("now_ms", "the store's clock"),
    ("start_pg_bus", "starts the event bridge"),
    ("backup_to", "CLI only (the operator)"),
    (
        "audit_verify",
        "walks the hash chain; the API checks the whole-tree audit right first",
    ),
    ("bootstrap_admin", "CLI only: the first administrator"),
    // Signing in: these establish who the caller is.
    ("credentials", "sign-in"),
    ("principal", "resolves a signed-in user"),
    ("create_session", "sign-in"),
    ("session", "resolves a session cookie"),
    ("delete_session", "sign-out of the cookie's own session"),
    ("token_principal", "resolves an API token"),
    ("role_def", "a role's actions: configuration"),
    (
        "device_auth",
        "resolves a device by its id for the IoT runtime",
    ),
    (
        "device_auth_all",
        "the IoT runtime's device registry (credentials hashed)",
    ),
    ("device_by_token", "resolves a device token"),
    // Demo and start-up seeding.
    ("demo_seeded", "demo marker"),
    ("ensure_default_labels", "start-up seeding"),
    ("ensure_default_rules", "start-up seeding"),
    // Configuration everyone reads (no personal data).
    ("labels", "the label tree: configuration"),
    ("report_categories", "what can be reported: public"),
    ("report_category", "what can be reported: public"),
    (
        "route",
        "routing rule for a category at a place: configuration",
    ),
    ("work_calendar", "the working-day calendar: public"),
    ("calendar_years", "the working-day calendar: public"),
    ("calendar_info", "the working-day calendar: public"),
    ("calendar_missing_years", "readiness warning"),
    ("deadlines_for", "computes deadlines from a rule"),
    ("access_settings", "the fever threshold: configuration"),
    ("address", "place names of a path the caller already holds"),
    ("place_names", "place names (no personal data)"),
    (
        "plan_buildings",
        "the site plan's buildings of a community (no personal data)",
    ),
    ("org_name", "an organisation's name"),
    (
        "community_at",
        "which community a map point lies in (geography)",
    ),
    (
        "communities_have_geo",
        "whether communities have map areas (geography)",
    ),
    (
        "open311_resolve_address",
        "address text to a place inside the given area",
    ),
    (
        "pass_token",
        "signs a pass id: yields no data (verification looks the pass up)",
    ),
    // Background jobs (one instance claims the work).
    ("reports_tick", "deadline job"),
    ("reports_job", "deadline job"),
    ("escalate_due", "alarm escalation job"),
    ("missed_checkins", "daily check-in job"),
    ("telemetry_retention", "telemetry retention job"),
    ("telemetry_count", "counts rows (benchmarks, tests)"),
    ("configure_outbox", "delivery settings"),
    ("outbox_claim", "the delivery worker claims due rows"),
    ("outbox_record", "the delivery worker records an outcome"),
    (
        "webhook_target",
        "the delivery worker's view of a webhook (URL, secret)",
    ),
    ("audit", "appends inside a workflow's transaction"),
    ("outbox_purge", "delivery log retention"),
    ("delivery", "one delivery row for the worker"),
    // The IoT runtime (device-authenticated pipeline) and the writing transactions of other
    // modules' workflows.
    ("raise_alarm", "inside a workflow's transaction"),
    ("clear_alarm_by_rule", "inside a workflow's transaction"),
    ("devices_silent_since", "the no-data timer's candidates"),
    // State shared by the instances (no personal data; keys are hashed).
    ("claim_lease", "a background job claims its lease"),
    ("release_lease", "a background job gives its lease back"),
    (
        "throttle_attempt",
        "login throttling, before anyone is signed in",
    ),
    (
        "throttle_refund",
        "login throttling, before anyone is signed in",
    ),
    (
        "throttle_success",
        "login throttling, after the password was checked",
    ),
    (
        "form_claim",
        "one-time form tokens of a form already authorized",
    ),
    (
        "form_finish",
        "one-time form tokens of a form already authorized",
    ),
    (
        "form_release",
        "one-time form tokens of a form already authorized",
    ),
    ("purge_shared_state", "housekeeping job"),
    ("heartbeat", "an instance says it is alive"),
    (
        "silent_instances",
        "instances that stopped (broker sessions to take over)",
    ),
    (
        "instance_alive",
        "whether a taken-over session's owner is back",
    ),
    ("rules_all", "the rule engine's rules"),
    (
        "alarm_report",
        "links an alarm to the report it opened (IoT runtime)",
    ),
    ("publish_alarm_inbox", "live events after an alarm's commit"),
    (
        "raise_sos",
        "the caller proved the person: own household (handler) or the device's token",
    ),
    (
        "checkin",
        "the caller proved the person: own household (handler) or the device's token",
    ),
    ("notify", "inside a workflow's transaction"),
    ("notify_many", "inside a workflow's transaction"),
    ("notify_followers", "inside a workflow's transaction"),
    ("notify_with_followers", "inside a workflow's transaction"),
    ("publish_inbox", "live events after a commit"),
    ("follow_in", "inside a workflow's transaction"),
    ("followers_in", "inside a workflow's transaction"),
];

/// Parameter types that carry authorization.
const AUTHORIZING: &[&str] = &[
    "&Grant",
    "Option<&Grant>",
    "&Principal",
    "Option<&Principal>",
    "&Viewer",
    "&StatsScope",
];

/// The bodies of the `impl Store { … }` blocks of a file.
fn store_impls(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("\nimpl Store {") {
        let body = &rest[i + "\nimpl Store {".len()..];
        let mut depth = 1;
        let mut end = body.len();
        for (j, c) in body.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push(&body[..end]);
        rest = &body[end..];
    }
    out
}

/// (name, parameter list) of the public functions declared directly in an impl body.
fn public_fns(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for marker in ["\n    pub fn ", "\n    pub async fn "] {
        let mut from = 0;
        while let Some(i) = body[from..].find(marker) {
            let start = from + i + marker.len();
            let name: String = body[start..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let open = start + body[start..].find('(').unwrap_or(0);
            let mut depth = 0;
            let mut close = open;
            for (j, c) in body[open..].char_indices() {
                match c {
                    '(' => depth += 1,
                    ')' => {
                        depth -= 1;
                        if depth == 0 {
                            close = open + j;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            out.push((name, body[open..close].to_string()));
            from = close;
        }
    }
    out
}

/// `a::b::C` → `C` in a parameter list.
fn strip_paths(params: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let mut chars = params.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            word.clear();
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            out.push_str(&word);
            word.clear();
            out.push(c);
        }
    }
    out.push_str(&word);
    out
}

#[test]
fn store_functions_take_the_grant_for_their_action() {
    let mut offenders = Vec::new();
    let mut seen = BTreeSet::new();
    for (file, text) in sources("crates/linli-store/src") {
        for body in store_impls(&text) {
            for (name, params) in public_fns(body) {
                // Types may be written with their path (`&linli_core::auth::Principal`).
                let params = strip_paths(&params);
                if AUTHORIZING.iter().any(|t| params.contains(t)) {
                    continue;
                }
                // Demo seeding (`seed_*`) runs as the platform, before anyone signs in.
                if name.starts_with("seed_") {
                    continue;
                }
                seen.insert(name.clone());
                if !WITHOUT_GRANT.iter().any(|(n, _)| *n == name) {
                    offenders.push(format!("{file}: {name}"));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "public store functions without a grant for their action (take one, or list the function and why in WITHOUT_GRANT): {offenders:#?}"
    );
    let stale: Vec<&str> = WITHOUT_GRANT
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !seen.contains(*n))
        .collect();
    assert!(
        stale.is_empty(),
        "listed in WITHOUT_GRANT but no longer a grant-less store function: {stale:?}"
    );
}

#[test]
fn every_module_declares_what_the_platform_needs() {
    let platform = linli_server::modules::platform();
    let cat = &platform.catalog;
    let mut names = BTreeSet::new();
    for m in ALL {
        assert!(names.insert(m.name), "module {} listed twice", m.name);
        assert_eq!(
            m.catalog.module, m.name,
            "catalogue part named after its module"
        );
        for lang in [Lang::ZhCn, Lang::En] {
            assert!(
                i18n::has(lang, &format!("module-{}", m.name)),
                "label of module {} ({lang:?})",
                m.name
            );
            for e in m.nav {
                assert!(i18n::has(lang, e.label), "nav label {} ({lang:?})", e.label);
            }
            for t in m.tiles {
                assert!(
                    i18n::has(lang, t.label),
                    "tile label {} ({lang:?})",
                    t.label
                );
            }
            for r in m.record {
                assert!(
                    i18n::has(lang, r.title),
                    "record title {} ({lang:?})",
                    r.title
                );
                for h in r.headers {
                    assert!(i18n::has(lang, h), "record heading {h} ({lang:?})");
                }
            }
        }
        for file in m.locales {
            for lang in ["zh-CN", "en"] {
                let p = root().join(format!("crates/linli-core/locales/{lang}/{file}.ftl"));
                assert!(p.exists(), "module {}: locale file {}", m.name, p.display());
            }
        }
    }
    for a in cat.actions() {
        for lang in [Lang::ZhCn, Lang::En] {
            assert!(
                i18n::has(lang, &format!("action-{}", a.action.as_str())),
                "label of action {} ({lang:?})",
                a.action
            );
        }
    }
    for r in cat.roles() {
        for lang in [Lang::ZhCn, Lang::En] {
            assert!(
                i18n::has(lang, &format!("web-role-{}", r.role.as_str())),
                "label of role {:?} ({lang:?})",
                r.role
            );
        }
    }
    // Every OpenAPI operation is tagged with a tag of the module that serves it.
    let (_, doc) = linli_server::api_parts();
    let tags: BTreeSet<String> = ALL
        .iter()
        .filter_map(|m| m.api.as_ref())
        .flat_map(|a| a.tags.iter().map(|t| t.0.to_string()))
        .collect();
    for (path, item) in doc.paths.paths.iter() {
        let ops = [&item.get, &item.post, &item.put, &item.patch, &item.delete];
        for op in ops.into_iter().flatten() {
            for t in op.tags.iter().flatten() {
                assert!(tags.contains(t), "{path}: tag {t} belongs to no module");
            }
        }
    }
}

/// The audit log speaks words: every action the store audits under a fixed name (the literal
/// after `action:` in an audit entry, also in `if … { "a" } else { "b" }`) is listed in the
/// page's filter and has words in both languages; so has every entity.
#[test]
fn every_audited_action_and_entity_has_words() {
    use linli_server::web::admin::{AUDIT_ACTIONS, AUDIT_ENTITIES};
    let literal = |s: &str| -> Vec<String> {
        s.split('"')
            .skip(1)
            .step_by(2)
            .filter(|w| {
                w.contains('.')
                    && w.chars()
                        .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
            })
            .map(str::to_string)
            .collect()
    };
    let mut audited = BTreeSet::new();
    let mut entities = BTreeSet::new();
    for (name, text) in sources("crates/linli-store/src") {
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if let Some(rest) = code.trim().strip_prefix("action:") {
                // The literal on this line, or the branches of an `if` over the next lines.
                let span = if rest.trim_start().starts_with("if ") {
                    lines[i..(i + 6).min(lines.len())].join(" ")
                } else {
                    rest.to_string()
                };
                for w in literal(&span) {
                    audited.insert((w, format!("{name}:{}", i + 1)));
                }
            }
            if let Some(rest) = code.trim().strip_prefix("entity: \"") {
                entities.insert(rest.split('"').next().unwrap_or("").to_string());
            }
        }
    }
    assert!(
        audited.len() > 40,
        "the scan found the audit entries: {audited:?}"
    );
    let mut missing = Vec::new();
    for (action, at) in &audited {
        if !AUDIT_ACTIONS.contains(&action.as_str()) {
            missing.push(format!("{action} ({at}) is not in AUDIT_ACTIONS"));
        }
    }
    for a in AUDIT_ACTIONS {
        for lang in [Lang::ZhCn, Lang::En] {
            let key = format!("audit-{}", a.replace('.', "-"));
            if !i18n::has(lang, &key) {
                missing.push(format!("{key} in {lang:?}"));
            }
        }
    }
    for e in entities.iter().chain(
        AUDIT_ENTITIES
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter(),
    ) {
        if !AUDIT_ENTITIES.contains(&e.as_str()) {
            missing.push(format!("entity {e} is not in AUDIT_ENTITIES"));
        }
        for lang in [Lang::ZhCn, Lang::En] {
            if !i18n::has(lang, &format!("audit-entity-{e}")) {
                missing.push(format!("audit-entity-{e} in {lang:?}"));
            }
        }
    }
    assert!(missing.is_empty(), "{missing:#?}");
}
