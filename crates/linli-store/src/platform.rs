//! What the modules give the store when it opens: their migrations, in the platform's module
//! order, and the catalogue of actions and roles (built from every module's manifest in
//! `linli-server`). The store itself knows no module list.

use linli_core::auth::Catalog;

use crate::db::Migration;

/// One module's schema.
#[derive(Clone, Copy)]
pub struct ModuleSchema {
    /// The module's name; migration versions count per module.
    pub module: &'static str,
    pub migrations: &'static [Migration],
}

/// The modules as the store sees them.
pub struct Platform {
    pub catalog: Catalog,
    /// Applied in this order: a module's tables may refer to those of the modules before it.
    pub schema: Vec<ModuleSchema>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field(
                "modules",
                &self.schema.iter().map(|s| s.module).collect::<Vec<_>>(),
            )
            .finish()
    }
}
