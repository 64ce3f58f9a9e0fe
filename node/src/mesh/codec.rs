//! A request-response codec that encodes with ciborium and reads every
//! message with an explicit size limit before decoding it.
//!
//! libp2p's own `cbor` codec (cbor4ii) has fixed, implicit limits of 1 MiB
//! per request and 10 MiB per response; meshnode names its limits per
//! protocol (`protocol::limits`). A message is one CBOR document written to
//! the stream, which the writer then closes (the request-response behaviour
//! does that); the reader reads to the end of the stream, but never more
//! than the limit plus one byte, and refuses a message over the limit
//! before parsing any of it.

use std::io;
use std::marker::PhantomData;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::StreamProtocol;
use serde::{de::DeserializeOwned, Serialize};

/// A ciborium codec for `Req`/`Resp` with per-direction size limits.
pub struct CborCodec<Req, Resp> {
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> CborCodec<Req, Resp> {
    pub fn new(max_request_bytes: usize, max_response_bytes: usize) -> Self {
        CborCodec {
            max_request_bytes,
            max_response_bytes,
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> Clone for CborCodec<Req, Resp> {
    fn clone(&self) -> Self {
        CborCodec::new(self.max_request_bytes, self.max_response_bytes)
    }
}

/// Reads one whole message of at most `limit_bytes` bytes and decodes it.
pub async fn read_limited<T, R>(io: &mut R, limit_bytes: usize) -> io::Result<T>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + Send,
{
    let mut buf = Vec::new();
    io.take(limit_bytes as u64 + 1)
        .read_to_end(&mut buf)
        .await?;
    decode_limited(&buf, limit_bytes)
}

/// Decodes one message of at most `limit_bytes` bytes. A longer one is an
/// `InvalidData` error that names the limit.
pub fn decode_limited<T: DeserializeOwned>(buf: &[u8], limit_bytes: usize) -> io::Result<T> {
    if buf.len() > limit_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("message of more than {limit_bytes} bytes, over the protocol's limit"),
        ));
    }
    protocol::cbor::decode(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Encodes `value`, refusing to send what the other side would refuse to
/// read. (Encoding happens before any `.await`, so the value need not be
/// `Sync`.)
fn encode_limited<T: Serialize>(value: &T, limit_bytes: usize) -> io::Result<Vec<u8>> {
    let bytes = protocol::cbor::encode(value);
    if bytes.len() > limit_bytes {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "message of {} bytes, over the protocol's limit of {limit_bytes} bytes",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

async fn write_all<W: AsyncWrite + Unpin + Send>(io: &mut W, bytes: Vec<u8>) -> io::Result<()> {
    io.write_all(&bytes).await?;
    io.flush().await
}

impl<Req, Resp> libp2p::request_response::Codec for CborCodec<Req, Resp>
where
    Req: Send + Serialize + DeserializeOwned,
    Resp: Send + Serialize + DeserializeOwned,
{
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Req>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, self.max_request_bytes).await
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Resp>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, self.max_response_bytes).await
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, req: Req) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = encode_limited(&req, self.max_request_bytes)?;
        write_all(io, bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = encode_limited(&res, self.max_response_bytes)?;
        write_all(io, bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec;

    fn proto() -> StreamProtocol {
        StreamProtocol::new("/test/1")
    }

    #[test]
    fn messages_at_the_limit_pass_and_over_it_are_refused() {
        futures::executor::block_on(async {
            let mut codec = CborCodec::<Vec<u32>, String>::new(64, 16);
            // A request that encodes to exactly 64 bytes passes.
            let mut req: Vec<u32> = vec![1; 62];
            assert_eq!(protocol::cbor::encode(&req).len(), 64);
            let mut wire = Vec::new();
            codec
                .write_request(&proto(), &mut wire, req.clone())
                .await
                .unwrap();
            let back = codec.read_request(&proto(), &mut &wire[..]).await.unwrap();
            assert_eq!(back, req);

            // One more element: the writer refuses, and so does the reader.
            req.push(1);
            let err = codec
                .write_request(&proto(), &mut Vec::new(), req.clone())
                .await
                .unwrap_err();
            assert!(
                err.to_string()
                    .contains("over the protocol's limit of 64 bytes"),
                "{err}"
            );
            let wire = protocol::cbor::encode(&req);
            let err = codec
                .read_request(&proto(), &mut &wire[..])
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
            assert!(err.to_string().contains("more than 64 bytes"), "{err}");

            // Responses have their own limit.
            let long = "x".repeat(20);
            let wire = protocol::cbor::encode(&long);
            let err = codec
                .read_response(&proto(), &mut &wire[..])
                .await
                .unwrap_err();
            assert!(err.to_string().contains("more than 16 bytes"), "{err}");
        });
    }

    #[test]
    fn malformed_and_trailing_bytes_are_refused() {
        futures::executor::block_on(async {
            let mut codec = CborCodec::<Vec<u32>, String>::new(64, 64);
            let mut wire = protocol::cbor::encode(&vec![1u32, 2]);
            wire.push(0);
            assert!(codec.read_request(&proto(), &mut &wire[..]).await.is_err());
            let wire = [0xffu8, 0x00];
            assert!(codec.read_request(&proto(), &mut &wire[..]).await.is_err());
        });
    }
}
