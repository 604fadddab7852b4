//! The system abilities `sa_main` can host, with their interfaces, so
//! clients (tools, tests) build their proxies from the same definitions.

pub mod demo;
