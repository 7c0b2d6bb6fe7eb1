//! Visitor passes (访客通行证): a resident registers a visitor and gets a signed token for a QR
//! code; gates verify it. A single-use pass is consumed by one conditional UPDATE, so two gates
//! scanning it at once accept it once. Forged or malformed tokens are refused before any lookup
//! and store nothing.

use serde::{Deserialize, Serialize};
use serde_json::json;

use linli_core::access::{PASS_KEY_PURPOSE, PassClaim, TokenError, decode_pass, encode_pass};
use linli_core::auth::{Action, Grant, Principal};
use linli_core::{AppError, AppResult, new_id, phone};

use super::records::{AccessRecord, insert_record};
use super::{check_text, plate};
use crate::Store;
use crate::audit::{Actor, Entry};
use crate::bus::BusEvent;
use crate::db::{Sql, db_err, i64_, opt_i64, opt_str, str_};

/// The longest window a pass may have.
const MAX_WINDOW_MS: i64 = 31 * 86_400_000;
/// How far ahead a pass may start.
const MAX_LEAD_MS: i64 = 90 * 86_400_000;

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct NewPass {
    /// The household (staff registering for a resident); residents leave it out.
    pub household_id: Option<String>,
    pub visitor_name: String,
    /// The visitor's mobile number (stored encrypted, shown masked).
    pub phone: String,
    pub plate: Option<String>,
    /// Start of validity (ms); default now.
    pub valid_from: Option<i64>,
    /// End of validity (ms); at most 31 days after the start.
    pub valid_until: i64,
    /// `false` (default): valid once. `true`: any number of entries within the window.
    #[serde(default)]
    pub multi_use: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PassCheck {
    pub gate_id: String,
    pub result: String,
    pub at: i64,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Pass {
    pub id: String,
    pub household_id: String,
    pub visitor_name: String,
    pub phone_masked: String,
    pub plate: Option<String>,
    pub valid_from: i64,
    pub valid_until: i64,
    pub multi_use: bool,
    pub uses: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// `pending` (not yet valid), `active`, `used`, `expired` or `revoked`.
    pub status: String,
    pub created_at: i64,
    /// The signed token the QR code holds: only for the household the pass belongs to (and in
    /// the answer to whoever registers it); staff who read passes do not get it.
    pub token: Option<String>,
    /// Verification attempts at gates (detail view only).
    pub checks: Vec<PassCheck>,
    #[serde(skip)]
    pub path: String,
    #[serde(skip)]
    pub community_path: String,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PassQuery {
    /// Staff: passes of households under this place (AccessRead). Residents: omit (own).
    pub place_id: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
pub struct VerifyRequest {
    pub gate_id: String,
    /// The scanned QR content.
    pub token: String,
}

/// The gate's answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub accepted: bool,
    /// `accepted`, `malformed`, `forged`, `unknown`, `wrong_community`, `revoked`,
    /// `not_yet_valid`, `expired` or `used`.
    pub reason: String,
    /// The reason in the caller's language (filled in by the server).
    pub message: String,
    pub pass_id: Option<String>,
    /// The visitor, their plate and the pass's end: only when the pass is accepted (a
    /// refusal does not say who the pass is for).
    pub visitor_name: Option<String>,
    pub plate: Option<String>,
    pub valid_until: Option<i64>,
    /// The access record written for an accepted entry.
    pub record_id: Option<String>,
}

impl Verification {
    fn denied(reason: &str) -> Verification {
        Verification {
            accepted: false,
            reason: reason.into(),
            message: String::new(),
            pass_id: None,
            visitor_name: None,
            plate: None,
            valid_until: None,
            record_id: None,
        }
    }
}

const PASS_COLS: &str = "id, household_id, path, community_path, visitor_name, phone_masked, plate, valid_from, valid_until, multi_use, uses, last_used_at, revoked_at, created_at";

pub(crate) fn status(
    revoked: bool,
    multi: bool,
    uses: i64,
    from: i64,
    until: i64,
    now: i64,
) -> &'static str {
    if revoked {
        "revoked"
    } else if !multi && uses > 0 {
        "used"
    } else if now > until {
        "expired"
    } else if now < from {
        "pending"
    } else {
        "active"
    }
}

impl Store {
    fn pass_key(&self) -> [u8; 32] {
        self.cipher.signing_key(PASS_KEY_PURPOSE)
    }

    /// The token for a pass.
    pub fn pass_token(&self, id: &str, valid_until: i64) -> String {
        let pass_id = uuid::Uuid::parse_str(id).unwrap_or_default();
        encode_pass(
            &self.pass_key(),
            &PassClaim {
                pass_id,
                valid_until,
            },
        )
    }

    fn pass_from_row(&self, r: &sqlx::any::AnyRow) -> Pass {
        let id = str_(r, "id");
        let valid_until = i64_(r, "valid_until");
        let revoked_at = opt_i64(r, "revoked_at");
        let multi = i64_(r, "multi_use") != 0;
        let uses = i64_(r, "uses");
        let valid_from = i64_(r, "valid_from");
        Pass {
            token: None,
            id,
            household_id: str_(r, "household_id"),
            visitor_name: str_(r, "visitor_name"),
            phone_masked: str_(r, "phone_masked"),
            plate: opt_str(r, "plate"),
            valid_from,
            valid_until,
            multi_use: multi,
            uses,
            last_used_at: opt_i64(r, "last_used_at"),
            revoked_at,
            status: status(
                revoked_at.is_some(),
                multi,
                uses,
                valid_from,
                valid_until,
                self.now_ms(),
            )
            .into(),
            created_at: i64_(r, "created_at"),
            checks: Vec::new(),
            path: str_(r, "path"),
            community_path: str_(r, "community_path"),
        }
    }

    /// The pass with its token when `p` lives in the household it belongs to: the QR secret
    /// is the household's, not every reader's.
    fn with_token_for(&self, p: &Principal, mut pass: Pass) -> Pass {
        if p.own_households().contains(&pass.household_id) {
            pass.token = Some(self.pass_token(&pass.id, pass.valid_until));
        }
        pass
    }

    async fn pass_unscoped(&self, id: &str) -> AppResult<Option<Pass>> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PASS_COLS} FROM visitor_passes WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(r.as_ref().map(|r| self.pass_from_row(r)))
    }

    /// Register a visitor: the caller's own household, or (staff with HouseholdWrite) one in
    /// their area.
    pub async fn create_pass(&self, p: &Principal, actor: &Actor, new: NewPass) -> AppResult<Pass> {
        let h = self
            .household_for(p, new.household_id.as_deref(), Action::HouseholdWrite)
            .await?;
        let name = check_text("visitor_name", &new.visitor_name, 40)?;
        let mobile = phone::parse_mobile(&new.phone)
            .ok_or(AppError::bad_request("validation.phone.invalid"))?;
        let plate = match new.plate.as_deref().filter(|x| !x.trim().is_empty()) {
            Some(x) => Some(plate(x)?),
            None => None,
        };
        let now = self.now_ms();
        let from = new.valid_from.unwrap_or(now);
        let until = new.valid_until;
        if until <= from
            || until <= now
            || until.saturating_sub(from) > MAX_WINDOW_MS
            || from > now.saturating_add(MAX_LEAD_MS)
        {
            return Err(AppError::bad_request("access.pass.bad_window"));
        }
        let community = self
            .community_of(&h.path)
            .await?
            .ok_or(AppError::internal())?;
        let id = new_id();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        sqlx::query(
            "INSERT INTO visitor_passes (id, household_id, path, community_path, visitor_name, phone_enc, phone_masked, plate, valid_from, valid_until, multi_use, uses, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0, $12, $13)",
        )
        .bind(id.clone())
        .bind(h.id.clone())
        .bind(h.path.clone())
        .bind(community)
        .bind(name.clone())
        .bind(self.cipher.encrypt(&mobile))
        .bind(phone::mask(&mobile))
        .bind(plate.clone())
        .bind(from)
        .bind(until)
        .bind(i64::from(new.multi_use))
        .bind(actor.id.clone())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.pass.create",
                entity: "visitor_pass",
                entity_id: &id,
                path: Some(&h.path),
                purpose: None,
                before: None,
                after: Some(json!({
                    "household_id": h.id, "visitor_name": name, "phone": phone::mask(&mobile),
                    "plate": plate, "valid_from": from, "valid_until": until, "multi_use": new.multi_use,
                })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        // Whoever registers the pass (the household, or staff on its behalf) gets its token to
        // hand over; later reads give it to the household only.
        let mut pass = self.pass(p, &id).await?;
        pass.token = Some(self.pass_token(&pass.id, pass.valid_until));
        Ok(pass)
    }

    /// Whether the caller may see a pass: their household's, or AccessRead over it.
    fn may_read_pass(p: &Principal, pass: &Pass) -> bool {
        p.own_households().contains(&pass.household_id) || p.may(Action::AccessRead, &pass.path)
    }

    /// One pass with its verification attempts; not found for anyone else.
    pub async fn pass(&self, p: &Principal, id: &str) -> AppResult<Pass> {
        let mut pass = match self.pass_unscoped(id).await? {
            Some(x) if Self::may_read_pass(p, &x) => self.with_token_for(p, x),
            _ => return Err(AppError::not_found("access.pass.not_found")),
        };
        let rows = sqlx::query(
            "SELECT gate_id, result, at FROM pass_checks WHERE pass_id = $1 ORDER BY at DESC LIMIT 50",
        )
        .bind(id.to_string())
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        pass.checks = rows
            .iter()
            .map(|r| PassCheck {
                gate_id: str_(r, "gate_id"),
                result: str_(r, "result"),
                at: i64_(r, "at"),
            })
            .collect();
        Ok(pass)
    }

    /// Residents: their household's passes. Staff (with `place_id`, or without a household):
    /// passes in their AccessRead area. Newest first.
    pub async fn passes(&self, p: &Principal, q: &PassQuery) -> AppResult<Vec<Pass>> {
        let own = p.own_households();
        let mut s = Sql::new(&format!("SELECT {PASS_COLS} FROM visitor_passes WHERE "));
        if q.place_id.is_none() && !own.is_empty() {
            s.push("household_id IN (");
            for (i, h) in own.iter().enumerate() {
                if i > 0 {
                    s.push(", ");
                }
                s.bind(h);
            }
            s.push(")");
        } else {
            let g = p.grant(Action::AccessRead)?;
            s.scope("path", g.scope(Action::AccessRead)?.prefixes());
            if let Some(pid) = q.place_id.as_deref().filter(|x| !x.is_empty()) {
                let place = self
                    .place_unscoped(pid)
                    .await?
                    .ok_or(AppError::not_found("registry.place.not_found"))?;
                s.push(" AND ").scope("path", &[place.path]);
            }
        }
        s.push(" ORDER BY created_at DESC, id DESC LIMIT ")
            .bind(q.limit.unwrap_or(50).clamp(1, 500));
        let rows = s.query().fetch_all(&self.db.read).await.map_err(db_err)?;
        Ok(rows
            .iter()
            .map(|r| self.with_token_for(p, self.pass_from_row(r)))
            .collect())
    }

    /// Revoke a pass: its household, or staff (HouseholdWrite or DeviceAdmin over it).
    pub async fn revoke_pass(&self, p: &Principal, actor: &Actor, id: &str) -> AppResult<Pass> {
        let pass = match self.pass_unscoped(id).await? {
            Some(x)
                if p.own_households().contains(&x.household_id)
                    || [Action::HouseholdWrite, Action::DeviceAdmin]
                        .into_iter()
                        .any(|a| p.may(a, &x.path)) =>
            {
                x
            }
            _ => return Err(AppError::not_found("access.pass.not_found")),
        };
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let r = sqlx::query(
            "UPDATE visitor_passes SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        if r.rows_affected() != 1 {
            return Err(AppError::conflict("access.pass.already_revoked"));
        }
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.pass.revoke",
                entity: "visitor_pass",
                entity_id: id,
                path: Some(&pass.path),
                purpose: None,
                before: Some(json!({ "status": pass.status })),
                after: Some(json!({ "status": "revoked" })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        self.pass(p, id).await
    }

    /// Check a scanned token at a gate (VisitorVerify over the gate). Malformed, forged and
    /// unknown tokens are answered without storing anything; every other attempt is recorded
    /// (and audited), and an accepted entry also writes an access record.
    pub async fn verify_pass(
        &self,
        grant: &Grant,
        actor: &Actor,
        req: &VerifyRequest,
    ) -> AppResult<Verification> {
        let scope = grant.scope(Action::VisitorVerify)?;
        let gate = match self.gate_unscoped(&req.gate_id).await? {
            Some(g) if g.active && scope.covers(&g.path) => g,
            _ => return Err(AppError::not_found("access.gate.not_found")),
        };
        if req.token.len() > 4096 {
            return Ok(Verification::denied(TokenError::Malformed.reason()));
        }
        let claim = match decode_pass(&self.pass_key(), &req.token) {
            Ok(c) => c,
            Err(e) => return Ok(Verification::denied(e.reason())),
        };
        let Some(pass) = self.pass_unscoped(&claim.pass_id.to_string()).await? else {
            return Ok(Verification::denied("unknown"));
        };
        if pass.valid_until != claim.valid_until {
            // Signed by us but not for this pass's window: never issued, treat as forged.
            return Ok(Verification::denied(TokenError::Forged.reason()));
        }
        let now = self.now_ms();
        let mut tx = self.db.begin_write().await.map_err(db_err)?;
        let mut reason = if !gate.path.starts_with(&pass.community_path) {
            "wrong_community"
        } else if pass.revoked_at.is_some() {
            "revoked"
        } else if now < pass.valid_from {
            "not_yet_valid"
        } else if now > pass.valid_until {
            "expired"
        } else {
            "accepted"
        };
        let mut record_id = None;
        if reason == "accepted" {
            // The one place a pass is consumed: the row is updated only while still usable, so
            // of two gates racing on a single-use pass exactly one gets the row.
            let r = sqlx::query(
                "UPDATE visitor_passes SET uses = uses + 1, last_used_at = $1
                  WHERE id = $2 AND revoked_at IS NULL AND (multi_use = 1 OR uses = 0)",
            )
            .bind(now)
            .bind(pass.id.clone())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if r.rows_affected() == 1 {
                let rec = AccessRecord {
                    id: new_id(),
                    gate_id: gate.id.clone(),
                    direction: "in".into(),
                    subject: "visitor".into(),
                    person_id: None,
                    plate: pass.plate.clone(),
                    vehicle: pass.plate.as_ref().map(|_| "visitor".to_string()),
                    temperature_x10: None,
                    fever: false,
                    photo_ref: None,
                    pass_id: Some(pass.id.clone()),
                    at: now,
                };
                insert_record(&mut tx, &rec, &gate.path, now).await?;
                record_id = Some(rec.id);
            } else {
                // Revoked or used between our read and the update.
                let fresh = sqlx::query("SELECT revoked_at FROM visitor_passes WHERE id = $1")
                    .bind(pass.id.clone())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
                reason = if opt_i64(&fresh, "revoked_at").is_some() {
                    "revoked"
                } else {
                    "used"
                };
            }
        }
        sqlx::query(
            "INSERT INTO pass_checks (id, pass_id, gate_id, path, result, at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(new_id())
        .bind(pass.id.clone())
        .bind(gate.id.clone())
        .bind(gate.path.clone())
        .bind(reason)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        self.audit(
            &mut tx,
            actor,
            Entry {
                action: "access.pass.verify",
                entity: "visitor_pass",
                entity_id: &pass.id,
                path: Some(&gate.path),
                purpose: None,
                before: None,
                after: Some(json!({ "gate_id": gate.id, "result": reason })),
            },
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        if let Some(rid) = &record_id {
            self.bus.publish(BusEvent {
                kind: "access.record".into(),
                path: gate.path.clone(),
                id: rid.clone(),
                users: Vec::new(),
            });
        }
        // Who the pass is for is told only to a gate that lets the visitor in: a refusal (a
        // pass of another community, a revoked or used one) names nobody.
        let accepted = reason == "accepted";
        Ok(Verification {
            accepted,
            reason: reason.into(),
            message: String::new(),
            pass_id: Some(pass.id),
            visitor_name: accepted.then_some(pass.visitor_name),
            plate: if accepted { pass.plate } else { None },
            valid_until: accepted.then_some(pass.valid_until),
            record_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::status;

    #[test]
    fn pass_status_order() {
        // Revoked wins over everything; a used single-use pass is used even inside its window.
        assert_eq!(status(true, false, 0, 0, 100, 50), "revoked");
        assert_eq!(status(false, false, 1, 0, 100, 50), "used");
        assert_eq!(status(false, true, 5, 0, 100, 50), "active");
        assert_eq!(status(false, true, 0, 0, 100, 101), "expired");
        assert_eq!(status(false, false, 0, 10, 100, 5), "pending");
    }
}
