//! Users, role bindings, sessions and API tokens.

pub mod sessions;
pub mod tokens;
pub mod users;
