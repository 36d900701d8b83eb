//! Property test across the server and the passthrough file system: random sequences of
//! well-formed requests against a temporary directory. After every request the reply must be
//! well formed (header length = bytes written, error replies without body) and its outcome
//! must match a small model of the tree; at the end the host directory must equal the model.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use vhostfs_passthrough::{Config, PassthroughFs};
use vhostfs_server::abi::{self, opcode as op};
use vhostfs_server::testing::{init_request, parse_reply, RequestBuilder, ALL_CLIENT_FLAGS};
use vhostfs_server::{Server, ServerOptions, SliceReader, VecWriter};
use zerocopy::FromBytes;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Dir(BTreeMap<String, Node>),
    File(Vec<u8>),
}

fn empty_dir() -> Node {
    Node::Dir(BTreeMap::new())
}

/// The model: a tree, with the errnos the host would give.
struct Model {
    root: Node,
}

impl Model {
    fn get(&self, path: &[String]) -> Result<&Node, i32> {
        let mut cur = &self.root;
        for c in path {
            match cur {
                Node::Dir(d) => cur = d.get(c).ok_or(libc::ENOENT)?,
                Node::File(_) => return Err(libc::ENOTDIR),
            }
        }
        Ok(cur)
    }

    /// What an operation on the contents of the file at `path` must give: `Ok` for a file,
    /// `EISDIR` for a directory, the lookup error otherwise.
    fn file(&self, path: &[String]) -> Result<(), i32> {
        match self.get(path)? {
            Node::Dir(_) => Err(libc::EISDIR),
            Node::File(_) => Ok(()),
        }
    }

    fn dir_mut(&mut self, path: &[String]) -> &mut BTreeMap<String, Node> {
        let mut cur = &mut self.root;
        for c in path {
            cur = match cur {
                Node::Dir(d) => d.get_mut(c).expect("model path exists"),
                Node::File(_) => panic!("model path is a dir"),
            };
        }
        match cur {
            Node::Dir(d) => d,
            Node::File(_) => panic!("model path is a dir"),
        }
    }

    /// The parent directory's entries, or the errno resolving it gives.
    fn parent(&self, path: &[String]) -> Result<&BTreeMap<String, Node>, i32> {
        match self.get(path)? {
            Node::Dir(d) => Ok(d),
            Node::File(_) => Err(libc::ENOTDIR),
        }
    }
}

#[derive(Clone, Debug)]
enum Op {
    Mkdir(usize, usize),
    Create(usize, usize, Vec<u8>),
    Write(usize, usize, u64, Vec<u8>),
    Truncate(usize, usize, u64),
    Read(usize, usize),
    Unlink(usize, usize),
    Rmdir(usize, usize),
    Rename(usize, usize, usize, usize, bool),
    Readdir(usize),
}

const NAMES: [&str; 3] = ["a", "b", "d"];

fn parents() -> Vec<Vec<String>> {
    vec![
        vec![],
        vec!["d".into()],
        vec!["a".into()],
        vec!["d".into(), "b".into()],
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let p = 0usize..4;
    let n = 0usize..3;
    let data = proptest::collection::vec(any::<u8>(), 0..48);
    prop_oneof![
        3 => (p.clone(), n.clone()).prop_map(|(p, n)| Op::Mkdir(p, n)),
        3 => (p.clone(), n.clone(), data.clone()).prop_map(|(p, n, d)| Op::Create(p, n, d)),
        2 => (p.clone(), n.clone(), 0u64..40, data).prop_map(|(p, n, o, d)| Op::Write(p, n, o, d)),
        1 => (p.clone(), n.clone(), 0u64..64).prop_map(|(p, n, s)| Op::Truncate(p, n, s)),
        2 => (p.clone(), n.clone()).prop_map(|(p, n)| Op::Read(p, n)),
        2 => (p.clone(), n.clone()).prop_map(|(p, n)| Op::Unlink(p, n)),
        2 => (p.clone(), n.clone()).prop_map(|(p, n)| Op::Rmdir(p, n)),
        2 => (p.clone(), n.clone(), p.clone(), n, any::<bool>())
            .prop_map(|(p1, n1, p2, n2, nr)| Op::Rename(p1, n1, p2, n2, nr)),
        1 => p.prop_map(Op::Readdir),
    ]
}

/// Drives a server: every call checks the reply framing.
struct Driver {
    server: Server<PassthroughFs>,
    unique: u64,
    looked_up: Vec<u64>,
}

impl Driver {
    fn call(&mut self, b: RequestBuilder) -> (i32, Vec<u8>) {
        let bytes = b.build();
        let mut r = SliceReader::new(&bytes);
        let mut w = VecWriter::new(1 << 21);
        let n = self.server.handle_message(&mut r, &mut w).expect("reply");
        let out = w.into_inner();
        assert_eq!(n, out.len());
        let (h, body) = parse_reply(&out).expect("reply header");
        assert_eq!(h.len as usize, n, "header len == bytes written");
        if h.error != 0 {
            assert_eq!(n, 16, "error reply carries no body");
        }
        (-h.error, body.to_vec())
    }

    fn req(&mut self, opcode: u32, nodeid: u64) -> RequestBuilder {
        self.unique += 2;
        RequestBuilder::new(opcode, self.unique, nodeid)
    }

    /// LOOKUP of each component from the root.
    fn resolve(&mut self, path: &[String]) -> Result<u64, i32> {
        let mut ino = 1;
        for c in path {
            let b = self.req(op::LOOKUP, ino).name(c.as_bytes());
            let (e, body) = self.call(b);
            if e != 0 {
                return Err(e);
            }
            let entry = abi::EntryOut::read_from_prefix(&body).unwrap().0;
            assert_ne!(entry.nodeid, 0);
            ino = entry.nodeid;
            self.looked_up.push(ino);
        }
        Ok(ino)
    }

    fn forget_all(&mut self) {
        for ino in std::mem::take(&mut self.looked_up) {
            let b = self.req(op::FORGET, ino).arg(&abi::ForgetIn { nlookup: 1 });
            let bytes = b.build();
            let mut r = SliceReader::new(&bytes);
            let mut w = VecWriter::new(0);
            assert_eq!(self.server.handle_message(&mut r, &mut w).unwrap(), 0);
        }
    }

    fn open(&mut self, ino: u64, flags: i32) -> Result<u64, i32> {
        let b = self.req(op::OPEN, ino).arg(&abi::OpenIn {
            flags: flags as u32,
            open_flags: 0,
        });
        let (e, body) = self.call(b);
        if e != 0 {
            return Err(e);
        }
        Ok(abi::OpenOut::read_from_bytes(&body).unwrap().fh)
    }

    fn release(&mut self, ino: u64, fh: u64) {
        let b = self.req(op::RELEASE, ino).arg(&abi::ReleaseIn {
            fh,
            ..Default::default()
        });
        assert_eq!(self.call(b).0, 0);
    }

    fn write(&mut self, ino: u64, fh: u64, offset: u64, data: &[u8]) {
        let b = self
            .req(op::WRITE, ino)
            .arg(&abi::WriteIn {
                fh,
                offset,
                size: data.len() as u32,
                ..Default::default()
            })
            .bytes(data);
        let (e, body) = self.call(b);
        assert_eq!(e, 0);
        assert_eq!(
            abi::WriteOut::read_from_bytes(&body).unwrap().size as usize,
            data.len()
        );
    }

    fn read_all(&mut self, ino: u64, fh: u64) -> Vec<u8> {
        let b = self.req(op::READ, ino).arg(&abi::ReadIn {
            fh,
            offset: 0,
            size: 1 << 16,
            ..Default::default()
        });
        let (e, body) = self.call(b);
        assert_eq!(e, 0);
        body
    }

    fn list(&mut self, ino: u64) -> Vec<String> {
        let b = self.req(op::OPENDIR, ino).arg(&abi::OpenIn::default());
        let (e, body) = self.call(b);
        assert_eq!(e, 0);
        let fh = abi::OpenOut::read_from_bytes(&body).unwrap().fh;
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            // Small buffers so that listing takes several READDIRs.
            let b = self.req(op::READDIR, ino).arg(&abi::ReadIn {
                fh,
                offset,
                size: 80,
                ..Default::default()
            });
            let (e, body) = self.call(b);
            assert_eq!(e, 0);
            if body.is_empty() {
                break;
            }
            let mut buf = &body[..];
            while !buf.is_empty() {
                let d = abi::Dirent::read_from_prefix(buf).unwrap().0;
                let len = abi::dirent_size(24, d.namelen as usize);
                let name = String::from_utf8(buf[24..24 + d.namelen as usize].to_vec()).unwrap();
                if name != "." && name != ".." {
                    names.push(name);
                }
                offset = d.off;
                buf = &buf[len..];
            }
        }
        let b = self.req(op::RELEASEDIR, ino).arg(&abi::ReleaseIn {
            fh,
            ..Default::default()
        });
        assert_eq!(self.call(b).0, 0);
        names.sort();
        names
    }
}

fn child(p: &[String], n: usize) -> Vec<String> {
    let mut v = p.to_vec();
    v.push(NAMES[n].to_string());
    v
}

/// Applies `op` to both the server and the model, checking they agree.
fn step(d: &mut Driver, m: &mut Model, op: &Op) -> Result<(), TestCaseError> {
    let ps = parents();
    match op {
        Op::Mkdir(p, n) | Op::Create(p, n, _) => {
            let (parent, name) = (&ps[*p], NAMES[*n]);
            let expect = match m.parent(parent) {
                Err(e) => Err(e),
                Ok(dir) if dir.contains_key(name) => Err(libc::EEXIST),
                Ok(_) => Ok(()),
            };
            let got = match d.resolve(parent) {
                Err(e) => Err(e),
                Ok(pino) => {
                    if let Op::Create(_, _, data) = op {
                        let b = d.req(op::CREATE, pino).arg(&abi::CreateIn {
                            flags: (libc::O_RDWR | libc::O_CREAT | libc::O_EXCL) as u32,
                            mode: libc::S_IFREG | 0o644,
                            umask: 0o022,
                            open_flags: 0,
                        });
                        let (e, body) = d.call(b.name(name.as_bytes()));
                        if e == 0 {
                            let entry = abi::EntryOut::read_from_prefix(&body).unwrap().0;
                            d.looked_up.push(entry.nodeid);
                            let fh = abi::OpenOut::read_from_bytes(&body[128..]).unwrap().fh;
                            prop_assert_eq!(entry.attr.mode, libc::S_IFREG | 0o644);
                            if !data.is_empty() {
                                d.write(entry.nodeid, fh, 0, data);
                            }
                            d.release(entry.nodeid, fh);
                            Ok(())
                        } else {
                            Err(e)
                        }
                    } else {
                        let b = d.req(op::MKDIR, pino).arg(&abi::MkdirIn {
                            mode: 0o755,
                            umask: 0o022,
                        });
                        let (e, body) = d.call(b.name(name.as_bytes()));
                        if e == 0 {
                            let entry = abi::EntryOut::read_from_prefix(&body).unwrap().0;
                            d.looked_up.push(entry.nodeid);
                            prop_assert_eq!(entry.attr.mode, libc::S_IFDIR | 0o755);
                            Ok(())
                        } else {
                            Err(e)
                        }
                    }
                }
            };
            prop_assert_eq!(got, expect, "{:?}", op);
            if got.is_ok() {
                let node = match op {
                    Op::Create(_, _, data) => Node::File(data.clone()),
                    _ => empty_dir(),
                };
                m.dir_mut(parent).insert(name.to_string(), node);
            }
        }
        Op::Write(p, n, offset, data) => {
            let path = child(&ps[*p], *n);
            let expect = m.file(&path);
            let got = d.resolve(&path).and_then(|ino| {
                let fh = d.open(ino, libc::O_RDWR)?;
                d.write(ino, fh, *offset, data);
                d.release(ino, fh);
                Ok(())
            });
            prop_assert_eq!(got, expect, "{:?}", op);
            if got.is_ok() {
                let parent = &ps[*p];
                if let Some(Node::File(content)) = m.dir_mut(parent).get_mut(NAMES[*n]) {
                    // A zero-length write changes nothing, even past the end of the file.
                    if !data.is_empty() {
                        let end = *offset as usize + data.len();
                        if content.len() < end {
                            content.resize(end, 0);
                        }
                        content[*offset as usize..end].copy_from_slice(data);
                    }
                }
            }
        }
        Op::Truncate(p, n, size) => {
            let path = child(&ps[*p], *n);
            let expect = m.file(&path);
            let got = d.resolve(&path).and_then(|ino| {
                let b = d.req(op::SETATTR, ino).arg(&abi::SetattrIn {
                    valid: abi::fattr::SIZE,
                    size: *size,
                    ..Default::default()
                });
                let (e, body) = d.call(b);
                if e != 0 {
                    return Err(e);
                }
                let attr = abi::AttrOut::read_from_bytes(&body).unwrap();
                assert_eq!(attr.attr.size, *size);
                Ok(())
            });
            prop_assert_eq!(got, expect, "{:?}", op);
            if got.is_ok() {
                if let Some(Node::File(content)) = m.dir_mut(&ps[*p]).get_mut(NAMES[*n]) {
                    content.resize(*size as usize, 0);
                }
            }
        }
        Op::Read(p, n) => {
            let path = child(&ps[*p], *n);
            match m.get(&path) {
                Ok(Node::File(content)) => {
                    let content = content.clone();
                    let ino = d.resolve(&path).map_err(|e| {
                        TestCaseError::fail(format!("lookup of a file failed: {e}"))
                    })?;
                    let fh = d.open(ino, libc::O_RDONLY).unwrap();
                    let got = d.read_all(ino, fh);
                    d.release(ino, fh);
                    prop_assert_eq!(got, content);
                }
                Ok(Node::Dir(_)) => {}
                Err(e) => prop_assert_eq!(d.resolve(&path), Err(e)),
            }
        }
        Op::Unlink(p, n) | Op::Rmdir(p, n) => {
            let (parent, name) = (&ps[*p], NAMES[*n]);
            let is_unlink = matches!(op, Op::Unlink(..));
            let expect = match m.parent(parent) {
                Err(e) => Err(e),
                Ok(dir) => match dir.get(name) {
                    None => Err(libc::ENOENT),
                    Some(Node::Dir(_)) if is_unlink => Err(libc::EISDIR),
                    Some(Node::File(_)) if !is_unlink => Err(libc::ENOTDIR),
                    Some(Node::Dir(c)) if !c.is_empty() => Err(libc::ENOTEMPTY),
                    Some(_) => Ok(()),
                },
            };
            let got = d.resolve(parent).and_then(|pino| {
                let opc = if is_unlink { op::UNLINK } else { op::RMDIR };
                let b = d.req(opc, pino).name(name.as_bytes());
                match d.call(b).0 {
                    0 => Ok(()),
                    e => Err(e),
                }
            });
            prop_assert_eq!(got, expect, "{:?}", op);
            if got.is_ok() {
                m.dir_mut(parent).remove(name);
            }
        }
        Op::Rename(p1, n1, p2, n2, noreplace) => {
            let (sp, sn, dp, dn) = (&ps[*p1], NAMES[*n1], &ps[*p2], NAMES[*n2]);
            let src = child(sp, *n1);
            let dst = child(dp, *n2);
            let expect = (|| {
                // The driver resolves both parents before renaming.
                m.get(sp)?;
                m.get(dp)?;
                let sdir = m.parent(sp)?;
                let ddir = m.parent(dp)?;
                let s = sdir.get(sn).ok_or(libc::ENOENT)?;
                let t = ddir.get(dn);
                if *noreplace && t.is_some() {
                    return Err(libc::EEXIST);
                }
                if src == dst {
                    return Ok(());
                }
                // Source is an ancestor of the target.
                if dst.starts_with(&src) {
                    return Err(libc::EINVAL);
                }
                // Target is an ancestor of the source.
                if src.starts_with(&dst) {
                    return Err(libc::ENOTEMPTY);
                }
                match (s, t) {
                    (_, None) => Ok(()),
                    (Node::File(_), Some(Node::File(_))) => Ok(()),
                    (Node::File(_), Some(Node::Dir(_))) => Err(libc::EISDIR),
                    (Node::Dir(_), Some(Node::File(_))) => Err(libc::ENOTDIR),
                    (Node::Dir(_), Some(Node::Dir(c))) if !c.is_empty() => Err(libc::ENOTEMPTY),
                    (Node::Dir(_), Some(Node::Dir(_))) => Ok(()),
                }
            })();
            let got = (|| {
                let spino = d.resolve(sp)?;
                let dpino = d.resolve(dp)?;
                let b = d
                    .req(op::RENAME2, spino)
                    .arg(&abi::Rename2In {
                        newdir: dpino,
                        flags: if *noreplace {
                            libc::RENAME_NOREPLACE
                        } else {
                            0
                        },
                        padding: 0,
                    })
                    .name(sn.as_bytes())
                    .name(dn.as_bytes());
                match d.call(b).0 {
                    0 => Ok(()),
                    e => Err(e),
                }
            })();
            prop_assert_eq!(got, expect, "{:?}", op);
            if got.is_ok() && src != dst {
                let node = m.dir_mut(sp).remove(sn).expect("source in model");
                m.dir_mut(dp).insert(dn.to_string(), node);
            }
        }
        Op::Readdir(p) => {
            let parent = &ps[*p];
            match m.get(parent) {
                Ok(Node::Dir(dir)) => {
                    let expect: Vec<String> = dir.keys().cloned().collect();
                    let ino = d.resolve(parent).unwrap();
                    let got = d.list(ino);
                    prop_assert_eq!(got, expect);
                }
                Ok(Node::File(_)) => {
                    let ino = d.resolve(parent).unwrap();
                    let b = d.req(op::OPENDIR, ino).arg(&abi::OpenIn::default());
                    prop_assert_eq!(d.call(b).0, libc::ENOTDIR);
                }
                Err(e) => prop_assert_eq!(d.resolve(parent).err(), Some(e)),
            }
        }
    }
    d.forget_all();
    Ok(())
}

fn host_tree(path: &Path) -> Node {
    if path.is_dir() {
        let mut map = BTreeMap::new();
        for e in std::fs::read_dir(path).unwrap() {
            let e = e.unwrap();
            map.insert(e.file_name().into_string().unwrap(), host_tree(&e.path()));
        }
        Node::Dir(map)
    } else {
        Node::File(std::fs::read(path).unwrap())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_requests_match_model(ops in proptest::collection::vec(op_strategy(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let fs = PassthroughFs::new(Config {
            root_dir: dir.path().to_path_buf(),
            ..Config::default()
        })
        .unwrap();
        let mut d = Driver {
            server: Server::new(fs, ServerOptions::default()),
            unique: 0,
            looked_up: Vec::new(),
        };
        let (e, _) = d.call_raw_init();
        prop_assert_eq!(e, 0);
        let mut m = Model { root: empty_dir() };
        for op in &ops {
            step(&mut d, &mut m, op)?;
        }
        prop_assert_eq!(host_tree(dir.path()), m.root);
        // Every lookup was forgotten: only the root inode remains.
        prop_assert_eq!(d.server.fs().inode_count(), 1);
        prop_assert_eq!(d.server.fs().handle_count(), 0);
    }
}

impl Driver {
    fn call_raw_init(&mut self) -> (i32, Vec<u8>) {
        let bytes = init_request(1, ALL_CLIENT_FLAGS);
        let mut r = SliceReader::new(&bytes);
        let mut w = VecWriter::new(4096);
        self.server.handle_message(&mut r, &mut w).unwrap();
        let out = w.into_inner();
        let (h, body) = parse_reply(&out).unwrap();
        (-h.error, body.to_vec())
    }
}
