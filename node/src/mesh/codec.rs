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

use std::sync::Arc;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{PeerId, StreamProtocol};
use protocol::control::{ControlHeader, ControlRequest, ControlResponse};
use protocol::limits::{
    MAX_CONTROL_HEADER_BYTES, MAX_CONTROL_REQUEST_BYTES, MAX_CONTROL_RESPONSE_BYTES,
};
use protocol::refusal::{Refusal, RefusalCode};
use serde::{de::DeserializeOwned, Serialize};

use super::gate::{
    connecting_peer, PeerGate, Reading, MAX_STRANGER_REQUEST_BYTES, READ_STEP_BYTES,
};

/// A ciborium codec for `Req`/`Resp` with per-direction size limits and,
/// on a node, a [`PeerGate`] that inbound requests are read under: a peer
/// that is not a member gets at most [`MAX_STRANGER_REQUEST_BYTES`] read
/// when `members_only`, and every read counts against its peer's and the
/// node's bounds.
pub struct CborCodec<Req, Resp> {
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    gate: Option<Arc<PeerGate>>,
    /// The peer this copy serves (a connection's copy; see `gate::Gated`).
    peer: Option<PeerId>,
    members_only: bool,
    _types: PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> CborCodec<Req, Resp> {
    pub fn new(max_request_bytes: usize, max_response_bytes: usize) -> Self {
        CborCodec {
            max_request_bytes,
            max_response_bytes,
            gate: None,
            peer: None,
            members_only: false,
            _types: PhantomData,
        }
    }

    /// Reads requests under `gate`; with `members_only`, a request of more
    /// than [`MAX_STRANGER_REQUEST_BYTES`] only from a member.
    pub fn gated(mut self, gate: Arc<PeerGate>, members_only: bool) -> Self {
        self.gate = Some(gate);
        self.members_only = members_only;
        self
    }

    fn request_limit_bytes(&self) -> usize {
        let member = || match (&self.gate, &self.peer) {
            (Some(g), Some(p)) => g.is_member(p),
            _ => false,
        };
        if self.members_only && !member() {
            self.max_request_bytes.min(MAX_STRANGER_REQUEST_BYTES)
        } else {
            self.max_request_bytes
        }
    }
}

impl<Req, Resp> Clone for CborCodec<Req, Resp> {
    fn clone(&self) -> Self {
        CborCodec {
            max_request_bytes: self.max_request_bytes,
            max_response_bytes: self.max_response_bytes,
            gate: self.gate.clone(),
            peer: self.peer.or_else(|| connecting_peer(self.gate.as_ref())),
            members_only: self.members_only,
            _types: PhantomData,
        }
    }
}

/// Reads one whole message of at most `limit_bytes` bytes and decodes it.
pub async fn read_limited<T, R>(io: &mut R, limit_bytes: usize) -> io::Result<T>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + Send,
{
    let buf = read_to_end_reserved(io, limit_bytes, None).await?;
    decode_limited(&buf, limit_bytes)
}

/// Reads to the end of the stream, but never more than `limit_bytes` + 1
/// bytes (one more tells a message over the limit), growing the buffer
/// only by what `reading` reserved first (a node's bounds per peer and in
/// all; see `gate`). A stream that runs over is refused without reading
/// the rest.
pub async fn read_to_end_reserved<R>(
    io: &mut R,
    limit_bytes: usize,
    mut reading: Option<&mut Reading>,
) -> io::Result<Vec<u8>>
where
    R: AsyncRead + Unpin + Send,
{
    let cap_bytes = limit_bytes + 1;
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= cap_bytes {
                return Ok(buf);
            }
            // Doubling, as a Vec would, so a large message is copied a few
            // times and not once per step; each growth reserved first.
            let grow = buf
                .capacity()
                .max(READ_STEP_BYTES)
                .min(cap_bytes - buf.len());
            if let Some(r) = reading.as_deref_mut() {
                r.reserve(grow)?;
            }
            buf.reserve_exact(grow);
        }
        let start = buf.len();
        let room = (buf.capacity() - start).min(cap_bytes - start);
        buf.resize(start + room, 0);
        let n = io.read(&mut buf[start..]).await?;
        buf.truncate(start + n);
        if n == 0 {
            return Ok(buf);
        }
    }
}

/// Reads and discards exactly `bytes` bytes through a small buffer.
async fn drain<R: AsyncRead + Unpin + Send>(io: &mut R, bytes: u64) -> io::Result<()> {
    let mut scratch = [0u8; 8 * 1024];
    let mut left = bytes;
    while left > 0 {
        let want = left.min(scratch.len() as u64) as usize;
        let n = io.read(&mut scratch[..want]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        left -= n as u64;
    }
    Ok(())
}

/// Reads exactly `bytes` bytes (a header's), refusing a stream that ends
/// first.
async fn read_exact_vec<R: AsyncRead + Unpin + Send>(
    io: &mut R,
    bytes: usize,
) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; bytes];
    io.read_exact(&mut buf).await?;
    Ok(buf)
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
        let limit_bytes = self.request_limit_bytes();
        let mut reading = match &self.gate {
            Some(g) => Some(g.open(self.peer)?),
            None => None,
        };
        let buf = read_to_end_reserved(io, limit_bytes, reading.as_mut()).await?;
        if buf.len() > limit_bytes && limit_bytes < self.max_request_bytes {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "a request of more than {limit_bytes} bytes from a peer that is not a \
                     member of this mesh: not read"
                ),
            ));
        }
        decode_limited(&buf, limit_bytes)
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

/// The control protocol's codec. Every request goes behind a header:
/// `[u32 big-endian length][ControlHeader CBOR][ControlRequest CBOR]`. On
/// a node (with a [`PeerGate`]) a request of more than
/// [`MAX_STRANGER_REQUEST_BYTES`] is read only when its header carries a
/// signature by a user key this node trusts, made for this node; a
/// stranger's large request is refused after at most the header's bytes,
/// before its body (issue 14, item 4).
pub struct ControlCodec {
    gate: Option<Arc<PeerGate>>,
    peer: Option<PeerId>,
}

impl ControlCodec {
    /// A codec that checks no header (the CLI's: it only sends requests).
    pub fn new() -> Self {
        ControlCodec {
            gate: None,
            peer: None,
        }
    }

    pub fn gated(gate: Arc<PeerGate>) -> Self {
        ControlCodec {
            gate: Some(gate),
            peer: None,
        }
    }

    /// Most body bytes the header lets in, and whether its signature
    /// vouches for the request (good for this node, by a trusted key).
    fn admit(&self, header: &ControlHeader) -> (usize, bool) {
        let Some(gate) = &self.gate else {
            return (MAX_CONTROL_REQUEST_BYTES, false);
        };
        let vouched = header
            .auth
            .as_ref()
            .is_some_and(|a| gate.is_trusted(&a.user_key) && a.verify_for(&gate.node_key).is_ok());
        match vouched {
            true => (MAX_CONTROL_REQUEST_BYTES, true),
            false => (MAX_STRANGER_REQUEST_BYTES, false),
        }
    }

    /// Why a header does not let its large body in, as the sender hears it.
    fn unread_refusal(&self, header: &ControlHeader, limit_bytes: usize) -> Refusal {
        let bytes = header.body_bytes;
        let node_key = self.gate.as_ref().map(|g| g.node_key);
        match &header.auth {
            Some(a) if node_key.is_some_and(|k| a.verify_for(&k).is_err()) => Refusal::new(
                RefusalCode::Forged,
                format!(
                    "forged or misdirected control request: its header's signature does not \
                     verify for this node; its {bytes} bytes were not read"
                ),
            ),
            Some(a) => Refusal::new(
                RefusalCode::Untrusted,
                format!(
                    "user key {} is not trusted by this node (a trusted user can run `meshnode \
                     trust add {}`); its request of {bytes} bytes was not read",
                    a.user_key, a.user_key
                ),
            ),
            None => Refusal::new(
                RefusalCode::Limit,
                format!(
                    "a control request of {bytes} bytes without a user's signature: at most \
                     {limit_bytes} bytes of one are read"
                ),
            ),
        }
    }

    async fn read_control_request<T>(&self, io: &mut T) -> io::Result<ControlRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut reading = match &self.gate {
            Some(g) => Some(g.open(self.peer)?),
            None => None,
        };
        let mut len = [0u8; 4];
        io.read_exact(&mut len).await?;
        let header_bytes = u32::from_be_bytes(len) as usize;
        if header_bytes > MAX_CONTROL_HEADER_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "control header of {header_bytes} bytes, over the limit of \
                     {MAX_CONTROL_HEADER_BYTES}"
                ),
            ));
        }
        let header: ControlHeader = decode_limited(
            &read_exact_vec(io, header_bytes).await?,
            MAX_CONTROL_HEADER_BYTES,
        )?;
        let (limit_bytes, vouched) = self.admit(&header);
        if header.body_bytes > limit_bytes as u64 {
            // Not read into memory: drained through a small buffer (so
            // that the sender gets to read the answer) and answered with
            // why. A body over the protocol's limit is not even drained.
            if header.body_bytes > MAX_CONTROL_REQUEST_BYTES as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "a control request of {} bytes, over the limit of \
                         {MAX_CONTROL_REQUEST_BYTES}: not read",
                        header.body_bytes
                    ),
                ));
            }
            drain(io, header.body_bytes).await?;
            return Ok(ControlRequest::Unread(
                self.unread_refusal(&header, limit_bytes),
            ));
        }
        let body_bytes = header.body_bytes as usize;
        let body = read_to_end_reserved(io, body_bytes, reading.as_mut()).await?;
        if body.len() != body_bytes {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a control request of {} bytes behind a header that said {body_bytes}",
                    body.len()
                ),
            ));
        }
        let request: ControlRequest = decode_limited(&body, limit_bytes)?;
        if vouched && !header.auth.as_ref().is_some_and(|a| request.matches(a)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the control request is not the one its header's signature vouches for",
            ));
        }
        Ok(request)
    }
}

impl Default for ControlCodec {
    fn default() -> Self {
        ControlCodec::new()
    }
}

impl Clone for ControlCodec {
    fn clone(&self) -> Self {
        ControlCodec {
            gate: self.gate.clone(),
            peer: self.peer.or_else(|| connecting_peer(self.gate.as_ref())),
        }
    }
}

impl libp2p::request_response::Codec for ControlCodec {
    type Protocol = StreamProtocol;
    type Request = ControlRequest;
    type Response = ControlResponse;

    async fn read_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<ControlRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.read_control_request(io).await
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<ControlResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_limited(io, MAX_CONTROL_RESPONSE_BYTES).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: ControlRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let body = encode_limited(&req, MAX_CONTROL_REQUEST_BYTES)?;
        let header = protocol::cbor::encode(&req.header(body.len() as u64));
        let mut bytes = Vec::with_capacity(4 + header.len() + body.len());
        bytes.extend_from_slice(&(header.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&header);
        bytes.extend_from_slice(&body);
        write_all(io, bytes).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: ControlResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let bytes = encode_limited(&res, MAX_CONTROL_RESPONSE_BYTES)?;
        write_all(io, bytes).await
    }
}

/// The membership protocol's codec (issue 19, `mesh::swim`): a request is
/// one `membership::Message` in the crate's own binary encoding (the bytes
/// its simulator counts, not CBOR); the response is empty. The reader
/// reads the first two bytes (version, kind), then at most the kind's
/// limit (`membership::message::limit_of_kind`: a datagram's 1,400 bytes,
/// a sync page's ~39 KiB), reserved through the gate first; on a node it
/// reads nothing at all from a peer that is not a member.
pub struct SwimCodec {
    gate: Option<Arc<PeerGate>>,
    peer: Option<PeerId>,
}

/// Why a membership message was not read (inside the `io::Error` that
/// libp2p reports, so that the event loop can count it by kind).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwimWireError {
    #[error("a membership message from {peer}, which is not a member of this mesh: not read")]
    NotMember { peer: PeerId },
    #[error("a membership message of kind {kind} over its limit of {limit_bytes} bytes: not read")]
    TooLarge { kind: u8, limit_bytes: usize },
    #[error("a membership response of {len} bytes: it is always empty")]
    NotEmpty { len: usize },
}

impl SwimWireError {
    fn into_io(self, kind: io::ErrorKind) -> io::Error {
        io::Error::new(kind, self)
    }

    /// The error inside `e`, when it is one of these.
    pub fn of(e: &io::Error) -> Option<&SwimWireError> {
        e.get_ref()?.downcast_ref::<SwimWireError>()
    }
}

impl SwimCodec {
    /// A codec that reads under `gate` (a node's).
    pub fn gated(gate: Arc<PeerGate>) -> Self {
        SwimCodec {
            gate: Some(gate),
            peer: None,
        }
    }

    /// The limit of a message that starts with `head`'s two bytes.
    fn limit_bytes(head: &[u8]) -> usize {
        membership::message::limit_of_kind(head.get(1).copied().unwrap_or(0))
    }
}

impl Clone for SwimCodec {
    fn clone(&self) -> Self {
        SwimCodec {
            gate: self.gate.clone(),
            peer: self.peer.or_else(|| connecting_peer(self.gate.as_ref())),
        }
    }
}

impl libp2p::request_response::Codec for SwimCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = ();

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        if let (Some(g), Some(p)) = (&self.gate, self.peer) {
            if !g.is_member(&p) {
                let e = SwimWireError::NotMember { peer: p };
                return Err(e.into_io(io::ErrorKind::PermissionDenied));
            }
        }
        let mut reading = match &self.gate {
            Some(g) => Some(g.open(self.peer)?),
            None => None,
        };
        let mut head = [0u8; 2];
        io.read_exact(&mut head).await?;
        let limit_bytes = Self::limit_bytes(&head);
        let rest = read_to_end_reserved(io, limit_bytes - head.len(), reading.as_mut()).await?;
        if head.len() + rest.len() > limit_bytes {
            let e = SwimWireError::TooLarge {
                kind: head[1],
                limit_bytes,
            };
            return Err(e.into_io(io::ErrorKind::InvalidData));
        }
        let mut bytes = head.to_vec();
        bytes.extend_from_slice(&rest);
        Ok(bytes)
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<()>
    where
        T: AsyncRead + Unpin + Send,
    {
        let rest = read_to_end_reserved(io, 0, None).await?;
        match rest.len() {
            0 => Ok(()),
            len => Err(SwimWireError::NotEmpty { len }.into_io(io::ErrorKind::InvalidData)),
        }
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let limit_bytes = Self::limit_bytes(&req);
        if req.len() > limit_bytes {
            let kind = req.get(1).copied().unwrap_or(0);
            let e = SwimWireError::TooLarge { kind, limit_bytes };
            return Err(e.into_io(io::ErrorKind::InvalidInput));
        }
        write_all(io, req).await
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, _: ()) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::request_response::Codec;
    use protocol::control::{Command, RequestBody, SignedRequest, CONTROL_VERSION};
    use protocol::membership::{Nonce, PublicKey};

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

    fn signed(user: &ed25519_dalek::SigningKey, node: PublicKey, bytes: usize) -> ControlRequest {
        ControlRequest::Signed(Box::new(SignedRequest::sign(
            user,
            RequestBody {
                version: CONTROL_VERSION,
                node,
                nonce: Nonce([1; 32]),
                command: Command::Checkpoint {
                    vessel: "x".repeat(bytes),
                },
            },
        )))
    }

    async fn wire(req: ControlRequest) -> Vec<u8> {
        let mut w = Vec::new();
        ControlCodec::new()
            .write_request(&proto(), &mut w, req)
            .await
            .unwrap();
        w
    }

    /// Issue 14, item 4: a control request over the strangers' bound is
    /// read only behind a header signed for this node by a trusted user;
    /// any other is refused having read the header and nothing more.
    #[test]
    fn large_control_requests_need_a_trusted_users_header_first() {
        futures::executor::block_on(async {
            let key = |b| ed25519_dalek::SigningKey::from_bytes(&[b; 32]);
            let (node, other_node) = (PublicKey::of(&key(1)), PublicKey::of(&key(9)));
            let (trusted, stranger) = (key(2), key(3));
            let gate = PeerGate::new(node);
            gate.sync(std::iter::empty(), &[PublicKey::of(&trusted)]);
            let mut codec = ControlCodec::gated(gate);
            let big = 1 << 20;

            let req = signed(&trusted, node, big);
            let w = wire(req.clone()).await;
            assert_eq!(
                codec.read_request(&proto(), &mut &w[..]).await.unwrap(),
                req
            );

            // Refused unread: drained through a small buffer, never
            // buffered whole, and answered with why.
            for (refused, code) in [
                (signed(&stranger, node, big), RefusalCode::Untrusted),
                (signed(&trusted, other_node, big), RefusalCode::Forged),
            ] {
                let w = wire(refused).await;
                match codec.read_request(&proto(), &mut &w[..]).await.unwrap() {
                    ControlRequest::Unread(r) => {
                        assert_eq!(r.code, code, "{r}");
                        assert!(r.detail.contains("not read"), "{r}");
                    }
                    other => panic!("read a refused request: {other:?}"),
                }
            }
            // A header that claims more than the protocol's limit: not
            // even drained.
            let mut claim = wire(signed(&stranger, node, 10)).await;
            let header_bytes = 4 + u32::from_be_bytes(claim[..4].try_into().unwrap()) as usize;
            let mut header: ControlHeader =
                protocol::cbor::decode(&claim[4..header_bytes]).unwrap();
            header.body_bytes = MAX_CONTROL_REQUEST_BYTES as u64 + 1;
            let h = protocol::cbor::encode(&header);
            claim = [&(h.len() as u32).to_be_bytes()[..], &h].concat();
            assert!(codec.read_request(&proto(), &mut &claim[..]).await.is_err());
            // Small requests are read from anyone (a challenge, a join, a
            // stranger's small command, refused later by the server).
            let small = signed(&stranger, node, 100);
            let w = wire(small.clone()).await;
            assert_eq!(
                codec.read_request(&proto(), &mut &w[..]).await.unwrap(),
                small
            );
            let w = wire(ControlRequest::Challenge).await;
            assert_eq!(
                codec.read_request(&proto(), &mut &w[..]).await.unwrap(),
                ControlRequest::Challenge
            );
            // A header that vouches for another body than the one behind it.
            let (a, b) = (signed(&trusted, node, big), signed(&trusted, node, big + 1));
            let (wa, wb) = (wire(a).await, wire(b).await);
            let header_bytes = 4 + u32::from_be_bytes(wa[..4].try_into().unwrap()) as usize;
            let mut spliced = wa[..header_bytes].to_vec();
            spliced.extend_from_slice(&wb[header_bytes..wa.len()]);
            assert!(codec
                .read_request(&proto(), &mut &spliced[..])
                .await
                .is_err());
        });
    }

    /// A vessel-protocol request over the strangers' bound is read only
    /// from a member; every read counts against its peer's streams.
    #[test]
    fn large_vessel_requests_are_read_from_members_only() {
        futures::executor::block_on(async {
            let gate = PeerGate::new(PublicKey([0; 32]));
            let (member, stranger) = (PeerId::random(), PeerId::random());
            gate.sync([member].iter(), &[]);
            let codec = CborCodec::<Vec<u8>, ()>::new(1 << 24, 16).gated(gate.clone(), true);
            let for_peer = |p| CborCodec {
                peer: Some(p),
                ..codec.clone()
            };
            let big = protocol::cbor::encode(&vec![7u8; 1 << 20]);
            let got = for_peer(member)
                .read_request(&proto(), &mut &big[..])
                .await
                .unwrap();
            assert_eq!(got.len(), 1 << 20);
            let mut rest = &big[..];
            let err = for_peer(stranger)
                .read_request(&proto(), &mut rest)
                .await
                .unwrap_err();
            assert!(err.to_string().contains("not a member"), "{err}");
            assert!(big.len() - rest.len() <= MAX_STRANGER_REQUEST_BYTES + 1);
        });
    }

    /// The membership protocol's reader: a datagram kind over 1,400
    /// bytes and a sync page over its own limit are refused by kind, with
    /// the limit; a stranger's message is refused before a byte is read.
    #[test]
    fn membership_messages_are_bounded_by_kind_and_read_from_members_only() {
        use membership::limits::{MAX_DATAGRAM_BYTES, MAX_SYNC_BYTES};
        futures::executor::block_on(async {
            let gate = PeerGate::new(PublicKey([0; 32]));
            let (member, stranger) = (PeerId::random(), PeerId::random());
            gate.sync([member].iter(), &[]);
            let for_peer = |p| SwimCodec {
                peer: Some(p),
                ..SwimCodec::gated(gate.clone())
            };
            let ping = |len: usize| {
                let mut m = membership::Message::Ping {
                    seq: 1,
                    gossip: vec![],
                }
                .encode();
                m.resize(len, 0);
                m
            };
            let ok = ping(MAX_DATAGRAM_BYTES);
            let got = for_peer(member)
                .read_request(&proto(), &mut &ok[..])
                .await
                .unwrap();
            assert_eq!(got, ok);
            let over = ping(MAX_DATAGRAM_BYTES + 1);
            let err = for_peer(member)
                .read_request(&proto(), &mut &over[..])
                .await
                .unwrap_err();
            assert_eq!(
                SwimWireError::of(&err),
                Some(&SwimWireError::TooLarge {
                    kind: over[1],
                    limit_bytes: MAX_DATAGRAM_BYTES
                })
            );
            let page = membership::Message::SyncResponse {
                until: None,
                entries: vec![],
                next: None,
            }
            .encode();
            let mut big_page = page.clone();
            big_page.resize(MAX_SYNC_BYTES, 0);
            let got = for_peer(member)
                .read_request(&proto(), &mut &big_page[..])
                .await
                .unwrap();
            assert_eq!(got.len(), MAX_SYNC_BYTES);
            big_page.push(0);
            let err = for_peer(member)
                .read_request(&proto(), &mut &big_page[..])
                .await
                .unwrap_err();
            assert!(err.to_string().contains("over its limit"), "{err}");
            let mut rest = &ok[..];
            let err = for_peer(stranger)
                .read_request(&proto(), &mut rest)
                .await
                .unwrap_err();
            assert!(matches!(
                SwimWireError::of(&err),
                Some(SwimWireError::NotMember { .. })
            ));
            assert_eq!(rest.len(), ok.len(), "nothing read from a stranger");
            // The writer refuses what the reader would.
            let err = for_peer(member)
                .write_request(&proto(), &mut Vec::new(), over)
                .await
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        });
    }
}
