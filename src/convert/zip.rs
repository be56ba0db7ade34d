//! The small part of the zip format that `torch.save` archives use: the central directory
//! (with zip64 records, which torch writes for files over 4 GiB), local headers to find each
//! record's data, and stored (uncompressed) records.
//!
//! Why not the `zip` crate: torch writes every record stored and 64-byte aligned (so that
//! `torch.load(mmap=True)` can map storages), so reading is "find the offset, seek, read"; the
//! parts of the format we need fit in this file, stay within the crate's MSRV and wasm build,
//! and are fuzzed with the rest of the checkpoint reader. Compressed or encrypted records are
//! reported as errors.
//!
//! Every size read from the file is checked against the file's length before it is used to
//! allocate or seek.

use std::io::{Read, Seek, SeekFrom};

use crate::{Error, Result};

const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

/// One record of the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    /// 0 = stored; anything else is compressed.
    pub method: u16,
    pub flags: u16,
    pub crc32: u32,
    pub compressed_size: u64,
    pub size: u64,
    /// Offset of the record's local header.
    pub header_offset: u64,
}

impl Entry {
    /// Whether the data can be read in place (stored, not encrypted).
    pub fn is_stored(&self) -> bool {
        self.method == 0 && self.flags & 1 == 0 && self.compressed_size == self.size
    }

    /// Why the data cannot be read in place (for errors), or None when it can.
    pub fn why_not_stored(&self) -> Option<String> {
        if self.flags & 1 != 0 {
            Some("encrypted".into())
        } else if self.method != 0 {
            let m = match self.method {
                8 => "deflate".to_string(),
                9 => "deflate64".to_string(),
                12 => "bzip2".to_string(),
                14 => "LZMA".to_string(),
                93 => "zstd".to_string(),
                other => format!("method {other}"),
            };
            Some(format!("compressed ({m})"))
        } else if self.compressed_size != self.size {
            Some(format!("stored with {} bytes for {} bytes of data (corrupt)", self.compressed_size, self.size))
        } else {
            None
        }
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn bad(name: &str, msg: impl std::fmt::Display) -> Error {
    Error::Format(format!("{name}: not a valid zip archive: {msg}"))
}

/// Read `len` bytes at `offset`, after checking that they exist (`file_len`).
pub fn read_at<R: Read + Seek + ?Sized>(r: &mut R, file_len: u64, offset: u64, len: u64, name: &str) -> Result<Vec<u8>> {
    let end = offset.checked_add(len).ok_or_else(|| bad(name, "offset overflows"))?;
    if end > file_len {
        return Err(Error::Format(format!("{name}: truncated file: needs bytes up to {end}, the file has {file_len}")));
    }
    let len = usize::try_from(len).map_err(|_| Error::Format(format!("{name}: a {len}-byte read does not fit in memory")))?;
    let mut buf = vec![0u8; len];
    r.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(format!("seeking in {name}"), e))?;
    r.read_exact(&mut buf).map_err(|e| Error::io(format!("reading {name}"), e))?;
    Ok(buf)
}

/// List the records of the archive held by `r` (`file_len` bytes long).
pub fn read_directory<R: Read + Seek + ?Sized>(r: &mut R, file_len: u64, name: &str) -> Result<Vec<Entry>> {
    // The end-of-central-directory record is 22 bytes plus a comment of up to 65535 bytes.
    let tail_len = file_len.min(22 + 65535);
    if tail_len < 22 {
        return Err(bad(name, "file too short"));
    }
    let tail = read_at(r, file_len, file_len - tail_len, tail_len, name)?;
    let eocd = (0..=tail.len() - 22)
        .rev()
        .find(|&i| le32(&tail, i) == EOCD_SIG && i + 22 + le16(&tail, i + 20) as usize == tail.len())
        .or_else(|| (0..=tail.len() - 22).rev().find(|&i| le32(&tail, i) == EOCD_SIG))
        .ok_or_else(|| bad(name, "no end-of-central-directory record (truncated?)"))?;
    let eocd_pos = file_len - tail_len + eocd as u64;
    let mut count = le16(&tail, eocd + 10) as u64;
    let mut cd_size = le32(&tail, eocd + 12) as u64;
    let mut cd_offset = le32(&tail, eocd + 16) as u64;

    // A zip64 locator sits just before the classic record when the sizes did not fit.
    if eocd_pos >= 20 {
        let loc = read_at(r, file_len, eocd_pos - 20, 20, name)?;
        if le32(&loc, 0) == ZIP64_LOCATOR_SIG {
            let z64_pos = le64(&loc, 8);
            let z = read_at(r, file_len, z64_pos, 56, name)?;
            if le32(&z, 0) != ZIP64_EOCD_SIG {
                return Err(bad(name, "zip64 locator points to no zip64 record"));
            }
            count = le64(&z, 32);
            cd_size = le64(&z, 40);
            cd_offset = le64(&z, 48);
        }
    }
    if cd_offset.checked_add(cd_size).is_none_or(|end| end > file_len) {
        return Err(bad(name, format!("central directory ({cd_size} bytes at {cd_offset}) lies outside the file ({file_len} bytes)")));
    }
    // Each entry takes at least 46 bytes, so the count is bounded by the directory's size.
    if count > cd_size / 46 {
        return Err(bad(name, format!("{count} entries cannot fit a {cd_size}-byte central directory")));
    }
    let cd = read_at(r, file_len, cd_offset, cd_size, name)?;
    let mut entries = Vec::with_capacity(count as usize);
    let mut p = 0usize;
    for _ in 0..count {
        if p + 46 > cd.len() || le32(&cd, p) != CENTRAL_SIG {
            return Err(bad(name, format!("corrupt central directory entry at offset {}", cd_offset + p as u64)));
        }
        let flags = le16(&cd, p + 8);
        let method = le16(&cd, p + 10);
        let crc32 = le32(&cd, p + 16);
        let mut compressed_size = le32(&cd, p + 20) as u64;
        let mut size = le32(&cd, p + 24) as u64;
        let name_len = le16(&cd, p + 28) as usize;
        let extra_len = le16(&cd, p + 30) as usize;
        let comment_len = le16(&cd, p + 32) as usize;
        let mut header_offset = le32(&cd, p + 42) as u64;
        let end = p + 46 + name_len + extra_len + comment_len;
        if end > cd.len() {
            return Err(bad(name, "central directory entry runs past the directory"));
        }
        let entry_name = String::from_utf8_lossy(&cd[p + 46..p + 46 + name_len]).into_owned();
        // Zip64 extended information: the 64-bit values of the fields that hold 0xFFFFFFFF.
        let mut extra = &cd[p + 46 + name_len..p + 46 + name_len + extra_len];
        while extra.len() >= 4 {
            let id = le16(extra, 0);
            let n = (le16(extra, 2) as usize).min(extra.len() - 4);
            let mut field = &extra[4..4 + n];
            if id == 0x0001 {
                for v in [&mut size, &mut compressed_size, &mut header_offset] {
                    if *v == 0xFFFF_FFFF && field.len() >= 8 {
                        *v = le64(field, 0);
                        field = &field[8..];
                    }
                }
            }
            extra = &extra[4 + n..];
        }
        entries.push(Entry { name: entry_name, method, flags, crc32, compressed_size, size, header_offset });
        p = end;
    }
    Ok(entries)
}

/// Offset of the first data byte of `entry` (after its local header), checked to lie, with the
/// record's data, inside the file.
pub fn data_offset<R: Read + Seek + ?Sized>(r: &mut R, file_len: u64, entry: &Entry, name: &str) -> Result<u64> {
    let h = read_at(r, file_len, entry.header_offset, 30, name)?;
    if le32(&h, 0) != LOCAL_SIG {
        return Err(bad(name, format!("record `{}` has no local header at offset {}", entry.name, entry.header_offset)));
    }
    let start = entry.header_offset + 30 + le16(&h, 26) as u64 + le16(&h, 28) as u64;
    if start.checked_add(entry.compressed_size).is_none_or(|end| end > file_len) {
        return Err(Error::Format(format!(
            "{name}: truncated file: record `{}` ({} bytes at offset {start}) ends past the end of the file ({file_len} bytes)",
            entry.name, entry.compressed_size
        )));
    }
    Ok(start)
}

/// CRC-32 (IEEE), as zip records it; `crc32(0, data)` for a whole buffer, chainable.
pub fn crc32(crc: u32, data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[[u32; 256]; 8]> = std::sync::OnceLock::new();
    let t = TABLE.get_or_init(|| {
        let mut t = [[0u32; 256]; 8];
        for i in 0..256u32 {
            let mut c = i;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
            t[0][i as usize] = c;
        }
        for i in 0..256 {
            for k in 1..8 {
                t[k][i] = (t[k - 1][i] >> 8) ^ t[0][(t[k - 1][i] & 0xff) as usize];
            }
        }
        t
    });
    let mut c = !crc;
    let mut chunks = data.chunks_exact(8);
    for b in &mut chunks {
        let lo = c ^ u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][b[4] as usize]
            ^ t[2][b[5] as usize]
            ^ t[1][b[6] as usize]
            ^ t[0][b[7] as usize];
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ b as u32) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_known_values() {
        // The standard check value of CRC-32/ISO-HDLC.
        assert_eq!(crc32(0, b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(0, b""), 0);
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        assert_eq!(crc32(crc32(0, &data[..333]), &data[333..]), crc32(0, &data));
    }
}
