//! Moving a report: every action of DOMAIN.md's state machine, plus the steps that do not change
//! the status (extension request, first contact, summoned units signing and replying,
//! moderation, and the repairs steps). `docs/workflows.md` describes the pattern.
//!
//! One request goes: the report the caller can see (else 404) → the typed [`Command`] parsed
//! from the wire [`ReportAction`] (400) → the [`frame::Act`] (a stale `version` is a 409) →
//! the action's own function (who may: 403; its rules: 400 / 409; its change) → one
//! transaction (row with version guard and state machine, side rows, event, audit entry, inbox
//! notices) → the `report.<action>` bus event after commit.
//!
//! Where each action lives (one function each, named after the action):
//!
//! | file             | actions                                                              |
//! |------------------|----------------------------------------------------------------------|
//! | `intake.rs`      | accept, reject (merge a duplicate), moderate                          |
//! | `routing.rs`     | dispatch, transfer, sign, return, contact                            |
//! | `supervision.rs` | extend_request, extend, escalate, whistle, summon_sign, summon_reply |
//! | `closing.rs`     | reply, review_pass, review_fail, visit, reopen                       |
//! | `repairs.rs`     | assign, grab, quote, quote_accept, quote_decline                     |

mod closing;
pub mod command;
pub(crate) mod frame;
mod intake;
mod repairs;
mod routing;
mod supervision;

use linli_core::AppResult;
use linli_core::auth::Principal;

use crate::Store;

pub use command::{Command, Notes, RejectAs, ReportAction, Request};
pub use frame::acts_for;
pub(crate) use frame::insert_event;

use super::{Report, not_found};
use frame::{Act, Done};

impl Store {
    /// Perform one action on a report (see [`ReportAction`]). A report the caller cannot see is
    /// not found; one they see but may not act on is forbidden; a move the state machine refuses
    /// is a conflict. Returns the report after the change.
    pub async fn report_act(&self, p: &Principal, id: &str, a: ReportAction) -> AppResult<Report> {
        let viewer = self.report_viewer(p).await?;
        let r = self.visible_report(&viewer, id).await?;
        let Request {
            command,
            notes,
            version,
        } = Request::parse(&a)?;
        let path = r.path.clone();
        let act = Act::load(self, p, viewer, r, &command, notes, version).await?;
        let _: Done = match command {
            Command::Accept => intake::accept(&act).await?,
            Command::Reject(why) => intake::reject(&act, why).await?,
            Command::Moderate { public } => intake::moderate(&act, public).await?,
            Command::Dispatch { unit_id } => routing::dispatch(&act, unit_id).await?,
            Command::Transfer { unit_id } => routing::transfer(&act, unit_id).await?,
            Command::Sign => routing::sign(&act).await?,
            Command::Return { reason } => routing::return_(&act, reason).await?,
            Command::Contact => routing::contact(&act).await?,
            Command::ExtendRequest { days } => supervision::extend_request(&act, days).await?,
            Command::Extend { days } => supervision::extend(&act, days).await?,
            Command::Escalate => supervision::escalate(&act).await?,
            Command::Whistle { unit_ids } => supervision::whistle(&act, unit_ids).await?,
            Command::SummonSign { unit_id } => supervision::summon_sign(&act, unit_id).await?,
            Command::SummonReply { unit_id } => supervision::summon_reply(&act, unit_id).await?,
            Command::Reply { outcome } => closing::reply(&act, outcome).await?,
            Command::ReviewPass => closing::review_pass(&act).await?,
            Command::ReviewFail => closing::review_fail(&act).await?,
            Command::Visit { rating, solved } => closing::visit(&act, rating, solved).await?,
            Command::Reopen => closing::reopen(&act).await?,
            Command::Assign { assignee_user_id } => repairs::assign(&act, assignee_user_id).await?,
            Command::Grab => repairs::grab(&act).await?,
            Command::Quote { amount_fen } => repairs::quote(&act, amount_fen).await?,
            Command::QuoteAccept(shown) => repairs::quote_accept(&act, shown).await?,
            Command::QuoteDecline(shown) => repairs::quote_decline(&act, shown).await?,
        };
        self.publish_report(act.name, id, &path);
        self.report_unscoped(id).await?.ok_or_else(not_found)
    }
}
