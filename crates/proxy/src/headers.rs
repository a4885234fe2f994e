//! Header rewriting between client and backend: hop-by-hop removal, `X-Forwarded-*`,
//! `X-Request-Id`, and host normalization for routing.
//!
//! Everything here runs for every request, so it avoids allocating unless the request makes it
//! necessary (an existing `X-Forwarded-For`, extension tokens in `Connection`, an uppercase
//! host name).

use http::header::{HeaderName, HeaderValue, CONNECTION, EXPECT, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::HeaderMap;
use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The host a request is for, normalized for routing: no port, no trailing dot, lowercase.
/// Absolute-form request targets win over the `Host` header, as RFC 9112 says.
pub(crate) fn routing_host<'a>(uri: &'a http::Uri, headers: &'a HeaderMap) -> Option<Cow<'a, str>> {
    let raw = match uri.host() {
        Some(host) => host,
        None => headers.get(HOST)?.to_str().ok()?,
    };
    let host = strip_port(raw).trim_end_matches('.');
    if host.is_empty() {
        return None;
    }
    match host.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Some(Cow::Owned(host.to_ascii_lowercase())),
        false => Some(Cow::Borrowed(host)),
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal keeps its brackets: `[::1]:8080` routes as `[::1]`.
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether the client asks to switch protocols (WebSocket and the like); returns the protocol.
pub(crate) fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let upgrade = headers.get(UPGRADE)?;
    connection_tokens(headers).any(|t| t.eq_ignore_ascii_case("upgrade")).then(|| upgrade.clone())
}

fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Headers that must not cross the proxy, as bits: the hop-by-hop ones (RFC 9110 §7.6.1) and
/// `Expect`, which the proxy answers itself.
const HOP_CONNECTION: u8 = 1;
const HOP_EXPECT: u8 = 1 << 7;

fn hop_bit(name: &HeaderName) -> u8 {
    // Most headers are none of these; standard names compare as enum tags, custom ones by bytes.
    if name == CONNECTION {
        HOP_CONNECTION
    } else if name == TRANSFER_ENCODING {
        1 << 1
    } else if name == UPGRADE {
        1 << 2
    } else if name == TE {
        1 << 3
    } else if name == TRAILER {
        1 << 4
    } else if name == KEEP_ALIVE {
        1 << 5
    } else if name == PROXY_CONNECTION {
        1 << 6
    } else if name == EXPECT {
        HOP_EXPECT
    } else {
        0
    }
}

fn hop_name(bit: u8) -> &'static HeaderName {
    match bit {
        HOP_CONNECTION => &CONNECTION,
        0b10 => &TRANSFER_ENCODING,
        0b100 => &UPGRADE,
        0b1000 => &TE,
        0b1_0000 => &TRAILER,
        0b10_0000 => &KEEP_ALIVE,
        0b100_0000 => &PROXY_CONNECTION,
        _ => &EXPECT,
    }
}

/// Removes the headers in `remove` (a set of bits from [`hop_bit`]) and those the `Connection`
/// header names. One pass over the map finds them, so the common case (none present, or only
/// `Connection: keep-alive`) costs no hash lookups beyond the removals themselves.
fn remove_hop_by_hop(headers: &mut HeaderMap, remove: u8) {
    let found = headers.keys().fold(0, |found, name| found | hop_bit(name)) & remove;
    if found == 0 {
        return;
    }
    if found & HOP_CONNECTION != 0 {
        let named: Vec<HeaderName> = connection_tokens(headers)
            .filter(|t| !t.eq_ignore_ascii_case("close") && !t.eq_ignore_ascii_case("keep-alive"))
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    for shift in 0..8 {
        let bit = 1u8 << shift;
        if found & bit != 0 {
            headers.remove(hop_name(bit));
        }
    }
}

/// What the proxy knows about the client connection, computed once per connection.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    /// The client's IP address, ready to be appended to `X-Forwarded-For`.
    pub ip: HeaderValue,
}

/// Turns the client's request headers into the backend's.
///
/// `upgrade` is the protocol from [`requested_upgrade`], kept across the hop.
pub(crate) fn to_upstream(
    headers: &mut HeaderMap,
    client: &Client,
    request_id: &HeaderValue,
    upgrade: Option<&HeaderValue>,
    authority: Option<&http::uri::Authority>,
) {
    // The proxy answers `Expect: 100-continue` itself when it starts reading the body.
    remove_hop_by_hop(headers, u8::MAX);
    // Room for the headers added below at once, rather than growing the map twice.
    headers.reserve(6);
    if let Some(protocol) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol.clone());
    }
    append_forwarded_for(headers, &client.ip);
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    let forwarded_host = match headers.get(HOST) {
        Some(host) => Some(host.clone()),
        None => authority.and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
    };
    if let Some(host) = forwarded_host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
}

fn append_forwarded_for(headers: &mut HeaderMap, ip: &HeaderValue) {
    let mut previous = headers.get_all(&X_FORWARDED_FOR).iter().peekable();
    if previous.peek().is_none() {
        headers.insert(X_FORWARDED_FOR.clone(), ip.clone());
        return;
    }
    let mut joined = Vec::with_capacity(64);
    for value in previous {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(ip.as_bytes());
    // Both halves were valid header values and ", " is too, so the join is one.
    let value = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)).expect("joined header values are valid");
    headers.insert(X_FORWARDED_FOR.clone(), value);
}

/// Turns the backend's response headers into the client's. A `101 Switching Protocols` keeps
/// `Connection` and `Upgrade`: they are the point of it.
pub(crate) fn to_downstream(headers: &mut HeaderMap, switching_protocols: bool, request_id: &HeaderValue) {
    let upgrade = match switching_protocols {
        true => headers.get(UPGRADE).cloned(),
        false => None,
    };
    remove_hop_by_hop(headers, !HOP_EXPECT);
    if let Some(protocol) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol);
    }
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
}

/// Makes request ids that are unique across processes and restarts: a random per-process
/// prefix and a counter, e.g. `3f9c1a02b7e4-1a`.
#[derive(Debug)]
pub(crate) struct RequestIds {
    prefix: [u8; 12],
    counter: AtomicU64,
}

impl RequestIds {
    pub fn new() -> Self {
        // `RandomState` is seeded from the operating system's randomness; the time and pid
        // only make distinct processes differ even if that seeding were weak.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        hasher.write_u128(since_epoch.as_nanos());
        let seed = hasher.finish();
        let mut prefix = [0u8; 12];
        for (i, byte) in prefix.iter_mut().enumerate() {
            *byte = hex_digit(seed >> (60 - 4 * i));
        }
        Self { prefix, counter: AtomicU64::new(1) }
    }

    /// The client's id if it sent a usable one, else a new one.
    pub fn for_request(&self, headers: &HeaderMap) -> HeaderValue {
        match headers.get(&X_REQUEST_ID) {
            Some(id) if !id.is_empty() && id.len() <= 200 => id.clone(),
            _ => self.next(),
        }
    }

    pub fn next(&self) -> HeaderValue {
        let n = self.counter.fetch_add(1, Relaxed);
        let mut buf = [0u8; 12 + 1 + 16];
        buf[..12].copy_from_slice(&self.prefix);
        buf[12] = b'-';
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1) as usize;
        for i in 0..digits {
            buf[13 + i] = hex_digit(n >> (4 * (digits - 1 - i)));
        }
        HeaderValue::from_bytes(&buf[..13 + digits]).expect("hex digits and '-' are a valid header value")
    }
}

fn hex_digit(nibble: u64) -> u8 {
    b"0123456789abcdef"[(nibble & 0xf) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            map.append(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn render(map: &HeaderMap) -> String {
        let mut lines: Vec<String> = map.iter().map(|(k, v)| format!("{k}: {}", v.to_str().unwrap())).collect();
        lines.sort();
        lines.join("\n")
    }

    /// Runs request headers through [`to_upstream`] from client 10.0.0.9 with request id `rid`.
    fn check_upstream(input: &[(&str, &str)], expected: &str) {
        let mut map = headers(input);
        let upgrade = requested_upgrade(&map);
        let client = Client { ip: HeaderValue::from_static("10.0.0.9") };
        to_upstream(&mut map, &client, &HeaderValue::from_static("rid"), upgrade.as_ref(), None);
        assert_eq!(render(&map), expected.trim(), "input: {input:?}");
    }

    #[test]
    fn upstream_headers_get_forwarded_fields() {
        check_upstream(
            &[("host", "a.localhost:8080"), ("accept", "*/*")],
            "
accept: */*
host: a.localhost:8080
x-forwarded-for: 10.0.0.9
x-forwarded-host: a.localhost:8080
x-forwarded-proto: http
x-request-id: rid",
        );
        check_upstream(
            &[
                ("host", "a"),
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2"),
                ("x-forwarded-proto", "https"),
            ],
            "
host: a
x-forwarded-for: 1.1.1.1, 2.2.2.2, 10.0.0.9
x-forwarded-host: a
x-forwarded-proto: http
x-request-id: rid",
        );
    }

    #[test]
    fn upstream_headers_drop_hop_by_hop_and_keep_upgrade() {
        check_upstream(
            &[
                ("host", "a"),
                ("connection", "keep-alive, x-secret"),
                ("keep-alive", "timeout=5"),
                ("x-secret", "1"),
                ("te", "trailers"),
                ("transfer-encoding", "chunked"),
                ("expect", "100-continue"),
                ("upgrade", "h2c"),
            ],
            "
host: a
x-forwarded-for: 10.0.0.9
x-forwarded-host: a
x-forwarded-proto: http
x-request-id: rid",
        );
        check_upstream(
            &[("host", "a"), ("connection", "Upgrade"), ("upgrade", "websocket"), ("sec-websocket-key", "k")],
            "
connection: upgrade
host: a
sec-websocket-key: k
upgrade: websocket
x-forwarded-for: 10.0.0.9
x-forwarded-host: a
x-forwarded-proto: http
x-request-id: rid",
        );
    }

    #[test]
    fn downstream_headers_keep_upgrade_only_when_switching() {
        let input = [("connection", "upgrade"), ("upgrade", "websocket"), ("content-type", "text/plain")];
        let id = HeaderValue::from_static("rid");
        let mut switching = headers(&input);
        to_downstream(&mut switching, true, &id);
        assert_eq!(
            render(&switching),
            "connection: upgrade\ncontent-type: text/plain\nupgrade: websocket\nx-request-id: rid"
        );
        let mut plain = headers(&input);
        to_downstream(&mut plain, false, &id);
        assert_eq!(render(&plain), "content-type: text/plain\nx-request-id: rid");
    }

    #[test]
    fn routing_host_strips_port_and_case() {
        let table = [
            ("a.localhost", Some("a.localhost")),
            ("A.LocalHost:8080", Some("a.localhost")),
            ("a.localhost.", Some("a.localhost")),
            ("[::1]:80", Some("[::1]")),
            ("127.0.0.1:9", Some("127.0.0.1")),
            (":80", None),
            ("", None),
        ];
        for (host, expected) in table {
            let map = headers(&[("host", host)]);
            let uri = http::Uri::from_static("/");
            assert_eq!(routing_host(&uri, &map).as_deref(), expected, "{host:?}");
        }
        let uri = http::Uri::from_static("http://B.localhost:1/x");
        assert_eq!(routing_host(&uri, &headers(&[("host", "other")])).as_deref(), Some("b.localhost"));
        assert_eq!(routing_host(&http::Uri::from_static("/"), &HeaderMap::new()), None);
    }

    #[test]
    fn request_ids_are_unique_and_incoming_ones_kept() {
        let ids = RequestIds::new();
        let first = ids.next();
        let second = ids.next();
        assert_ne!(first, second);
        let text = first.to_str().unwrap();
        assert_eq!(text.len(), 14, "{text}");
        assert!(text.ends_with("-1"), "{text}");
        assert!(RequestIds::new().next() != first, "two processes share a prefix");
        let incoming = headers(&[("x-request-id", "abc")]);
        assert_eq!(ids.for_request(&incoming), "abc");
        assert_ne!(ids.for_request(&headers(&[("x-request-id", "")])), "");
    }
}
