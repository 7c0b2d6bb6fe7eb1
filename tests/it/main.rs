//! The one integration-test binary. Runs on SQLite by default; set
//! `LINLI_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres` to run the same suite
//! on PostgreSQL (each test creates and drops its own database).

mod common;

mod access;
mod accounts;
mod all_pages;
mod attacks;
mod audit;
mod authz;
mod backup;
mod catalogue_web;
mod celebrations;
mod cli;
mod cluster;
mod crash;
mod fast_read;
mod household_record;
mod import_export;
mod iot;
mod iot_live_page;
mod links;
mod matrix;
mod notify;
mod open311;
mod open311_contact;
mod platform;
mod registry;
mod repairs;
mod reports;
mod reports_form;
mod reports_live;
mod reports_paging;
mod reports_web;
mod resident;
mod roles;
mod security;
mod system;
mod time_zone;
mod web;
mod webhooks_web;
