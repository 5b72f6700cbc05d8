//! The little of MQTT 3.1.1 Bulkhead needs (OASIS MQTT 3.1.1, sections 2–3):
//! CONNECT with a last will, CONNACK, PUBLISH at QoS 0 (retained or not),
//! SUBSCRIBE at QoS 0, PINGREQ. Hand-written rather than a client crate: it
//! is ~200 lines against a broker on the home network, and the router's flash
//! budget counts every dependency. The codec is PURE; [`Connection`] is the
//! socket.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

/// What the connection runs over: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The reading half of a connection.
pub type Reader = ReadHalf<Box<dyn Stream>>;
/// The writing half of a connection.
pub type Writer = WriteHalf<Box<dyn Stream>>;

/// Largest packet read from the broker (we subscribe to one small topic).
const MAX_PACKET: usize = 64 * 1024;

/// MQTT errors.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The broker refused the connection (CONNACK return code).
    #[error("the broker refused the connection (code {code}: {})", refusal(*.code))]
    Refused {
        /// The CONNACK return code.
        code: u8,
    },
    /// The broker sent something that is not MQTT.
    #[error("malformed packet from the broker: {0}")]
    Malformed(&'static str),
    /// No answer in time.
    #[error("no answer from the broker within {0} s")]
    Timeout(u64),
    /// TLS could not be set up or the broker's certificate was refused.
    #[error("TLS: {0}")]
    Tls(String),
}

fn refusal(code: u8) -> &'static str {
    match code {
        1 => "unacceptable protocol version",
        2 => "client identifier rejected",
        3 => "server unavailable",
        4 => "bad user name or password",
        5 => "not authorized",
        _ => "unknown",
    }
}

/// The CONNECT's contents.
#[derive(Debug, Clone)]
pub struct Connect<'a> {
    /// Client identifier.
    pub client_id: &'a str,
    /// Seconds between our packets at most (we ping at a third of it).
    pub keep_alive: u16,
    /// Retained last will: topic and payload.
    pub will: (&'a str, &'a str),
    /// User name.
    pub username: Option<&'a str>,
    /// Password.
    pub password: Option<&'a [u8]>,
}

fn remaining_length(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    // Topics and ids here are ours and short; a longer one is cut at the limit.
    let len = s.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&s[..len]);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    remaining_length(&mut out, body.len());
    out.extend_from_slice(body);
    out
}

/// PURE: a CONNECT packet (clean session, retained will at QoS 0).
pub fn connect(c: &Connect<'_>) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    let mut flags = 0x02 | 0x04 | 0x20; // clean session, will, will retain
    if c.username.is_some() {
        flags |= 0x80;
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    body.push(flags);
    body.extend_from_slice(&c.keep_alive.to_be_bytes());
    string(&mut body, c.client_id.as_bytes());
    string(&mut body, c.will.0.as_bytes());
    string(&mut body, c.will.1.as_bytes());
    if let Some(u) = c.username {
        string(&mut body, u.as_bytes());
    }
    if let Some(p) = c.password {
        string(&mut body, p);
    }
    packet(0x10, &body)
}

/// PURE: a QoS 0 PUBLISH.
pub fn publish(topic: &str, payload: &[u8], retain: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(topic.len() + payload.len() + 2);
    string(&mut body, topic.as_bytes());
    body.extend_from_slice(payload);
    packet(0x30 | u8::from(retain), &body)
}

/// PURE: a SUBSCRIBE of one filter at QoS 0.
pub fn subscribe(packet_id: u16, filter: &str) -> Vec<u8> {
    let mut body = packet_id.to_be_bytes().to_vec();
    string(&mut body, filter.as_bytes());
    body.push(0);
    packet(0x82, &body)
}

/// PINGREQ.
pub const PINGREQ: [u8; 2] = [0xc0, 0x00];

/// A packet from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// CONNACK with its return code.
    ConnAck(u8),
    /// A message on a subscribed topic.
    Publish {
        /// Topic.
        topic: String,
        /// Payload.
        payload: Vec<u8>,
    },
    /// Anything else (SUBACK, PINGRESP…).
    Other(u8),
}

/// PURE: one packet's type byte and body.
pub fn decode(first: u8, body: &[u8]) -> Result<Incoming, MqttError> {
    match first >> 4 {
        2 => {
            let code = *body.get(1).ok_or(MqttError::Malformed("short CONNACK"))?;
            Ok(Incoming::ConnAck(code))
        }
        3 => {
            let len = usize::from(u16::from_be_bytes([
                *body.first().ok_or(MqttError::Malformed("short PUBLISH"))?,
                *body.get(1).ok_or(MqttError::Malformed("short PUBLISH"))?,
            ]));
            let topic = body
                .get(2..2 + len)
                .ok_or(MqttError::Malformed("PUBLISH topic past its end"))?;
            let qos = (first >> 1) & 3;
            let start = 2 + len + if qos > 0 { 2 } else { 0 };
            let payload = body.get(start..).ok_or(MqttError::Malformed("PUBLISH payload"))?;
            Ok(Incoming::Publish {
                topic: String::from_utf8_lossy(topic).into_owned(),
                payload: payload.to_vec(),
            })
        }
        t => Ok(Incoming::Other(t)),
    }
}

/// A connection to the broker.
pub struct Connection {
    stream: Box<dyn Stream>,
}

/// TLS to the broker: the client config (CAs) and the name its certificate
/// must carry (a host name or an IP address).
pub struct Tls {
    /// The CAs.
    pub config: Arc<rustls::ClientConfig>,
    /// The broker's name, as in its certificate.
    pub server: String,
}

impl Connection {
    /// Connects (over TLS with `tls`), sends CONNECT and waits for a CONNACK
    /// that accepts.
    pub async fn open(broker: &str, tls: Option<&Tls>, c: &Connect<'_>) -> Result<Connection, MqttError> {
        let wait = 10;
        let tcp = tokio::time::timeout(Duration::from_secs(wait), TcpStream::connect(broker))
            .await
            .map_err(|_| MqttError::Timeout(wait))??;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = match tls {
            None => Box::new(tcp),
            Some(t) => {
                let name = rustls::pki_types::ServerName::try_from(t.server.clone())
                    .map_err(|e| MqttError::Tls(format!("`{}`: {e}", t.server.escape_debug())))?;
                let handshake = tokio_rustls::TlsConnector::from(t.config.clone()).connect(name, tcp);
                let stream = tokio::time::timeout(Duration::from_secs(wait), handshake)
                    .await
                    .map_err(|_| MqttError::Timeout(wait))?
                    .map_err(|e| MqttError::Tls(e.to_string()))?;
                Box::new(stream)
            }
        };
        let mut conn = Connection { stream };
        conn.send(&connect(c)).await?;
        let answer = tokio::time::timeout(Duration::from_secs(wait), conn.read())
            .await
            .map_err(|_| MqttError::Timeout(wait))??;
        match answer {
            Incoming::ConnAck(0) => Ok(conn),
            Incoming::ConnAck(code) => Err(MqttError::Refused { code }),
            _ => Err(MqttError::Malformed("expected CONNACK")),
        }
    }

    /// Writes one packet.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), MqttError> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Reads one packet (cancel-safe only between packets: call it in a loop
    /// that does nothing else with the stream while it waits).
    pub async fn read(&mut self) -> Result<Incoming, MqttError> {
        let first = self.stream.read_u8().await?;
        let mut len = 0usize;
        for i in 0..4 {
            let b = self.stream.read_u8().await?;
            len |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                break;
            }
            if i == 3 {
                return Err(MqttError::Malformed("remaining length over 4 bytes"));
            }
        }
        if len > MAX_PACKET {
            return Err(MqttError::Malformed("packet larger than 64 KiB"));
        }
        let mut body = vec![0; len];
        self.stream.read_exact(&mut body).await?;
        decode(first, &body)
    }

    /// The connection, split for reading in one task branch and writing in
    /// another.
    pub fn into_split(self) -> (Reader, Writer) {
        tokio::io::split(self.stream)
    }
}

/// Reads one packet from a read half.
pub async fn read_packet(r: &mut Reader) -> Result<Incoming, MqttError> {
    let first = r.read_u8().await?;
    let mut len = 0usize;
    for i in 0..4 {
        let b = r.read_u8().await?;
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(MqttError::Malformed("remaining length over 4 bytes"));
        }
    }
    if len > MAX_PACKET {
        return Err(MqttError::Malformed("packet larger than 64 KiB"));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    decode(first, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_laid_out_as_the_standard_says() {
        // PUBLISH "a/b" "hi", retained: 0x31, length 7, 00 03 'a' '/' 'b', 'h' 'i'.
        assert_eq!(
            publish("a/b", b"hi", true),
            [0x31, 7, 0, 3, b'a', b'/', b'b', b'h', b'i']
        );
        // A 200-byte payload needs two length bytes (203 = 0xcb 0x01).
        let long = publish("t", &[0; 200], false);
        assert_eq!(&long[..3], &[0x30, 0xcb, 0x01]);
        let c = connect(&Connect {
            client_id: "bh",
            keep_alive: 60,
            will: ("bulkhead/status", "offline"),
            username: Some("u"),
            password: Some(b"p"),
        });
        assert_eq!(c[0], 0x10);
        assert_eq!(&c[2..8], &[0, 4, b'M', b'Q', b'T', b'T']);
        assert_eq!(c[8], 4, "3.1.1");
        assert_eq!(c[9], 0x80 | 0x40 | 0x20 | 0x04 | 0x02);
        assert_eq!(subscribe(1, "x"), [0x82, 6, 0, 1, 0, 1, b'x', 0]);
    }

    #[test]
    fn broker_packets_decode_and_lies_are_errors() {
        assert_eq!(decode(0x20, &[0, 0]).expect("connack"), Incoming::ConnAck(0));
        assert_eq!(
            decode(0x30, &[0, 1, b't', b'o', b'n']).expect("publish"),
            Incoming::Publish {
                topic: "t".into(),
                payload: b"on".to_vec()
            }
        );
        assert!(decode(0x30, &[0, 9, b't']).is_err());
        assert!(decode(0x20, &[]).is_err());
        assert_eq!(decode(0xd0, &[]).expect("pingresp"), Incoming::Other(13));
    }
}
