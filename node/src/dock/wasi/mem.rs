//! Bounds-checked access to a guest's linear memory. Every pointer and length
//! comes from the guest, so every access is checked and a bad one is `EFAULT`,
//! never a panic.

use super::abi::Errno;

/// Most iovecs in one call. Linux's `IOV_MAX` is 1024; a longer list is
/// `EINVAL` there too.
pub const MAX_IOVECS: u32 = 1024;

/// Most bytes one read or write moves. The guest asks again for the rest
/// (a short read or write), so this only bounds what the host buffers.
pub const MAX_IO_BYTES: usize = 16 * 1024 * 1024;

pub struct GuestMemory<'a> {
    bytes: &'a mut [u8],
}

impl<'a> GuestMemory<'a> {
    pub fn new(bytes: &'a mut [u8]) -> Self {
        GuestMemory { bytes }
    }

    /// The whole memory, as it stands.
    pub fn bytes(&self) -> &[u8] {
        self.bytes
    }

    fn range(&self, ptr: u32, len: u32) -> Result<std::ops::Range<usize>, Errno> {
        let start = ptr as usize;
        let end = start.checked_add(len as usize).ok_or(Errno::FAULT)?;
        if end > self.bytes.len() {
            return Err(Errno::FAULT);
        }
        Ok(start..end)
    }

    pub fn slice(&self, ptr: u32, len: u32) -> Result<&[u8], Errno> {
        let r = self.range(ptr, len)?;
        Ok(&self.bytes[r])
    }

    /// Guest memory to write. Its pages are made writable first: the
    /// memory may be write-protected for checkpoints (`dock/dirty`), and a
    /// system call writing into a protected page (`getrandom`, a read)
    /// would fail with `EFAULT` instead of faulting.
    pub fn slice_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8], Errno> {
        let r = self.range(ptr, len)?;
        let out = &mut self.bytes[r];
        crate::dock::dirty::touch_for_write(out);
        Ok(out)
    }

    pub fn read_u8(&self, ptr: u32) -> Result<u8, Errno> {
        Ok(self.slice(ptr, 1)?[0])
    }

    pub fn read_u16(&self, ptr: u32) -> Result<u16, Errno> {
        Ok(u16::from_le_bytes(self.slice(ptr, 2)?.try_into().unwrap()))
    }

    pub fn read_u32(&self, ptr: u32) -> Result<u32, Errno> {
        Ok(u32::from_le_bytes(self.slice(ptr, 4)?.try_into().unwrap()))
    }

    pub fn read_u64(&self, ptr: u32) -> Result<u64, Errno> {
        Ok(u64::from_le_bytes(self.slice(ptr, 8)?.try_into().unwrap()))
    }

    pub fn write_u8(&mut self, ptr: u32, v: u8) -> Result<(), Errno> {
        self.slice_mut(ptr, 1)?[0] = v;
        Ok(())
    }

    pub fn write_u32(&mut self, ptr: u32, v: u32) -> Result<(), Errno> {
        self.slice_mut(ptr, 4)?.copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    pub fn write_u64(&mut self, ptr: u32, v: u64) -> Result<(), Errno> {
        self.slice_mut(ptr, 8)?.copy_from_slice(&v.to_le_bytes());
        Ok(())
    }

    pub fn write_bytes(&mut self, ptr: u32, data: &[u8]) -> Result<(), Errno> {
        self.slice_mut(ptr, data.len().try_into().map_err(|_| Errno::FAULT)?)?
            .copy_from_slice(data);
        Ok(())
    }

    /// Reads an iovec/ciovec array: `(buf, len)` pairs of u32.
    pub fn iovecs(&self, iovs: u32, iovs_len: u32) -> Result<Vec<(u32, u32)>, Errno> {
        let raw = self.slice(iovs, iovs_len.checked_mul(8).ok_or(Errno::FAULT)?)?;
        if iovs_len > MAX_IOVECS {
            return Err(Errno::INVAL);
        }
        let mut out = Vec::with_capacity(iovs_len as usize);
        for pair in raw.chunks_exact(8) {
            let buf = u32::from_le_bytes(pair[0..4].try_into().unwrap());
            let len = u32::from_le_bytes(pair[4..8].try_into().unwrap());
            // Check every buffer up front, so a bad one fails before any I/O.
            self.range(buf, len)?;
            out.push((buf, len));
        }
        Ok(out)
    }

    /// Concatenates the bytes an iovec list names, up to `MAX_IO_BYTES`:
    /// the iovecs may name the same memory many times over, so their total
    /// is not bounded by the memory size. A longer write is a short write,
    /// which the guest's libc continues, as with a pipe.
    pub fn gather(&self, iovs: &[(u32, u32)]) -> Result<Vec<u8>, Errno> {
        let total: usize = iovs.iter().map(|&(_, len)| len as usize).sum();
        let mut out = Vec::with_capacity(total.min(MAX_IO_BYTES));
        for &(buf, len) in iovs {
            let room = MAX_IO_BYTES - out.len();
            if room == 0 {
                break;
            }
            out.extend_from_slice(self.slice(buf, len.min(room as u32))?);
        }
        Ok(out)
    }

    /// Spreads `data` over an iovec list, in order.
    pub fn scatter(&mut self, iovs: &[(u32, u32)], mut data: &[u8]) -> Result<(), Errno> {
        for &(buf, len) in iovs {
            if data.is_empty() {
                break;
            }
            let n = (len as usize).min(data.len());
            self.slice_mut(buf, n as u32)?.copy_from_slice(&data[..n]);
            data = &data[n..];
        }
        Ok(())
    }
}
