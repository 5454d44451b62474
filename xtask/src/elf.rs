//! A minimal, bounds-checked ELF reader: is this executable statically linked?
//!
//! Static means: no `PT_INTERP` (no dynamic loader) and no `DT_NEEDED` entries (no shared
//! libraries). musl static-pie binaries keep a `PT_DYNAMIC` segment for self-relocation, so
//! `PT_DYNAMIC` alone is fine. Every read goes through [`Bytes`], which returns an error instead
//! of panicking on truncated or hostile input.

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const PN_XNUM: u16 = 0xffff;

/// How a static executable is linked.
#[derive(Debug, PartialEq, Eq)]
pub enum Linkage {
    /// No `PT_DYNAMIC` at all.
    Static,
    /// `PT_DYNAMIC` without `DT_NEEDED` and no interpreter (self-relocating static-pie).
    StaticPie,
}

impl std::fmt::Display for Linkage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Linkage::Static => "static",
            Linkage::StaticPie => "static-pie",
        })
    }
}

/// Bounds-checked little/big-endian reads over the whole file.
struct Bytes<'a> {
    data: &'a [u8],
    little: bool,
}

impl Bytes<'_> {
    fn slice(&self, off: u64, len: u64) -> Result<&[u8], String> {
        let start = usize::try_from(off).map_err(|_| "offset overflows usize".to_string())?;
        let len = usize::try_from(len).map_err(|_| "length overflows usize".to_string())?;
        start
            .checked_add(len)
            .and_then(|end| self.data.get(start..end))
            .ok_or_else(|| {
                format!(
                    "truncated ELF: need bytes {start}..{start}+{len}, file has {}",
                    self.data.len()
                )
            })
    }

    fn uint<const N: usize>(&self, off: u64) -> Result<u64, String> {
        let b: [u8; N] = self
            .slice(off, N as u64)?
            .try_into()
            .expect("slice has N bytes");
        let mut v = 0u64;
        for i in 0..N {
            let byte = if self.little { b[N - 1 - i] } else { b[i] };
            v = (v << 8) | u64::from(byte);
        }
        Ok(v)
    }

    fn u16(&self, off: u64) -> Result<u16, String> {
        self.uint::<2>(off).map(|v| v as u16)
    }
    fn u32(&self, off: u64) -> Result<u32, String> {
        self.uint::<4>(off).map(|v| v as u32)
    }
    /// An address/offset-sized word: 8 bytes for ELF64, 4 for ELF32.
    fn word(&self, off: u64, is64: bool) -> Result<u64, String> {
        if is64 {
            self.uint::<8>(off)
        } else {
            self.uint::<4>(off)
        }
    }
}

fn add(a: u64, b: u64) -> Result<u64, String> {
    a.checked_add(b)
        .ok_or_else(|| "offset overflow".to_string())
}

/// Checks an ELF image; `Ok` only for a statically linked one, `Err` explains why not.
pub fn check_static(data: &[u8]) -> Result<Linkage, String> {
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file (bad magic)".into());
    }
    let is64 = match data.get(4) {
        Some(1) => false,
        Some(2) => true,
        other => return Err(format!("bad ELF class {other:?}")),
    };
    let little = match data.get(5) {
        Some(1) => true,
        Some(2) => false,
        other => return Err(format!("bad ELF data encoding {other:?}")),
    };
    let b = Bytes { data, little };

    // e_phoff, e_phentsize, e_phnum
    let (phoff, phentsize, phnum) = if is64 {
        (b.word(0x20, true)?, b.u16(0x36)?, b.u16(0x38)?)
    } else {
        (b.word(0x1c, false)?, b.u16(0x2a)?, b.u16(0x2c)?)
    };
    if phnum == PN_XNUM {
        return Err("more than 65534 program headers (PN_XNUM) is not supported".into());
    }
    let min_entsize = if is64 { 56 } else { 32 };
    if phnum > 0 && phentsize < min_entsize {
        return Err(format!(
            "program header entry size {phentsize} < {min_entsize}"
        ));
    }

    let mut interp = None;
    let mut dynamic = None;
    for i in 0..u64::from(phnum) {
        let ph = add(phoff, i * u64::from(phentsize))?;
        let p_type = b.u32(ph)?;
        // p_offset and p_filesz
        let (offset, filesz) = if is64 {
            (b.word(add(ph, 0x08)?, true)?, b.word(add(ph, 0x20)?, true)?)
        } else {
            (
                b.word(add(ph, 0x04)?, false)?,
                b.word(add(ph, 0x10)?, false)?,
            )
        };
        match p_type {
            PT_INTERP => {
                let raw = b.slice(offset, filesz)?;
                let path = raw.split(|&c| c == 0).next().unwrap_or_default();
                interp = Some(String::from_utf8_lossy(path).into_owned());
            }
            PT_DYNAMIC => dynamic = Some((offset, filesz)),
            _ => {}
        }
    }

    let mut needed = 0usize;
    if let Some((offset, filesz)) = dynamic {
        let entsize = if is64 { 16 } else { 8 };
        let wordsize = entsize / 2;
        b.slice(offset, filesz)?; // the whole segment must be in the file
        for i in 0..filesz / entsize {
            let entry = add(offset, i * entsize)?;
            match b.word(entry, is64)? {
                DT_NULL => break,
                DT_NEEDED => needed += 1,
                _ => {}
            }
            b.word(add(entry, wordsize)?, is64)?; // d_val must be readable too
        }
    }

    match (interp, needed) {
        (None, 0) if dynamic.is_some() => Ok(Linkage::StaticPie),
        (None, 0) => Ok(Linkage::Static),
        (interp, needed) => Err(format!(
            "dynamically linked: {}{needed} DT_NEEDED entr{}",
            interp
                .map(|p| format!("interpreter {p}, "))
                .unwrap_or_default(),
            if needed == 1 { "y" } else { "ies" },
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny ELF64 little-endian image: header, program headers, then each segment's bytes.
    fn elf64(segments: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let phoff = 64u64;
        let mut data_off = phoff + 56 * segments.len() as u64;
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2; // ELFCLASS64
        out[5] = 1; // ELFDATA2LSB
        out[6] = 1; // EV_CURRENT
        out[0x10..0x12].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        out[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        out[0x34..0x36].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        out[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (p_type, body) in segments {
            let mut ph = [0u8; 56];
            ph[..4].copy_from_slice(&p_type.to_le_bytes());
            ph[0x08..0x10].copy_from_slice(&data_off.to_le_bytes());
            ph[0x20..0x28].copy_from_slice(&(body.len() as u64).to_le_bytes());
            out.extend_from_slice(&ph);
            data_off += body.len() as u64;
        }
        for (_, body) in segments {
            out.extend_from_slice(body);
        }
        out
    }

    fn dyn_entries(entries: &[(u64, u64)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes()))
            .collect()
    }

    const PT_LOAD: u32 = 1;
    const DT_RELA: u64 = 7;

    #[test]
    fn plain_static() {
        let img = elf64(&[(PT_LOAD, vec![0; 16])]);
        assert_eq!(check_static(&img), Ok(Linkage::Static));
    }

    #[test]
    fn static_pie_has_dynamic_without_needed() {
        let dynamic = dyn_entries(&[(DT_RELA, 0x1000), (DT_NULL, 0)]);
        let img = elf64(&[(PT_LOAD, vec![0; 16]), (PT_DYNAMIC, dynamic)]);
        assert_eq!(check_static(&img), Ok(Linkage::StaticPie));
    }

    #[test]
    fn needed_is_rejected() {
        let dynamic = dyn_entries(&[(DT_NEEDED, 1), (DT_NEEDED, 9), (DT_NULL, 0)]);
        let err = check_static(&elf64(&[(PT_DYNAMIC, dynamic)])).unwrap_err();
        assert!(err.contains("2 DT_NEEDED entries"), "{err}");
    }

    #[test]
    fn needed_after_null_is_ignored() {
        let dynamic = dyn_entries(&[(DT_NULL, 0), (DT_NEEDED, 1)]);
        assert_eq!(
            check_static(&elf64(&[(PT_DYNAMIC, dynamic)])),
            Ok(Linkage::StaticPie)
        );
    }

    #[test]
    fn interp_is_rejected() {
        let img = elf64(&[(PT_INTERP, b"/lib/ld-musl-x86_64.so.1\0".to_vec())]);
        let err = check_static(&img).unwrap_err();
        assert!(
            err.contains("interpreter /lib/ld-musl-x86_64.so.1"),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        assert!(check_static(b"").is_err());
        assert!(check_static(b"#!/bin/sh\n").is_err());
        let dynamic = dyn_entries(&[(DT_NEEDED, 1), (DT_NULL, 0)]);
        let img = elf64(&[(PT_INTERP, b"/x\0".to_vec()), (PT_DYNAMIC, dynamic)]);
        for len in 0..img.len() {
            assert!(check_static(&img[..len]).is_err(), "prefix of {len} bytes");
        }
        // Offsets pointing far outside the file.
        let mut bad = elf64(&[(PT_DYNAMIC, vec![0; 16])]);
        bad[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check_static(&bad).is_err());
        let mut bad = elf64(&[(PT_DYNAMIC, vec![0; 16])]);
        bad[64 + 0x08..64 + 0x10].copy_from_slice(&(u64::MAX - 4).to_le_bytes());
        assert!(check_static(&bad).is_err());
    }

    /// The host's own tools are dynamically linked (glibc): the check must reject them.
    #[test]
    fn rejects_host_dynamic_binaries() {
        let mut checked = 0;
        for path in ["/bin/ls", "/bin/true", "/usr/bin/env"] {
            let Ok(data) = std::fs::read(path) else {
                continue;
            };
            let err = check_static(&data).expect_err(path);
            assert!(err.contains("DT_NEEDED"), "{path}: {err}");
            checked += 1;
        }
        assert!(checked > 0, "no host binary to test against");
    }

    /// The artifact of `cargo xtask dist`, when it has been built, must pass.
    #[test]
    fn accepts_built_musl_binary_if_present() {
        let bin = crate::util::target_dir()
            .join(crate::dist::TARGET)
            .join("dist")
            .join("ecclusterd");
        let Ok(data) = std::fs::read(&bin) else {
            return;
        };
        assert!(check_static(&data).is_ok(), "{}", bin.display());
    }
}
