//! sluice connectors, one folder per system, each behind a cargo feature.
//!
//! A connector folder holds its configuration (`config.rs`, deserialized
//! from its own TOML table), its source and/or sink, and a `register`
//! function in its `mod.rs` that adds its factories to a
//! [`Registry`](sluice_core::Registry). The list below is the one place
//! naming every connector: adding one is a folder, a line here and a cargo
//! feature (see ARCHITECTURE.md, "Adding a connector").

pub mod identifiers;
pub mod ledger;
pub mod mode;
pub mod partitions;
pub mod refused;
pub mod url;

/// Declares the connector modules, each under its feature, and
/// [`registry`], which registers every one compiled in.
macro_rules! connectors {
    ($($(#[$feature:meta])* $module:ident,)*) => {
        $($(#[$feature])* pub mod $module;)*

        /// A registry of every connector in this build, for the engine.
        pub fn registry() -> sluice_core::Registry {
            let mut r = sluice_core::Registry::default();
            $($(#[$feature])* $module::register(&mut r);)*
            r
        }
    };
}

connectors! {
    files,
    #[cfg(feature = "generate")]
    generate,
    null,
    #[cfg(feature = "sqlite")]
    sqlite,
    #[cfg(feature = "postgres")]
    postgres,
    #[cfg(feature = "mysql")]
    mysql,
    #[cfg(feature = "search")]
    search,
}
