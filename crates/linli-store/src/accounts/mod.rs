//! Users, role bindings, sessions and API tokens.

pub mod roles;
pub mod sessions;
pub mod tokens;
pub mod users;
