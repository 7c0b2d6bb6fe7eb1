//! The module manifest: everything the platform needs from a capability, declared once in the
//! capability's own folder (`reports/mod.rs` holds `reports::MODULE`) and collected in one list
//! (`modules::ALL`). The shared code — the store's migrations, the catalogue of actions and
//! roles, the API and its OpenAPI tags, the pages, the navigation and the residents' home tiles,
//! live events, background jobs, demo seeding, the household record, dashboard measures and the
//! authorization matrix — loops over that list and names no module. `docs/adding-a-module.md`
//! walks through adding one.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{get, post};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;

use linli_core::AppResult;
use linli_core::auth::{Action, CatalogPart, Principal};
use linli_store::Store;
use linli_store::db::Migration;
use linli_store::registry::dossier::RecordSection;

use crate::AppState;
use crate::web::Page;

pub use linli_core::BoxFuture;

/// One capability, as the platform sees it. Start from [`Module::NONE`] and fill in what the
/// module has: `Module { name: "fees", catalog: …, migrations: …, ..Module::NONE }`.
pub struct Module {
    /// Stable name: migration bookkeeping, the OpenAPI tag, the prefix of live event kinds
    /// (`fees.*`) and of locale files (`locales/*/fees.ftl`).
    pub name: &'static str,
    /// Actions the module declares, role templates it contributes, and actions it adds to the
    /// templates of others.
    pub catalog: CatalogPart,
    /// The module's migrations, in order (versions count per module).
    pub migrations: &'static [Migration],
    /// The REST API: handlers annotated with `#[utoipa::path(tag = …)]`, one of the module's tags.
    pub api: Option<Api>,
    /// Web pages (the builder records every route for the authorization matrix).
    pub pages: Option<fn() -> Pages>,
    /// Entries of the staff console's side navigation and the residents' menu.
    pub nav: &'static [NavEntry],
    /// Large tiles on the residents' home page (报事, 缴费, 访客 …).
    pub tiles: &'static [HomeTile],
    /// Live event kinds (`report.*`) and the action a subscriber needs over the event's place.
    pub live: &'static [LiveKind],
    /// Background jobs the server runs.
    pub jobs: &'static [Job],
    /// Demo data, seeded after the registry's demo district (idempotent).
    pub demo: Option<DemoSeed>,
    /// Sections of the one household record (一户一表), each by the module's capability.
    pub record: &'static [&'static RecordView],
    /// Figures the module contributes to dashboards (the insight module rolls them up).
    pub measures: &'static [Measure],
    /// The module's Fluent files (`locales/{zh-CN,en}/<file>.ftl`).
    pub locales: &'static [&'static str],
    /// How the authorization matrix (`tests/it/matrix`) calls each of the module's API
    /// operations and web routes, and who must get what (`<module>/probes.rs`). A route
    /// without a probe fails the matrix.
    pub probes: &'static [Probe],
}

impl Module {
    /// A module that declares nothing: the base to fill from.
    pub const NONE: Module = Module {
        name: "",
        catalog: CatalogPart {
            module: "",
            actions: &[],
            roles: &[],
            grants: &[],
        },
        migrations: &[],
        api: None,
        pages: None,
        nav: &[],
        tiles: &[],
        live: &[],
        jobs: &[],
        demo: None,
        record: &[],
        measures: &[],
        locales: &[],
        probes: &[],
    };
}

/// The module's REST API and its OpenAPI tags (name, description).
pub struct Api {
    pub tags: &'static [(&'static str, &'static str)],
    pub router: fn() -> OpenApiRouter<AppState>,
}

/// Who sees a navigation entry or tile.
pub type Visible = fn(&Principal) -> bool;

/// Where a navigation entry goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    /// The resident's menu (shown first).
    Resident,
    /// The staff console's daily work.
    Staff,
    /// The staff console's administration (import, accounts, catalogues …), listed after the
    /// daily work.
    Admin,
}

/// One navigation entry: a link, its label (a Fluent key) and who sees it.
pub struct NavEntry {
    pub href: &'static str,
    pub label: &'static str,
    pub face: Face,
    pub visible: Visible,
}

/// A tile of the residents' home page.
pub struct HomeTile {
    pub href: &'static str,
    pub label: &'static str,
    /// A short symbol shown large on the tile (an emoji or a character).
    pub icon: &'static str,
    pub visible: Visible,
}

/// Live events of one kind prefix (`report` for `report.dispatch` …): who may hear them.
pub struct LiveKind {
    pub prefix: &'static str,
    /// The action a subscriber needs over the event's place.
    pub action: Action,
    /// Unit staff (property company, department) hear only what the module's own audience
    /// check lets through, not every event of their area.
    pub area_roles_only: bool,
    /// A further audience the module decides (e.g. residents hearing about their own reports),
    /// built once per subscriber.
    pub audience: Option<AudienceFactory>,
}

/// Builds, for one subscriber, the module's extra audience check (or none).
pub type AudienceFactory =
    for<'a> fn(&'a AppState, &'a Principal) -> BoxFuture<'a, Option<Arc<dyn Audience>>>;

/// A module's own decision whether a subscriber hears an event (beyond the area rule).
pub trait Audience: Send + Sync {
    fn hears<'a>(&'a self, e: &'a linli_store::bus::BusEvent) -> BoxFuture<'a, bool>;
}

/// A background job: run at start, then every `every`.
pub struct Job {
    pub name: &'static str,
    pub every: Duration,
    pub run: fn(&Store) -> BoxFuture<'_, ()>,
}

/// A section of the household record and how the pages show it.
pub struct RecordView {
    /// The store's section (its key, action and loader).
    pub section: &'static RecordSection,
    /// The section's heading (a Fluent key).
    pub title: &'static str,
    /// Column headings (Fluent keys).
    pub headers: &'static [&'static str],
    /// The section's items as table rows; `staff` selects the staff pages' links over the
    /// resident's.
    pub rows: fn(&Page, &Value, bool) -> Vec<Vec<Cell>>,
}

/// One cell of a record table.
#[derive(Debug, Clone, Default)]
pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    /// Shown in bold (an active alarm, a fever).
    pub strong: bool,
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            ..Cell::default()
        }
    }
    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            href: Some(href.into()),
            strong: false,
        }
    }
    pub fn strong(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            href: None,
            strong: true,
        }
    }
}

/// Demo seeding of one module, after the registry's district and accounts exist.
pub type DemoSeed = fn(&Store) -> BoxFuture<'_, AppResult<()>>;

/// A figure a module contributes to dashboards — the staff workbench now, the roll-ups by
/// level of the insight module later: a count inside the caller's area.
pub struct Measure {
    pub key: &'static str,
    /// The figure's label (a Fluent key).
    pub label: &'static str,
    /// Where the work behind the figure is done.
    pub href: &'static str,
    /// The figure for the caller; `None` when the caller may not read it.
    pub compute: for<'a> fn(&'a Store, &'a Principal) -> BoxFuture<'a, AppResult<Option<i64>>>,
}

/// Web pages of a module. Routes are added one method at a time so that the authorization
/// matrix knows every (method, path) the module serves.
pub struct Pages {
    router: Router<AppState>,
    routes: Vec<(Method, &'static str)>,
}

impl Default for Pages {
    fn default() -> Self {
        Pages::new()
    }
}

impl Pages {
    pub fn new() -> Pages {
        Pages {
            router: Router::new(),
            routes: Vec::new(),
        }
    }
    pub fn get<H, T>(mut self, path: &'static str, handler: H) -> Pages
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, get(handler));
        self.routes.push((Method::GET, path));
        self
    }
    pub fn post<H, T>(mut self, path: &'static str, handler: H) -> Pages
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, post(handler));
        self.routes.push((Method::POST, path));
        self
    }
    /// A POST whose body may be larger than the default 2 MB (uploads), up to `limit` bytes.
    pub fn post_limited<H, T>(mut self, path: &'static str, handler: H, limit: usize) -> Pages
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(
            path,
            post(handler).layer(axum::extract::DefaultBodyLimit::max(limit)),
        );
        self.routes.push((Method::POST, path));
        self
    }
    /// Answers CORS preflight requests (Open311 is open to other sites' pages).
    pub fn options<H, T>(mut self, path: &'static str, handler: H) -> Pages
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        self.router = self.router.route(path, axum::routing::options(handler));
        self.routes.push((Method::OPTIONS, path));
        self
    }
    /// Apply a layer (e.g. a body limit) to every route added so far.
    pub fn layer<L>(mut self, layer: L) -> Pages
    where
        L: tower::Layer<axum::routing::Route> + Clone + Send + Sync + 'static,
        L::Service: tower::Service<axum::extract::Request> + Clone + Send + Sync + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Response:
            axum::response::IntoResponse + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Error:
            Into<std::convert::Infallible> + 'static,
        <L::Service as tower::Service<axum::extract::Request>>::Future: Send + 'static,
    {
        self.router = self.router.layer(layer);
        self
    }
    /// Add another set of pages (one module's pages from several files).
    pub fn merge(mut self, other: Pages) -> Pages {
        self.router = self.router.merge(other.router);
        self.routes.extend(other.routes);
        self
    }
    pub fn routes(&self) -> &[(Method, &'static str)] {
        &self.routes
    }
    pub fn into_router(self) -> Router<AppState> {
        self.router
    }
}

/// A kind of caller of the authorization matrix. Every probe is run by each of the standard
/// callers (`Caller::STANDARD`); a probe names the ones that must succeed (`allow`) and the ones
/// that are answered but must see nothing of community A (`filtered`); every other standard
/// caller must be refused and change nothing. The extra callers (after `Anonymous`) run only
/// where a probe allows them.
///
/// The fixtures live in community A (幸福里社区 of the demo), in the grid of the demo resident's
/// home; community B is 新村社区.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Caller {
    /// Committee staff of A (demo `committee`).
    Staff,
    /// The grid worker of the fixtures' grid (demo `grid`).
    Grid,
    /// A grid worker of another grid of A.
    OtherGrid,
    /// The resident of the fixtures' home (demo `resident`): reporter, pass and vehicle owner.
    Resident,
    /// A resident of another household of A (the `{household}` fixture).
    OtherResident,
    /// A resident of a household of B.
    ResidentB,
    /// Committee staff of B (demo `committee3`).
    StaffB,
    /// Property company staff, serving A and B (demo `property`): a unit, not area staff.
    Property,
    /// A merchant of A (demo `merchant`).
    Merchant,
    /// A volunteer of A (demo `volunteer`).
    Volunteer,
    /// An API token of the city administrator narrowed to community B, with every action.
    TokenB,
    /// An API token of the city administrator narrowed to A, with every action but the probe's
    /// (`Probe::actions`; every action when the probe names none).
    TokenNoAction,
    /// No credentials.
    Anonymous,
    /// The city administrator (the only holder of `routing_admin` and whole-tree rights).
    Admin,
    /// An API token of the city administrator narrowed to A, with every action.
    TokenA,
    /// A property technician (demo `repair1`).
    Repair,
    /// The `{device}` fixture's device token.
    Device,
}

impl Caller {
    /// The callers every probe is run with.
    pub const STANDARD: &'static [Caller] = &[
        Caller::Staff,
        Caller::Grid,
        Caller::OtherGrid,
        Caller::Resident,
        Caller::OtherResident,
        Caller::ResidentB,
        Caller::StaffB,
        Caller::Property,
        Caller::Merchant,
        Caller::Volunteer,
        Caller::TokenB,
        Caller::TokenNoAction,
        Caller::Anonymous,
    ];
    /// Every caller, standard and extra.
    pub const ALL: &'static [Caller] = &[
        Caller::Staff,
        Caller::Grid,
        Caller::OtherGrid,
        Caller::Resident,
        Caller::OtherResident,
        Caller::ResidentB,
        Caller::StaffB,
        Caller::Property,
        Caller::Merchant,
        Caller::Volunteer,
        Caller::TokenB,
        Caller::TokenNoAction,
        Caller::Anonymous,
        Caller::Admin,
        Caller::TokenA,
        Caller::Repair,
        Caller::Device,
    ];
    /// Every standard caller, anonymous included (public pages).
    pub const EVERYONE: &'static [Caller] = Caller::STANDARD;
    /// Every standard caller with credentials (a session or a token).
    pub const SIGNED_IN: &'static [Caller] = &[
        Caller::Staff,
        Caller::Grid,
        Caller::OtherGrid,
        Caller::Resident,
        Caller::OtherResident,
        Caller::ResidentB,
        Caller::StaffB,
        Caller::Property,
        Caller::Merchant,
        Caller::Volunteer,
        Caller::TokenB,
        Caller::TokenNoAction,
    ];
    /// Every standard caller signed in as a person (a session, not a token).
    pub const PEOPLE: &'static [Caller] = &[
        Caller::Staff,
        Caller::Grid,
        Caller::OtherGrid,
        Caller::Resident,
        Caller::OtherResident,
        Caller::ResidentB,
        Caller::StaffB,
        Caller::Property,
        Caller::Merchant,
        Caller::Volunteer,
    ];
    /// Residents of every household the matrix knows.
    pub const RESIDENTS: &'static [Caller] =
        &[Caller::Resident, Caller::OtherResident, Caller::ResidentB];

    /// Whether the caller authenticates with a bearer token.
    pub fn is_token(self) -> bool {
        matches!(
            self,
            Caller::TokenB | Caller::TokenNoAction | Caller::TokenA | Caller::Device
        )
    }
}

/// The request body of a probe. Values are templates: `{name}` is replaced by the fixture or
/// generated value of that name (see [`Probe`]). Web forms get the caller's `_csrf` added.
#[derive(Debug, Clone, Copy)]
pub enum ProbeBody {
    None,
    /// JSON text (placeholders may stand inside strings or for numbers).
    Json(&'static str),
    /// An `application/x-www-form-urlencoded` form: (field, value template) pairs.
    Form(&'static [(&'static str, &'static str)]),
    /// A `multipart/form-data` form: (field, value template) pairs; a field named `file` or
    /// `photo` is sent as a file.
    Multipart(&'static [(&'static str, &'static str)]),
    /// Raw bytes of a content type: `{png}` is a small PNG, `{csv}` a one-household import
    /// sheet; otherwise the template as text.
    Raw(&'static str, &'static str),
}

/// One request of the authorization matrix: how to call a route with community A's objects,
/// and who must get what. Plain data, written in each module's `probes.rs`:
///
/// ```ignore
/// Probe::get("/api/v1/reports/{report}").allow(&[Staff, Grid, Resident]).actions(&[Action::ReportRead])
/// ```
///
/// The path is the route with its parameters replaced by fixture names in braces (a query
/// string may follow); `{report}` is the id of the fixture named `report`, made by the matrix
/// harness (`tests/it/matrix/fixtures.rs`, which lists them). Generated values: `{new_id_number}`,
/// `{new_phone}`, `{new_name}`, `{new_code}`, `{new_plate}`, `{now}`, `{in_1h}`, `{in_1d}`,
/// `{api_key}` (the caller's token, empty for others).
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub method: &'static str,
    pub path: &'static str,
    pub body: ProbeBody,
    /// The actions any of which lets a caller through; `Caller::TokenNoAction` holds every
    /// other action. Empty: the route checks none (own data, public pages).
    pub actions: &'static [Action],
    /// Callers that must succeed (2xx, or a redirect other than to `/login`).
    pub allow: &'static [Caller],
    /// Callers that are answered (2xx) but must see nothing of A (lists filtered by scope).
    pub filtered: &'static [Caller],
    /// A status this route documents for refusing a caller besides 401, 403 and 404 (e.g. a
    /// place outside the caller's area named in a form is a 400 of the form); 0 when none.
    pub refusal: u16,
    /// The exact status an allowed caller gets, when it is one the matrix would otherwise take
    /// for a refusal (sign-out answers with a redirect to the sign-in page); 0 when any success
    /// will do.
    pub success: u16,
    /// A response streams (`/events`): only its status is read.
    pub stream: bool,
    /// Why, when the expectation is not obvious.
    pub note: &'static str,
}

impl Probe {
    pub const fn new(method: &'static str, path: &'static str) -> Probe {
        Probe {
            method,
            path,
            body: ProbeBody::None,
            actions: &[],
            allow: &[],
            filtered: &[],
            refusal: 0,
            success: 0,
            stream: false,
            note: "",
        }
    }
    pub const fn get(path: &'static str) -> Probe {
        Probe::new("GET", path)
    }
    pub const fn post(path: &'static str) -> Probe {
        Probe::new("POST", path)
    }
    pub const fn put(path: &'static str) -> Probe {
        Probe::new("PUT", path)
    }
    pub const fn patch(path: &'static str) -> Probe {
        Probe::new("PATCH", path)
    }
    pub const fn delete(path: &'static str) -> Probe {
        Probe::new("DELETE", path)
    }
    pub const fn options(path: &'static str) -> Probe {
        Probe::new("OPTIONS", path)
    }
    pub const fn json(mut self, body: &'static str) -> Probe {
        self.body = ProbeBody::Json(body);
        self
    }
    pub const fn form(mut self, fields: &'static [(&'static str, &'static str)]) -> Probe {
        self.body = ProbeBody::Form(fields);
        self
    }
    pub const fn multipart(mut self, fields: &'static [(&'static str, &'static str)]) -> Probe {
        self.body = ProbeBody::Multipart(fields);
        self
    }
    pub const fn raw(mut self, content_type: &'static str, body: &'static str) -> Probe {
        self.body = ProbeBody::Raw(content_type, body);
        self
    }
    pub const fn actions(mut self, actions: &'static [Action]) -> Probe {
        self.actions = actions;
        self
    }
    pub const fn allow(mut self, callers: &'static [Caller]) -> Probe {
        self.allow = callers;
        self
    }
    pub const fn filtered(mut self, callers: &'static [Caller]) -> Probe {
        self.filtered = callers;
        self
    }
    pub const fn refused_with(mut self, status: u16) -> Probe {
        self.refusal = status;
        self
    }
    pub const fn succeeds_with(mut self, status: u16) -> Probe {
        self.success = status;
        self
    }
    pub const fn stream(mut self) -> Probe {
        self.stream = true;
        self
    }
    pub const fn note(mut self, note: &'static str) -> Probe {
        self.note = note;
        self
    }
}
