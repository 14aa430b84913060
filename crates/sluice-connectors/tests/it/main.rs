//! Integration tests of sluice-connectors against real services, one module
//! per connector. Services are found by URL environment variables with
//! local defaults; a test skips loudly when its service is down, and fails
//! when `CI=true`.

mod files;
#[cfg(feature = "mysql")]
mod mysql;
