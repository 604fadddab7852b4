//! Byte payloads of any size: up to [`INLINE_MAX`] they travel in the
//! message; above, in a sealed memfd whose descriptor the message carries
//! (OpenHarmony caps a message at 1 MiB and moves bigger data through
//! shared memory, up to 128 MiB).
//!
//! On the wire a [`Blob`] is the D-Bus struct `(ayah)`: the inline bytes
//! and zero or one descriptor, so stock D-Bus tools can still see it. On
//! the fast path (a typed interface's argument or result, encoded inside
//! [`crate::fds::encode_with`]) it is the inline bytes and an optional
//! index into the message's descriptors, and a shared payload is checked
//! as it is decoded (sealed, at most [`SHARED_MAX`]): a request carrying
//! an unsealed memfd is refused before the method runs.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;
use zbus::zvariant::{self, Type};

/// Largest payload sent inline (OpenHarmony's message cap).
pub const INLINE_MAX: usize = 1 << 20;
/// Largest payload a receiver accepts (OpenHarmony's shared-memory cap).
pub const SHARED_MAX: u64 = 128 << 20;

#[derive(Debug, Error)]
pub enum BlobError {
    #[error("shared payload: {0}")]
    Io(#[from] std::io::Error),
    #[error("shared payload: {0}")]
    Sys(#[from] nix::Error),
    #[error("shared payload of {0} bytes is above the {SHARED_MAX}-byte limit")]
    TooBig(u64),
    #[error("shared payload is not sealed: the sender could still change it")]
    NotSealed,
    #[error("a payload carries {0} descriptors; at most one")]
    Malformed(usize),
    /// The memfd has holes: reading it would cost the receiver memory
    /// its sender never spent (and the same memfd can be sent again and
    /// again).
    #[error("shared payload of {size} bytes has only {backed} bytes of memory behind it (a sparse file)")]
    Sparse { size: u64, backed: u64 },
}

/// A byte payload; see the module doc.
#[derive(Debug, Type)]
pub struct Blob {
    inline: serde_bytes::ByteBuf,
    shared: Vec<zvariant::OwnedFd>,
}

/// The D-Bus form.
#[derive(Serialize)]
struct DbusRef<'a> {
    inline: &'a serde_bytes::ByteBuf,
    shared: &'a [zvariant::OwnedFd],
}

#[derive(Deserialize)]
struct DbusOwned {
    inline: serde_bytes::ByteBuf,
    shared: Vec<zvariant::OwnedFd>,
}

impl Serialize for Blob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if !crate::fds::encoding() {
            return DbusRef { inline: &self.inline, shared: &self.shared }.serialize(s);
        }
        let index = match &self.shared[..] {
            [] => None,
            [fd] => Some(crate::fds::attach(std::os::fd::AsFd::as_fd(fd)).map_err(serde::ser::Error::custom)?),
            more => return Err(serde::ser::Error::custom(BlobError::Malformed(more.len()))),
        };
        (&self.inline, index).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Blob, D::Error> {
        if !crate::fds::decoding() {
            let DbusOwned { inline, shared } = DbusOwned::deserialize(d)?;
            return Ok(Blob { inline, shared });
        }
        let (inline, fd): (serde_bytes::ByteBuf, Option<crate::fds::Fd>) = Deserialize::deserialize(d)?;
        let Some(fd) = fd else { return Ok(Blob { inline, shared: Vec::new() }) };
        if !inline.is_empty() {
            return Err(serde::de::Error::custom(crate::fds::note_error("a payload both inline and shared".into())));
        }
        check_shared(&fd.0).map_err(|e| serde::de::Error::custom(crate::fds::note_error(e.to_string())))?;
        Ok(Blob { inline, shared: vec![fd.0.into()] })
    }
}

/// A shared payload's checks: sealed against writing, growing and
/// shrinking, at most [`SHARED_MAX`]; returns its size.
fn check_shared(fd: &OwnedFd) -> Result<u64, BlobError> {
    let seals = SealFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS)?);
    if !seals.contains(SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW) {
        return Err(BlobError::NotSealed);
    }
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    let len = st.st_size as u64;
    if len > SHARED_MAX {
        return Err(BlobError::TooBig(len));
    }
    // st_blocks counts 512-byte units of memory the memfd holds.
    let backed = (st.st_blocks as u64).saturating_mul(512);
    if backed < len {
        return Err(BlobError::Sparse { size: len, backed });
    }
    Ok(len)
}

/// A payload's bytes without a copy: inline ones as they came, shared
/// ones mapped read-only from the sender's sealed memfd ([`Blob::map`]).
#[derive(Debug)]
pub struct Bytes {
    inline: Vec<u8>,
    /// (address, length) of the mapping, if shared and not empty.
    mapped: Option<(std::ptr::NonNull<std::ffi::c_void>, usize)>,
}

// SAFETY: the mapping is read-only and of a memfd sealed against writes:
// nobody can change the bytes, from any thread.
unsafe impl Send for Bytes {}
// SAFETY: as above; only shared reads are possible.
unsafe impl Sync for Bytes {}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self.mapped {
            // SAFETY: the mapping is `len` readable bytes for as long as
            // `self` lives, and its memfd is sealed against writes and
            // shrinking (no SIGBUS, no change under the reader).
            Some((addr, len)) => unsafe { std::slice::from_raw_parts(addr.as_ptr().cast::<u8>(), len) },
            None => &self.inline,
        }
    }
}

impl Drop for Bytes {
    fn drop(&mut self) {
        if let Some((addr, len)) = self.mapped.take() {
            // SAFETY: mapped by `Blob::map` with this length; no slice of
            // it outlives `self`.
            let _ = unsafe { nix::sys::mman::munmap(addr, len) };
        }
    }
}

const SEALS: SealFlag = SealFlag::F_SEAL_SHRINK.union(SealFlag::F_SEAL_GROW).union(SealFlag::F_SEAL_WRITE).union(SealFlag::F_SEAL_SEAL);

impl Blob {
    /// Wraps `data`: inline if small, else copied into a sealed memfd.
    pub fn new(data: Vec<u8>) -> Result<Blob, BlobError> {
        if data.len() <= INLINE_MAX {
            return Ok(Blob { inline: serde_bytes::ByteBuf::from(data), shared: Vec::new() });
        }
        let fd = memfd_create(c"accord-blob", MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING)?;
        let mut file = std::fs::File::from(fd);
        file.write_all(&data)?;
        fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(SEALS))?;
        let fd: OwnedFd = file.into();
        Ok(Blob { inline: serde_bytes::ByteBuf::new(), shared: vec![fd.into()] })
    }

    /// Whether the payload travels in shared memory.
    pub fn is_shared(&self) -> bool {
        !self.shared.is_empty()
    }

    /// The bytes. A shared payload must be sealed against writing, growing
    /// and shrinking (`F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK`, else
    /// [`BlobError::NotSealed`]) and no bigger than [`SHARED_MAX`]
    /// ([`BlobError::TooBig`]): the sender cannot change it under us, and
    /// exactly its sealed size is read (one allocation of that size).
    pub fn into_bytes(mut self) -> Result<Vec<u8>, BlobError> {
        // (The copy costs the receiver `len` bytes of heap: prefer
        // `Blob::map` for big payloads.)
        match self.shared.len() {
            0 => return Ok(self.inline.into_vec()),
            1 => {}
            n => return Err(BlobError::Malformed(n)),
        }
        let Some(fd) = self.shared.pop() else { return Err(BlobError::Malformed(0)) };
        let fd: OwnedFd = fd.into();
        let len = check_shared(&fd)?;
        let file = std::fs::File::from(fd);
        let mut out = vec![0; len as usize];
        // At offset 0 without seeking: the sender shares the file offset.
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut out, 0)?;
        Ok(out)
    }
}

impl Blob {
    /// The bytes without copying them: a shared payload (checked as for
    /// [`Blob::into_bytes`]) is mapped read-only from the sender's sealed
    /// memfd, so holding it costs page tables, not a copy, however often
    /// the same memfd comes.
    pub fn map(mut self) -> Result<Bytes, BlobError> {
        match self.shared.len() {
            0 => return Ok(Bytes { inline: std::mem::take(&mut self.inline).into_vec(), mapped: None }),
            1 => {}
            n => return Err(BlobError::Malformed(n)),
        }
        let Some(fd) = self.shared.pop() else { return Err(BlobError::Malformed(0)) };
        let fd: OwnedFd = fd.into();
        let len = check_shared(&fd)? as usize;
        let Some(n) = std::num::NonZeroUsize::new(len) else { return Ok(Bytes { inline: Vec::new(), mapped: None }) };
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        // SAFETY: a fresh read-only shared mapping of a memfd sealed
        // against writing, growing and shrinking: its bytes cannot change
        // or vanish while mapped. The descriptor may close after mapping.
        let addr = unsafe { mmap(None, n, ProtFlags::PROT_READ, MapFlags::MAP_SHARED, &fd, 0)? };
        Ok(Bytes { inline: Vec::new(), mapped: Some((addr, len)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sealed memfd with holes would cost whoever reads it memory its
    /// sender never spent: refused, read or mapped.
    #[test]
    fn a_sparse_memfd_is_refused() {
        let fd = memfd_create(c"x", MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING).unwrap();
        let mut f = std::fs::File::from(fd);
        f.write_all(&[1; 4096]).unwrap();
        nix::unistd::ftruncate(&f, 64 << 20).unwrap();
        fcntl(f.as_raw_fd(), FcntlArg::F_ADD_SEALS(SEALS)).unwrap();
        let fd = OwnedFd::from(f);
        let dup = fd.try_clone().unwrap();
        let b = Blob { inline: serde_bytes::ByteBuf::new(), shared: vec![fd.into()] };
        let e = b.into_bytes().unwrap_err();
        assert!(matches!(e, BlobError::Sparse { size, backed } if size == 64 << 20 && backed < size), "{e:?}");
        assert!(e.to_string().contains("sparse"), "{e}");
        let b = Blob { inline: serde_bytes::ByteBuf::new(), shared: vec![dup.into()] };
        assert!(matches!(b.map(), Err(BlobError::Sparse { .. })));
    }

    #[test]
    fn a_mapped_blob_reads_what_was_sent() {
        let data: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let big = Blob::new(data.clone()).unwrap();
        let bytes = big.map().unwrap();
        assert!(bytes.mapped.is_some());
        assert!(*bytes == data[..]);
        let small = Blob::new(vec![9; 100]).unwrap().map().unwrap();
        assert_eq!(&*small, &[9; 100][..]);
    }

    #[test]
    fn small_inline_big_shared_and_both_round_trip() {
        let small = Blob::new(vec![7; 1000]).unwrap();
        assert!(!small.is_shared());
        assert_eq!(small.into_bytes().unwrap(), vec![7; 1000]);
        let data: Vec<u8> = (0..3 << 20).map(|i| (i % 251) as u8).collect();
        let big = Blob::new(data.clone()).unwrap();
        assert!(big.is_shared());
        assert_eq!(big.into_bytes().unwrap(), data);
    }

    #[test]
    fn an_unsealed_memfd_is_refused() {
        let fd = memfd_create(c"x", MemFdCreateFlag::MFD_CLOEXEC).unwrap();
        let b = Blob { inline: serde_bytes::ByteBuf::new(), shared: vec![fd.into()] };
        assert!(matches!(b.into_bytes(), Err(BlobError::NotSealed)));
    }

    /// A sender that seals against writes and shrinking but not growing
    /// could append after the receiver measured the size: refused.
    #[test]
    fn a_memfd_that_can_still_grow_is_refused() {
        for seals in
            [SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK, SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_GROW, SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SHRINK]
        {
            let fd = memfd_create(c"x", MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING).unwrap();
            let mut f = std::fs::File::from(fd);
            f.write_all(&[1; 4096]).unwrap();
            fcntl(f.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).unwrap();
            let b = Blob { inline: serde_bytes::ByteBuf::new(), shared: vec![OwnedFd::from(f).into()] };
            assert!(matches!(b.into_bytes(), Err(BlobError::NotSealed)), "{seals:?}");
        }
    }

    #[test]
    fn a_sealed_memfd_above_the_limit_is_refused_without_reading_it() {
        let fd = memfd_create(c"x", MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING).unwrap();
        // Sparse: costs nothing to make.
        nix::unistd::ftruncate(&fd, (SHARED_MAX + 1) as i64).unwrap();
        fcntl(fd.as_raw_fd(), FcntlArg::F_ADD_SEALS(SEALS)).unwrap();
        let b = Blob { inline: serde_bytes::ByteBuf::new(), shared: vec![fd.into()] };
        assert!(matches!(b.into_bytes(), Err(BlobError::TooBig(n)) if n == SHARED_MAX + 1));
    }
}
