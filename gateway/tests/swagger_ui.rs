//! The Swagger UI at `/api/docs/` in a real browser: headless Chromium, driven through
//! chromedriver by `fantoccini`, against the gateway served on a socket (a gateway without
//! nodes: the page needs only the document). The page loads from the binary alone (every
//! resource it fetches is on the gateway's origin) and lists every operation of
//! `/api/openapi.json`, each under its method and path.
//!
//! Needs Debian's `chromium` and `chromium-driver` (or `CHROME_BIN` and `CHROMEDRIVER`);
//! without them the test fails under `CI=true` and elsewhere says SKIPPED and passes without
//! running.

mod browser;
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use browser::{browser_tools_or_skip, Browser};
use common::*;
use fantoccini::Client;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swagger_ui_loads_offline_and_lists_every_operation() {
    let Some((chromium, chromedriver)) = browser_tools_or_skip("swagger_ui") else {
        return;
    };

    let (state, _app, _bus, _m) = offline_gateway("swagger-ui", Duration::from_millis(200)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, instaface_gateway::service(state)).await.expect("serve");
    });

    // The operations the document lists, as (METHOD, path).
    let http = reqwest::Client::new();
    let doc: Value = http.get(format!("{base}/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    let mut want = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            want.insert((method.to_uppercase(), path.clone()));
        }
    }
    assert!(want.len() >= 19, "{want:?}");
    // /api/docs redirects to the page.
    let redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{base}/api/docs"))
        .send()
        .await
        .unwrap();
    assert!(redirect.status().is_redirection(), "{}", redirect.status());

    let browser = Browser::start(&chromium, &chromedriver, (1280, 900)).await;
    let result = check_page(&browser.client, &base, &want).await;
    if result.is_err() {
        if let Ok(png) = browser.client.screenshot().await {
            let dir = instaface_testkit::bin_dir().join("../artifacts");
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join("swagger-ui-failed.png"), png);
        }
    }
    browser.quit().await;
    server.abort();
    if let Err(e) = result {
        panic!("{e}");
    }
}

async fn check_page(client: &Client, base: &str, want: &BTreeSet<(String, String)>) -> Result<(), String> {
    client.goto(&format!("{base}/api/docs/")).await.map_err(|e| format!("opening the page: {e}"))?;
    // Wait until Swagger UI has rendered every operation block.
    let script = "return Array.from(document.querySelectorAll('.opblock')).map(b => { \
        const m = b.querySelector('.opblock-summary-method'); \
        const p = b.querySelector('.opblock-summary-path'); \
        return [m ? m.innerText : '', p ? (p.getAttribute('data-path') || p.innerText) : '']; });";
    let deadline = Instant::now() + Duration::from_secs(30);
    let shown: BTreeSet<(String, String)> = loop {
        let v = client.execute(script, Vec::new()).await.map_err(|e| e.to_string())?;
        let shown: BTreeSet<(String, String)> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| Some((b[0].as_str()?.trim().to_uppercase(), b[1].as_str()?.to_string())))
            .collect();
        if shown.len() >= want.len() || Instant::now() >= deadline {
            break shown;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if &shown != want {
        let title =
            client.execute("return document.title + ' / ' + document.body.innerText.slice(0, 400)", Vec::new()).await;
        return Err(format!(
            "the page lists other operations than the document\nmissing: {:?}\nextra: {:?}\npage: {title:?}",
            want.difference(&shown).collect::<Vec<_>>(),
            shown.difference(want).collect::<Vec<_>>()
        ));
    }
    // The document's title is shown, and nothing was fetched from another origin.
    let title = client
        .execute("return document.querySelector('.info .title')?.innerText || ''", Vec::new())
        .await
        .map_err(|e| e.to_string())?;
    if !title.as_str().unwrap_or("").contains("Instaface") {
        return Err(format!("no Instaface title: {title}"));
    }
    let foreign = client
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)\
                .filter(n => !n.startsWith(location.origin) && !n.startsWith('data:'))",
            Vec::new(),
        )
        .await
        .map_err(|e| e.to_string())?;
    if foreign != json!([]) {
        return Err(format!("the page fetched from other origins: {foreign}"));
    }
    Ok(())
}
