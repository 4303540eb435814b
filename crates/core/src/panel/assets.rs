//! The panel's pages, built into the library from `web/panel/`: every server serves the same
//! bytes with no file of its own to install, and nothing is loaded from elsewhere (no CDN, font
//! or outside script; the Content-Security-Policy says so to the browser as well).

use super::{security_headers, Response};

/// `(path, content type, content)` of every file of the panel.
pub const FILES: [(&str, &str, &str); 3] = [
    ("/", "text/html; charset=utf-8", include_str!("../../../../web/panel/index.html")),
    ("/panel.js", "text/javascript; charset=utf-8", include_str!("../../../../web/panel/panel.js")),
    ("/panel.css", "text/css; charset=utf-8", include_str!("../../../../web/panel/panel.css")),
];

pub(crate) fn serve(path: &str) -> Response {
    let mut headers = security_headers();
    match FILES.iter().find(|(p, _, _)| *p == path) {
        Some((_, content_type, content)) => {
            headers.insert("content-type".into(), (*content_type).into());
            headers.insert("cache-control".into(), "no-cache".into());
            Response { status: 200, headers, body: (*content).to_string() }
        }
        None => {
            headers.insert("content-type".into(), "text/plain; charset=utf-8".into());
            Response { status: 404, headers, body: "not found\n".into() }
        }
    }
}
