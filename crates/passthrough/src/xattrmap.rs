//! Extended attribute name mapping, compatible with virtiofsd's `--xattrmap` option.
//!
//! A mapping is an ordered list of rules. Names coming from the guest (`getxattr`,
//! `setxattr`, `removexattr`) are translated with [`XattrMap::guest_to_host`]; names coming from
//! the host (`listxattr`) with [`XattrMap::host_to_guest`]. The first rule whose scope covers the
//! direction and whose pattern is a prefix of the name decides; later rules are not consulted.
//!
//! # Syntax
//!
//! Each rule is a list of fields separated by a separator character, which is the first
//! non-whitespace character of the rule and must then be used throughout that rule. Every field,
//! including the last, is terminated by the separator. Whitespace (including newlines) may
//! appear between rules. With `:` as the separator a rule reads
//!
//! ```text
//! :type:scope:key:prepend:
//! ```
//!
//! * `scope` is `client` (match `key` against names from the guest), `server` (match `prepend`
//!   against names from the host) or `all` (both).
//! * `type` is one of
//!   * `prefix`: a guest name starting with `key` gets `prepend` put in front of it; a host name
//!     starting with `prepend` has `prepend` stripped.
//!   * `ok`: the name passes unchanged.
//!   * `bad`: a guest name is refused with `EPERM`; a host name is hidden.
//!   * `unsupported`: a guest name is refused with `ENOTSUP`; a host name is hidden.
//!
//! The shorthand `:map:key:prepend:` (at most one, and only as the very last rule) expands to
//! rules that put `prepend` in front of every guest name starting with `key` (of every name when
//! `key` is empty), hide host names that would collide with the mapping, stop the guest from
//! naming prefixed attributes directly, and pass everything else through:
//!
//! * empty `key`: `:prefix:all::PREPEND:` then `:bad:all:::`
//! * otherwise: `:prefix:all:KEY:PREPEND:`, `:bad:server::KEY:`, `:bad:client:PREPEND::`,
//!   `:ok:all:::`
//!
//! # Names no rule matches
//!
//! virtiofsd requires every name to be matched by some rule. Here a guest name that no rule
//! matches is refused with `EPERM`, and a host name that no rule matches is hidden from the
//! guest. End the rule list with `:ok:all:::` (or `:bad:all:::`) to make the choice explicit.
//!
//! Note for callers: virtiofsd answers a `getxattr` refused by a `bad` rule with `ENODATA`
//! instead of `EPERM`, so that the guest sees the attribute as simply absent; that conversion is
//! left to the file system (the error kind is available via [`io::Error::raw_os_error`]).

use std::ffi::{CStr, CString};
use std::io;

/// Error parsing an `--xattrmap` specification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The specification contains no rules.
    #[error("xattrmap: no rules given")]
    Empty,
    /// A rule ended before all of its fields were terminated by its separator.
    #[error(
        "xattrmap rule {rule}: incomplete rule (every field must end with the separator '{sep}')"
    )]
    Incomplete {
        /// 1-based rule number.
        rule: usize,
        /// The rule's separator.
        sep: char,
    },
    /// Unknown rule type.
    #[error("xattrmap rule {rule}: unknown type '{found}' (expected prefix, ok, bad, unsupported or map)")]
    InvalidType {
        /// 1-based rule number.
        rule: usize,
        /// What was found.
        found: String,
    },
    /// Unknown rule scope.
    #[error("xattrmap rule {rule}: unknown scope '{found}' (expected client, server or all)")]
    InvalidScope {
        /// 1-based rule number.
        rule: usize,
        /// What was found.
        found: String,
    },
    /// A `map` rule that is not the last rule.
    #[error("xattrmap rule {rule}: a 'map' rule must be the last rule")]
    MapNotLast {
        /// 1-based rule number.
        rule: usize,
    },
    /// A field contains a NUL character, which can never be part of an xattr name.
    #[error("xattrmap rule {rule}: a field contains a NUL character")]
    Nul {
        /// 1-based rule number.
        rule: usize,
    },
}

/// What a matching rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleType {
    /// Add (guest to host) or strip (host to guest) the `prepend` prefix.
    Prefix,
    /// Pass the name unchanged.
    Ok,
    /// Refuse with `EPERM` (guest) or hide (host).
    Bad,
    /// Refuse with `ENOTSUP` (guest) or hide (host).
    Unsupported,
}

/// A single mapping rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// What the rule does.
    pub kind: RuleType,
    /// Applies to names from the guest.
    pub client: bool,
    /// Applies to names from the host.
    pub server: bool,
    /// Prefix matched against names from the guest.
    pub key: Vec<u8>,
    /// Prefix matched against names from the host, and added to guest names by `prefix` rules.
    pub prepend: Vec<u8>,
}

/// A parsed set of xattr mapping rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XattrMap {
    rules: Vec<Rule>,
}

/// Parses an `--xattrmap` specification (see the module documentation for the syntax).
pub fn parse(spec: &str) -> Result<XattrMap, ParseError> {
    let mut chars = spec.chars().peekable();
    let mut rules = Vec::new();
    let mut rule_no = 0usize;
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(sep) = chars.next() else { break };
        rule_no += 1;
        let mut field = || -> Result<Vec<u8>, ParseError> {
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(ParseError::Incomplete { rule: rule_no, sep }),
                    Some(c) if c == sep => break,
                    Some('\0') => return Err(ParseError::Nul { rule: rule_no }),
                    Some(c) => s.push(c),
                }
            }
            Ok(s.into_bytes())
        };
        let kind = field()?;
        if kind == b"map" {
            let key = field()?;
            let prepend = field()?;
            if chars.clone().any(|c| !c.is_whitespace()) {
                return Err(ParseError::MapNotLast { rule: rule_no });
            }
            expand_map(&mut rules, key, prepend);
            break;
        }
        let kind = match kind.as_slice() {
            b"prefix" => RuleType::Prefix,
            b"ok" => RuleType::Ok,
            b"bad" => RuleType::Bad,
            b"unsupported" => RuleType::Unsupported,
            _ => {
                return Err(ParseError::InvalidType {
                    rule: rule_no,
                    found: String::from_utf8_lossy(&kind).into_owned(),
                })
            }
        };
        let scope = field()?;
        let (client, server) = match scope.as_slice() {
            b"client" => (true, false),
            b"server" => (false, true),
            b"all" => (true, true),
            _ => {
                return Err(ParseError::InvalidScope {
                    rule: rule_no,
                    found: String::from_utf8_lossy(&scope).into_owned(),
                })
            }
        };
        let key = field()?;
        let prepend = field()?;
        rules.push(Rule {
            kind,
            client,
            server,
            key,
            prepend,
        });
    }
    if rules.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(XattrMap { rules })
}

/// Expands the `:map:key:prepend:` shorthand into plain rules.
fn expand_map(rules: &mut Vec<Rule>, key: Vec<u8>, prepend: Vec<u8>) {
    let rule = |kind, client, server, key: &[u8], prepend: &[u8]| Rule {
        kind,
        client,
        server,
        key: key.to_vec(),
        prepend: prepend.to_vec(),
    };
    rules.push(rule(RuleType::Prefix, true, true, &key, &prepend));
    if key.is_empty() {
        // Everything is prefixed; host names without the prefix are hidden.
        rules.push(rule(RuleType::Bad, true, true, b"", b""));
    } else {
        // Host names that look like unmapped guest names are hidden.
        rules.push(rule(RuleType::Bad, false, true, b"", &key));
        // The guest may not reach prefixed names directly.
        rules.push(rule(RuleType::Bad, true, false, &prepend, b""));
        rules.push(rule(RuleType::Ok, true, true, b"", b""));
    }
}

impl std::str::FromStr for XattrMap {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

impl XattrMap {
    /// The rules, in matching order (with any `map` rule expanded).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Maps an attribute name from the guest to the name used on the host.
    ///
    /// Fails with `EPERM` for names refused by a `bad` rule or matched by no rule, and with
    /// `ENOTSUP` for names refused by an `unsupported` rule.
    pub fn guest_to_host(&self, name: &CStr) -> io::Result<CString> {
        let bytes = name.to_bytes();
        let Some(rule) = self
            .rules
            .iter()
            .find(|r| r.client && bytes.starts_with(&r.key))
        else {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        };
        match rule.kind {
            RuleType::Ok => Ok(name.to_owned()),
            RuleType::Prefix => {
                let mut out = Vec::with_capacity(rule.prepend.len() + bytes.len());
                out.extend_from_slice(&rule.prepend);
                out.extend_from_slice(bytes);
                // Neither part contains a NUL (checked at parse time / by CStr).
                CString::new(out).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
            }
            RuleType::Bad => Err(io::Error::from_raw_os_error(libc::EPERM)),
            RuleType::Unsupported => Err(io::Error::from_raw_os_error(libc::ENOTSUP)),
        }
    }

    /// Maps an attribute name found on the host to the name shown to the guest.
    ///
    /// `None` means the attribute is hidden from the guest (a `bad` or `unsupported` rule, no
    /// matching rule, an empty name, or a name that would become empty once its prefix is
    /// stripped).
    pub fn host_to_guest(&self, name: &CStr) -> Option<CString> {
        let bytes = name.to_bytes();
        if bytes.is_empty() {
            return None;
        }
        let rule = self
            .rules
            .iter()
            .find(|r| r.server && bytes.starts_with(&r.prepend))?;
        match rule.kind {
            RuleType::Ok => Some(name.to_owned()),
            RuleType::Prefix => {
                let rest = &bytes[rule.prepend.len()..];
                if rest.is_empty() {
                    None
                } else {
                    CString::new(rest).ok()
                }
            }
            RuleType::Bad | RuleType::Unsupported => None,
        }
    }

    /// Maps a host `listxattr` buffer (names each terminated by NUL) to the guest's view,
    /// dropping hidden names. Bytes after the last NUL, if any, are ignored.
    pub fn host_list_to_guest(&self, list: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(list.len());
        let mut rest = list;
        while let Some(pos) = rest.iter().position(|&b| b == 0) {
            let (entry, tail) = rest.split_at(pos + 1);
            rest = tail;
            if entry.len() == 1 {
                continue;
            }
            if let Ok(name) = CStr::from_bytes_with_nul(entry) {
                if let Some(mapped) = self.host_to_guest(name) {
                    out.extend_from_slice(mapped.as_bytes_with_nul());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn g2h(m: &XattrMap, s: &str) -> Result<String, i32> {
        m.guest_to_host(&c(s))
            .map(|n| n.into_string().unwrap())
            .map_err(|e| e.raw_os_error().unwrap())
    }

    fn h2g(m: &XattrMap, s: &str) -> Option<String> {
        m.host_to_guest(&c(s)).map(|n| n.into_string().unwrap())
    }

    #[test]
    fn parses_basic_rules() {
        let m = parse(":prefix:client:trusted.:user.virtiofs.: :ok:all:::").unwrap();
        assert_eq!(m.rules().len(), 2);
        assert_eq!(m.rules()[0].kind, RuleType::Prefix);
        assert!(m.rules()[0].client && !m.rules()[0].server);
        assert_eq!(m.rules()[0].key, b"trusted.");
        assert_eq!(m.rules()[0].prepend, b"user.virtiofs.");
        assert_eq!(m.rules()[1].kind, RuleType::Ok);
    }

    #[test]
    fn custom_separators_and_newlines() {
        let m = parse(
            "/prefix/all/trusted./user.virtiofs./\n /bad/server//trusted./\n\
             |bad|client|user.virtiofs.||\n/ok/all///",
        )
        .unwrap();
        assert_eq!(m.rules().len(), 4);
        assert_eq!(
            g2h(&m, "trusted.overlay"),
            Ok("user.virtiofs.trusted.overlay".into())
        );
        assert_eq!(g2h(&m, "user.virtiofs.x"), Err(libc::EPERM));
        assert_eq!(g2h(&m, "user.foo"), Ok("user.foo".into()));
        assert_eq!(h2g(&m, "user.virtiofs.trusted.a"), Some("trusted.a".into()));
        assert_eq!(h2g(&m, "trusted.a"), None);
        assert_eq!(h2g(&m, "user.x"), Some("user.x".into()));
    }

    #[test]
    fn prefix_everything() {
        let m = parse(":prefix:all::user.virtiofs.::bad:all:::").unwrap();
        assert_eq!(
            g2h(&m, "security.selinux"),
            Ok("user.virtiofs.security.selinux".into())
        );
        assert_eq!(
            h2g(&m, "user.virtiofs.security.selinux"),
            Some("security.selinux".into())
        );
        assert_eq!(h2g(&m, "security.selinux"), None);
        // A host name equal to the prefix would map to the empty name: hidden.
        assert_eq!(h2g(&m, "user.virtiofs."), None);
    }

    #[test]
    fn bad_and_unsupported() {
        let m = parse("/unsupported/all/security.selinux/security.selinux//ok/all///").unwrap();
        assert_eq!(g2h(&m, "security.selinux"), Err(libc::ENOTSUP));
        assert_eq!(
            g2h(&m, "security.capability"),
            Ok("security.capability".into())
        );
        assert_eq!(h2g(&m, "security.selinux"), None);
        let m = parse(":bad:client:trusted.:: :ok:all:::").unwrap();
        assert_eq!(g2h(&m, "trusted.x"), Err(libc::EPERM));
        // The bad rule is client-only: host names pass through the ok rule.
        assert_eq!(h2g(&m, "trusted.x"), Some("trusted.x".into()));
    }

    #[test]
    fn unmatched_names() {
        let m = parse(":ok:client:user.::").unwrap();
        assert_eq!(g2h(&m, "user.a"), Ok("user.a".into()));
        assert_eq!(g2h(&m, "trusted.a"), Err(libc::EPERM));
        assert_eq!(h2g(&m, "user.a"), None);
    }

    #[test]
    fn map_with_key() {
        let m = parse(":map:security.:user.virtiofs.:").unwrap();
        assert_eq!(m.rules().len(), 4);
        assert_eq!(
            g2h(&m, "security.selinux"),
            Ok("user.virtiofs.security.selinux".into())
        );
        assert_eq!(g2h(&m, "user.virtiofs.security.x"), Err(libc::EPERM));
        assert_eq!(g2h(&m, "user.foo"), Ok("user.foo".into()));
        assert_eq!(
            h2g(&m, "user.virtiofs.security.selinux"),
            Some("security.selinux".into())
        );
        assert_eq!(h2g(&m, "security.selinux"), None);
        assert_eq!(h2g(&m, "user.foo"), Some("user.foo".into()));
    }

    #[test]
    fn map_without_key() {
        let m = parse("  :map::user.virtiofs.:  ").unwrap();
        assert_eq!(m.rules().len(), 2);
        assert_eq!(g2h(&m, "trusted.a"), Ok("user.virtiofs.trusted.a".into()));
        assert_eq!(h2g(&m, "user.a"), None);
    }

    #[test]
    fn parse_errors() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("   \n"), Err(ParseError::Empty));
        assert_eq!(
            parse(":prefix:all:trusted.:user.vm."),
            Err(ParseError::Incomplete { rule: 1, sep: ':' })
        );
        assert!(matches!(
            parse(":foo:all:::"),
            Err(ParseError::InvalidType { rule: 1, .. })
        ));
        assert!(matches!(
            parse(":ok:all::: :ok:nowhere:::"),
            Err(ParseError::InvalidScope { rule: 2, .. })
        ));
        assert_eq!(
            parse(":map::x.: :ok:all:::"),
            Err(ParseError::MapNotLast { rule: 1 })
        );
        assert_eq!(parse(":ok:all:\0::"), Err(ParseError::Nul { rule: 1 }));
        assert_eq!(
            parse(":map:a:"),
            Err(ParseError::Incomplete { rule: 1, sep: ':' })
        );
        // Messages are readable.
        let msg = parse(":x:all:::").unwrap_err().to_string();
        assert!(msg.contains("unknown type 'x'"), "{msg}");
    }

    #[test]
    fn list_mapping() {
        let m = parse(":map:trusted.:user.virtiofs.:").unwrap();
        let list = b"user.virtiofs.trusted.overlay.opaque\0trusted.raw\0user.mime\0\0junk";
        let out = m.host_list_to_guest(list);
        assert_eq!(out, b"trusted.overlay.opaque\0user.mime\0");
    }

    #[test]
    fn map_round_trips() {
        // Whatever the guest may set, it reads back under the same name, and the host never
        // shows it a name it could not have set.
        let names = [
            "user.a",
            "trusted.overlay.opaque",
            "security.selinux",
            "security.capability",
            "system.posix_acl_access",
            "user.virtiofs.user.a",
            "user.virtiofs.",
            "x",
        ];
        for spec in [
            ":map::user.virtiofs.:",
            ":map:trusted.:user.virtiofs.:",
            ":map:security.:user.virtiofs.:",
            ":prefix:all::user.virtiofs.::bad:all:::",
        ] {
            let m = parse(spec).unwrap();
            for n in names {
                if let Ok(host) = g2h(&m, n) {
                    assert_eq!(h2g(&m, &host).as_deref(), Some(n), "{spec}: {n} -> {host}");
                }
                if let Some(guest) = h2g(&m, n) {
                    assert!(g2h(&m, &guest).is_ok(), "{spec}: host {n} shown as {guest}");
                }
            }
        }
    }

    #[test]
    fn empty_host_name_is_hidden() {
        // Found by the xattrmap_parse fuzz target: `ok` passed an empty name through.
        let m = parse(":ok:all:::").unwrap();
        assert_eq!(h2g(&m, ""), None);
    }

    #[test]
    fn multibyte_separator() {
        let m = parse("§ok§all§§§").unwrap();
        assert_eq!(g2h(&m, "user.x"), Ok("user.x".into()));
    }
}
