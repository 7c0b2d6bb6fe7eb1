//! Who may do what, where. A role binding is role × place subtree; a capability (`Action`) is
//! granted together with the subtrees where it holds. Data-layer functions take a [`Grant`],
//! which can only be obtained from [`Principal::grant`], so a list query cannot forget its scope.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Resident,
    GridWorker,
    CommitteeStaff,
    PropertyStaff,
    StreetOfficer,
    DepartmentOfficer,
    DistrictAdmin,
    CityAdmin,
    Merchant,
    Volunteer,
}

impl Role {
    pub const ALL: [Role; 10] = [
        Role::Resident,
        Role::GridWorker,
        Role::CommitteeStaff,
        Role::PropertyStaff,
        Role::StreetOfficer,
        Role::DepartmentOfficer,
        Role::DistrictAdmin,
        Role::CityAdmin,
        Role::Merchant,
        Role::Volunteer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Resident => "resident",
            Role::GridWorker => "grid_worker",
            Role::CommitteeStaff => "committee_staff",
            Role::PropertyStaff => "property_staff",
            Role::StreetOfficer => "street_officer",
            Role::DepartmentOfficer => "department_officer",
            Role::DistrictAdmin => "district_admin",
            Role::CityAdmin => "city_admin",
            Role::Merchant => "merchant",
            Role::Volunteer => "volunteer",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Staff of an organisation that works what reaches it — a property company, a department —
    /// as opposed to the staff who govern an area (committee, grid, street, district, city). Their
    /// area says where their unit may work, not that they may read everything filed there: of
    /// the reports in it they see the ones their unit handles or was summoned to (a complaint
    /// about the property company is not the company's to read).
    pub fn works_by_unit(self) -> bool {
        matches!(self, Role::PropertyStaff | Role::DepartmentOfficer)
    }

    /// The capabilities this role carries inside its subtree.
    pub fn actions(self) -> &'static [Action] {
        use Action::*;
        match self {
            Role::Resident | Role::Volunteer => &[],
            Role::Merchant => &[PlaceRead, OrgRead],
            Role::GridWorker => &[
                PlaceRead,
                OrgRead,
                HouseholdRead,
                HouseholdWrite,
                PersonRead,
                PersonWrite,
                PersonReveal,
                SensitiveLabelRead,
                ReportRead,
                ReportCreate,
                ReportHandle,
                DeviceRead,
                AlarmRead,
                AlarmHandle,
                AccessRead,
            ],
            Role::CommitteeStaff => &[
                PlaceRead,
                PlaceWrite,
                OrgRead,
                HouseholdRead,
                HouseholdWrite,
                PersonRead,
                PersonWrite,
                PersonReveal,
                SensitiveLabelRead,
                RegistryImport,
                RegistryExport,
                CorrectionReview,
                UserAdmin,
                AuditRead,
                TokenCreate,
                ReportRead,
                ReportCreate,
                ReportHandle,
                ReportDispatch,
                ReportStats,
                DeviceRead,
                AlarmRead,
                AlarmHandle,
                AccessRead,
                WebhookAdmin,
            ],
            Role::PropertyStaff => &[
                PlaceRead,
                OrgRead,
                HouseholdRead,
                PersonRead,
                PersonReveal,
                ReportRead,
                ReportCreate,
                ReportHandle,
                ReportStats,
                DeviceRead,
                DeviceAdmin,
                AlarmRead,
                AlarmHandle,
                AccessRead,
                VisitorVerify,
            ],
            Role::DepartmentOfficer => &[
                PlaceRead,
                OrgRead,
                HouseholdRead,
                PersonRead,
                ReportRead,
                ReportHandle,
                ReportStats,
            ],
            Role::StreetOfficer => &[
                PlaceRead,
                PlaceWrite,
                OrgRead,
                OrgWrite,
                HouseholdRead,
                PersonRead,
                SensitiveLabelRead,
                RegistryExport,
                CorrectionReview,
                UserAdmin,
                AuditRead,
                TokenCreate,
                ReportRead,
                ReportCreate,
                ReportHandle,
                ReportDispatch,
                ReportStats,
                DeviceRead,
                AlarmRead,
                AccessRead,
                WebhookAdmin,
            ],
            Role::DistrictAdmin | Role::CityAdmin => Action::ALL,
        }
    }
}

/// Declares [`Action`] with its wire names and the list of all actions, from one table, so a
/// new capability cannot be added to one list and forgotten in another.
macro_rules! actions {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum Action {
            $($(#[$doc])* $variant,)*
        }

        impl Action {
            pub const ALL: &'static [Action] = &[$(Action::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Action::$variant => $name,)*
                }
            }

            pub fn parse(s: &str) -> Option<Action> {
                match s {
                    $($name => Some(Action::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    PlaceRead = "place_read",
    PlaceWrite = "place_write",
    OrgRead = "org_read",
    OrgWrite = "org_write",
    HouseholdRead = "household_read",
    HouseholdWrite = "household_write",
    PersonRead = "person_read",
    PersonWrite = "person_write",
    /// See full ID and phone numbers (with a stated purpose, audited).
    PersonReveal = "person_reveal",
    /// See labels marked sensitive (低保, 残疾, 党员 …).
    SensitiveLabelRead = "sensitive_label_read",
    LabelWrite = "label_write",
    RegistryImport = "registry_import",
    RegistryExport = "registry_export",
    CorrectionReview = "correction_review",
    UserAdmin = "user_admin",
    AuditRead = "audit_read",
    TokenCreate = "token_create",
    // ---- reports (报事 / 报修 / 投诉, issue #4) ----
    /// Read reports of the area (staff; residents read their own through their household).
    ReportRead = "report_read",
    /// Enter a report: on a resident's behalf (代客), found on patrol, or by an integration
    /// (Open311 `api_key`).
    ReportCreate = "report_create",
    /// Work a report dispatched to one's unit: sign, return, reply, ask for extension.
    ReportHandle = "report_handle",
    /// Accept, reject, dispatch, transfer, escalate, summon (吹哨), review, merge duplicates,
    /// approve extensions, record return visits, moderate public reports.
    ReportDispatch = "report_dispatch",
    /// Report statistics (响应率, 解决率 …) of the area.
    ReportStats = "report_stats",
    /// Edit the routing catalogue (派单目录) and the working-day calendar.
    RoutingAdmin = "routing_admin",
    // ---- IoT and safety (物联感知, issue #5) ----
    DeviceRead = "device_read",
    /// Register devices, issue device tokens, edit alarm rules.
    DeviceAdmin = "device_admin",
    AlarmRead = "alarm_read",
    /// Acknowledge, clear, assign and comment on alarms.
    AlarmHandle = "alarm_handle",
    /// Gate and vehicle access records.
    AccessRead = "access_read",
    /// Verify visitor passes at a gate (gate terminals use a token with this action).
    VisitorVerify = "visitor_verify",
    // ---- integrations ----
    /// Manage outbound webhooks of the area.
    WebhookAdmin = "webhook_admin",
}

/// One effective role binding: the role and the materialized paths of the subtrees it covers
/// (a property company's binding covers each community it serves).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub role: Role,
    pub node_id: String,
    pub prefixes: Vec<String>,
    /// For resident bindings: the household.
    pub household_id: Option<String>,
}

/// Limits carried by an API token: a subset of the creator's actions, inside one subtree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLimit {
    pub actions: Vec<Action>,
    pub prefix: String,
}

/// The authenticated caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Principal {
    pub user_id: String,
    pub login: String,
    pub display_name: String,
    pub bindings: Vec<Binding>,
    pub token: Option<TokenLimit>,
}

/// Proof that the caller may perform `action`, limited to the subtrees in `prefixes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    action: Action,
    prefixes: Vec<String>,
    user_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden;

impl Grant {
    pub fn action(&self) -> Action {
        self.action
    }
    pub fn prefixes(&self) -> &[String] {
        &self.prefixes
    }
    pub fn user_id(&self) -> &str {
        &self.user_id
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

    /// A grant for system jobs (CLI import/export by the operator, demo seeding): the whole tree.
    pub fn system(action: Action) -> Grant {
        Grant {
            action,
            prefixes: vec!["/".into()],
            user_id: "system".into(),
        }
    }
}

impl Principal {
    /// The platform itself acting on a rule (an IoT alarm opening a repair report, a deadline
    /// job): the whole tree, every action, and no user row behind it (`is_system`).
    pub fn system(name: &str) -> Principal {
        Principal {
            user_id: "system".into(),
            login: name.into(),
            display_name: name.into(),
            bindings: vec![Binding {
                role: Role::CityAdmin,
                node_id: "system".into(),
                prefixes: vec!["/".into()],
                household_id: None,
            }],
            token: None,
        }
    }

    /// Whether this is [`Principal::system`] (no user account to refer to).
    pub fn is_system(&self) -> bool {
        self.user_id == "system" && self.token.is_none()
    }

    /// The caller's grant for `action`, or `Forbidden` when no binding carries it.
    pub fn grant(&self, action: Action) -> Result<Grant, Forbidden> {
        self.grant_where(action, |_| true)
    }

    /// The grant for `action` that the caller's bindings of the roles `keep` selects carry (e.g.
    /// a report reader's area bindings apart from their unit bindings).
    pub fn grant_where(
        &self,
        action: Action,
        keep: impl Fn(Role) -> bool,
    ) -> Result<Grant, Forbidden> {
        if let Some(limit) = &self.token
            && !limit.actions.contains(&action)
        {
            return Err(Forbidden);
        }
        let mut prefixes: Vec<String> = Vec::new();
        for b in self
            .bindings
            .iter()
            .filter(|b| keep(b.role) && b.role.actions().contains(&action))
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

    /// The organisations the caller works for through unit roles ([`Role::works_by_unit`]) that
    /// carry `action`.
    pub fn units(&self, action: Action) -> Vec<String> {
        if self.grant(action).is_err() {
            return Vec::new();
        }
        let mut out: Vec<String> = Vec::new();
        for b in &self.bindings {
            if b.role.works_by_unit()
                && b.role.actions().contains(&action)
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
                r.push(b.role);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(role: Role, prefix: &str) -> Principal {
        Principal {
            user_id: "u".into(),
            login: "u".into(),
            display_name: "u".into(),
            bindings: vec![Binding {
                role,
                node_id: "n".into(),
                prefixes: vec![prefix.into()],
                household_id: None,
            }],
            token: None,
        }
    }

    #[test]
    fn action_names_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(*a));
            assert_eq!(
                serde_json::to_value(a).unwrap(),
                serde_json::json!(a.as_str())
            );
        }
    }

    #[test]
    fn grants_follow_roles_and_subtrees() {
        let staff = principal(Role::CommitteeStaff, "/c/d/s/a/");
        let g = staff.grant(Action::PersonRead).unwrap();
        assert!(g.covers("/c/d/s/a/g/b/"));
        assert!(!g.covers("/c/d/s/b/"));
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
        let mut p = principal(Role::CommitteeStaff, "/c/d/s/a/");
        p.bindings.push(Binding {
            role: Role::PropertyStaff,
            node_id: "company".into(),
            prefixes: vec!["/c/d/s/a/".into(), "/c/d/s/b/".into()],
            household_id: None,
        });
        assert!(Role::PropertyStaff.works_by_unit() && Role::DepartmentOfficer.works_by_unit());
        assert!(!Role::CommitteeStaff.works_by_unit() && !Role::StreetOfficer.works_by_unit());
        let all = p.grant(Action::ReportRead).unwrap();
        assert!(all.covers("/c/d/s/b/x/"));
        let area = p
            .grant_where(Action::ReportRead, |r| !r.works_by_unit())
            .unwrap();
        assert_eq!(area.prefixes(), &["/c/d/s/a/".to_string()]);
        let unit = p
            .grant_where(Action::ReportRead, |r| r.works_by_unit())
            .unwrap();
        assert!(unit.covers("/c/d/s/b/x/"));
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
                .grant_where(Action::ReportRead, |r| !r.works_by_unit()),
            Err(Forbidden)
        );
    }

    #[test]
    fn narrowing_intersects_subtrees() {
        let g = principal(Role::CommitteeStaff, "/c/d/s/a/")
            .grant(Action::PersonRead)
            .unwrap();
        assert_eq!(
            g.narrowed_to("/c/d/s/a/g1/"),
            vec!["/c/d/s/a/g1/".to_string()]
        );
        assert_eq!(g.narrowed_to("/c/d/"), vec!["/c/d/s/a/".to_string()]);
        assert!(g.narrowed_to("/c/d/s/b/").is_empty());
    }

    #[test]
    fn tokens_narrow_actions_and_subtree() {
        let mut admin = principal(Role::CityAdmin, "/c/");
        admin.token = Some(TokenLimit {
            actions: vec![Action::PersonRead],
            prefix: "/c/d/s/a/".into(),
        });
        assert_eq!(
            admin.grant(Action::PersonRead).unwrap().prefixes(),
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
}
