//! Reading OpenHarmony-format cfg files (`/etc/init.cfg`, `/etc/init/*.cfg`, ...).
//!
//! Owns: JSON parsing, `import` with `${param}` expansion, validation of every
//! field into [`types`], merging jobs and services across files, and the
//! `condition` expression language. Never fails the boot: every problem is a
//! [`Diagnostic`] naming the file, the position and the field, and parsing
//! goes on with everything else.

pub mod condition;
pub mod fstab;
mod parse;
mod types;

pub use parse::{expand, load, parse_file_str, Diagnostic, Severity};
pub use types::*;
