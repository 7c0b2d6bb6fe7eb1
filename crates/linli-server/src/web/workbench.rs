//! The staff workbench (工作台, `/staff`): today's work of every module the caller works in —
//! each module's figures ([`crate::manifest::Measure`]) with a link to where the work is done —
//! and the console's sections. Staff land here after signing in.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect};

use crate::AppState;
use crate::manifest::Pages;
use crate::web::{NavItem, Page, WebResult, WebUser, render};

pub fn pages() -> Pages {
    Pages::new().get("/staff", workbench)
}

struct Figure {
    label: String,
    value: i64,
    href: &'static str,
    /// Work waiting past its deadline, or an alarm: shown as urgent when not zero.
    urgent: bool,
}

#[derive(Template)]
#[template(path = "workbench.html")]
struct WorkbenchTpl {
    page: Page,
    figures: Vec<Figure>,
    sections: Vec<NavItem>,
}

async fn workbench(State(s): State<AppState>, user: WebUser) -> WebResult {
    if !user.page.staff {
        return Ok(Redirect::to("/").into_response());
    }
    let mut figures = Vec::new();
    for m in crate::modules::ALL.iter().flat_map(|m| m.measures.iter()) {
        match (m.compute)(&s.store, &user.principal).await {
            Ok(Some(value)) => figures.push(Figure {
                label: user.page.t(m.label),
                value,
                href: m.href,
                urgent: value > 0 && (m.key.ends_with("overdue") || m.key.starts_with("alarms")),
            }),
            Ok(None) => {}
            // One module's figure failing must not take the workbench down.
            Err(e) => tracing::warn!(measure = m.key, error = %e, "workbench figure failed"),
        }
    }
    let sections = user
        .page
        .nav
        .iter()
        .filter(|n| n.href != "/staff")
        .cloned()
        .collect();
    Ok(render(&WorkbenchTpl {
        page: user.page,
        figures,
        sections,
    }))
}
