//! The report state machine of DOMAIN.md. Every transition is checked here, so the store and
//! the API cannot move a report along an edge that does not exist.
//!
//! ```text
//! submitted ─accept→ accepted ─dispatch→ dispatched ─sign→ in_progress
//! submitted ─reject→ closed                 dispatched ─return→ accepted
//! in_progress ─extend | escalate | whistle→ in_progress   in_progress ─transfer→ dispatched
//! in_progress ─reply→ replied ─review_fail→ in_progress   replied ─review_pass→ awaiting_visit
//! replied ─review_pass (no return visit by policy)→ closed
//! in_progress ─decline_quote (paid repair, resident declines the price)→ closed
//! awaiting_visit ─visit→ closed             awaiting_visit | closed (in window) ─reopen→ in_progress
//! ```

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Submitted,
    Accepted,
    Dispatched,
    InProgress,
    Replied,
    AwaitingVisit,
    Closed,
}

/// Why a report was not accepted (不予受理).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RejectReason {
    OutOfScope,
    DuplicateOf { report_id: String },
    Answered,
}

/// How a reply ends the handling (办结).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Solved,
    Explained,
    Unsolvable,
    /// A paid repair whose price the resident declined: closed without handling. Not a reply,
    /// so it is left out of the solve rate.
    Declined,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Transition {
    Accept,
    Reject {
        reason: RejectReason,
    },
    Dispatch,
    Sign,
    Return,
    Extend,
    Escalate,
    Whistle,
    Transfer,
    Reply {
        outcome: Outcome,
    },
    ReviewFail,
    /// `visit`: whether a return visit follows (the category's return-visit policy); without
    /// one the report closes at once.
    ReviewPass {
        visit: bool,
    },
    Visit,
    Reopen,
    /// The resident declined the price quote of a paid repair.
    DeclineQuote,
}

impl Transition {
    pub fn name(&self) -> &'static str {
        match self {
            Transition::Accept => "accept",
            Transition::Reject { .. } => "reject",
            Transition::Dispatch => "dispatch",
            Transition::Sign => "sign",
            Transition::Return => "return",
            Transition::Extend => "extend",
            Transition::Escalate => "escalate",
            Transition::Whistle => "whistle",
            Transition::Transfer => "transfer",
            Transition::Reply { .. } => "reply",
            Transition::ReviewFail => "review_fail",
            Transition::ReviewPass { .. } => "review_pass",
            Transition::Visit => "visit",
            Transition::Reopen => "reopen",
            Transition::DeclineQuote => "quote_decline",
        }
    }
}

/// Facts a transition may depend on.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// Now (ms since the epoch).
    pub now: i64,
    /// When the current resolve-by deadline falls (extensions must be asked before it).
    pub due_at: Option<i64>,
    /// When the report was closed, if it was.
    pub closed_at: Option<i64>,
    /// How long after closing a resident may still reopen (重办), in ms.
    pub reopen_window_ms: i64,
    /// Units summoned by 吹哨 that have not replied yet (事不完人不撤).
    pub open_summons: usize,
    /// A paid repair whose price the resident has not accepted yet: no reply before that.
    pub quote_unaccepted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionError {
    /// No such edge from this status.
    Illegal { from: Status, action: &'static str },
    /// An extension asked for after the deadline passed.
    ExtensionAfterDue,
    /// A reply while summoned units are still working on it.
    SummonsOutstanding(usize),
    /// Reopening a report closed longer ago than the window.
    ReopenWindowPassed,
    /// A reply on a paid repair before the resident accepted the price.
    QuoteNotAccepted,
}

impl TransitionError {
    pub fn code(&self) -> &'static str {
        match self {
            TransitionError::Illegal { .. } => "report.illegal_transition",
            TransitionError::ExtensionAfterDue => "report.extension_after_due",
            TransitionError::SummonsOutstanding(_) => "report.summons_outstanding",
            TransitionError::ReopenWindowPassed => "report.reopen_window_passed",
            TransitionError::QuoteNotAccepted => "report.quote_not_accepted",
        }
    }
}

/// The status after `t`, or why `t` is not allowed now.
pub fn next(from: Status, t: &Transition, ctx: &Context) -> Result<Status, TransitionError> {
    use Status::*;
    use Transition as T;
    let to = match (from, t) {
        (Submitted, T::Accept) => Accepted,
        (Submitted, T::Reject { .. }) => Closed,
        (Accepted, T::Dispatch) => Dispatched,
        (Dispatched, T::Sign) => InProgress,
        (Dispatched, T::Return) => Accepted,
        (InProgress, T::Extend) => {
            if ctx.due_at.is_some_and(|due| ctx.now >= due) {
                return Err(TransitionError::ExtensionAfterDue);
            }
            InProgress
        }
        (InProgress, T::Escalate | T::Whistle) => InProgress,
        (InProgress, T::Transfer) => Dispatched,
        (InProgress, T::Reply { .. }) => {
            if ctx.open_summons > 0 {
                return Err(TransitionError::SummonsOutstanding(ctx.open_summons));
            }
            if ctx.quote_unaccepted {
                return Err(TransitionError::QuoteNotAccepted);
            }
            Replied
        }
        (InProgress, T::DeclineQuote) => Closed,
        (Replied, T::ReviewFail) => InProgress,
        (Replied, T::ReviewPass { visit: true }) => AwaitingVisit,
        (Replied, T::ReviewPass { visit: false }) => Closed,
        (AwaitingVisit, T::Visit) => Closed,
        (AwaitingVisit, T::Reopen) => InProgress,
        (Closed, T::Reopen) => {
            let within = ctx
                .closed_at
                .is_some_and(|c| ctx.now - c <= ctx.reopen_window_ms);
            if !within {
                return Err(TransitionError::ReopenWindowPassed);
            }
            InProgress
        }
        _ => {
            return Err(TransitionError::Illegal {
                from,
                action: t.name(),
            });
        }
    };
    Ok(to)
}

/// Open311 GeoReport v2: `open` or `closed`.
pub fn open311_status(s: Status) -> &'static str {
    if s == Status::Closed {
        "closed"
    } else {
        "open"
    }
}

/// mySociety's extended status for Open311 clients.
pub fn open311_extended_status(
    s: Status,
    rejected: Option<&RejectReason>,
    outcome: Option<Outcome>,
    reopened: bool,
) -> &'static str {
    match (s, rejected) {
        (Status::Closed, Some(RejectReason::DuplicateOf { .. })) => "DUPLICATE",
        (Status::Closed, Some(RejectReason::OutOfScope)) => "NOT_COUNCILS_RESPONSIBILITY",
        (Status::Closed, Some(RejectReason::Answered)) => "CLOSED",
        (Status::Closed, None) => match outcome {
            Some(Outcome::Unsolvable) => "UNABLE_TO_FIX",
            Some(Outcome::Explained | Outcome::Declined) => "CLOSED",
            _ => "FIXED",
        },
        (Status::Submitted, _) => "OPEN",
        (Status::Accepted, _) => "INVESTIGATING",
        (Status::Dispatched, _) => "ACTION_SCHEDULED",
        (Status::InProgress, _) if reopened => "REOPEN",
        (Status::InProgress, _) => "IN_PROGRESS",
        (Status::Replied | Status::AwaitingVisit, _) => "FIXED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    fn ctx() -> Context {
        Context {
            now: 1_000,
            reopen_window_ms: 7 * 86_400_000,
            ..Default::default()
        }
    }

    #[test]
    fn the_happy_path_with_return_extension_escalation_and_reopen() {
        let c = ctx();
        let steps = [
            (Transition::Accept, Accepted),
            (Transition::Dispatch, Dispatched),
            (Transition::Return, Accepted),
            (Transition::Dispatch, Dispatched),
            (Transition::Sign, InProgress),
            (Transition::Extend, InProgress),
            (Transition::Escalate, InProgress),
            (Transition::Whistle, InProgress),
            (Transition::Transfer, Dispatched),
            (Transition::Sign, InProgress),
            (
                Transition::Reply {
                    outcome: Outcome::Solved,
                },
                Replied,
            ),
            (Transition::ReviewFail, InProgress),
            (
                Transition::Reply {
                    outcome: Outcome::Solved,
                },
                Replied,
            ),
            (Transition::ReviewPass { visit: true }, AwaitingVisit),
            (Transition::Visit, Closed),
            (Transition::Reopen, InProgress),
        ];
        let mut s = Submitted;
        let mut closed_at = None;
        for (t, want) in steps {
            let c = Context {
                closed_at,
                ..c.clone()
            };
            s = next(s, &t, &c).unwrap_or_else(|e| panic!("{t:?} from {s:?}: {e:?}"));
            assert_eq!(s, want, "{t:?}");
            if s == Closed {
                closed_at = Some(c.now);
            }
        }
    }

    #[test]
    fn illegal_edges_are_refused() {
        let c = ctx();
        assert_eq!(
            next(Closed, &Transition::Sign, &c),
            Err(TransitionError::Illegal {
                from: Closed,
                action: "sign"
            })
        );
        assert!(next(Submitted, &Transition::Sign, &c).is_err());
        assert!(
            next(
                Accepted,
                &Transition::Reply {
                    outcome: Outcome::Solved
                },
                &c
            )
            .is_err()
        );
        assert!(next(Replied, &Transition::Visit, &c).is_err());
        assert!(next(Dispatched, &Transition::Extend, &c).is_err());
        assert_eq!(
            next(
                Submitted,
                &Transition::Reject {
                    reason: RejectReason::DuplicateOf {
                        report_id: "r1".into()
                    }
                },
                &c
            ),
            Ok(Closed)
        );
    }

    #[test]
    fn guards_extension_summons_and_reopen_window() {
        let late = Context {
            due_at: Some(500),
            ..ctx()
        };
        assert_eq!(
            next(InProgress, &Transition::Extend, &late),
            Err(TransitionError::ExtensionAfterDue)
        );
        let summoned = Context {
            open_summons: 2,
            ..ctx()
        };
        assert_eq!(
            next(
                InProgress,
                &Transition::Reply {
                    outcome: Outcome::Solved
                },
                &summoned
            ),
            Err(TransitionError::SummonsOutstanding(2))
        );
        let long_ago = Context {
            now: 10 * 86_400_000,
            closed_at: Some(0),
            ..ctx()
        };
        assert_eq!(
            next(Closed, &Transition::Reopen, &long_ago),
            Err(TransitionError::ReopenWindowPassed)
        );
        let rejected_never_closed_at = Context {
            closed_at: None,
            ..ctx()
        };
        assert_eq!(
            next(Closed, &Transition::Reopen, &rejected_never_closed_at),
            Err(TransitionError::ReopenWindowPassed)
        );
    }

    #[test]
    fn return_visit_policy_and_declined_quotes_close_where_they_should() {
        let c = ctx();
        assert_eq!(
            next(Replied, &Transition::ReviewPass { visit: false }, &c),
            Ok(Closed)
        );
        assert_eq!(
            next(Replied, &Transition::ReviewPass { visit: true }, &c),
            Ok(AwaitingVisit)
        );
        assert_eq!(next(InProgress, &Transition::DeclineQuote, &c), Ok(Closed));
        // Declining only makes sense while the work is open.
        for from in [
            Submitted,
            Accepted,
            Dispatched,
            Replied,
            AwaitingVisit,
            Closed,
        ] {
            assert!(
                next(from, &Transition::DeclineQuote, &c).is_err(),
                "{from:?}"
            );
        }
        let unpaid = Context {
            quote_unaccepted: true,
            ..ctx()
        };
        assert_eq!(
            next(
                InProgress,
                &Transition::Reply {
                    outcome: Outcome::Solved
                },
                &unpaid
            ),
            Err(TransitionError::QuoteNotAccepted)
        );
        assert_eq!(
            TransitionError::QuoteNotAccepted.code(),
            "report.quote_not_accepted"
        );
        assert_eq!(
            open311_extended_status(Closed, None, Some(Outcome::Declined), false),
            "CLOSED"
        );
    }

    #[test]
    fn open311_projection() {
        assert_eq!(open311_status(Closed), "closed");
        assert_eq!(open311_status(InProgress), "open");
        assert_eq!(
            open311_extended_status(
                Closed,
                Some(&RejectReason::DuplicateOf {
                    report_id: "x".into()
                }),
                None,
                false
            ),
            "DUPLICATE"
        );
        assert_eq!(
            open311_extended_status(InProgress, None, None, true),
            "REOPEN"
        );
        assert_eq!(
            open311_extended_status(Dispatched, None, None, false),
            "ACTION_SCHEDULED"
        );
        assert_eq!(
            open311_extended_status(Closed, None, Some(Outcome::Solved), false),
            "FIXED"
        );
    }
}
