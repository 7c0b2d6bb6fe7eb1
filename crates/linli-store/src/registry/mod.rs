//! 一户一表: places, organisations, households, persons, labels, corrections, import and export.

pub mod corrections;
pub mod dossier;
pub mod export;
pub mod geo;
pub mod households;
pub mod import;
pub mod labels;
pub mod links;
pub mod orgs;
pub mod persons;
pub mod places;
pub mod schema;
