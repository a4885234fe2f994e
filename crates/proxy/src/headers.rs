//! The request head's check, and header rewriting between client and backend: hop-by-hop
//! removal, `X-Forwarded-*`, `X-Request-Id`, and host normalization for routing.
//!
//! [`check_request`] refuses, before routing, the heads that the proxy and a backend could read
//! as different requests (RFC 9112 §3.2, §6): no `Host` on HTTP/1.1, more than one, one that is
//! not `host[:port]`; a transfer coding other than one `chunked`; `CONNECT`. For an absolute-form
//! target (`GET http://a.localhost/ HTTP/1.1`) the URI's authority is the host: it routes the
//! request, and replaces `Host` (and so `X-Forwarded-Host`) on the way to the backend.
//!
//! What hyper already refuses with 400 before a request reaches the proxy, each proven by a test
//! in `tests/proxy.rs`: differing `Content-Length`s or one that is not digits, `Transfer-Encoding`
//! whose last coding is not `chunked` or on HTTP/1.0, control characters (NUL, DEL, a bare CR)
//! in field values, whitespace before the colon, obsolete line folding, and names that are not
//! tokens. A repeated identical `Content-Length` reaches the proxy once; with both
//! `Content-Length` and `Transfer-Encoding`, hyper frames the body by the latter, drops the
//! former and closes the connection after the response, so nothing can be smuggled behind it.
//!
//! The proxy is the edge: clients reach it directly, so nothing a client says about the hops
//! before it is trusted. `X-Forwarded-For`, `-Proto` and `-Host` are overwritten, not appended
//! to; `Forwarded`, `X-Real-IP` and the other proxy-set headers frameworks read
//! ([`CLIENT_MAY_NOT_SET`]) are removed. So is every request header whose name contains `_`,
//! as nginx does by default (`underscores_in_headers off`): CGI and WSGI servers, PHP and Rack
//! map `-` and `_` to the same variable, so `X_Real_IP` would reach the app as the
//! `HTTP_X_REAL_IP` the proxy removed, or join `X-Forwarded-For` as `HTTP_X_FORWARDED_FOR`.
//! A client's `X-Request-Id` is kept when it is short and made of safe characters (so logs can
//! follow a request across the caller's systems), and replaced otherwise. The `Host` the
//! backend gets is set after the headers named in `Connection` are removed, so
//! `Connection: host` cannot strip it.
//!
//! Everything here runs for every request, so it avoids allocating unless the request makes it
//! necessary (an absolute-form target, extension tokens in `Connection`, a header name with
//! `_`, an uppercase host name); checking `Host` costs one copy of it, which
//! `http::uri::Authority` parses.

use crate::error::BadHead;
use http::header::{HeaderName, HeaderValue, CONNECTION, EXPECT, HOST, TE, TRAILER, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, Method, Uri, Version};
use std::borrow::Cow;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub(crate) static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub(crate) static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Checks a request head before routing, and returns the value the backend gets as `Host`: the
/// absolute-form target's authority if there is one, else the client's `Host`.
pub(crate) fn check_request(
    version: Version,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<HeaderValue, BadHead> {
    if method == Method::CONNECT {
        return Err(BadHead::Connect);
    }
    check_transfer_encoding(headers)?;
    let mut hosts = headers.get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(BadHead::DuplicateHost);
    }
    // An empty `Host` is what a client sends for a URI without an authority: well-formed, but
    // nothing to route by unless the target names the host.
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        if !is_authority(host.as_bytes()) {
            return Err(BadHead::InvalidHost);
        }
    }
    let Some(authority) = uri.authority() else {
        return host.filter(|h| !h.is_empty()).cloned().ok_or(BadHead::MissingHost);
    };
    // Absolute form. HTTP/1.1 still requires a `Host` (RFC 9112 §3.2), which is then replaced.
    if host.is_none() && version == Version::HTTP_11 {
        return Err(BadHead::MissingHost);
    }
    let http = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"));
    if !http || !is_authority(authority.as_str().as_bytes()) {
        return Err(BadHead::InvalidTarget);
    }
    HeaderValue::from_str(authority.as_str()).map_err(|_| BadHead::InvalidTarget)
}

/// Whether `value` is `host[:port]` (RFC 9110 §7.2): a URI host, no userinfo, digits as port.
fn is_authority(value: &[u8]) -> bool {
    let Ok(authority) = http::uri::Authority::try_from(value) else {
        return false;
    };
    let text = authority.as_str();
    // `Authority` allows userinfo and any port text; `Host` allows neither.
    if text.contains('@') {
        return false;
    }
    match text[authority.host().len()..].strip_prefix(':') {
        Some(port) => port.bytes().all(|b| b.is_ascii_digit()),
        None => authority.host().len() == text.len(),
    }
}

/// Accepts no transfer coding, or exactly one `chunked`. hyper refuses a last coding other than
/// `chunked` itself, but passes `gzip, chunked` and `chunked, chunked`: it removes one chunked
/// layer and the backend would get the rest, undecoded and unlabeled, as the body.
fn check_transfer_encoding(headers: &HeaderMap) -> Result<(), BadHead> {
    let mut chunked = 0;
    for value in &headers.get_all(TRANSFER_ENCODING) {
        let codings = value.to_str().map_err(|_| BadHead::UnsupportedCoding)?;
        for coding in codings.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("chunked") {
                return Err(BadHead::UnsupportedCoding);
            }
            chunked += 1;
        }
    }
    match chunked {
        0 | 1 => Ok(()),
        _ => Err(BadHead::ChunkedTwice),
    }
}

/// The host a request is for, normalized for routing: no port, no trailing dot, lowercase.
/// `host` is what [`check_request`] returned.
pub(crate) fn routing_host(host: &HeaderValue) -> Option<Cow<'_, str>> {
    let raw = host.to_str().ok()?;
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

/// Headers that must not cross the proxy, as bits: the hop-by-hop ones (RFC 9110 §7.6.1),
/// and, in requests only, `Expect`, which the proxy answers itself, names with `_`, and
/// [`CLIENT_MAY_NOT_SET`].
const HOP_CONNECTION: u32 = 1;
const HOP_EXPECT: u32 = 1 << 7;
/// Any name containing `_`: not one header, so removed by a scan of its own.
const UNDERSCORE: u32 = 1 << 8;
/// The bit of `CLIENT_MAY_NOT_SET[0]`; the others follow it.
const FIRST_CLIENT_BIT: usize = 9;
/// The bits of [`CLIENT_MAY_NOT_SET`].
const CLIENT_SET: u32 = !((1 << FIRST_CLIENT_BIT) - 1);
/// Removed from requests only: a backend's response keeps these.
const REQUEST_ONLY: u32 = HOP_EXPECT | UNDERSCORE | CLIENT_SET;
const _: () = assert!(FIRST_CLIENT_BIT + CLIENT_MAY_NOT_SET.len() <= u32::BITS as usize, "one bit per name");

/// Headers that say what a proxy or CDN saw, which apps, their frameworks and libraries trust
/// for the client's address, scheme, port, host or path: Rack and Rails (`Client-IP`),
/// Flask's `ProxyFix`, Express, nginx's realip, `request-ip` (`X-Client-IP`,
/// `X-Cluster-Client-IP`), CDNs' own (`True-Client-IP`, `CF-Connecting-IP`,
/// `Fastly-Client-IP`), and the URL overrides of IIS and older Symfony (`X-Original-URL`,
/// `X-Rewrite-URL`). The proxy is the first hop, so a client sending these is lying; the proxy
/// sets the `X-Forwarded-For`, `-Proto` and `-Host` it knows and removes the rest.
pub(crate) static CLIENT_MAY_NOT_SET: [HeaderName; 16] = [
    HeaderName::from_static("forwarded"),
    HeaderName::from_static("x-real-ip"),
    HeaderName::from_static("x-forwarded-port"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-ssl"),
    HeaderName::from_static("x-forwarded-scheme"),
    HeaderName::from_static("x-forwarded-server"),
    HeaderName::from_static("x-forwarded-uri"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-client-ip"),
    HeaderName::from_static("x-cluster-client-ip"),
    HeaderName::from_static("client-ip"),
    HeaderName::from_static("true-client-ip"),
    HeaderName::from_static("cf-connecting-ip"),
    HeaderName::from_static("fastly-client-ip"),
];

fn hop_bit(name: &HeaderName) -> u32 {
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
        match CLIENT_MAY_NOT_SET.iter().position(|n| n == name) {
            Some(idx) => 1 << (FIRST_CLIENT_BIT + idx),
            None if name.as_str().contains('_') => UNDERSCORE,
            None => 0,
        }
    }
}

fn hop_name(bit: u32) -> &'static HeaderName {
    match bit {
        HOP_CONNECTION => &CONNECTION,
        0b10 => &TRANSFER_ENCODING,
        0b100 => &UPGRADE,
        0b1000 => &TE,
        0b1_0000 => &TRAILER,
        0b10_0000 => &KEEP_ALIVE,
        0b100_0000 => &PROXY_CONNECTION,
        HOP_EXPECT => &EXPECT,
        _ => &CLIENT_MAY_NOT_SET[bit.trailing_zeros() as usize - FIRST_CLIENT_BIT],
    }
}

/// Removes the headers in `remove` (a set of bits from [`hop_bit`]) and those the `Connection`
/// header names. One pass over the map finds them, so the common case (none present, or only
/// `Connection: keep-alive`) costs no hash lookups beyond the removals themselves.
fn remove_hop_by_hop(headers: &mut HeaderMap, remove: u32) {
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
    if found & UNDERSCORE != 0 {
        let named: Vec<HeaderName> = headers.keys().filter(|n| n.as_str().contains('_')).cloned().collect();
        for name in named {
            headers.remove(name);
        }
    }
    for shift in 0..(FIRST_CLIENT_BIT + CLIENT_MAY_NOT_SET.len()) {
        let bit = 1u32 << shift;
        if bit != UNDERSCORE && found & bit != 0 {
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
/// `upgrade` is the protocol from [`requested_upgrade`], kept across the hop; `host` is what
/// [`check_request`] returned, sent as both `Host` and `X-Forwarded-Host`.
pub(crate) fn to_upstream(
    headers: &mut HeaderMap,
    client: &Client,
    request_id: &HeaderValue,
    upgrade: Option<&HeaderValue>,
    host: HeaderValue,
) {
    // The proxy answers `Expect: 100-continue` itself when it starts reading the body.
    remove_hop_by_hop(headers, u32::MAX);
    // Room for the headers added below at once, rather than growing the map twice.
    headers.reserve(7);
    if let Some(protocol) = upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(UPGRADE, protocol.clone());
    }
    // `insert` replaces every value the client sent under these names.
    headers.insert(X_FORWARDED_FOR.clone(), client.ip.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    headers.insert(HOST, host);
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
}

/// Turns the backend's response headers into the client's. A `101 Switching Protocols` keeps
/// `Connection` and `Upgrade`: they are the point of it.
pub(crate) fn to_downstream(headers: &mut HeaderMap, switching_protocols: bool, request_id: &HeaderValue) {
    let upgrade = match switching_protocols {
        true => headers.get(UPGRADE).cloned(),
        false => None,
    };
    remove_hop_by_hop(headers, !REQUEST_ONLY);
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

    /// The client's id if it sent a usable one, else a new one. Usable means 1 to 200 ASCII
    /// letters, digits and `-_.:+/=` (UUIDs, base64, prefixed ids): an id that apps log and
    /// echo cannot carry spaces, quotes or bytes a log viewer would interpret.
    pub fn for_request(&self, headers: &HeaderMap) -> HeaderValue {
        match headers.get(&X_REQUEST_ID) {
            Some(id) if is_usable_request_id(id.as_bytes()) => id.clone(),
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

fn is_usable_request_id(id: &[u8]) -> bool {
    (1..=200).contains(&id.len()) && id.iter().all(|&b| b.is_ascii_alphanumeric() || b"-_.:+/=".contains(&b))
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

    /// Runs request headers through [`check_request`] (origin form) and [`to_upstream`] from
    /// client 10.0.0.9 with request id `rid`.
    fn check_upstream(input: &[(&str, &str)], expected: &str) {
        let mut map = headers(input);
        let upgrade = requested_upgrade(&map);
        let client = Client { ip: HeaderValue::from_static("10.0.0.9") };
        let host = check_request(Version::HTTP_11, &Method::GET, &Uri::from_static("/"), &map).unwrap();
        to_upstream(&mut map, &client, &HeaderValue::from_static("rid"), upgrade.as_ref(), host);
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
        // The proxy is the first hop: what a client says about earlier hops is not passed on.
        check_upstream(
            &[
                ("host", "a"),
                ("x-forwarded-for", "1.1.1.1"),
                ("x-forwarded-for", "2.2.2.2"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "evil"),
                ("forwarded", "for=1.1.1.1;proto=https"),
                ("x-real-ip", "1.1.1.1"),
                ("x-forwarded-port", "443"),
                ("x-forwarded-prefix", "/admin"),
                ("x-forwarded-ssl", "on"),
                ("x-forwarded-scheme", "https"),
                ("x-forwarded-server", "evil"),
                ("x-forwarded-uri", "/admin"),
                ("x-original-url", "/admin"),
                ("x-rewrite-url", "/admin"),
                ("x-client-ip", "1.1.1.1"),
                ("x-cluster-client-ip", "1.1.1.1"),
                ("client-ip", "1.1.1.1"),
                ("true-client-ip", "1.1.1.1"),
                ("cf-connecting-ip", "1.1.1.1"),
                ("fastly-client-ip", "1.1.1.1"),
            ],
            "
host: a
x-forwarded-for: 10.0.0.9
x-forwarded-host: a
x-forwarded-proto: http
x-request-id: rid",
        );
    }

    #[test]
    fn upstream_headers_drop_names_with_underscores() {
        // CGI and WSGI read `X_Real_IP` as `X-Real-IP`; hyper gives names in lowercase.
        check_upstream(
            &[
                ("host", "a"),
                ("x_forwarded_for", "1.1.1.1"),
                ("x_real_ip", "1.1.1.1"),
                ("x_forwarded_proto", "https"),
                ("x-forwarded_host", "evil"),
                ("x_request_id", "evil"),
                ("host_", "evil"),
                ("_", "1"),
                ("x-app-token", "kept"),
            ],
            "
host: a
x-app-token: kept
x-forwarded-for: 10.0.0.9
x-forwarded-host: a
x-forwarded-proto: http
x-request-id: rid",
        );
        // `Connection` naming one changes nothing.
        check_upstream(
            &[("host", "a"), ("connection", "x_a"), ("x_a", "1"), ("x_b", "2")],
            "
host: a
x-forwarded-for: 10.0.0.9
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
                ("proxy-connection", "keep-alive"),
                ("trailer", "x-sum"),
            ],
            "
host: a
x-forwarded-for: 10.0.0.9
x-forwarded-host: a
x-forwarded-proto: http
x-request-id: rid",
        );
        // `Connection` may not remove what the proxy sets.
        check_upstream(
            &[("host", "a"), ("connection", "host, x-forwarded-for, content-length"), ("content-length", "3")],
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
        // Only requests lose names with `_` and the proxy-set headers: a response keeps them.
        let input = [
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
            ("content-type", "text/plain"),
            ("x_app", "1"),
            ("x-real-ip", "1.1.1.1"),
        ];
        let id = HeaderValue::from_static("rid");
        let mut switching = headers(&input);
        to_downstream(&mut switching, true, &id);
        assert_eq!(
            render(&switching),
            "connection: upgrade\ncontent-type: text/plain\nupgrade: websocket\nx-real-ip: 1.1.1.1\nx-request-id: rid\nx_app: 1"
        );
        let mut plain = headers(&input);
        to_downstream(&mut plain, false, &id);
        assert_eq!(render(&plain), "content-type: text/plain\nx-real-ip: 1.1.1.1\nx-request-id: rid\nx_app: 1");
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
            assert_eq!(routing_host(&HeaderValue::from_str(host).unwrap()).as_deref(), expected, "{host:?}");
        }
    }

    /// Checks a request to `target` with headers `input`; renders the host or the error.
    fn check_head(version: Version, method: &str, target: &str, input: &[(&str, &str)], expected: &str) {
        let uri: Uri = target.parse().unwrap();
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let rendered = match check_request(version, &method, &uri, &headers(input)) {
            Ok(host) => format!("host {}", host.to_str().unwrap()),
            Err(bad) => format!("{bad:?}"),
        };
        assert_eq!(rendered, expected, "{method} {target} {input:?}");
    }

    #[test]
    fn check_request_takes_the_host_from_an_absolute_target_and_refuses_ambiguous_heads() {
        use Version as V;
        let h11 = V::HTTP_11;
        /// Version, method, target, headers, expected.
        type Case = (V, &'static str, &'static str, &'static [(&'static str, &'static str)], &'static str);
        let table: &[Case] = &[
            (h11, "GET", "/", &[("host", "a.localhost:8080")], "host a.localhost:8080"),
            (h11, "GET", "/", &[("host", "[::1]:80")], "host [::1]:80"),
            (h11, "GET", "/", &[("host", "a.localhost:")], "host a.localhost:"),
            (h11, "GET", "http://A.localhost:1/x", &[("host", "b.localhost")], "host A.localhost:1"),
            (h11, "GET", "http://a.localhost/", &[("host", "")], "host a.localhost"),
            (V::HTTP_10, "GET", "http://a.localhost/", &[], "host a.localhost"),
            (h11, "GET", "http://a.localhost/", &[], "MissingHost"),
            (h11, "GET", "/", &[], "MissingHost"),
            (h11, "GET", "/", &[("host", "")], "MissingHost"),
            (V::HTTP_10, "GET", "/", &[], "MissingHost"),
            (h11, "GET", "/", &[("host", "a"), ("host", "a")], "DuplicateHost"),
            (h11, "GET", "http://a/", &[("host", "a"), ("host", "b")], "DuplicateHost"),
            (h11, "GET", "/", &[("host", "a/b")], "InvalidHost"),
            (h11, "GET", "/", &[("host", "a b")], "InvalidHost"),
            (h11, "GET", "/", &[("host", "a:http")], "InvalidHost"),
            (h11, "GET", "/", &[("host", "a:1:2")], "InvalidHost"),
            (h11, "GET", "/", &[("host", "user@a")], "InvalidHost"),
            (h11, "GET", "/", &[("host", "[::1")], "InvalidHost"),
            (h11, "GET", "http://a/", &[("host", "a?")], "InvalidHost"),
            (h11, "GET", "http://user@a/", &[("host", "a")], "InvalidTarget"),
            (h11, "GET", "ftp://a/", &[("host", "a")], "InvalidTarget"),
            (h11, "CONNECT", "a.localhost:443", &[("host", "a.localhost:443")], "Connect"),
            (h11, "POST", "/", &[("host", "a"), ("transfer-encoding", "chunked")], "host a"),
            (h11, "POST", "/", &[("host", "a"), ("transfer-encoding", "gzip, chunked")], "UnsupportedCoding"),
            (h11, "POST", "/", &[("host", "a"), ("transfer-encoding", "chunked;x=1")], "UnsupportedCoding"),
            (h11, "POST", "/", &[("host", "a"), ("transfer-encoding", "chunked, chunked")], "ChunkedTwice"),
            (
                h11,
                "POST",
                "/",
                &[("host", "a"), ("transfer-encoding", "chunked"), ("transfer-encoding", "Chunked")],
                "ChunkedTwice",
            ),
        ];
        for &(version, method, target, input, expected) in table {
            check_head(version, method, target, input, expected);
        }
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
        for kept in ["abc", "3f9c1a02-b7e4-4c1a-9e0f-1a2b3c4d5e6f", "svc:req/1+2=="] {
            assert_eq!(ids.for_request(&headers(&[("x-request-id", kept)])), kept);
        }
        let long = "a".repeat(201);
        for replaced in ["", "a b", "a\"b", "<script>", "a\tb", long.as_str()] {
            assert_ne!(ids.for_request(&headers(&[("x-request-id", replaced)])), replaced, "{replaced:?}");
        }
    }
}
