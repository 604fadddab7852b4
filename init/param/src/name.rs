//! Parameter names and values: OpenHarmony's limits.

use crate::ParamError;

/// Longest name, in bytes.
pub const NAME_MAX: usize = 96;
/// Longest value, in bytes, except for `const.*`.
pub const VALUE_MAX: usize = 96;
/// Longest value of a `const.*` parameter.
pub const CONST_VALUE_MAX: usize = 4096;

/// Checks a name: 1..=96 bytes of `[A-Za-z0-9_.-@:]`, no empty segment.
pub fn validate_name(name: &str) -> Result<(), ParamError> {
    let bad = |why| Err(ParamError::InvalidName { name: name.chars().take(NAME_MAX + 8).collect(), why });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > NAME_MAX {
        return bad("longer than 96 bytes");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'@' | b':')) {
        return bad("only letters, digits and _ . - @ : are allowed");
    }
    if name.starts_with('.') || name.ends_with('.') || name.contains("..") {
        return bad("empty segment between dots");
    }
    Ok(())
}

/// The longest value `name` may take.
pub fn value_max(name: &str) -> usize {
    if name.starts_with("const.") {
        CONST_VALUE_MAX
    } else {
        VALUE_MAX
    }
}

/// Checks a value for `name`: length limit, no NUL or newline.
pub fn validate_value(name: &str, value: &str) -> Result<(), ParamError> {
    let max = value_max(name);
    if value.len() > max {
        return Err(ParamError::ValueTooLong { name: name.to_owned(), len: value.len(), max });
    }
    if value.contains(['\0', '\n']) {
        return Err(ParamError::InvalidValue { name: name.to_owned(), why: "NUL and newline are not allowed".into() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "const.product.name", "persist.sys.x-y_z", "bootevent.samgr.ready", "a@b:c"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".a", "a.", "a..b", "a b", "a/b", "ä", &"x".repeat(97)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
        assert!(validate_name(&"x".repeat(96)).is_ok());
    }

    #[test]
    fn values() {
        assert!(validate_value("a", &"v".repeat(96)).is_ok());
        assert!(matches!(validate_value("a", &"v".repeat(97)), Err(ParamError::ValueTooLong { max: 96, .. })));
        assert!(validate_value("const.a", &"v".repeat(4096)).is_ok());
        assert!(validate_value("const.a", &"v".repeat(4097)).is_err());
        assert!(validate_value("a", "x\ny").is_err());
        let msg = validate_value("sys.long", &"v".repeat(100)).unwrap_err().to_string();
        assert!(msg.contains("sys.long") && msg.contains("96"), "{msg}");
    }
}
