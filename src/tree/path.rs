//! Znode path rules: ZooKeeper's path validation and parent/child splitting.
//!
//! Validation follows `PathUtils.validatePath` of ZooKeeper: absolute, no trailing slash, no
//! empty components, no `.`/`..` components, and no control or reserved characters. The
//! character test works on UTF-16 code units in ZooKeeper; here it is applied to Unicode
//! scalar values, which gives the same verdict (surrogates cannot appear in a Rust `str`, and
//! every supplementary character is rejected because Java sees its surrogate halves).

use crate::jute::ErrorCode;

/// Checks a path the way `PathUtils.validatePath` does. Errors are `BadArguments`.
pub fn validate_path(path: &str) -> Result<(), ErrorCode> {
    let bytes = path.as_bytes();
    if bytes.is_empty() || bytes[0] != b'/' {
        return Err(ErrorCode::BadArguments);
    }
    if bytes.len() == 1 {
        return Ok(());
    }
    if bytes[bytes.len() - 1] == b'/' {
        return Err(ErrorCode::BadArguments);
    }
    // Walk the components between slashes.
    for component in path[1..].split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return Err(ErrorCode::BadArguments);
        }
        if component.chars().any(is_forbidden_char) {
            return Err(ErrorCode::BadArguments);
        }
    }
    Ok(())
}

fn is_forbidden_char(c: char) -> bool {
    let u = c as u32;
    u == 0
        || (0x01..=0x1f).contains(&u)
        || (0x7f..=0x9f).contains(&u)
        || (0xd800..=0xf8ff).contains(&u)
        || (0xfff0..=0xffff).contains(&u)
        // Supplementary characters are surrogate pairs in Java, and surrogates are rejected.
        || u > 0xffff
}

/// The parent of `path` as ZooKeeper computes it (`path[..lastIndexOf('/')]`), with the
/// empty parent of a top-level node spelled "/". None when there is no slash at all.
pub fn parent_of(path: &str) -> Option<&str> {
    // Bytewise: '/' never occurs inside a multi-byte UTF-8 sequence, and this is a hot path.
    let slash = path.bytes().rposition(|b| b == b'/')?;
    if slash == 0 {
        Some("/")
    } else {
        Some(&path[..slash])
    }
}

/// The last component of `path` (everything after the last slash).
pub fn name_of(path: &str) -> &str {
    match path.bytes().rposition(|b| b == b'/') {
        Some(i) => &path[i + 1..],
        None => path,
    }
}

/// `parent + "/" + name`, without doubling the slash under the root.
pub fn join(parent: &str, name: &str) -> String {
    let mut s = String::with_capacity(parent.len() + 1 + name.len());
    s.push_str(parent);
    if !parent.ends_with('/') {
        s.push('/');
    }
    s.push_str(name);
    s
}

/// `path` and each of its ancestors, ending with "/".
pub fn self_and_ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let cur = next?;
        next = if cur == "/" || cur.is_empty() {
            None
        } else {
            parent_of(cur)
        };
        Some(cur)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_matches_zookeeper() {
        for ok in [
            "/",
            "/a",
            "/a/b",
            "/a.b",
            "/...",
            "/a/.b",
            "/a/b.",
            "/zookeeper",
            "/é",
        ] {
            assert_eq!(validate_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a/b",
            "/a/",
            "//",
            "/a//b",
            "/.",
            "/..",
            "/a/.",
            "/a/../b",
            "/a\0b",
            "/a\u{1}",
            "/a\u{7f}",
            "/a\u{9f}",
            "/a\u{e000}",
            "/a\u{fff0}",
            "/a\u{1F600}",
        ] {
            assert_eq!(validate_path(bad), Err(ErrorCode::BadArguments), "{bad:?}");
        }
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(parent_of("/a"), Some("/"));
        assert_eq!(parent_of("/a/b"), Some("/a"));
        assert_eq!(parent_of("/"), Some("/"));
        assert_eq!(parent_of("abc"), None);
        assert_eq!(parent_of("a/b"), Some("a"));
        assert_eq!(name_of("/a/b"), "b");
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
        let v: Vec<&str> = self_and_ancestors("/a/b/c").collect();
        assert_eq!(v, ["/a/b/c", "/a/b", "/a", "/"]);
        let v: Vec<&str> = self_and_ancestors("/").collect();
        assert_eq!(v, ["/"]);
    }
}
