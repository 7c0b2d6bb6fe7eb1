//! THE list of modules. Adding a module adds one line here (and the module's own folders);
//! everything else the platform needs from it is in its manifest (`<module>/mod.rs`). The order
//! is the order of migrations, navigation and demo seeding: a module comes after the modules
//! whose tables and data it builds on.

use std::sync::Arc;

use linli_core::auth::{Catalog, CatalogPart};
use linli_store::platform::{ModuleSchema, Platform};

use crate::manifest::Module;

pub static ALL: &[&Module] = &[
    &crate::platform::MODULE,
    &crate::registry::MODULE,
    &crate::notify::MODULE,
    &crate::reports::MODULE,
    &crate::iot::MODULE,
    &crate::access::MODULE,
];

/// What the store needs from the modules: the catalogue of actions and roles, the schema.
pub fn platform() -> Arc<Platform> {
    let parts: Vec<CatalogPart> = ALL.iter().map(|m| m.catalog).collect();
    let catalog = Catalog::build(&parts).unwrap_or_else(|e| panic!("module catalogue: {e}"));
    Arc::new(Platform {
        catalog,
        schema: ALL
            .iter()
            .map(|m| ModuleSchema {
                module: m.name,
                migrations: m.migrations,
            })
            .collect(),
    })
}
