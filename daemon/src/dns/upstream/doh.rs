//! DNS over HTTPS (RFC 8484): the question POSTed as `application/dns-message`
//! over HTTP/2 (ALPN `h2`; servers such as unbound serve DoH over HTTP/2
//! only), on one connection per upstream that every question shares (h2
//! multiplexes). The wire id is 0 (RFC 8484 §4.1: cache friendly); the
//! answer must still carry that id and the question asked.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Uri};

use hickory_proto::op::{Message, MessageType, OpCode};

use crate::config::Upstream;

/// The media type of a DNS message (RFC 8484 §6).
pub const DNS_MESSAGE: &str = "application/dns-message";
/// The largest answer accepted (a DNS message's own limit).
pub const MAX_ANSWER: usize = 65_535;

/// The question on the wire with id 0.
pub fn wire(bytes: &[u8]) -> Bytes {
    let mut out = bytes.to_vec();
    if let Some(id) = out.get_mut(..2) {
        id.copy_from_slice(&[0, 0]);
    }
    Bytes::from(out)
}

/// The URI of `up`: its name (else address), the port unless 443, the path.
pub fn uri(up: &Upstream) -> Result<Uri, String> {
    let host = match (&up.name, up.addr.ip()) {
        (Some(name), _) => name.clone(),
        (None, std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
        (None, ip) => ip.to_string(),
    };
    let port = match up.addr.port() {
        443 => String::new(),
        p => format!(":{p}"),
    };
    let path = up.path.as_deref().unwrap_or("/dns-query");
    format!("https://{host}{port}{path}")
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())
}

/// The POST of `wire` to `uri`.
pub fn request(uri: &Uri, wire: Bytes) -> Result<Request<Full<Bytes>>, String> {
    Request::post(uri.clone())
        .header(hyper::header::CONTENT_TYPE, DNS_MESSAGE)
        .header(hyper::header::ACCEPT, DNS_MESSAGE)
        .body(Full::new(wire))
        .map_err(|e| e.to_string())
}

/// Why an HTTP answer is not a DNS answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Not 200.
    #[error("HTTP status {0}")]
    Status(u16),
    /// Another media type.
    #[error("content type `{0}`, not {DNS_MESSAGE}")]
    ContentType(String),
    /// Not the answer to the question (or not DNS at all).
    #[error("the body is not the answer to the question")]
    NotTheAnswer,
}

/// Checks the status and media type of an HTTP answer.
pub fn check_head(status: u16, content_type: Option<&str>) -> Result<(), AnswerError> {
    if status != 200 {
        return Err(AnswerError::Status(status));
    }
    let media = content_type.unwrap_or_default();
    let base = media.split(';').next().unwrap_or_default().trim();
    if !base.eq_ignore_ascii_case(DNS_MESSAGE) {
        return Err(AnswerError::ContentType(media.escape_debug().to_string()));
    }
    Ok(())
}

/// The answer in `body` to `query` sent with id 0: a response with id 0 and
/// the same question; given back with the query's own id.
pub fn answer(query: &Message, body: &[u8]) -> Result<Message, AnswerError> {
    let mut answer = Message::from_vec(body).map_err(|_| AnswerError::NotTheAnswer)?;
    let same_question = match (answer.queries.first(), query.queries.first()) {
        (Some(a), Some(q)) => {
            a.query_type() == q.query_type() && a.query_class() == q.query_class() && a.name() == q.name()
        }
        _ => false,
    };
    let ok = answer.metadata.id == 0
        && answer.metadata.message_type == MessageType::Response
        && answer.metadata.op_code == OpCode::Query
        && same_question;
    if !ok {
        return Err(AnswerError::NotTheAnswer);
    }
    answer.metadata.id = query.metadata.id;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_upstream;
    use hickory_proto::rr::RecordType;

    fn question(name: &str, id: u16) -> Message {
        super::super::bootstrap::question(name, RecordType::A, id).expect("question")
    }

    #[test]
    fn the_uri_names_the_server_and_path() {
        let cases = [
            (
                "https://dns.example.test/dns-query",
                "https://dns.example.test/dns-query",
            ),
            (
                "https://dns.example.test:8443",
                "https://dns.example.test:8443/dns-query",
            ),
            ("https://192.0.2.53#dns.example.test/q", "https://dns.example.test/q"),
            ("https://[2001:db8::53]:8443/q", "https://[2001:db8::53]:8443/q"),
        ];
        for (text, want) in cases {
            let up = parse_upstream(text).expect("parses");
            assert_eq!(uri(&up).expect("uri").to_string(), want, "{text}");
        }
    }

    #[test]
    fn the_request_is_a_post_of_the_message_with_id_0() {
        let q = question("www.example.test", 4242);
        let bytes = q.to_vec().expect("encodes");
        let body = wire(&bytes);
        assert_eq!(&body[..2], &[0, 0]);
        assert_eq!(&body[2..], &bytes[2..]);
        let up = parse_upstream("https://dns.example.test/dns-query").expect("parses");
        let r = request(&uri(&up).expect("uri"), body).expect("request");
        assert_eq!(r.method(), hyper::Method::POST);
        assert_eq!(r.headers()[hyper::header::CONTENT_TYPE], DNS_MESSAGE);
        assert_eq!(r.headers()[hyper::header::ACCEPT], DNS_MESSAGE);
    }

    #[test]
    fn only_the_answer_to_the_question_with_id_0_is_taken() {
        let q = question("www.example.test", 4242);
        let mut reply = question("www.example.test", 0);
        reply.metadata.message_type = MessageType::Response;
        let got = answer(&q, &reply.to_vec().expect("encodes")).expect("the answer");
        assert_eq!(got.metadata.id, 4242, "given back with the query's id");
        let mut other_id = reply.clone();
        other_id.metadata.id = 7;
        assert_eq!(
            answer(&q, &other_id.to_vec().expect("encodes")).err(),
            Some(AnswerError::NotTheAnswer)
        );
        let mut other_name = question("evil.example.test", 0);
        other_name.metadata.message_type = MessageType::Response;
        assert_eq!(
            answer(&q, &other_name.to_vec().expect("encodes")).err(),
            Some(AnswerError::NotTheAnswer)
        );
        let not_a_response = question("www.example.test", 0);
        assert!(answer(&q, &not_a_response.to_vec().expect("encodes")).is_err());
        assert!(answer(&q, b"<html>").is_err());
    }

    #[test]
    fn the_head_must_be_200_and_a_dns_message() {
        assert_eq!(check_head(200, Some("application/dns-message")), Ok(()));
        assert_eq!(check_head(200, Some("Application/DNS-Message; charset=x")), Ok(()));
        assert_eq!(check_head(404, Some(DNS_MESSAGE)), Err(AnswerError::Status(404)));
        assert!(matches!(
            check_head(200, Some("text/html")),
            Err(AnswerError::ContentType(_))
        ));
        assert!(matches!(check_head(200, None), Err(AnswerError::ContentType(_))));
    }
}
