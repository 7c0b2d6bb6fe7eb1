//! Who may do what, where.
//!
//! - An [`Action`] is a capability, declared by the module that owns it (its manifest lists the
//!   actions with their labels and whether they are sensitive). The platform's first capabilities
//!   keep theirs as associated constants here (`Action::ReportRead`); a new module declares
//!   `pub const FEE_COLLECT: Action = Action::new("fee_collect")` in its own folder.
//! - A role is data: a built-in template ([`RoleTemplate`], the kernel's and the ones modules
//!   contribute, with the actions every module adds to it through [`RoleGrant`]) or a custom role
//!   an administrator composed. The [`Catalog`] holds the built-in part; the store adds custom
//!   roles and resolves a user's bindings into [`Binding`]s carrying their actions.
//! - A [`Principal`] (the caller) cannot be built by handlers: its fields are private and the
//!   only constructors are the store's account loader ([`Principal::assemble`]) and the
//!   platform itself ([`Principal::system`], for the CLI and background jobs); a test scans the
//!   sources to keep it that way.
//! - Data-layer functions take a [`Grant`] from [`Principal::grant`]. Its area can only be read
//!   by naming the action the function needs ([`Grant::scope`]), so a store function cannot
//!   forget the action check: a grant for another action is refused there.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A capability. Equality is by name; the names are unique across modules (the [`Catalog`]
/// refuses a duplicate).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Action(&'static str);

impl Action {
    pub const fn new(name: &'static str) -> Action {
        Action(name)
    }
    pub fn as_str(self) -> &'static str {
        self.0
    }
}

impl std::fmt::Debug for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for Action {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl utoipa::PartialSchema for Action {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "An action name, e.g. `report_read` (GET /api/v1/roles lists them all)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Action {}

/// The actions of the registry, accounts and the first capabilities (reports, IoT, access,
/// notifications). Each is declared with its label and sensitivity in its module's manifest.
#[allow(non_upper_case_globals)]
impl Action {
    // ---- registry (一户一表) ----
    pub const PlaceRead: Action = Action::new("place_read");
    pub const PlaceWrite: Action = Action::new("place_write");
    pub const OrgRead: Action = Action::new("org_read");
    pub const OrgWrite: Action = Action::new("org_write");
    pub const HouseholdRead: Action = Action::new("household_read");
    pub const HouseholdWrite: Action = Action::new("household_write");
    pub const PersonRead: Action = Action::new("person_read");
    pub const PersonWrite: Action = Action::new("person_write");
    /// See full ID and phone numbers (with a stated purpose, audited).
    pub const PersonReveal: Action = Action::new("person_reveal");
    /// See labels marked sensitive (低保, 残疾, 党员 …).
    pub const SensitiveLabelRead: Action = Action::new("sensitive_label_read");
    pub const LabelWrite: Action = Action::new("label_write");
    pub const RegistryImport: Action = Action::new("registry_import");
    pub const RegistryExport: Action = Action::new("registry_export");
    pub const CorrectionReview: Action = Action::new("correction_review");
    // ---- accounts and audit (the platform) ----
    pub const UserAdmin: Action = Action::new("user_admin");
    /// Compose custom roles from actions the administrator holds.
    pub const RoleAdmin: Action = Action::new("role_admin");
    pub const AuditRead: Action = Action::new("audit_read");
    pub const TokenCreate: Action = Action::new("token_create");
    // ---- reports (报事 / 报修 / 投诉) ----
    /// Read reports of the area (staff; residents read their own through their household).
    pub const ReportRead: Action = Action::new("report_read");
    /// Enter a report: on a resident's behalf (代客), found on patrol, or by an integration
    /// (Open311 `api_key`).
    pub const ReportCreate: Action = Action::new("report_create");
    /// Work a report dispatched to one's unit: sign, return, reply, ask for extension.
    pub const ReportHandle: Action = Action::new("report_handle");
    /// Accept, reject, dispatch, transfer, escalate, summon (吹哨), review, merge duplicates,
    /// approve extensions, record return visits, moderate public reports.
    pub const ReportDispatch: Action = Action::new("report_dispatch");
    /// Report statistics (响应率, 解决率 …) of the area.
    pub const ReportStats: Action = Action::new("report_stats");
    /// Edit the routing catalogue (派单目录) and the working-day calendar.
    pub const RoutingAdmin: Action = Action::new("routing_admin");
    // ---- IoT and safety (物联感知) ----
    pub const DeviceRead: Action = Action::new("device_read");
    /// Register devices, issue device tokens, edit alarm rules.
    pub const DeviceAdmin: Action = Action::new("device_admin");
    pub const AlarmRead: Action = Action::new("alarm_read");
    /// Acknowledge, clear, assign and comment on alarms.
    pub const AlarmHandle: Action = Action::new("alarm_handle");
    // ---- gates and passes (门禁与访客) ----
    /// Gate and vehicle access records.
    pub const AccessRead: Action = Action::new("access_read");
    /// Verify visitor passes at a gate (gate terminals use a token with this action).
    pub const VisitorVerify: Action = Action::new("visitor_verify");
    // ---- notifications and integrations ----
    /// Manage outbound webhooks of the area.
    pub const WebhookAdmin: Action = Action::new("webhook_admin");
}

/// An action as a module declares it: the label comes from the module's locale files under
/// `action-<name>`; sensitive actions (reveal, export, payments, votes administration) are named
/// as such wherever roles are composed.
#[derive(Debug, Clone, Copy)]
pub struct ActionInfo {
    pub action: Action,
    pub sensitive: bool,
}

impl ActionInfo {
    pub const fn plain(action: Action) -> ActionInfo {
        ActionInfo {
            action,
            sensitive: false,
        }
    }
    pub const fn sensitive(action: Action) -> ActionInfo {
        ActionInfo {
            action,
            sensitive: true,
        }
    }
}

/// How a role is bound, which decides how its area is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleKind {
    /// Staff who govern an area (committee, grid, street, district, city): bound to a place.
    Area,
    /// Staff of an organisation that works what reaches it — a property company, a department.
    /// Their area says where their unit may work, not that they may read everything filed
    /// there: of the reports in it they see the ones their unit handles or was summoned to.
    Unit,
    /// A resident, bound to a household.
    Household,
    /// Someone who takes part without governing (merchant, volunteer, partner): bound to a place
    /// or organisation, not staff.
    Member,
}

impl RoleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleKind::Area => "area",
            RoleKind::Unit => "unit",
            RoleKind::Household => "household",
            RoleKind::Member => "member",
        }
    }
    pub fn parse(s: &str) -> Option<RoleKind> {
        [
            RoleKind::Area,
            RoleKind::Unit,
            RoleKind::Household,
            RoleKind::Member,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
    /// Staff see the staff console.
    pub fn is_staff(self) -> bool {
        matches!(self, RoleKind::Area | RoleKind::Unit)
    }
}

/// A role by its code: a built-in template (`committee_staff`) or a custom role
/// (`custom_<id>`). Codes are what bindings store.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Role(Cow<'static, str>);

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl utoipa::PartialSchema for Role {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some(
                "A role code: a built-in template such as `committee_staff`, or a custom role (GET /api/v1/roles)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Role {}

/// The kernel's role templates, by code. Modules add actions to them ([`RoleGrant`]) and may
/// contribute templates of their own.
#[allow(non_upper_case_globals)]
impl Role {
    pub const Resident: Role = Role::builtin("resident");
    pub const GridWorker: Role = Role::builtin("grid_worker");
    pub const CommitteeStaff: Role = Role::builtin("committee_staff");
    pub const PropertyStaff: Role = Role::builtin("property_staff");
    pub const StreetOfficer: Role = Role::builtin("street_officer");
    pub const DepartmentOfficer: Role = Role::builtin("department_officer");
    pub const DistrictAdmin: Role = Role::builtin("district_admin");
    pub const CityAdmin: Role = Role::builtin("city_admin");
    pub const Merchant: Role = Role::builtin("merchant");
    pub const Volunteer: Role = Role::builtin("volunteer");
}

impl Role {
    pub const fn builtin(code: &'static str) -> Role {
        Role(Cow::Borrowed(code))
    }
    pub fn from_code(code: &str) -> Role {
        Role(Cow::Owned(code.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Custom roles' codes start with `custom_`.
    pub fn is_custom(&self) -> bool {
        self.0.starts_with(CUSTOM_PREFIX)
    }
}

pub const CUSTOM_PREFIX: &str = "custom_";

/// A built-in role as declared: code, kind and the actions of the declaring module.
#[derive(Debug, Clone, Copy)]
pub struct RoleTemplate {
    pub code: &'static str,
    pub kind: RoleKind,
    pub actions: &'static [Action],
    /// Carries every declared action (district and city administrators).
    pub everything: bool,
}

/// Actions a module adds to a role template declared elsewhere (the kernel's or another
/// module's): the reports module gives `committee_staff` the report actions.
#[derive(Debug, Clone, Copy)]
pub struct RoleGrant {
    pub role: &'static str,
    pub actions: &'static [Action],
}

/// A role with everything it carries: a built-in template with every module's grants, or a
/// custom role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDef {
    pub role: Role,
    pub kind: RoleKind,
    pub actions: Arc<[Action]>,
}

/// What every module declared: the actions and the built-in roles. Built once at start.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    actions: Vec<ActionInfo>,
    /// Module of each action (for grouping on the roles page).
    modules: BTreeMap<Action, &'static str>,
    roles: Vec<RoleDef>,
}

/// One module's contribution to the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct CatalogPart {
    pub module: &'static str,
    pub actions: &'static [ActionInfo],
    pub roles: &'static [RoleTemplate],
    pub grants: &'static [RoleGrant],
}

impl Catalog {
    /// Build the catalogue; a duplicate action or role, a grant to an unknown role or of an
    /// action nobody declared is a programming error, reported here (and by a test).
    pub fn build(parts: &[CatalogPart]) -> Result<Catalog, String> {
        let mut cat = Catalog::default();
        for part in parts {
            for a in part.actions {
                if cat.modules.insert(a.action, part.module).is_some() {
                    return Err(format!("action {} declared twice", a.action));
                }
                cat.actions.push(*a);
            }
        }
        let mut roles: Vec<(Role, RoleKind, BTreeSet<Action>)> = Vec::new();
        for part in parts {
            for t in part.roles {
                if roles.iter().any(|(r, _, _)| r.as_str() == t.code) {
                    return Err(format!("role {} declared twice", t.code));
                }
                let set: BTreeSet<Action> = if t.everything {
                    cat.modules.keys().copied().collect()
                } else {
                    t.actions.iter().copied().collect()
                };
                roles.push((Role::builtin(t.code), t.kind, set));
            }
        }
        for part in parts {
            for g in part.grants {
                let Some((_, _, set)) = roles.iter_mut().find(|(r, _, _)| r.as_str() == g.role)
                else {
                    return Err(format!(
                        "module {} grants to unknown role {}",
                        part.module, g.role
                    ));
                };
                set.extend(g.actions.iter().copied());
            }
        }
        for (_, _, set) in &roles {
            if let Some(a) = set.iter().find(|a| !cat.modules.contains_key(a)) {
                return Err(format!("role action {a} is declared by no module"));
            }
        }
        cat.roles = roles
            .into_iter()
            .map(|(role, kind, set)| RoleDef {
                role,
                kind,
                actions: set.into_iter().collect(),
            })
            .collect();
        Ok(cat)
    }

    pub fn actions(&self) -> &[ActionInfo] {
        &self.actions
    }
    /// The declared action of that name.
    pub fn action(&self, name: &str) -> Option<Action> {
        self.actions
            .iter()
            .map(|a| a.action)
            .find(|a| a.as_str() == name)
    }
    pub fn info(&self, a: Action) -> Option<&ActionInfo> {
        self.actions.iter().find(|i| i.action == a)
    }
    pub fn module_of(&self, a: Action) -> Option<&'static str> {
        self.modules.get(&a).copied()
    }
    /// The built-in roles.
    pub fn roles(&self) -> &[RoleDef] {
        &self.roles
    }
    pub fn role(&self, code: &str) -> Option<&RoleDef> {
        self.roles.iter().find(|r| r.role.as_str() == code)
    }
}

/// One effective role binding: the role with its actions, and the materialized paths of the
/// subtrees it covers (a property company's binding covers each community it serves).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    role: Role,
    kind: RoleKind,
    actions: Arc<[Action]>,
    node_id: String,
    prefixes: Vec<String>,
    household_id: Option<String>,
}

impl Binding {
    /// A resolved binding (the store's account loader).
    pub fn new(
        def: &RoleDef,
        node_id: String,
        prefixes: Vec<String>,
        household_id: Option<String>,
    ) -> Binding {
        Binding {
            role: def.role.clone(),
            kind: def.kind,
            actions: def.actions.clone(),
            node_id,
            prefixes,
            household_id,
        }
    }
    pub fn role(&self) -> &Role {
        &self.role
    }
    pub fn kind(&self) -> RoleKind {
        self.kind
    }
    pub fn carries(&self, a: Action) -> bool {
        self.actions.contains(&a)
    }
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }
    /// The place or organisation the role is bound to.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }
    pub fn household_id(&self) -> Option<&str> {
        self.household_id.as_deref()
    }
}

/// Limits carried by an API token: a subset of the creator's actions, inside one subtree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenLimit {
    pub actions: Vec<Action>,
    pub prefix: String,
}

/// The authenticated caller. Built only by the store's account loader or as the platform
/// itself; handlers receive it from the extractors and cannot make one.
#[derive(Debug, Clone)]
pub struct Principal {
    user_id: String,
    login: String,
    display_name: String,
    bindings: Vec<Binding>,
    token: Option<TokenLimit>,
    system: bool,
}

/// Proof that the caller may perform one action, limited to some subtrees. Its area is read
/// through [`Grant::scope`], which names the action the reader needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    action: Action,
    prefixes: Vec<String>,
    user_id: String,
}

/// The area of a [`Grant`] for the action it was checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    prefixes: &'a [String],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden;

impl Grant {
    pub fn action(&self) -> Action {
        self.action
    }
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
    /// The granted area, if this is the grant for `action`: every use of a grant's area names
    /// the action it stands for, so a grant for another action is refused (403) instead of
    /// silently accepted.
    pub fn scope(&self, action: Action) -> Result<Scope<'_>, Forbidden> {
        if self.action == action {
            Ok(Scope {
                prefixes: &self.prefixes,
            })
        } else {
            Err(Forbidden)
        }
    }
    /// The granted area for whichever of `actions` this grant is for (a function that serves
    /// several capabilities, e.g. gates read with `access_read`, `device_admin` or
    /// `visitor_verify`).
    pub fn scope_in(&self, actions: &[Action]) -> Result<Scope<'_>, Forbidden> {
        if actions.contains(&self.action) {
            Ok(Scope {
                prefixes: &self.prefixes,
            })
        } else {
            Err(Forbidden)
        }
    }
    /// The area of this grant whatever its action. Only for resolving a place (its name and
    /// path) inside the area where the holder acts — `Store::place` — never for data: a test
    /// keeps every other caller out.
    pub fn place_scope(&self) -> Scope<'_> {
        Scope {
            prefixes: &self.prefixes,
        }
    }
    /// The granted subtrees if this is the grant for `action`, none otherwise (an empty area
    /// matches nothing: a wrong grant fails closed).
    pub fn area(&self, action: Action) -> &[String] {
        if self.action == action {
            &self.prefixes
        } else {
            &[]
        }
    }
    /// Whether this is the grant for `action` and covers the place at `path`.
    pub fn allows(&self, action: Action, path: &str) -> bool {
        self.scope(action).is_ok_and(|s| s.covers(path))
    }
    /// A grant for the platform itself (CLI import/export by the operator, demo seeding,
    /// background jobs): the whole tree. Never reached from request handlers (a test scans the
    /// server's sources).
    pub fn system(action: Action) -> Grant {
        Grant {
            action,
            prefixes: vec!["/".into()],
            user_id: "system".into(),
        }
    }
}

impl<'a> Scope<'a> {
    pub fn prefixes(&self) -> &'a [String] {
        self.prefixes
    }
    /// Whether a place path lies inside the granted subtrees.
    pub fn covers(&self, path: &str) -> bool {
        self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
    /// The granted area intersected with the subtree at `path`: `[path]` when it lies inside the
    /// grant, the granted subtrees below it otherwise (empty when they do not meet).
    pub fn narrowed_to(&self, path: &str) -> Vec<String> {
        if self.covers(path) {
            return vec![path.to_string()];
        }
        self.prefixes
            .iter()
            .filter(|p| p.starts_with(path))
            .cloned()
            .collect()
    }
    /// Whether the area is the whole tree.
    pub fn is_everywhere(&self) -> bool {
        self.prefixes.iter().any(|p| p == "/")
    }
}

/// What the store's account loader hands to [`Principal::assemble`].
#[derive(Debug)]
pub struct PrincipalParts {
    pub user_id: String,
    pub login: String,
    pub display_name: String,
    pub bindings: Vec<Binding>,
    pub token: Option<TokenLimit>,
}

impl Principal {
    /// The store's account loader builds the principal of a user (or of a token: the user's
    /// bindings with the token's limits). Handlers never call this (a test scans for it).
    #[doc(hidden)]
    pub fn assemble(parts: PrincipalParts) -> Principal {
        Principal {
            user_id: parts.user_id,
            login: parts.login,
            display_name: parts.display_name,
            bindings: parts.bindings,
            token: parts.token,
            system: false,
        }
    }

    /// The platform itself acting on a rule (an IoT alarm opening a repair report, a deadline
    /// job, the CLI): the whole tree, every action, and no user row behind it (`is_system`).
    /// Never reached from request handlers (a test scans the server's sources).
    pub fn system(name: &str) -> Principal {
        Principal {
            user_id: "system".into(),
            login: name.into(),
            display_name: name.into(),
            bindings: Vec::new(),
            token: None,
            system: true,
        }
    }

    /// The same caller narrowed by an API token's limits (a token never does more than its
    /// creator; narrowing can only take away).
    pub fn limited_by(mut self, limit: TokenLimit) -> Principal {
        if !self.system {
            self.token = Some(limit);
        }
        self
    }

    /// Whether this is [`Principal::system`] (no user account to refer to).
    pub fn is_system(&self) -> bool {
        self.system
    }
    pub fn user_id(&self) -> &str {
        &self.user_id
    }
    pub fn login(&self) -> &str {
        &self.login
    }
    pub fn display_name(&self) -> &str {
        &self.display_name
    }
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }
    /// The limits of the API token the caller authenticated with, if any.
    pub fn token(&self) -> Option<&TokenLimit> {
        self.token.as_ref()
    }
    /// Whether the caller authenticated with an API token.
    pub fn via_token(&self) -> bool {
        self.token.is_some()
    }

    /// The caller's grant for `action`, or `Forbidden` when no binding carries it.
    pub fn grant(&self, action: Action) -> Result<Grant, Forbidden> {
        self.grant_where(action, |_| true)
    }

    /// The grant for `action` that the caller's bindings selected by `keep` carry (e.g. a
    /// report reader's area bindings apart from their unit bindings).
    pub fn grant_where(
        &self,
        action: Action,
        keep: impl Fn(&Binding) -> bool,
    ) -> Result<Grant, Forbidden> {
        if self.system {
            return Ok(Grant::system(action));
        }
        if let Some(limit) = &self.token
            && !limit.actions.contains(&action)
        {
            return Err(Forbidden);
        }
        let mut prefixes: Vec<String> = Vec::new();
        for b in self
            .bindings
            .iter()
            .filter(|b| keep(b) && b.carries(action))
        {
            for p in &b.prefixes {
                let effective = match &self.token {
                    None => Some(p.clone()),
                    Some(limit) if limit.prefix.starts_with(p.as_str()) => {
                        Some(limit.prefix.clone())
                    }
                    Some(limit) if p.starts_with(limit.prefix.as_str()) => Some(p.clone()),
                    Some(_) => None,
                };
                if let Some(e) = effective {
                    prefixes.push(e);
                }
            }
        }
        prefixes.sort();
        prefixes.dedup();
        // Drop prefixes already covered by a shorter one.
        let mut minimal: Vec<String> = Vec::new();
        for p in prefixes {
            if !minimal.iter().any(|m| p.starts_with(m.as_str())) {
                minimal.push(p);
            }
        }
        if minimal.is_empty() {
            return Err(Forbidden);
        }
        Ok(Grant {
            action,
            prefixes: minimal,
            user_id: self.user_id.clone(),
        })
    }

    pub fn can(&self, action: Action) -> bool {
        self.grant(action).is_ok()
    }

    /// Whether the caller holds `action` over the place at `path`.
    pub fn may(&self, action: Action, path: &str) -> bool {
        self.grant(action)
            .is_ok_and(|g| g.prefixes.iter().any(|p| path.starts_with(p.as_str())))
    }

    /// Households the caller lives in (resident bindings). Tokens never act as residents.
    pub fn own_households(&self) -> Vec<String> {
        if self.token.is_some() {
            return Vec::new();
        }
        self.bindings
            .iter()
            .filter_map(|b| b.household_id.clone())
            .collect()
    }

    /// The organisations the caller works for through unit roles ([`RoleKind::Unit`]) that
    /// carry `action`.
    pub fn units(&self, action: Action) -> Vec<String> {
        if self.grant(action).is_err() {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        for b in &self.bindings {
            if b.kind == RoleKind::Unit
                && b.carries(action)
                && !b.node_id.is_empty()
                && !out.contains(&b.node_id)
            {
                out.push(b.node_id.clone());
            }
        }
        out
    }

    pub fn roles(&self) -> Vec<Role> {
        let mut r: Vec<Role> = Vec::new();
        for b in &self.bindings {
            if !r.contains(&b.role) {
                r.push(b.role.clone());
            }
        }
        r
    }

    pub fn has_role(&self, role: &Role) -> bool {
        self.bindings.iter().any(|b| &b.role == role)
    }

    /// Whether the caller works in the staff console (an area or unit role).
    pub fn is_staff(&self) -> bool {
        self.system || self.bindings.iter().any(|b| b.kind.is_staff())
    }
}

const fn template(code: &'static str, kind: RoleKind, actions: &'static [Action]) -> RoleTemplate {
    RoleTemplate {
        code,
        kind,
        actions,
        everything: false,
    }
}

/// The platform's own part of the catalogue: accounts and audit actions, and the built-in role
/// templates every installation has (modules add their actions to them). Templates without
/// actions yet are filled by the modules that need them (fees give the cashier payments).
pub const KERNEL: CatalogPart = CatalogPart {
    module: "platform",
    actions: &[
        ActionInfo::sensitive(Action::UserAdmin),
        ActionInfo::sensitive(Action::RoleAdmin),
        ActionInfo::plain(Action::AuditRead),
        ActionInfo::plain(Action::TokenCreate),
    ],
    roles: &[
        template("resident", RoleKind::Household, &[]),
        template("grid_worker", RoleKind::Area, &[]),
        template(
            "committee_staff",
            RoleKind::Area,
            &[
                Action::UserAdmin,
                Action::RoleAdmin,
                Action::AuditRead,
                Action::TokenCreate,
            ],
        ),
        template("property_staff", RoleKind::Unit, &[]),
        template(
            "street_officer",
            RoleKind::Area,
            &[
                Action::UserAdmin,
                Action::RoleAdmin,
                Action::AuditRead,
                Action::TokenCreate,
            ],
        ),
        template("department_officer", RoleKind::Unit, &[]),
        RoleTemplate {
            code: "district_admin",
            kind: RoleKind::Area,
            actions: &[],
            everything: true,
        },
        RoleTemplate {
            code: "city_admin",
            kind: RoleKind::Area,
            actions: &[],
            everything: true,
        },
        template("merchant", RoleKind::Member, &[]),
        template("volunteer", RoleKind::Member, &[]),
        // Roles the coming modules need; each module adds its actions to them.
        template("property_cashier", RoleKind::Unit, &[]),
        template("owners_committee_member", RoleKind::Member, &[]),
        template("party_secretary", RoleKind::Unit, &[]),
        template("volunteer_leader", RoleKind::Member, &[]),
        template("social_org_staff", RoleKind::Unit, &[]),
        template("service_clerk", RoleKind::Area, &[]),
        template("department_data_officer", RoleKind::Unit, &[]),
        template("enterprise_partner", RoleKind::Member, &[]),
    ],
    grants: &[],
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const TEST_PART: CatalogPart = CatalogPart {
        module: "test",
        actions: &[
            ActionInfo::plain(Action::PersonRead),
            ActionInfo::plain(Action::SensitiveLabelRead),
            ActionInfo::plain(Action::ReportRead),
            ActionInfo::plain(Action::RegistryImport),
            ActionInfo::plain(Action::PersonWrite),
        ],
        roles: &[],
        grants: &[
            RoleGrant {
                role: "committee_staff",
                actions: &[
                    Action::PersonRead,
                    Action::SensitiveLabelRead,
                    Action::ReportRead,
                    Action::RegistryImport,
                    Action::PersonWrite,
                ],
            },
            RoleGrant {
                role: "property_staff",
                actions: &[Action::PersonRead, Action::ReportRead],
            },
            RoleGrant {
                role: "street_officer",
                actions: &[Action::PersonRead, Action::ReportRead],
            },
        ],
    };

    pub(crate) fn catalog() -> Catalog {
        Catalog::build(&[KERNEL, TEST_PART]).unwrap()
    }

    fn binding(role: &Role, node: &str, prefixes: &[&str]) -> Binding {
        let cat = catalog();
        let def = cat.role(role.as_str()).unwrap();
        Binding::new(
            def,
            node.into(),
            prefixes.iter().map(|p| p.to_string()).collect(),
            None,
        )
    }

    fn principal(role: Role, prefix: &str) -> Principal {
        Principal::assemble(PrincipalParts {
            user_id: "u".into(),
            login: "u".into(),
            display_name: "u".into(),
            bindings: vec![binding(&role, "n", &[prefix])],
            token: None,
        })
    }

    #[test]
    fn the_catalogue_refuses_what_nobody_declared() {
        const DUP: CatalogPart = CatalogPart {
            module: "dup",
            actions: &[ActionInfo::plain(Action::UserAdmin)],
            roles: &[],
            grants: &[],
        };
        assert!(Catalog::build(&[KERNEL, DUP]).is_err());
        const UNKNOWN_ROLE: CatalogPart = CatalogPart {
            module: "x",
            actions: &[],
            roles: &[],
            grants: &[RoleGrant {
                role: "nobody",
                actions: &[],
            }],
        };
        assert!(Catalog::build(&[KERNEL, UNKNOWN_ROLE]).is_err());
        const UNDECLARED: CatalogPart = CatalogPart {
            module: "y",
            actions: &[],
            roles: &[],
            grants: &[RoleGrant {
                role: "grid_worker",
                actions: &[Action::DeviceRead],
            }],
        };
        assert!(Catalog::build(&[KERNEL, UNDECLARED]).is_err());
        // Administrators carry every declared action, whoever declared it.
        let cat = catalog();
        assert!(
            cat.role("city_admin")
                .unwrap()
                .actions
                .contains(&Action::RegistryImport)
        );
        assert_eq!(cat.action("report_read"), Some(Action::ReportRead));
        assert_eq!(cat.action("nope"), None);
    }

    #[test]
    fn grants_follow_roles_and_subtrees() {
        let staff = principal(Role::CommitteeStaff, "/c/d/s/a/");
        let g = staff.grant(Action::PersonRead).unwrap();
        let s = g.scope(Action::PersonRead).unwrap();
        assert!(s.covers("/c/d/s/a/g/b/"));
        assert!(!s.covers("/c/d/s/b/"));
        // The area is only read for the action the grant is for.
        assert_eq!(g.scope(Action::PersonWrite), Err(Forbidden));
        assert_eq!(
            principal(Role::PropertyStaff, "/x/").grant(Action::SensitiveLabelRead),
            Err(Forbidden)
        );
        assert_eq!(
            principal(Role::Resident, "/x/").grant(Action::PersonRead),
            Err(Forbidden)
        );
    }

    #[test]
    fn unit_roles_are_told_apart_from_area_roles() {
        let p = Principal::assemble(PrincipalParts {
            user_id: "u".into(),
            login: "u".into(),
            display_name: "u".into(),
            bindings: vec![
                binding(&Role::CommitteeStaff, "n", &["/c/d/s/a/"]),
                binding(&Role::PropertyStaff, "company", &["/c/d/s/a/", "/c/d/s/b/"]),
            ],
            token: None,
        });
        let all = p.grant(Action::ReportRead).unwrap();
        assert!(all.scope(Action::ReportRead).unwrap().covers("/c/d/s/b/x/"));
        let area = p
            .grant_where(Action::ReportRead, |b| b.kind() != RoleKind::Unit)
            .unwrap();
        assert_eq!(
            area.scope(Action::ReportRead).unwrap().prefixes(),
            &["/c/d/s/a/".to_string()]
        );
        let unit = p
            .grant_where(Action::ReportRead, |b| b.kind() == RoleKind::Unit)
            .unwrap();
        assert!(
            unit.scope(Action::ReportRead)
                .unwrap()
                .covers("/c/d/s/b/x/")
        );
        assert_eq!(p.units(Action::ReportRead), vec!["company".to_string()]);
        // A role that lacks the action brings no unit; an area-only caller has none.
        assert!(p.units(Action::RegistryImport).is_empty());
        assert!(
            principal(Role::StreetOfficer, "/c/d/s/")
                .units(Action::ReportRead)
                .is_empty()
        );
        assert_eq!(
            principal(Role::PropertyStaff, "/x/")
                .grant_where(Action::ReportRead, |b| b.kind() != RoleKind::Unit),
            Err(Forbidden)
        );
    }

    #[test]
    fn narrowing_intersects_subtrees() {
        let g = principal(Role::CommitteeStaff, "/c/d/s/a/")
            .grant(Action::PersonRead)
            .unwrap();
        let s = g.scope(Action::PersonRead).unwrap();
        assert_eq!(
            s.narrowed_to("/c/d/s/a/g1/"),
            vec!["/c/d/s/a/g1/".to_string()]
        );
        assert_eq!(s.narrowed_to("/c/d/"), vec!["/c/d/s/a/".to_string()]);
        assert!(s.narrowed_to("/c/d/s/b/").is_empty());
    }

    #[test]
    fn tokens_narrow_actions_and_subtree() {
        let mut admin = principal(Role::CityAdmin, "/c/");
        admin.token = Some(TokenLimit {
            actions: vec![Action::PersonRead],
            prefix: "/c/d/s/a/".into(),
        });
        assert_eq!(
            admin
                .grant(Action::PersonRead)
                .unwrap()
                .scope(Action::PersonRead)
                .unwrap()
                .prefixes(),
            ["/c/d/s/a/".to_string()]
        );
        assert_eq!(admin.grant(Action::PersonWrite), Err(Forbidden));
        let mut staff = principal(Role::CommitteeStaff, "/c/d/s/a/");
        staff.token = Some(TokenLimit {
            actions: vec![Action::PersonRead],
            prefix: "/c/d/s/b/".into(),
        });
        assert_eq!(staff.grant(Action::PersonRead), Err(Forbidden));
    }

    #[test]
    fn the_system_holds_everything_and_is_no_user() {
        let s = Principal::system("job");
        assert!(s.is_system() && s.is_staff());
        assert!(
            s.grant(Action::WebhookAdmin)
                .unwrap()
                .scope(Action::WebhookAdmin)
                .unwrap()
                .is_everywhere()
        );
        assert!(!principal(Role::CityAdmin, "/").is_system());
    }
}
