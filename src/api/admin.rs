//! The admin page on the API's listener (`GET /admin`, docs/API.md): its files, compiled into
//! the binary (`crate::web`), served as the chat page's are (an `ETag` with `Cache-Control:
//! no-cache`, 304 for a copy that is current, the same security headers).
//!
//! They are served without a key: the page holds no secret and asks the operator for the key,
//! which its every request to `/api/` then carries. Serving them cannot tell anyone more than
//! the binary does.

use super::wire::{Reply, Request};
use crate::web;

/// The reply to a request for one of the admin page's files, or `None` when `request` names
/// none of them (it is the API's).
pub fn serve(request: &Request) -> Option<Reply> {
    let asset = web::admin_asset(&request.path)?;
    if request.method != "GET" && request.method != "HEAD" {
        return Some(Reply { allow: Some("GET, HEAD"), ..Reply::error(405, "only GET and HEAD here") });
    }
    let current = asset.is_current(request.if_none_match.as_deref());
    let mut headers = vec![("Cache-Control", "no-cache".to_string()), ("ETag", asset.etag.to_string())];
    // The API speaks plain HTTP, and the page connects only to its own origin ('self').
    headers.extend(web::security_headers(None, false));
    Some(Reply {
        status: if current { 304 } else { 200 },
        body: String::from_utf8_lossy(asset.body).into_owned(),
        allow: None,
        content_type: asset.content_type,
        headers,
        head_only: request.method == "HEAD",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::wire::{parse, Parsed};

    fn reply(head: &str) -> Option<String> {
        let Parsed::Complete(request, _) = parse(head.as_bytes()) else { panic!("{head}") };
        serve(&request).map(|reply| String::from_utf8(reply.encode(true)).unwrap())
    }

    #[test]
    fn the_page_is_html_under_the_chat_pages_policy_without_a_key() {
        let page = reply("GET /admin HTTP/1.1\r\n\r\n").unwrap();
        assert!(page.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"), "{page}");
        assert!(page.contains("Content-Security-Policy: default-src 'none'; script-src 'self';"));
        assert!(page.contains("X-Frame-Options: DENY\r\n") && page.contains("Cache-Control: no-cache\r\n"));
        assert!(!page.contains("no-store") && page.ends_with("</html>\n"), "the file as it is");
        let length = web::admin_asset("/admin").unwrap().body.len();
        assert!(page.contains(&format!("Content-Length: {length}\r\n")));
        let script = reply("GET /admin.js HTTP/1.1\r\n\r\n").unwrap();
        assert!(script.contains("Content-Type: text/javascript; charset=utf-8\r\n"));
        let icon = reply("GET /favicon.svg HTTP/1.1\r\n\r\n").unwrap();
        assert!(icon.contains("Content-Type: image/svg+xml\r\n"));
        assert_eq!(reply("GET /api/stats HTTP/1.1\r\n\r\n"), None);
        assert_eq!(reply("GET / HTTP/1.1\r\n\r\n"), None, "the chat page is the chat's listener's");
    }

    #[test]
    fn head_304_and_other_methods() {
        let head = reply("HEAD /admin.css HTTP/1.1\r\n\r\n").unwrap();
        let length = web::admin_asset("/admin.css").unwrap().body.len();
        assert!(head.contains(&format!("Content-Length: {length}\r\n")) && head.ends_with("\r\n\r\n"));
        let etag = web::admin_asset("/admin").unwrap().etag;
        let cached = reply(&format!("GET /admin HTTP/1.1\r\nIf-None-Match: {etag}\r\n\r\n")).unwrap();
        assert!(cached.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{cached}");
        assert!(cached.ends_with("\r\n\r\n") && !cached.contains("Content-Length"));
        assert!(cached.contains(&format!("ETag: {etag}\r\n")));
        let stale = reply("GET /admin HTTP/1.1\r\nIf-None-Match: \"old\"\r\n\r\n").unwrap();
        assert!(stale.starts_with("HTTP/1.1 200 OK\r\n"));
        let post = reply("POST /admin HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert!(
            post.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && post.contains("Allow: GET, HEAD\r\n")
        );
        assert!(post.contains("Content-Type: application/json\r\n"), "an error is JSON, as the API's");
    }
}
