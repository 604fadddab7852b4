//! The client side and shared core of Accord's parameter service.
//!
//! Owns what every program that reads or writes system parameters needs,
//! and what init's server shares with them: name and value rules
//! ([`name`]), the wire protocol ([`proto`]), a synchronous client
//! ([`client`]), the in-memory store with OpenHarmony's `const.*` rule
//! ([`store`]), DAC permission rules from `*.para.dac` files ([`dac`]), and
//! the `persist.*` file format ([`persist`]), a socket peer's groups
//! from the kernel ([`cred`]), and the shared-memory table
//! that makes reads of public parameters free of system calls ([`area`]). No async runtime and few
//! dependencies: every Accord binary links this crate.

pub mod area;
pub mod client;
pub mod cred;
pub mod dac;
mod error;
pub mod name;
pub mod persist;
pub mod proto;
pub mod store;

use std::path::PathBuf;

pub use client::Client;
pub use error::ParamError;

/// Where init listens for parameter requests.
pub const SOCKET_PATH: &str = "/dev/unix/socket/paramservice";

/// The socket path clients use: `PARAM_SOCKET` from the environment if set
/// (tests, tools run from outside the device's namespace), else
/// [`SOCKET_PATH`].
pub fn socket_path() -> PathBuf {
    std::env::var_os("PARAM_SOCKET").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(SOCKET_PATH))
}

/// Matches `value` against a pattern where `*` stands for any sequence of
/// characters (including none) and every other character for itself.
pub fn value_matches(pattern: &str, value: &str) -> bool {
    glob(pattern.as_bytes(), value.as_bytes(), None)
}

/// Matches a path against a pattern where `*` stands for any sequence of
/// characters but `/` (including none), `?` for one character but `/`, and
/// every other character for itself: ueventd's device patterns
/// (`/dev/input/event*`).
pub fn path_matches(pattern: &str, path: &str) -> bool {
    glob(pattern.as_bytes(), path.as_bytes(), Some(b'/'))
}

/// The one glob matcher: `*` (and, with a separator, `?`) never matches
/// `sep`. Iterative with single-star backtracking: linear in practice, no
/// recursion on untrusted patterns.
fn glob(p: &[u8], v: &[u8], sep: Option<u8>) -> bool {
    let (mut pi, mut vi) = (0usize, 0usize);
    // Where the last `*` was, and where in `v` it currently ends.
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && (p[pi] == v[vi] || (sep.is_some() && p[pi] == b'?' && Some(v[vi]) != sep)) {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            if Some(v[sv]) == sep {
                return false;
            }
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::value_matches;

    #[test]
    fn glob() {
        assert!(value_matches("*", ""));
        assert!(value_matches("*", "anything"));
        assert!(value_matches("1", "1"));
        assert!(!value_matches("1", "10"));
        assert!(value_matches("1*", "10"));
        assert!(value_matches("*0", "10"));
        assert!(value_matches("a*c*e", "abcde"));
        assert!(!value_matches("a*c*e", "abcdf"));
        assert!(value_matches("", ""));
        assert!(!value_matches("", "x"));
    }
}
