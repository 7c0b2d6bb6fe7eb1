//! Contact details a report came with (Open311 POST: `email`, `first_name`, `last_name`,
//! `phone`, `device_id`, `account_id`). Personal data is sealed like persons' phones: the phone
//! is normalized, encrypted at rest, blind-indexed and masked; the e-mail is encrypted and masked.
//! Staff who see the report see the masks and names, never the plain numbers; nobody else sees
//! anything of it (Open311 readers included).
//!
//! Linking: when the phone is the sign-in phone of a registered user (or, failing that, the
//! registered phone of exactly one user's person), the contact records that user; when that user
//! is a resident of a household in the report's community, the report is filed for that
//! household, so the resident follows it in "my reports" as if they had filed it themselves.

use serde::Serialize;

use linli_core::crypto::FieldCipher;
use linli_core::{AppError, AppResult, phone};

use crate::Store;
use crate::db::{db_err, str_};

use super::community_prefix;

/// Longest name, device or account id kept.
pub const MAX_FIELD: usize = 100;

/// Contact fields as a caller gave them (all optional).
#[derive(Debug, Clone, Default)]
pub struct NewContact {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub device_id: Option<String>,
    pub account_id: Option<String>,
}

/// What is stored: validated, the personal data sealed.
#[derive(Debug, Clone)]
pub(crate) struct SealedContact {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email_enc: Option<String>,
    pub email_masked: Option<String>,
    pub phone_enc: Option<String>,
    pub phone_bidx: Option<String>,
    pub phone_masked: Option<String>,
    pub device_id: Option<String>,
    pub account_id: Option<String>,
    /// The registered user the phone belongs to, if any.
    pub user_id: Option<String>,
}

/// A report's contact as staff see it (masked).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReportContact {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `z***@example.org`
    pub email: Option<String>,
    /// `138****5678`
    pub phone: Option<String>,
    pub device_id: Option<String>,
    pub account_id: Option<String>,
    /// The registered user whose phone this is, and their display name.
    pub user_id: Option<String>,
    pub user_name: Option<String>,
}

/// `zhang@example.org` → `z***@example.org`.
pub fn mask_email(e: &str) -> String {
    match e.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

fn field(v: &Option<String>, name: &str) -> AppResult<Option<String>> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) if s.chars().count() > MAX_FIELD || s.chars().any(char::is_control) => {
            Err(AppError::bad_request("open311.contact_too_long")
                .arg("field", name.to_string())
                .arg("max", MAX_FIELD.to_string()))
        }
        Some(s) => Ok(Some(s.to_string())),
    }
}

impl NewContact {
    pub fn is_empty(&self) -> bool {
        [
            &self.first_name,
            &self.last_name,
            &self.email,
            &self.phone,
            &self.device_id,
            &self.account_id,
        ]
        .iter()
        .all(|v| v.as_deref().is_none_or(|s| s.trim().is_empty()))
    }

    /// Validate (bad e-mail or phone: 400, nothing stored) and seal.
    pub(crate) fn seal(&self, cipher: &FieldCipher) -> AppResult<SealedContact> {
        let email = match self
            .email
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(e) if crate::notify::follows::valid_email(e) => Some(e.to_string()),
            Some(_) => return Err(AppError::bad_request("open311.email_invalid")),
            None => None,
        };
        let phone = match self
            .phone
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(p) => {
                Some(phone::parse_mobile(p).ok_or(AppError::bad_request("open311.phone_invalid"))?)
            }
            None => None,
        };
        Ok(SealedContact {
            first_name: field(&self.first_name, "first_name")?,
            last_name: field(&self.last_name, "last_name")?,
            email_enc: email.as_deref().map(|e| cipher.encrypt(e)),
            email_masked: email.as_deref().map(mask_email),
            phone_enc: phone.as_deref().map(|p| cipher.encrypt(p)),
            phone_bidx: phone.as_deref().map(|p| cipher.blind_index("phone", p)),
            phone_masked: phone.as_deref().map(phone::mask),
            device_id: field(&self.device_id, "device_id")?,
            account_id: field(&self.account_id, "account_id")?,
            user_id: None,
        })
    }
}

impl Store {
    /// Seal a contact and find the registered user its phone belongs to, with that user's
    /// household in the community of `place_path` (if they are a resident there).
    pub(crate) async fn seal_contact(
        &self,
        c: &NewContact,
        place_path: &str,
    ) -> AppResult<(SealedContact, Option<(String, String)>)> {
        let mut sealed = c.seal(&self.cipher)?;
        let Some(bidx) = sealed.phone_bidx.clone() else {
            return Ok((sealed, None));
        };
        sealed.user_id = self.user_by_phone(&bidx).await?;
        let household = match (&sealed.user_id, community_prefix(place_path)) {
            (Some(u), Some(community)) => self.household_of_user_in(u, &community).await?,
            _ => None,
        };
        Ok((sealed, household))
    }

    /// The user whose sign-in phone this is; else the only user whose person has this phone.
    async fn user_by_phone(&self, bidx: &str) -> AppResult<Option<String>> {
        let row = sqlx::query("SELECT id FROM users WHERE phone_bidx = $1 AND disabled = 0")
            .bind(bidx.to_string())
            .fetch_optional(&self.db.read)
            .await
            .map_err(db_err)?;
        if let Some(r) = row {
            return Ok(Some(str_(&r, "id")));
        }
        let rows = sqlx::query(
            "SELECT u.id FROM users u JOIN persons p ON p.id = u.person_id WHERE p.phone_bidx = $1 AND u.disabled = 0 LIMIT 2",
        )
        .bind(bidx.to_string())
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok((rows.len() == 1).then(|| str_(&rows[0], "id")))
    }

    /// A household (id, path) the user is a resident of, inside the community (first by id).
    async fn household_of_user_in(
        &self,
        user: &str,
        community: &str,
    ) -> AppResult<Option<(String, String)>> {
        let rows = sqlx::query(
            "SELECT h.id, h.path FROM role_bindings rb JOIN households h ON h.id = rb.household_id WHERE rb.user_id = $1 AND rb.role = 'resident' ORDER BY h.id",
        )
        .bind(user.to_string())
        .fetch_all(&self.db.read)
        .await
        .map_err(db_err)?;
        Ok(rows
            .iter()
            .find(|r| str_(r, "path").starts_with(community))
            .map(|r| (str_(r, "id"), str_(r, "path"))))
    }

    /// The contact a report came with, masked, for staff who see the report (`staff`, see
    /// [`super::Viewer::is_staff_on`]); `None` for everyone else and for reports without one.
    pub(crate) async fn report_contact(
        &self,
        staff: bool,
        id: &str,
    ) -> AppResult<Option<ReportContact>> {
        if !staff {
            return Ok(None);
        }
        // On every staff view of a report: the native read path (sqlx on PostgreSQL).
        let q = crate::db::Sql::new(
            "SELECT c.first_name, c.last_name, c.email_masked, c.phone_masked, c.device_id, c.account_id, c.user_id, u.display_name FROM report_contacts c LEFT JOIN users u ON u.id = c.user_id WHERE c.report_id = $1",
        )
        .arg(id.to_string());
        let row = self.db.fetch_optional_fast(&q).await?;
        Ok(row.map(|r| ReportContact {
            first_name: r.opt_str("first_name"),
            last_name: r.opt_str("last_name"),
            email: r.opt_str("email_masked"),
            phone: r.opt_str("phone_masked"),
            device_id: r.opt_str("device_id"),
            account_id: r.opt_str("account_id"),
            user_id: r.opt_str("user_id"),
            user_name: r.opt_str("display_name"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_validation() {
        assert_eq!(mask_email("zhang@example.org"), "z***@example.org");
        let cipher = FieldCipher::new(&[7u8; 32]);
        let c = NewContact {
            email: Some("zhang@example.org".into()),
            phone: Some("138 1234 5678".into()),
            first_name: Some(" 三 ".into()),
            ..NewContact::default()
        };
        let s = c.seal(&cipher).unwrap();
        assert_eq!(s.phone_masked.as_deref(), Some("138****5678"));
        assert_eq!(
            s.phone_bidx.as_deref(),
            Some(cipher.blind_index("phone", "13812345678").as_str())
        );
        assert_eq!(
            cipher.decrypt(s.phone_enc.as_deref().unwrap()).unwrap(),
            "13812345678"
        );
        assert_eq!(
            cipher.decrypt(s.email_enc.as_deref().unwrap()).unwrap(),
            "zhang@example.org"
        );
        assert_eq!(s.first_name.as_deref(), Some("三"));
        let bad = NewContact {
            phone: Some("12345".into()),
            ..NewContact::default()
        };
        assert_eq!(bad.seal(&cipher).unwrap_err().code, "open311.phone_invalid");
        let bad = NewContact {
            email: Some("not-an-address".into()),
            ..NewContact::default()
        };
        assert_eq!(bad.seal(&cipher).unwrap_err().code, "open311.email_invalid");
        assert!(
            NewContact {
                email: Some("  ".into()),
                ..NewContact::default()
            }
            .is_empty()
        );
    }
}
