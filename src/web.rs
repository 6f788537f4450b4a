//! The browser pages, compiled into the binary (no CDN, no build step, works offline), with the
//! headers they are served with: the chat page (HTML, CSS, JavaScript and icon, served by the
//! chat's listener, `http.rs`) and the admin page (served by the API's listener,
//! `api/admin.rs`, under the same policy; it shares the chat page's style and icon).
//!
//! The files live in `src/web/`. Each has a strong `ETag` computed at compile time, so browsers
//! revalidate cheaply (`Cache-Control: no-cache` + `If-None-Match` → 304) and always get the
//! page of the server they talk to after an upgrade.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
    pub etag: &'static str,
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:literal) => {{
        const BODY: &[u8] = include_bytes!(concat!("web/", $file));
        const ETAG_BYTES: [u8; 18] = etag_of(BODY);
        const ETAG: &str = match std::str::from_utf8(&ETAG_BYTES) {
            Ok(text) => text,
            Err(_) => panic!("an ETag is ASCII"),
        };
        Asset { path: $path, content_type: $type, body: BODY, etag: ETAG }
    }};
}

static ASSETS: [Asset; 4] = [
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/app.js", "app.js", "text/javascript; charset=utf-8"),
    asset!("/style.css", "style.css", "text/css; charset=utf-8"),
    asset!("/favicon.svg", "favicon.svg", "image/svg+xml"),
];

static ADMIN_ASSETS: [Asset; 3] = [
    asset!("/admin", "admin.html", "text/html; charset=utf-8"),
    asset!("/admin.js", "admin.js", "text/javascript; charset=utf-8"),
    asset!("/admin.css", "admin.css", "text/css; charset=utf-8"),
];

/// The embedded file served at `path`, if any. `/index.html` is the page too, for links and
/// tools that name the file.
pub fn asset(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS.iter().find(|asset| asset.path == path)
}

/// The admin page's file served at `path`, if any: its own three, and the chat page's style
/// (the palette and controls, said once) and icon.
pub fn admin_asset(path: &str) -> Option<&'static Asset> {
    let shared = || asset(path).filter(|asset| ["/style.css", "/favicon.svg"].contains(&asset.path));
    ADMIN_ASSETS.iter().find(|asset| asset.path == path).or_else(shared)
}

impl Asset {
    /// Whether a browser that sent `If-None-Match: if_none_match` has this file as it is now
    /// (a 304 will do).
    pub fn is_current(&self, if_none_match: Option<&str>) -> bool {
        if_none_match
            .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == self.etag || tag.trim() == "*"))
    }
}

/// Headers sent with every page response. The policy lets the page run only its own script and
/// style, connect only back to this server (`connect-src 'self'` covers `ws:`/`wss:` to the same
/// host in CSP 3; the explicit sources cover older browsers), and never be framed. Over TLS the
/// browser is also told to use only https:// for this host from now on (HSTS, one year).
pub fn security_headers(host: Option<&str>, secure: bool) -> Vec<(&'static str, String)> {
    let mut connect = String::from("'self'");
    if let Some(host) = host.filter(|h| is_plain_host(h)) {
        connect.push_str(&format!(" ws://{host} wss://{host}"));
    }
    vec![
        (
            "Content-Security-Policy",
            format!(
                "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                 connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
            ),
        ),
        ("X-Content-Type-Options", "nosniff".into()),
        ("X-Frame-Options", "DENY".into()),
        ("Referrer-Policy", "no-referrer".into()),
        ("Cross-Origin-Opener-Policy", "same-origin".into()),
        ("Cross-Origin-Resource-Policy", "same-origin".into()),
    ]
    .into_iter()
    .chain(secure.then(|| ("Strict-Transport-Security", "max-age=31536000".to_string())))
    .collect()
}

/// A `Host` value safe to repeat inside a header: name or address, optional port.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// `"` + 16 hex digits of the FNV-1a hash of `body` + `"`, computed at compile time.
const fn etag_of(body: &[u8]) -> [u8; 18] {
    let mut buf = [0u8; 18];
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < body.len() {
        hash ^= body[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    buf[0] = b'"';
    buf[17] = b'"';
    let mut digit = 0;
    while digit < 16 {
        buf[1 + digit] = HEX[((hash >> (60 - 4 * digit)) & 0xf) as usize];
        digit += 1;
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_served_with_a_distinct_etag() {
        for path in ["/", "/app.js", "/style.css", "/favicon.svg"] {
            let asset = asset(path).unwrap();
            assert!(!asset.body.is_empty());
            assert_eq!(asset.etag.len(), 18);
        }
        assert_ne!(asset("/").unwrap().etag, asset("/app.js").unwrap().etag);
        assert!(std::ptr::eq(asset("/index.html").unwrap(), asset("/").unwrap()));
        assert!(asset("/app.js.html").is_none() && asset("/index.htm").is_none());
    }

    #[test]
    fn the_admin_page_has_its_own_files_and_the_chat_pages_style_and_icon() {
        for path in ["/admin", "/admin.js", "/admin.css"] {
            let admin = admin_asset(path).unwrap();
            assert!(!admin.body.is_empty() && asset(path).is_none(), "{path} is the admin page's alone");
        }
        for shared in ["/style.css", "/favicon.svg"] {
            assert!(std::ptr::eq(admin_asset(shared).unwrap(), asset(shared).unwrap()));
        }
        assert!(
            admin_asset("/").is_none()
                && admin_asset("/app.js").is_none()
                && admin_asset("/admin/").is_none()
        );
        let html = std::str::from_utf8(admin_asset("/admin").unwrap().body).unwrap();
        assert!(html.contains(r#"<script src="/admin.js" defer></script>"#));
        assert!(!html.contains("http://") && !html.contains("https://"), "no external resources");
        assert!(!html.contains("<script>") && !html.contains("<style") && !html.contains(" style="));
    }

    #[test]
    fn a_current_etag_is_any_one_listed_or_a_star() {
        let page = asset("/").unwrap();
        assert!(page.is_current(Some(&format!("\"x\", {}", page.etag))) && page.is_current(Some("*")));
        assert!(!page.is_current(Some("\"x\"")) && !page.is_current(None));
    }

    #[test]
    fn the_page_loads_only_its_own_files() {
        let html = std::str::from_utf8(asset("/").unwrap().body).unwrap();
        assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
        assert!(!html.contains("http://") && !html.contains("https://"), "no external resources");
        assert!(!html.contains("<script>"), "no inline script: the CSP would block it");
    }

    #[test]
    fn csp_names_the_host_only_when_it_is_plain() {
        let csp = |host| security_headers(host, false).into_iter().next().unwrap().1;
        assert!(csp(Some("127.0.0.1:9001"))
            .contains("connect-src 'self' ws://127.0.0.1:9001 wss://127.0.0.1:9001;"));
        assert!(csp(Some("evil; script-src *")).contains("connect-src 'self';"));
        assert!(csp(None).contains("script-src 'self';"));
    }
}
