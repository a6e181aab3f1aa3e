//! The monitor UI: every file of `monitor-ui/`, embedded at compile time by `build.rs`, and
//! the content type each is served with. Without an `index.html` there, `/` serves a small
//! placeholder page that points at the API.

include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));

/// Served at `/` when `monitor-ui/` has no `index.html`.
const PLACEHOLDER: &[u8] = b"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Instaface</title></head>\n\
<body><h1>Instaface</h1><p>The monitor UI was not built into this gateway.</p>\n\
<p>API: <a href=\"/api/cluster\">/api/cluster</a>, <a href=\"/api/openapi.json\">/api/openapi.json</a>, \
events on the websocket <code>/api/events</code>.</p></body></html>\n";

/// The embedded file at `path` (relative, `/`-separated; `""` is `index.html`).
pub fn file(path: &str) -> Option<(&'static [u8], &'static str)> {
    let path = if path.is_empty() { "index.html" } else { path };
    let found = FILES.iter().find(|(name, _)| *name == path).map(|(_, bytes)| *bytes);
    let bytes = match (found, path) {
        (Some(b), _) => b,
        (None, "index.html") => PLACEHOLDER,
        (None, _) => return None,
    };
    Some((bytes, content_type(path)))
}

/// The paths of every embedded file.
pub fn paths() -> impl Iterator<Item = &'static str> {
    FILES.iter().map(|(name, _)| *name)
}

/// The content type for a file name, by extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "txt" | "md" => "text/plain; charset=utf-8",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_is_always_there() {
        let (bytes, ct) = file("").unwrap();
        assert!(!bytes.is_empty());
        assert_eq!(ct, "text/html; charset=utf-8");
        assert!(file("no/such/file.js").is_none());
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("style.CSS"), "text/css; charset=utf-8");
        assert_eq!(content_type("x"), "application/octet-stream");
    }
}
