//! Translation of user and group ids between guest and host.
//!
//! Two command-line forms are understood:
//!
//! * virtiofsd's `--translate-uid` / `--translate-gid`: `TYPE:SOURCE:TARGET:COUNT` where `TYPE` is
//!   * `guest:GUEST:HOST:COUNT` — guest ids `[GUEST, GUEST+COUNT)` become host ids
//!     `[HOST, HOST+COUNT)` (guest to host only);
//!   * `host:HOST:GUEST:COUNT` — host ids `[HOST, HOST+COUNT)` are shown to the guest as
//!     `[GUEST, GUEST+COUNT)` (host to guest only);
//!   * `map:GUEST:HOST:COUNT` — both of the above at once;
//!   * `squash-guest:GUEST:HOST:COUNT` — every guest id in `[GUEST, GUEST+COUNT)` becomes the
//!     single host id `HOST`;
//!   * `squash-host:HOST:GUEST:COUNT` — every host id in `[HOST, HOST+COUNT)` is shown as the
//!     single guest id `GUEST`;
//!   * `forbid-guest:GUEST:COUNT` — guest ids in `[GUEST, GUEST+COUNT)` are refused with `EPERM`
//!     whenever the guest tries to create a file with, or change a file to, such an id.
//! * the older `--uid-map` / `--gid-map` form `:NAMESPACE_ID:HOST_ID:COUNT:` (any separator, given
//!   by the first character), which virtiofsd uses for the user namespace of its sandbox. Here it
//!   can also be used as a translation, where it means the same as `map:NAMESPACE_ID:HOST_ID:COUNT`
//!   (see [`parse_ns_map`] and [`IdMap::add_uid_ns_map`]).
//!
//! Ranges must not overlap within one direction: two guest-to-host rules (`guest`, `map`,
//! `squash-guest`, `forbid-guest`) may not cover the same guest id, and two host-to-guest rules
//! (`host`, `map`, `squash-host`) may not cover the same host id. `COUNT` must be at least 1 and a
//! range may not include id 4294967295, which is `(uid_t)-1` ("no change" to `chown`) and never
//! a real id; that id is never translated.
//!
//! **Ids no rule covers are passed through unchanged**, in both directions (as virtiofsd does).
//! To confine the guest to some ids, cover all the others with `forbid-guest` or `squash-guest`
//! rules; since rules may not overlap, split those ranges around the ids to keep, e.g.
//! `forbid-guest:0:1000`, `map:1000:1000:1`, `forbid-guest:1001:4294966294`.

use std::fmt;
use std::io;
use std::str::FromStr;

/// Error parsing or adding an id mapping rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdMapError {
    /// The rule does not have the expected form.
    #[error("id mapping '{spec}': {why}")]
    Syntax {
        /// The offending rule.
        spec: String,
        /// What is wrong with it.
        why: String,
    },
    /// The rule's range overlaps a rule given earlier for the same direction.
    #[error("id mapping '{spec}': {direction} range overlaps an earlier rule")]
    Overlap {
        /// The offending rule.
        spec: String,
        /// `guest-to-host` or `host-to-guest`.
        direction: &'static str,
    },
}

/// One translation rule (`--translate-uid` / `--translate-gid` syntax).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// 1:1 guest range to host range, guest to host only.
    Guest {
        /// First guest id.
        guest: u32,
        /// First host id.
        host: u32,
        /// Range length.
        count: u32,
    },
    /// 1:1 host range to guest range, host to guest only.
    Host {
        /// First host id.
        host: u32,
        /// First guest id.
        guest: u32,
        /// Range length.
        count: u32,
    },
    /// 1:1 in both directions.
    Map {
        /// First guest id.
        guest: u32,
        /// First host id.
        host: u32,
        /// Range length.
        count: u32,
    },
    /// n:1 guest range to one host id.
    SquashGuest {
        /// First guest id.
        guest: u32,
        /// The host id.
        host: u32,
        /// Range length.
        count: u32,
    },
    /// n:1 host range to one guest id.
    SquashHost {
        /// First host id.
        host: u32,
        /// The guest id.
        guest: u32,
        /// Range length.
        count: u32,
    },
    /// Guest ids refused with `EPERM`.
    ForbidGuest {
        /// First guest id.
        guest: u32,
        /// Range length.
        count: u32,
    },
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Rule::Guest { guest, host, count } => write!(f, "guest:{guest}:{host}:{count}"),
            Rule::Host { host, guest, count } => write!(f, "host:{host}:{guest}:{count}"),
            Rule::Map { guest, host, count } => write!(f, "map:{guest}:{host}:{count}"),
            Rule::SquashGuest { guest, host, count } => {
                write!(f, "squash-guest:{guest}:{host}:{count}")
            }
            Rule::SquashHost { host, guest, count } => {
                write!(f, "squash-host:{host}:{guest}:{count}")
            }
            Rule::ForbidGuest { guest, count } => write!(f, "forbid-guest:{guest}:{count}"),
        }
    }
}

fn syntax(spec: &str, why: impl Into<String>) -> IdMapError {
    IdMapError::Syntax {
        spec: spec.to_string(),
        why: why.into(),
    }
}

fn parse_id(spec: &str, what: &str, s: &str) -> Result<u32, IdMapError> {
    s.trim()
        .parse::<u32>()
        .map_err(|e| syntax(spec, format!("bad {what} '{s}': {e}")))
}

/// The id `(uid_t)-1`, which means "no change" to `chown` and is never a real id.
pub const INVALID_ID: u32 = u32::MAX;

/// Checks that `[base, base+count)` is a non-empty range of valid ids (ending before
/// [`INVALID_ID`]).
fn check_range(spec: &str, base: u32, count: u32) -> Result<(), IdMapError> {
    if count == 0 {
        return Err(syntax(spec, "count must be at least 1"));
    }
    if u64::from(base) + u64::from(count) > u64::from(INVALID_ID) {
        return Err(syntax(spec, "range extends past id 4294967294"));
    }
    Ok(())
}

/// Checks that a single squash target is a valid id.
fn check_id(spec: &str, id: u32) -> Result<(), IdMapError> {
    if id == INVALID_ID {
        return Err(syntax(spec, "4294967295 is not a valid id"));
    }
    Ok(())
}

impl FromStr for Rule {
    type Err = IdMapError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let fields: Vec<&str> = spec.trim().split(':').collect();
        let kind = fields[0];
        let want = if kind == "forbid-guest" { 3 } else { 4 };
        if fields.len() != want {
            return Err(syntax(
                spec,
                format!(
                    "expected {} fields separated by ':', found {}",
                    want,
                    fields.len()
                ),
            ));
        }
        let a = parse_id(spec, "source base", fields[1])?;
        if kind == "forbid-guest" {
            let count = parse_id(spec, "count", fields[2])?;
            check_range(spec, a, count)?;
            return Ok(Rule::ForbidGuest { guest: a, count });
        }
        let b = parse_id(spec, "target base", fields[2])?;
        let count = parse_id(spec, "count", fields[3])?;
        check_range(spec, a, count)?;
        // `squash` rules map a range to the single id `b`; the others are 1:1.
        let (rule, squash) = match kind {
            "guest" => (
                Rule::Guest {
                    guest: a,
                    host: b,
                    count,
                },
                false,
            ),
            "host" => (
                Rule::Host {
                    host: a,
                    guest: b,
                    count,
                },
                false,
            ),
            "map" => (
                Rule::Map {
                    guest: a,
                    host: b,
                    count,
                },
                false,
            ),
            "squash-guest" => (
                Rule::SquashGuest {
                    guest: a,
                    host: b,
                    count,
                },
                true,
            ),
            "squash-host" => (
                Rule::SquashHost {
                    host: a,
                    guest: b,
                    count,
                },
                true,
            ),
            _ => {
                return Err(syntax(
                    spec,
                    format!(
                        "unknown type '{kind}' (expected guest, host, map, squash-guest, \
                         squash-host or forbid-guest)"
                    ),
                ))
            }
        };
        if squash {
            // The single target must be a valid id.
            check_id(spec, b)?;
        } else {
            // 1:1 rules: the target range must fit too.
            check_range(spec, b, count)?;
        }
        Ok(rule)
    }
}

/// An entry of the older `--uid-map` / `--gid-map` form `:NAMESPACE_ID:HOST_ID:COUNT:`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsMap {
    /// First id inside the namespace.
    pub inside: u32,
    /// First id on the host.
    pub outside: u32,
    /// Range length.
    pub count: u32,
}

impl NsMap {
    /// The bidirectional rule this entry stands for (namespace id = guest id).
    fn rule(&self) -> Rule {
        Rule::Map {
            guest: self.inside,
            host: self.outside,
            count: self.count,
        }
    }
}

/// Parses `:NAMESPACE_ID:HOST_ID:COUNT:`; the separator is the first character.
pub fn parse_ns_map(spec: &str) -> Result<NsMap, IdMapError> {
    let t = spec.trim();
    let sep = t.chars().next().ok_or_else(|| syntax(spec, "empty"))?;
    if sep.is_ascii_digit() {
        return Err(syntax(
            spec,
            "must start with a separator, e.g. ':0:1000:1:'",
        ));
    }
    let fields: Vec<&str> = t.split(sep).collect();
    // Leading and trailing separators give empty first and last fields.
    if fields.len() != 5 || !fields[0].is_empty() || !fields[4].is_empty() {
        return Err(syntax(
            spec,
            "expected the form :namespace_id:host_id:count:",
        ));
    }
    let inside = parse_id(spec, "namespace id", fields[1])?;
    let outside = parse_id(spec, "host id", fields[2])?;
    let count = parse_id(spec, "count", fields[3])?;
    check_range(spec, inside, count)?;
    check_range(spec, outside, count)?;
    Ok(NsMap {
        inside,
        outside,
        count,
    })
}

/// Result of a guest-to-host lookup.
#[derive(Clone, Copy, Debug)]
enum ToHost {
    /// `host = base_out + (id - base_in)`.
    Shift(u32),
    /// A single host id.
    Squash(u32),
    /// Refused.
    Forbid,
}

/// A range rule in one direction: `[start, start+count)` → action.
#[derive(Clone, Copy, Debug)]
struct Entry<A> {
    start: u32,
    count: u32,
    action: A,
}

impl<A> Entry<A> {
    fn contains(&self, id: u32) -> bool {
        id >= self.start && u64::from(id) < u64::from(self.start) + u64::from(self.count)
    }

    fn overlaps(&self, start: u32, count: u32) -> bool {
        let (a0, a1) = (
            u64::from(self.start),
            u64::from(self.start) + u64::from(self.count),
        );
        let (b0, b1) = (u64::from(start), u64::from(start) + u64::from(count));
        a0 < b1 && b0 < a1
    }
}

/// Translation table for one kind of id (uids or gids).
#[derive(Clone, Debug, Default)]
pub struct IdTable {
    to_host: Vec<Entry<ToHost>>,
    /// Host-to-guest: `(shift target or squash target, is_squash)`.
    to_guest: Vec<Entry<(u32, bool)>>,
}

impl IdTable {
    /// True when no rules were added (every id passes through unchanged).
    pub fn is_identity(&self) -> bool {
        self.to_host.is_empty() && self.to_guest.is_empty()
    }

    /// Parses and adds one `--translate-uid`/`--translate-gid` rule.
    pub fn add_spec(&mut self, spec: &str) -> Result<(), IdMapError> {
        let rule: Rule = spec.parse()?;
        self.add(rule)
    }

    /// Adds one rule; fails if it overlaps an earlier rule of the same direction.
    pub fn add(&mut self, rule: Rule) -> Result<(), IdMapError> {
        let (g2h, h2g) = match rule {
            Rule::Guest { guest, host, count } => (Some((guest, count, ToHost::Shift(host))), None),
            Rule::Host { host, guest, count } => (None, Some((host, count, (guest, false)))),
            Rule::Map { guest, host, count } => (
                Some((guest, count, ToHost::Shift(host))),
                Some((host, count, (guest, false))),
            ),
            Rule::SquashGuest { guest, host, count } => {
                (Some((guest, count, ToHost::Squash(host))), None)
            }
            Rule::SquashHost { host, guest, count } => (None, Some((host, count, (guest, true)))),
            Rule::ForbidGuest { guest, count } => (Some((guest, count, ToHost::Forbid)), None),
        };
        let spec = rule.to_string();
        if let Some((s, c, _)) = g2h {
            if self.to_host.iter().any(|e| e.overlaps(s, c)) {
                return Err(IdMapError::Overlap {
                    spec,
                    direction: "guest-to-host",
                });
            }
        }
        if let Some((s, c, _)) = h2g {
            if self.to_guest.iter().any(|e| e.overlaps(s, c)) {
                return Err(IdMapError::Overlap {
                    spec,
                    direction: "host-to-guest",
                });
            }
        }
        if let Some((start, count, action)) = g2h {
            self.to_host.push(Entry {
                start,
                count,
                action,
            });
        }
        if let Some((start, count, action)) = h2g {
            self.to_guest.push(Entry {
                start,
                count,
                action,
            });
        }
        Ok(())
    }

    /// Translates a guest id to a host id; `Err(EPERM)` if the id is forbidden. The invalid id
    /// `4294967295` is returned unchanged (no rule can cover it); callers must not hand it to
    /// APIs that reject it.
    pub fn to_host(&self, id: u32) -> io::Result<u32> {
        if id == INVALID_ID {
            return Ok(id);
        }
        match self.to_host.iter().find(|e| e.contains(id)) {
            None => Ok(id),
            Some(e) => match e.action {
                // `id - start < count` and the target range was checked to fit in u32.
                ToHost::Shift(base) => Ok(base.wrapping_add(id - e.start)),
                ToHost::Squash(host) => Ok(host),
                ToHost::Forbid => Err(io::Error::from_raw_os_error(libc::EPERM)),
            },
        }
    }

    /// Translates a host id to the id shown to the guest.
    pub fn to_guest(&self, id: u32) -> u32 {
        if id == INVALID_ID {
            return id;
        }
        match self.to_guest.iter().find(|e| e.contains(id)) {
            None => id,
            Some(e) => match e.action {
                (guest, true) => guest,
                (base, false) => base.wrapping_add(id - e.start),
            },
        }
    }
}

/// A uid/gid translation table (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct IdMap {
    /// User ids.
    pub uid: IdTable,
    /// Group ids.
    pub gid: IdTable,
}

impl IdMap {
    /// Builds a map from lists of `--translate-uid` and `--translate-gid` rules.
    pub fn from_specs<U, G>(uid_specs: U, gid_specs: G) -> Result<Self, IdMapError>
    where
        U: IntoIterator,
        U::Item: AsRef<str>,
        G: IntoIterator,
        G::Item: AsRef<str>,
    {
        let mut map = IdMap::default();
        for s in uid_specs {
            map.uid.add_spec(s.as_ref())?;
        }
        for s in gid_specs {
            map.gid.add_spec(s.as_ref())?;
        }
        Ok(map)
    }

    /// Adds a `--uid-map` style entry `:NAMESPACE_UID:HOST_UID:COUNT:` as a bidirectional uid
    /// translation (namespace id = guest id).
    pub fn add_uid_ns_map(&mut self, spec: &str) -> Result<(), IdMapError> {
        self.uid.add(parse_ns_map(spec)?.rule())
    }

    /// Adds a `--gid-map` style entry `:NAMESPACE_GID:HOST_GID:COUNT:` as a bidirectional gid
    /// translation (namespace id = guest id).
    pub fn add_gid_ns_map(&mut self, spec: &str) -> Result<(), IdMapError> {
        self.gid.add(parse_ns_map(spec)?.rule())
    }

    /// True when neither table has rules.
    pub fn is_identity(&self) -> bool {
        self.uid.is_identity() && self.gid.is_identity()
    }

    /// Translates a guest uid to a host uid; `Err(EPERM)` when the guest id is forbidden.
    pub fn guest_to_host_uid(&self, uid: u32) -> io::Result<u32> {
        self.uid.to_host(uid)
    }

    /// Translates a guest gid to a host gid; `Err(EPERM)` when the guest id is forbidden.
    pub fn guest_to_host_gid(&self, gid: u32) -> io::Result<u32> {
        self.gid.to_host(gid)
    }

    /// Translates a host uid to the uid shown to the guest.
    pub fn host_to_guest_uid(&self, uid: u32) -> u32 {
        self.uid.to_guest(uid)
    }

    /// Translates a host gid to the gid shown to the guest.
    pub fn host_to_guest_gid(&self, gid: u32) -> u32 {
        self.gid.to_guest(gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eperm(r: io::Result<u32>) -> bool {
        matches!(r, Err(e) if e.raw_os_error() == Some(libc::EPERM))
    }

    #[test]
    fn identity_by_default() {
        let m = IdMap::default();
        assert!(m.is_identity());
        assert_eq!(m.guest_to_host_uid(0).unwrap(), 0);
        assert_eq!(m.host_to_guest_gid(u32::MAX), u32::MAX);
    }

    #[test]
    fn parse_all_types() {
        assert_eq!(
            "map:0:100000:65536".parse::<Rule>().unwrap(),
            Rule::Map {
                guest: 0,
                host: 100000,
                count: 65536
            }
        );
        assert_eq!(
            "forbid-guest:0:1000".parse::<Rule>().unwrap(),
            Rule::ForbidGuest {
                guest: 0,
                count: 1000
            }
        );
        for s in [
            "guest:1:2:3",
            "host:1:2:3",
            "squash-guest:0:1000:4294967295",
            "squash-host:5:6:7",
        ] {
            let r: Rule = s.parse().unwrap();
            assert_eq!(r.to_string(), s);
        }
    }

    #[test]
    fn parse_errors() {
        for s in [
            "",
            "map",
            "map:1:2",
            "map:1:2:3:4",
            "map:a:2:3",
            "map:1:2:0",
            "map:1:2:-1",
            "frob:1:2:3",
            "forbid-guest:1:2:3",
            "map:4294967295:0:2",
            "map:0:4294967295:2",
            "guest:1:2:99999999999",
        ] {
            assert!(s.parse::<Rule>().is_err(), "{s:?} should not parse");
        }
        let e = "frob:1:2:3".parse::<Rule>().unwrap_err().to_string();
        assert!(e.contains("unknown type 'frob'"), "{e}");
    }

    #[test]
    fn translation() {
        let m = IdMap::from_specs(
            [
                "map:1000:2000:10",
                "squash-guest:100:65534:100",
                "forbid-guest:0:1",
                "host:5000:7:3",
                "squash-host:6000:99:1000",
            ],
            ["guest:1:500:1"],
        )
        .unwrap();
        assert_eq!(m.guest_to_host_uid(1000).unwrap(), 2000);
        assert_eq!(m.guest_to_host_uid(1009).unwrap(), 2009);
        assert_eq!(m.guest_to_host_uid(1010).unwrap(), 1010);
        assert_eq!(m.guest_to_host_uid(150).unwrap(), 65534);
        assert!(eperm(m.guest_to_host_uid(0)));
        assert_eq!(m.host_to_guest_uid(2005), 1005);
        assert_eq!(m.host_to_guest_uid(5002), 9);
        assert_eq!(m.host_to_guest_uid(6999), 99);
        assert_eq!(m.host_to_guest_uid(7000), 7000);
        assert_eq!(m.guest_to_host_gid(1).unwrap(), 500);
        // guest:* is one-directional.
        assert_eq!(m.host_to_guest_gid(500), 500);
    }

    #[test]
    fn full_range_rules() {
        let m = IdMap::from_specs(
            ["squash-guest:0:1000:4294967295", "map:4294967294:0:1"],
            [""; 0],
        );
        // The squash range already covers 4294967294.
        assert!(m.is_err());
        let m = IdMap::from_specs(
            ["squash-guest:0:1000:4294967294", "map:4294967294:0:1"],
            [""; 0],
        )
        .unwrap();
        assert_eq!(m.guest_to_host_uid(0).unwrap(), 1000);
        assert_eq!(m.guest_to_host_uid(4294967293).unwrap(), 1000);
        assert_eq!(m.guest_to_host_uid(4294967294).unwrap(), 0);
        assert_eq!(m.host_to_guest_uid(0), 4294967294);
        // (uid_t)-1 is never translated.
        assert_eq!(m.guest_to_host_uid(u32::MAX).unwrap(), u32::MAX);
        assert_eq!(m.host_to_guest_uid(u32::MAX), u32::MAX);
        for bad in [
            "squash-guest:0:4294967295:1",
            "squash-host:0:4294967295:1",
            "map:4294967295:0:1",
            "guest:0:4294967295:1",
            "forbid-guest:1:4294967295",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad}");
        }
        "forbid-guest:0:4294967295".parse::<Rule>().unwrap();
    }

    #[test]
    fn documented_confinement_example() {
        let mut t = IdTable::default();
        for s in [
            "forbid-guest:0:1000",
            "map:1000:1000:1",
            "forbid-guest:1001:4294966294",
        ] {
            t.add_spec(s).unwrap();
        }
        assert_eq!(t.to_host(1000).unwrap(), 1000);
        assert!(eperm(t.to_host(0)));
        assert!(eperm(t.to_host(4294967294)));
    }

    #[test]
    fn map_rules_round_trip() {
        let m = IdMap::from_specs(["map:0:100000:65536", "map:70000:5:10"], ["map:1:2:3"]).unwrap();
        for id in [0, 1, 999, 65535, 70000, 70009] {
            let h = m.guest_to_host_uid(id).unwrap();
            assert_eq!(m.host_to_guest_uid(h), id);
        }
        for id in [1, 2, 3] {
            let h = m.guest_to_host_gid(id).unwrap();
            assert_eq!(m.host_to_guest_gid(h), id);
        }
    }

    #[test]
    fn overlaps_rejected() {
        let mut t = IdTable::default();
        t.add_spec("forbid-guest:0:1000").unwrap();
        t.add_spec("map:1000:1000:1").unwrap();
        assert!(matches!(
            t.add_spec("forbid-guest:999:2"),
            Err(IdMapError::Overlap { .. })
        ));
        // A host-only rule may cover guest-forbidden ids' numbers.
        t.add_spec("host:0:0:10").unwrap();
        assert!(matches!(
            t.add_spec("squash-host:1000:5:1"),
            Err(IdMapError::Overlap {
                direction: "host-to-guest",
                ..
            })
        ));
    }

    #[test]
    fn ns_map_form() {
        assert_eq!(
            parse_ns_map(":0:100000:65536:").unwrap(),
            NsMap {
                inside: 0,
                outside: 100000,
                count: 65536
            }
        );
        assert_eq!(parse_ns_map("/5/6/7/").unwrap().count, 7);
        for s in ["", "0:1:2", ":0:1:2", ":0:1:2:3:", ":a:1:2:", ":0:1:0:"] {
            assert!(parse_ns_map(s).is_err(), "{s:?}");
        }
        let mut m = IdMap::default();
        m.add_uid_ns_map(":0:100000:65536:").unwrap();
        m.add_gid_ns_map(":0:200000:10:").unwrap();
        assert_eq!(m.guest_to_host_uid(1).unwrap(), 100001);
        assert_eq!(m.host_to_guest_gid(200009), 9);
        assert_eq!(m.host_to_guest_gid(200010), 200010);
    }
}
