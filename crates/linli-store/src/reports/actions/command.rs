//! The wire form of an action ([`ReportAction`], one flat JSON object: the body of
//! `POST /api/v1/reports/{id}/actions`) and its typed form ([`Command`]): parsed once, with
//! every field the action needs present and in range, before anything is read or written.

use serde::Deserialize;

use linli_core::reports::repairs::{MAX_QUOTE_FEN, Quote};
use linli_core::reports::state::Outcome;
use linli_core::{AppError, AppResult};

/// One action on a report. `action` is one of: accept, reject, dispatch, sign, return,
/// extend_request, extend, transfer, escalate, whistle, summon_sign, summon_reply, contact,
/// reply, review_pass, review_fail, visit, reopen, moderate; repairs: assign, grab, quote,
/// quote_accept, quote_decline. Other fields as the action needs.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct ReportAction {
    pub action: String,
    /// Shown to the resident.
    #[serde(default)]
    pub public_note: Option<String>,
    /// Staff only.
    #[serde(default)]
    pub internal_note: Option<String>,
    /// reject: `out_of_scope`, `answered` or `duplicate`; return: why (required).
    #[serde(default)]
    pub reason: Option<String>,
    /// reject with reason `duplicate`: the report this one duplicates (merged into it).
    #[serde(default)]
    pub duplicate_of: Option<String>,
    /// dispatch (optional, else the catalogue's unit), transfer (required), summon_sign /
    /// summon_reply (the summoned unit).
    #[serde(default)]
    pub unit_id: Option<String>,
    /// whistle: the units summoned.
    #[serde(default)]
    pub unit_ids: Vec<String>,
    /// extend_request / extend: working days.
    #[serde(default)]
    pub days: Option<i64>,
    /// reply: solved, explained, unsolvable.
    #[serde(default)]
    pub outcome: Option<String>,
    /// visit: 1–5.
    #[serde(default)]
    pub rating: Option<i64>,
    /// visit: whether the problem is solved.
    #[serde(default)]
    pub solved: Option<bool>,
    /// moderate: show to neighbours or not.
    #[serde(default)]
    pub public: Option<bool>,
    /// assign: the person of the unit who does the work.
    #[serde(default)]
    pub assignee_user_id: Option<String>,
    /// quote: the price in fen (分), with the explanation in `public_note`.
    /// quote_accept / quote_decline (required): the price the person answering was shown.
    #[serde(default)]
    pub amount_fen: Option<i64>,
    /// quote_accept / quote_decline (required): the `quoted_at` of the quote the person
    /// answering was shown; it identifies the quote (every quote of a report has its own).
    /// When the current quote is another one, the answer is a 409 `report.quote_changed`.
    #[serde(default)]
    pub quoted_at: Option<i64>,
    /// The version the caller read; a mismatch is a 409.
    #[serde(default)]
    pub version: Option<i64>,
}

/// Why a report is not accepted, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectAs {
    OutOfScope,
    Answered,
    /// A duplicate of this report: merged into it.
    DuplicateOf(String),
}

/// An action with the data it needs, validated. One variant per action; the function that
/// performs it has the same name (see the table in [`super`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    // Intake (intake.rs)
    Accept,
    Reject(RejectAs),
    Moderate {
        public: bool,
    },
    // Routing (routing.rs)
    /// `None`: the catalogue's unit.
    Dispatch {
        unit_id: Option<String>,
    },
    Transfer {
        unit_id: String,
    },
    Sign,
    Return {
        reason: String,
    },
    Contact,
    // Supervision (supervision.rs)
    ExtendRequest {
        days: i64,
    },
    /// `None`: the days of the pending request.
    Extend {
        days: Option<i64>,
    },
    Escalate,
    Whistle {
        unit_ids: Vec<String>,
    },
    SummonSign {
        unit_id: String,
    },
    SummonReply {
        unit_id: String,
    },
    // Closing (closing.rs)
    Reply {
        outcome: Outcome,
    },
    ReviewPass,
    ReviewFail,
    Visit {
        rating: i64,
        solved: bool,
    },
    Reopen,
    // Repairs (repairs.rs)
    Assign {
        assignee_user_id: String,
    },
    Grab,
    Quote {
        amount_fen: i64,
    },
    /// The quote the resident was shown, which they accept.
    QuoteAccept(Quote),
    /// The quote the resident was shown, which they decline.
    QuoteDecline(Quote),
}

/// The notes every action may carry (trimmed, at most 2,000 characters each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    /// Shown to the resident.
    pub public: Option<String>,
    /// Staff only.
    pub internal: Option<String>,
}

/// A parsed request: the command, its notes, and the report version the caller read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub notes: Notes,
    pub version: Option<i64>,
}

impl Command {
    /// The wire name (`accept`, `quote_accept` …): the event's action, the audit entry
    /// (`report.<name>`), the notice kind and the bus event.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Accept => "accept",
            Command::Reject(_) => "reject",
            Command::Moderate { .. } => "moderate",
            Command::Dispatch { .. } => "dispatch",
            Command::Transfer { .. } => "transfer",
            Command::Sign => "sign",
            Command::Return { .. } => "return",
            Command::Contact => "contact",
            Command::ExtendRequest { .. } => "extend_request",
            Command::Extend { .. } => "extend",
            Command::Escalate => "escalate",
            Command::Whistle { .. } => "whistle",
            Command::SummonSign { .. } => "summon_sign",
            Command::SummonReply { .. } => "summon_reply",
            Command::Reply { .. } => "reply",
            Command::ReviewPass => "review_pass",
            Command::ReviewFail => "review_fail",
            Command::Visit { .. } => "visit",
            Command::Reopen => "reopen",
            Command::Assign { .. } => "assign",
            Command::Grab => "grab",
            Command::Quote { .. } => "quote",
            Command::QuoteAccept(_) => "quote_accept",
            Command::QuoteDecline(_) => "quote_decline",
        }
    }
}

impl Request {
    /// The typed request, or the first thing wrong with the wire form (a 400 naming the field).
    pub fn parse(a: &ReportAction) -> AppResult<Request> {
        let mut notes = Notes {
            public: note(&a.public_note, "public_note")?,
            internal: note(&a.internal_note, "internal_note")?,
        };
        let command = match a.action.trim() {
            "accept" => Command::Accept,
            "reject" => Command::Reject(match a.reason.as_deref() {
                Some("out_of_scope") => RejectAs::OutOfScope,
                Some("answered") => RejectAs::Answered,
                Some("duplicate") => RejectAs::DuplicateOf(
                    a.duplicate_of
                        .clone()
                        .ok_or_else(|| AppError::required("duplicate_of"))?,
                ),
                Some(_) => return Err(bad("reason")),
                None => return Err(AppError::required("reason")),
            }),
            "moderate" => Command::Moderate {
                public: a.public.ok_or_else(|| AppError::required("public"))?,
            },
            "dispatch" => Command::Dispatch {
                unit_id: match a.unit_id.as_deref() {
                    Some(u) => Some(unit(Some(u))?),
                    None => None,
                },
            },
            "transfer" => Command::Transfer {
                unit_id: unit(a.unit_id.as_deref())?,
            },
            "sign" => Command::Sign,
            "return" => {
                let reason =
                    note(&a.reason, "reason")?.ok_or_else(|| AppError::required("reason"))?;
                // The reason is the internal note unless one was written.
                notes.internal.get_or_insert_with(|| reason.clone());
                Command::Return { reason }
            }
            "contact" => Command::Contact,
            "extend_request" => Command::ExtendRequest {
                days: days(a.days.ok_or_else(|| AppError::required("days"))?)?,
            },
            "extend" => Command::Extend {
                days: a.days.map(days).transpose()?,
            },
            "escalate" => Command::Escalate,
            "whistle" => {
                if a.unit_ids.is_empty() {
                    return Err(AppError::required("unit_ids"));
                }
                Command::Whistle {
                    unit_ids: a.unit_ids.clone(),
                }
            }
            "summon_sign" => Command::SummonSign {
                unit_id: unit(a.unit_id.as_deref())?,
            },
            "summon_reply" => {
                if notes.public.is_none() && notes.internal.is_none() {
                    return Err(AppError::required("public_note"));
                }
                Command::SummonReply {
                    unit_id: unit(a.unit_id.as_deref())?,
                }
            }
            "reply" => {
                let outcome = match a.outcome.as_deref() {
                    Some("solved") => Outcome::Solved,
                    Some("explained") => Outcome::Explained,
                    Some("unsolvable") => Outcome::Unsolvable,
                    Some(_) => return Err(bad("outcome")),
                    None => return Err(AppError::required("outcome")),
                };
                if notes.public.is_none() {
                    return Err(AppError::required("public_note"));
                }
                Command::Reply { outcome }
            }
            "review_pass" => Command::ReviewPass,
            "review_fail" => Command::ReviewFail,
            "visit" => {
                let rating = a.rating.ok_or_else(|| AppError::required("rating"))?;
                if !(1..=5).contains(&rating) {
                    return Err(bad("rating"));
                }
                Command::Visit {
                    rating,
                    solved: a.solved.ok_or_else(|| AppError::required("solved"))?,
                }
            }
            "reopen" => Command::Reopen,
            "assign" => Command::Assign {
                assignee_user_id: a
                    .assignee_user_id
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| AppError::required("assignee_user_id"))?
                    .to_string(),
            },
            "grab" => Command::Grab,
            "quote" => {
                let fen = a
                    .amount_fen
                    .ok_or_else(|| AppError::required("amount_fen"))?;
                if !(1..=MAX_QUOTE_FEN).contains(&fen) {
                    return Err(bad("amount_fen"));
                }
                if notes.public.is_none() {
                    return Err(AppError::required("public_note"));
                }
                Command::Quote { amount_fen: fen }
            }
            "quote_accept" => Command::QuoteAccept(shown_quote(a)?),
            "quote_decline" => Command::QuoteDecline(shown_quote(a)?),
            _ => return Err(bad("action")),
        };
        Ok(Request {
            command,
            notes,
            version: a.version,
        })
    }
}

fn bad(field: &'static str) -> AppError {
    AppError::bad_request("validation.bad_value").arg("field", field)
}

/// A note: trimmed, empty is none, at most 2,000 characters.
fn note(v: &Option<String>, field: &'static str) -> AppResult<Option<String>> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) if s.chars().count() > 2000 => {
            Err(AppError::bad_request("validation.too_long").arg("field", field))
        }
        Some(s) => Ok(Some(s.to_string())),
        None => Ok(None),
    }
}

fn unit(v: Option<&str>) -> AppResult<String> {
    v.filter(|s| !s.is_empty())
        .map(str::to_string)
        .ok_or_else(|| AppError::required("unit_id"))
}

/// The quote an answer refers to: both its amount and its `quoted_at` are required.
fn shown_quote(a: &ReportAction) -> AppResult<Quote> {
    Ok(Quote {
        amount_fen: a
            .amount_fen
            .ok_or_else(|| AppError::required("amount_fen"))?,
        quoted_at: a.quoted_at.ok_or_else(|| AppError::required("quoted_at"))?,
    })
}

/// Working days of an extension: 1–30.
fn days(d: i64) -> AppResult<i64> {
    if (1..=30).contains(&d) {
        Ok(d)
    } else {
        Err(bad("days"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(v: serde_json::Value) -> ReportAction {
        serde_json::from_value(v).unwrap()
    }

    fn code(v: serde_json::Value) -> String {
        Request::parse(&wire(v)).unwrap_err().code.to_string()
    }

    #[test]
    fn every_action_parses_to_its_command_and_back_to_its_name() {
        use serde_json::json;
        let cases = [
            json!({"action": "accept"}),
            json!({"action": "reject", "reason": "duplicate", "duplicate_of": "r2"}),
            json!({"action": "moderate", "public": true}),
            json!({"action": "dispatch"}),
            json!({"action": "transfer", "unit_id": "u"}),
            json!({"action": "sign"}),
            json!({"action": "return", "reason": "不归我们管"}),
            json!({"action": "contact"}),
            json!({"action": "extend_request", "days": 3}),
            json!({"action": "extend"}),
            json!({"action": "escalate"}),
            json!({"action": "whistle", "unit_ids": ["u"]}),
            json!({"action": "summon_sign", "unit_id": "u"}),
            json!({"action": "summon_reply", "unit_id": "u", "internal_note": "到场"}),
            json!({"action": "reply", "outcome": "solved", "public_note": "修好了"}),
            json!({"action": "review_pass"}),
            json!({"action": "review_fail"}),
            json!({"action": "visit", "rating": 5, "solved": true}),
            json!({"action": "reopen"}),
            json!({"action": "assign", "assignee_user_id": " u1 "}),
            json!({"action": "grab"}),
            json!({"action": "quote", "amount_fen": 5000, "public_note": "换阀芯"}),
            json!({"action": "quote_accept", "amount_fen": 5000, "quoted_at": 7}),
            json!({"action": "quote_decline", "amount_fen": 5000, "quoted_at": 7}),
        ];
        for c in cases {
            let r = Request::parse(&wire(c.clone())).unwrap_or_else(|e| panic!("{c}: {e:?}"));
            assert_eq!(r.command.name(), c["action"], "{c}");
        }
    }

    #[test]
    fn what_each_action_needs_is_checked_before_anything_is_read() {
        use serde_json::json;
        assert_eq!(code(json!({"action": "fly"})), "validation.bad_value");
        assert_eq!(code(json!({"action": "reject"})), "validation.required");
        assert_eq!(
            code(json!({"action": "reject", "reason": "x"})),
            "validation.bad_value"
        );
        assert_eq!(
            code(json!({"action": "dispatch", "unit_id": ""})),
            "validation.required"
        );
        assert_eq!(code(json!({"action": "transfer"})), "validation.required");
        assert_eq!(
            code(json!({"action": "extend", "days": 31})),
            "validation.bad_value"
        );
        assert_eq!(
            code(json!({"action": "visit", "rating": 6, "solved": true})),
            "validation.bad_value"
        );
        assert_eq!(
            code(json!({"action": "quote", "amount_fen": 0, "public_note": "x"})),
            "validation.bad_value"
        );
        assert_eq!(
            code(json!({"action": "quote", "amount_fen": 100})),
            "validation.required"
        );
        // An answer to a quote names the quote it answers.
        assert_eq!(
            code(json!({"action": "quote_accept"})),
            "validation.required"
        );
        assert_eq!(
            code(json!({"action": "quote_decline", "amount_fen": 100})),
            "validation.required"
        );
        let long = "长".repeat(2001);
        assert_eq!(
            code(json!({"action": "accept", "public_note": long})),
            "validation.too_long"
        );
        let r = Request::parse(&wire(json!({"action": "return", "reason": " 越界 "}))).unwrap();
        assert_eq!(r.notes.internal.as_deref(), Some("越界"));
    }
}
