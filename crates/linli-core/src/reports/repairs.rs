//! Repairs (物业报修): the pure rules behind the routing catalogue's repair settings — who gets
//! the work (dispatch mode), whether a price must be agreed first (paid), and whether a return
//! visit follows (return-visit policy). The store applies them; nothing here reads a database.

use sha2::{Digest, Sha256};

use super::state::Status;

/// How a report reaching a unit finds its person (the catalogue's `dispatch_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchMode {
    /// A dispatcher of the unit picks the technician.
    Assign,
    /// 抢单: offered to every eligible person of the unit; the first to grab it wins.
    Grab,
    /// 轮派: the next eligible person of the unit in a durable rotation.
    RoundRobin,
}

impl DispatchMode {
    pub fn parse(s: &str) -> Option<DispatchMode> {
        match s {
            "assign" => Some(DispatchMode::Assign),
            "grab" => Some(DispatchMode::Grab),
            "round_robin" => Some(DispatchMode::RoundRobin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DispatchMode::Assign => "assign",
            DispatchMode::Grab => "grab",
            DispatchMode::RoundRobin => "round_robin",
        }
    }
}

/// The share of reports a `sample` return-visit policy sends to a visit when a rule does not say.
pub const DEFAULT_VISIT_SAMPLE_PERCENT: i64 = 30;

/// Whether a report goes to a return visit after the review passed, under the category's
/// policy: `always`, `none`, or `sample` — then a report is visited when the first 8 bytes of
/// SHA-256 of its id, read big-endian, modulo 100 fall below `sample_percent`. The choice depends
/// only on the id and the rate, so it is the same on every run, on every node, and in tests.
pub fn needs_return_visit(policy: &str, sample_percent: i64, report_id: &str) -> bool {
    match policy {
        "none" => false,
        "sample" => sample_bucket(report_id) < sample_percent.clamp(0, 100),
        _ => true,
    }
}

/// The report's sampling bucket, 0–99 (see [`needs_return_visit`]).
pub fn sample_bucket(report_id: &str) -> i64 {
    let d = Sha256::digest(report_id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(b) % 100) as i64
}

/// The next person in a rotation: the first candidate (in id order) after the last one served,
/// wrapping around. Keyed by id rather than by position, so people joining or leaving the unit
/// never make the rotation skip or repeat anyone else.
pub fn next_in_rotation<'a>(candidates: &'a [String], last: Option<&str>) -> Option<&'a String> {
    let mut sorted: Vec<&String> = candidates.iter().collect();
    sorted.sort();
    sorted.dedup();
    let after = last.and_then(|l| sorted.iter().find(|c| c.as_str() > l).copied());
    after.or_else(|| sorted.first().copied())
}

/// Whether a report may get (or change) its person now: after it reached a unit and before the
/// work is replied.
pub fn assignable(status: Status) -> bool {
    matches!(status, Status::Dispatched | Status::InProgress)
}

/// The price quote of a paid repair (amount in fen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteState {
    /// None given yet (or the report is free).
    None,
    /// Given, waiting for the resident.
    Pending,
    Accepted,
    Declined,
}

impl QuoteState {
    pub fn parse(s: Option<&str>) -> QuoteState {
        match s {
            Some("pending") => QuoteState::Pending,
            Some("accepted") => QuoteState::Accepted,
            Some("declined") => QuoteState::Declined,
            _ => QuoteState::None,
        }
    }

    pub fn as_str(self) -> Option<&'static str> {
        match self {
            QuoteState::None => None,
            QuoteState::Pending => Some("pending"),
            QuoteState::Accepted => Some("accepted"),
            QuoteState::Declined => Some("declined"),
        }
    }
}

/// A quote as a person was shown it: the price, and `quoted_at`, which identifies the quote
/// (every quote of a report gets its own, see [`next_quoted_at`]). An answer to a quote carries
/// the quote it answers, so a price changed after the page was drawn is never accepted unseen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quote {
    pub amount_fen: i64,
    pub quoted_at: i64,
}

/// A step of the quote flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteStep {
    /// The handler states the price (again, while not accepted).
    Quote,
    /// The resident accepts the quote they were shown.
    Accept(Quote),
    /// The resident declines the quote they were shown.
    Decline(Quote),
}

/// Why a quote step is refused (each a 409 with this code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuoteError {
    /// The category is free: no quote.
    NotPaid,
    /// The work is not in progress (sign first; nothing after the reply).
    NotInProgress,
    /// Accept or decline without a quote waiting.
    NoPendingQuote,
    /// A new quote after the resident accepted one.
    AlreadyAccepted,
    /// The answer names another quote than the current one (it was changed after the person
    /// answering saw it).
    Changed,
}

impl QuoteError {
    pub fn code(self) -> &'static str {
        match self {
            QuoteError::NotPaid => "report.quote_not_needed",
            QuoteError::NotInProgress => "report.quote_not_in_progress",
            QuoteError::NoPendingQuote => "report.no_pending_quote",
            QuoteError::AlreadyAccepted => "report.quote_already_accepted",
            QuoteError::Changed => "report.quote_changed",
        }
    }
}

/// The quote state after `step`, or why it is refused. `current` is the quote on the report
/// now; an answer must name exactly that one.
pub fn quote_step(
    status: Status,
    paid: bool,
    state: QuoteState,
    current: Option<Quote>,
    step: QuoteStep,
) -> Result<QuoteState, QuoteError> {
    if !paid {
        return Err(QuoteError::NotPaid);
    }
    if status != Status::InProgress {
        return Err(QuoteError::NotInProgress);
    }
    match (step, state) {
        (QuoteStep::Quote, QuoteState::Accepted) => Err(QuoteError::AlreadyAccepted),
        (QuoteStep::Quote, _) => Ok(QuoteState::Pending),
        (QuoteStep::Accept(shown) | QuoteStep::Decline(shown), QuoteState::Pending)
            if current != Some(shown) =>
        {
            Err(QuoteError::Changed)
        }
        (QuoteStep::Accept(_), QuoteState::Pending) => Ok(QuoteState::Accepted),
        (QuoteStep::Decline(_), QuoteState::Pending) => Ok(QuoteState::Declined),
        (QuoteStep::Accept(_) | QuoteStep::Decline(_), _) => Err(QuoteError::NoPendingQuote),
    }
}

/// The `quoted_at` of a new quote: now, but always after every earlier quote of the report
/// (`previous`), so no two quotes of a report share it even within one millisecond.
pub fn next_quoted_at(now: i64, previous: Option<i64>) -> i64 {
    previous.map_or(now, |p| now.max(p + 1))
}

/// An amount in fen the way the pages show it: `¥12.50`.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}¥{}.{:02}", a / 100, a % 100)
}

/// Whether a reply must wait for the resident's acceptance.
pub fn reply_blocked_by_quote(paid: bool, state: QuoteState) -> bool {
    paid && state != QuoteState::Accepted
}

/// The largest quote accepted (¥100,000.00): a typo guard, not a business limit.
pub const MAX_QUOTE_FEN: i64 = 10_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn rotation_is_fair_and_survives_membership_changes() {
        let c = ids(&["u3", "u1", "u2"]);
        let mut last: Option<String> = None;
        let mut served = Vec::new();
        for _ in 0..6 {
            let n = next_in_rotation(&c, last.as_deref()).unwrap().clone();
            served.push(n.clone());
            last = Some(n);
        }
        assert_eq!(served, ids(&["u1", "u2", "u3", "u1", "u2", "u3"]));
        // The last one served left the unit: the rotation continues after where they were.
        let without_u2 = ids(&["u1", "u3"]);
        assert_eq!(
            next_in_rotation(&without_u2, Some("u2")).map(String::as_str),
            Some("u3")
        );
        assert_eq!(next_in_rotation(&[], Some("u1")), None);
    }

    #[test]
    fn return_visit_sampling_is_deterministic_and_near_the_rate() {
        assert!(needs_return_visit("always", 0, "x"));
        assert!(!needs_return_visit("none", 100, "x"));
        assert!(needs_return_visit("sample", 100, "x"));
        assert!(!needs_return_visit("sample", 0, "x"));
        let ids: Vec<String> = (0..2000).map(|i| format!("report-{i}")).collect();
        let visited = ids
            .iter()
            .filter(|id| needs_return_visit("sample", 30, id))
            .count();
        assert!((500..700).contains(&visited), "{visited} of 2000");
        // The same id decides the same way every time.
        for id in &ids[..50] {
            assert_eq!(needs_return_visit("sample", 30, id), sample_bucket(id) < 30);
        }
        // Fixed vectors (computed independently with Python's hashlib), so a change of the
        // documented rule is noticed.
        assert_eq!(sample_bucket("report-0"), 42);
        assert_eq!(sample_bucket("0193a000-0000-7000-8000-000000000000"), 74);
    }

    #[test]
    fn quote_flow_and_illegal_orders() {
        use QuoteState as Q;
        use QuoteStep as S;
        let ip = Status::InProgress;
        let q = Quote {
            amount_fen: 8000,
            quoted_at: 10,
        };
        let now = Some(q);
        assert_eq!(
            quote_step(ip, true, Q::None, None, S::Quote),
            Ok(Q::Pending)
        );
        assert_eq!(
            quote_step(ip, true, Q::Pending, now, S::Quote),
            Ok(Q::Pending)
        );
        assert_eq!(
            quote_step(ip, true, Q::Pending, now, S::Accept(q)),
            Ok(Q::Accepted)
        );
        assert_eq!(
            quote_step(ip, true, Q::Pending, now, S::Decline(q)),
            Ok(Q::Declined)
        );
        assert_eq!(
            quote_step(ip, true, Q::Declined, now, S::Quote),
            Ok(Q::Pending)
        );
        assert_eq!(
            quote_step(ip, true, Q::None, None, S::Accept(q)),
            Err(QuoteError::NoPendingQuote)
        );
        assert_eq!(
            quote_step(ip, true, Q::Accepted, now, S::Decline(q)),
            Err(QuoteError::NoPendingQuote)
        );
        assert_eq!(
            quote_step(ip, true, Q::Accepted, now, S::Quote),
            Err(QuoteError::AlreadyAccepted)
        );
        assert_eq!(
            quote_step(ip, false, Q::None, None, S::Quote),
            Err(QuoteError::NotPaid)
        );
        assert_eq!(
            quote_step(Status::Dispatched, true, Q::None, None, S::Quote),
            Err(QuoteError::NotInProgress)
        );
        assert!(reply_blocked_by_quote(true, Q::Pending));
        assert!(reply_blocked_by_quote(true, Q::None));
        assert!(!reply_blocked_by_quote(true, Q::Accepted));
        assert!(!reply_blocked_by_quote(false, Q::None));
    }

    #[test]
    fn an_answer_binds_to_the_quote_that_was_shown() {
        use QuoteState as Q;
        use QuoteStep as S;
        let ip = Status::InProgress;
        let shown = Quote {
            amount_fen: 5_000,
            quoted_at: 100,
        };
        // Re-quoted: another amount, or the same amount as a new quote (another note).
        let dearer = Quote {
            amount_fen: 10_000_000,
            quoted_at: 101,
        };
        let same_price_new_quote = Quote {
            amount_fen: 5_000,
            quoted_at: 101,
        };
        for current in [dearer, same_price_new_quote] {
            for step in [S::Accept(shown), S::Decline(shown)] {
                assert_eq!(
                    quote_step(ip, true, Q::Pending, Some(current), step),
                    Err(QuoteError::Changed),
                    "{current:?} {step:?}"
                );
            }
        }
        assert_eq!(QuoteError::Changed.code(), "report.quote_changed");
        // No quote waiting stays the clearer answer.
        assert_eq!(
            quote_step(ip, true, Q::Accepted, Some(dearer), S::Accept(shown)),
            Err(QuoteError::NoPendingQuote)
        );
        // Every quote of a report has its own `quoted_at`, even within one millisecond.
        assert_eq!(next_quoted_at(500, None), 500);
        assert_eq!(next_quoted_at(500, Some(400)), 500);
        assert_eq!(next_quoted_at(500, Some(500)), 501);
        assert_eq!(next_quoted_at(500, Some(700)), 701);
        assert_eq!(yuan(5_000), "¥50.00");
        assert_eq!(yuan(10_000_000), "¥100000.00");
        assert_eq!(yuan(1_205), "¥12.05");
        assert_eq!(yuan(-50), "-¥0.50");
    }

    #[test]
    fn only_open_work_is_assignable() {
        assert!(assignable(Status::Dispatched));
        assert!(assignable(Status::InProgress));
        for s in [
            Status::Submitted,
            Status::Accepted,
            Status::Replied,
            Status::AwaitingVisit,
            Status::Closed,
        ] {
            assert!(!assignable(s), "{s:?}");
        }
        assert_eq!(DispatchMode::parse("grab"), Some(DispatchMode::Grab));
        assert_eq!(DispatchMode::parse("x"), None);
    }
}
