//! Bounds-checked access to a guest's linear memory. Every pointer and length
//! comes from the guest, so every access is checked and a bad one is `EFAULT`,
//! never a panic.

use super::abi::Errno;

pub struct GuestMemory<'a> {
    bytes: &'a mut [u8],
}

impl<'a> GuestMemory<'a> {
    pub fn new(bytes: &'a mut [u8]) -> Self {
        GuestMemory { bytes }
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

    pub fn slice_mut(&mut self, ptr: u32, len: u32) -> Result<&mut [u8], Errno> {
        let r = self.range(ptr, len)?;
        Ok(&mut self.bytes[r])
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
        // Linux's IOV_MAX is 1024; a longer list is EINVAL there too.
        const MAX_IOVECS: u32 = 1024;
        if iovs_len > MAX_IOVECS {
            return Err(Errno::INVAL);
        }
        let raw = self.slice(iovs, iovs_len.checked_mul(8).ok_or(Errno::FAULT)?)?;
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

    /// Concatenates the bytes an iovec list names.
    pub fn gather(&self, iovs: &[(u32, u32)]) -> Result<Vec<u8>, Errno> {
        let total: usize = iovs.iter().map(|&(_, len)| len as usize).sum();
        let mut out = Vec::with_capacity(total);
        for &(buf, len) in iovs {
            out.extend_from_slice(self.slice(buf, len)?);
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
