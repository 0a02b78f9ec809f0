//! Just enough of a BTF reader to find struct member offsets in
//! /sys/kernel/btf/vmlinux.
//!
//! aya 0.14 keeps its BTF type look-ups private, and the one crate that does
//! this (btf-rs) is LGPL; what we need is small and well specified
//! (Documentation/bpf/btf.rst): walk the type section once, index structs by
//! name, then follow member names, descending into anonymous struct/union
//! members. Every read is bounds-checked: a malformed file is an error, never
//! a panic.

use std::collections::HashMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtfError {
    #[error("not a BTF blob (bad magic)")]
    Magic,
    #[error("BTF blob truncated at byte {0}")]
    Truncated(usize),
    #[error("unknown BTF kind {kind} at type id {id}")]
    Kind { kind: u32, id: u32 },
    #[error("struct {0} not found in BTF")]
    NoStruct(String),
    #[error("member {member} not found in {ty}")]
    NoMember { ty: String, member: String },
    #[error("member {0} is a bitfield")]
    Bitfield(String),
}

const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

#[derive(Clone, Debug)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Bit offset; `None` for bitfields (we never need those).
    bit_offset: Option<u32>,
}

#[derive(Clone, Debug)]
enum Type {
    Struct {
        name_off: u32,
        members: Vec<Member>,
    },
    /// typedef, const, volatile, restrict, type_tag: follow `to`.
    Alias {
        to: u32,
    },
    Other,
}

/// Parsed vmlinux BTF: the composite types and the string table.
pub struct Btf {
    strings: Vec<u8>,
    /// Index = type id (0 is void).
    types: Vec<Type>,
    structs_by_name: HashMap<String, u32>,
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, BtfError> {
    let s = b.get(off..off + 4).ok_or(BtfError::Truncated(off))?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

impl Btf {
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        if data.len() < 24 || data[0..2] != [0x9f, 0xeb] {
            // Big-endian hosts are not supported: neither are bpfel programs.
            return Err(BtfError::Magic);
        }
        let hdr_len = u32_at(data, 4)? as usize;
        let type_off = u32_at(data, 8)? as usize;
        let type_len = u32_at(data, 12)? as usize;
        let str_off = u32_at(data, 16)? as usize;
        let str_len = u32_at(data, 20)? as usize;
        let types_start = hdr_len
            .checked_add(type_off)
            .ok_or(BtfError::Truncated(8))?;
        let types_end = types_start
            .checked_add(type_len)
            .ok_or(BtfError::Truncated(12))?;
        let strs_start = hdr_len
            .checked_add(str_off)
            .ok_or(BtfError::Truncated(16))?;
        let strs_end = strs_start
            .checked_add(str_len)
            .ok_or(BtfError::Truncated(20))?;
        let type_sec = data
            .get(types_start..types_end)
            .ok_or(BtfError::Truncated(types_end))?;
        let strings = data
            .get(strs_start..strs_end)
            .ok_or(BtfError::Truncated(strs_end))?
            .to_vec();

        let mut types = vec![Type::Other];
        let mut pos = 0usize;
        while pos < type_sec.len() {
            let id = types.len() as u32;
            let name_off = u32_at(type_sec, pos)?;
            let info = u32_at(type_sec, pos + 4)?;
            let size_or_type = u32_at(type_sec, pos + 8)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let ty = match kind {
                KIND_STRUCT | KIND_UNION => {
                    let mut members = Vec::with_capacity(vlen);
                    for i in 0..vlen {
                        let m = pos + i * 12;
                        let off = u32_at(type_sec, m + 8)?;
                        let bit_offset = if kind_flag {
                            // High 8 bits: bitfield size; low 24: bit offset.
                            (off >> 24 == 0).then_some(off & 0xff_ffff)
                        } else {
                            Some(off)
                        };
                        members.push(Member {
                            name_off: u32_at(type_sec, m)?,
                            type_id: u32_at(type_sec, m + 4)?,
                            bit_offset,
                        });
                    }
                    pos += vlen * 12;
                    Type::Struct { name_off, members }
                }
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    Type::Alias { to: size_or_type }
                }
                KIND_INT | KIND_VAR | KIND_DECL_TAG => {
                    pos += 4;
                    Type::Other
                }
                KIND_ARRAY => {
                    pos += 12;
                    Type::Other
                }
                KIND_ENUM | KIND_FUNC_PROTO => {
                    pos += vlen * 8;
                    Type::Other
                }
                KIND_DATASEC | KIND_ENUM64 => {
                    pos += vlen * 12;
                    Type::Other
                }
                KIND_PTR | KIND_FWD | KIND_FUNC | KIND_FLOAT => Type::Other,
                kind => return Err(BtfError::Kind { kind, id }),
            };
            types.push(ty);
        }
        if pos > type_sec.len() {
            return Err(BtfError::Truncated(types_start + pos));
        }
        let mut btf = Btf {
            strings,
            types,
            structs_by_name: HashMap::new(),
        };
        let mut by_name = HashMap::new();
        for (id, t) in btf.types.iter().enumerate() {
            if let Type::Struct { name_off, .. } = t {
                let name = btf.string(*name_off);
                if !name.is_empty() {
                    // The first definition wins; forward declarations are not structs here.
                    by_name.entry(name.to_string()).or_insert(id as u32);
                }
            }
        }
        btf.structs_by_name = by_name;
        Ok(btf)
    }

    fn string(&self, off: u32) -> &str {
        let Some(rest) = self.strings.get(off as usize..) else {
            return "";
        };
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..end]).unwrap_or("")
    }

    fn resolve(&self, mut id: u32) -> u32 {
        // Bounded: alias chains in real BTF are a handful long.
        for _ in 0..32 {
            match self.types.get(id as usize) {
                Some(Type::Alias { to }) => id = *to,
                _ => break,
            }
        }
        id
    }

    /// Byte offset of `member` inside struct `id`, searching anonymous
    /// struct/union members too. Returns (offset, member type id).
    fn member_in(&self, id: u32, member: &str, depth: u32) -> Option<Result<(u32, u32), BtfError>> {
        let Some(Type::Struct { members, .. }) = self.types.get(self.resolve(id) as usize) else {
            return None;
        };
        for m in members {
            let name = self.string(m.name_off);
            if name == member {
                return Some(match m.bit_offset {
                    Some(bits) => Ok((bits / 8, m.type_id)),
                    None => Err(BtfError::Bitfield(member.to_string())),
                });
            }
            if name.is_empty()
                && depth < 8
                && let Some(found) = self.member_in(m.type_id, member, depth + 1)
            {
                let base = m.bit_offset.unwrap_or(0) / 8;
                return Some(found.map(|(off, ty)| (base + off, ty)));
            }
        }
        None
    }

    /// Byte offset of a dotted member path, e.g. `("sock", "__sk_common.skc_net")`.
    pub fn offset_of(&self, ty: &str, path: &str) -> Result<u32, BtfError> {
        let mut id = *self
            .structs_by_name
            .get(ty)
            .ok_or_else(|| BtfError::NoStruct(ty.to_string()))?;
        let mut total = 0u32;
        for part in path.split('.') {
            let (off, member_ty) =
                self.member_in(id, part, 0)
                    .ok_or_else(|| BtfError::NoMember {
                        ty: ty.to_string(),
                        member: path.to_string(),
                    })??;
            total += off;
            id = member_ty;
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob: `struct inner { int a; int b; }`,
    /// `struct outer { long x; union { int u; struct inner in; }; }`.
    fn blob() -> Vec<u8> {
        let strings = b"\0int\0a\0b\0inner\0x\0outer\0u\0in\0".to_vec();
        let s = |name: &str| -> u32 {
            let needle = format!("\0{name}\0");
            strings
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
                + 1
        };
        let mut t = Vec::new();
        let mut push = |words: &[u32]| {
            for w in words {
                t.extend_from_slice(&w.to_le_bytes());
            }
        };
        // 1: int (4 bytes)
        push(&[s("int"), KIND_INT << 24, 4, 32]);
        // 2: struct inner { int a @0; int b @32 bits }
        push(&[s("inner"), (KIND_STRUCT << 24) | 2, 8]);
        push(&[s("a"), 1, 0, s("b"), 1, 32]);
        // 3: anonymous union { int u; struct inner in; }
        push(&[0, (KIND_UNION << 24) | 2, 8]);
        push(&[s("u"), 1, 0, s("in"), 2, 0]);
        // 4: struct outer { int x @0; <anon union> @64 bits }
        push(&[s("outer"), (KIND_STRUCT << 24) | 2, 16]);
        push(&[s("x"), 1, 0, 0, 3, 64]);
        let mut b = Vec::new();
        b.extend_from_slice(&[0x9f, 0xeb, 1, 0]);
        for w in [
            24u32,
            0,
            t.len() as u32,
            t.len() as u32,
            strings.len() as u32,
        ] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(&t);
        b.extend_from_slice(&strings);
        b
    }

    #[test]
    fn finds_members_through_anonymous_unions_and_paths() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.offset_of("outer", "x"), Ok(0));
        assert_eq!(btf.offset_of("outer", "u"), Ok(8));
        assert_eq!(btf.offset_of("outer", "in.b"), Ok(12));
        assert_eq!(btf.offset_of("inner", "b"), Ok(4));
    }

    #[test]
    fn missing_names_are_errors() {
        let btf = Btf::parse(&blob()).unwrap();
        assert!(matches!(
            btf.offset_of("nope", "x"),
            Err(BtfError::NoStruct(_))
        ));
        assert!(matches!(
            btf.offset_of("outer", "zz"),
            Err(BtfError::NoMember { .. })
        ));
    }

    #[test]
    fn malformed_blobs_are_errors_not_panics() {
        assert_eq!(Btf::parse(b"").err(), Some(BtfError::Magic));
        let b = blob();
        for cut in [24, 30, 40, b.len() - 3] {
            assert!(Btf::parse(&b[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = b.clone();
        bad[12] = 0xff; // type_len beyond the blob
        assert!(Btf::parse(&bad).is_err());
    }

    #[test]
    fn reads_this_kernels_vmlinux_when_present() {
        let data = match std::fs::read("/sys/kernel/btf/vmlinux") {
            Ok(d) => d,
            // CI machines have BTF: there its absence is a failure.
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("CI machine without /sys/kernel/btf/vmlinux: {e}")
            }
            Err(e) => {
                eprintln!("note: no kernel BTF here ({e}); vmlinux check not run");
                return;
            }
        };
        let btf = Btf::parse(&data).expect("vmlinux BTF parses");
        let acked = btf.offset_of("tcp_sock", "bytes_acked").unwrap();
        let received = btf.offset_of("tcp_sock", "bytes_received").unwrap();
        assert!(acked > 0 && received > 0 && acked != received);
        assert!(btf.offset_of("sock", "sk_err").is_ok());
        assert!(btf.offset_of("sock", "__sk_common.skc_net").is_ok());
    }
}
