//! The Fluent files are read at compile time by `fluent_templates::static_loader!`, which cargo
//! does not track: without this, a new or edited `.ftl` file would not rebuild the crate and the
//! binary would show message ids instead of text.
fn main() {
    println!("cargo:rerun-if-changed=locales");
}
