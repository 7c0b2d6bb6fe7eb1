//! THE list of modules. Adding a module adds one line here (and the module's own folders);
//! everything else the platform needs from it is in its manifest (`<module>/mod.rs`). The order
//! is the order of migrations, navigation and demo seeding: a module comes after the modules
//! whose tables and data it builds on.

use std::sync::Arc;

use linli_core::auth::{Catalog, CatalogPart};
use linli_store::platform::{ModuleSchema, Platform};

use linli_core::AppResult;
use linli_store::Store;
use linli_store::demo::DemoAccount;

use crate::manifest::Module;

pub static ALL: &[&Module] = &[
    &crate::platform::MODULE,
    &crate::registry::MODULE,
    &crate::notify::MODULE,
    &crate::reports::MODULE,
    &crate::iot::MODULE,
    &crate::access::MODULE,
    &crate::celebrations::MODULE,
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

/// Seed the demo: the registry's district and accounts, then every module's demo data in list
/// order (each idempotent). Returns the demo accounts. Instances started together with
/// `--demo` seed one after the other (a lock held across the seeding), so the second finds the
/// first's data instead of colliding with it.
pub async fn seed_demo(store: &Store, password: &str) -> AppResult<Vec<DemoAccount>> {
    let mut fresh = false;
    let accounts = store
        .db
        .with_session_lock("demo.seed", async {
            fresh = !store.demo_seeded().await?;
            let accounts = store.seed_demo(password).await?;
            for m in ALL {
                if let Some(seed) = m.demo {
                    seed(store).await?;
                }
            }
            Ok::<_, linli_core::AppError>(accounts)
        })
        .await?;
    // Thousands of rows just arrived: without fresh statistics PostgreSQL plans as if the
    // tables were empty (an exact-ID search walked a whole community). A restart on seeded data
    // has nothing new to measure.
    if fresh {
        store
            .db
            .refresh_statistics(&[])
            .await
            .map_err(linli_store::db::db_err)?;
    }
    Ok(accounts)
}

/// Start every module's background jobs: each runs at once (catching up after downtime), then
/// every `every`, until the process ends — on one instance at a time: each round first claims
/// the job's lease ([`Store::claim_lease`]); the holder renews it, and when it dies another
/// instance takes the job over once the lease ran out (three rounds, at least ten seconds).
pub fn spawn_jobs(store: &Store) {
    for job in ALL.iter().flat_map(|m| m.jobs.iter()) {
        let store = store.clone();
        tracing::debug!(job = job.name, "starting background job");
        let lease_ms = (job.every.as_millis() as i64 * 3).max(10_000);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(job.every);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                match store.claim_lease(job.name, lease_ms).await {
                    Ok(true) => (job.run)(&store).await,
                    Ok(false) => {}
                    Err(e) => tracing::warn!(job = job.name, error = %e, "claiming a job"),
                }
            }
        });
    }
}

/// Every module's household-record sections, in list order.
pub fn record_sections() -> Vec<&'static linli_store::registry::dossier::RecordSection> {
    ALL.iter()
        .flat_map(|m| m.record.iter())
        .map(|v| v.section)
        .collect()
}
