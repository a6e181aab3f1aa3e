//! Test support for the tests that drive a real browser: finding Chromium and chromedriver,
//! starting chromedriver on a port of its own and a headless Chromium session through it
//! (`fantoccini`), and ending both, after a panic too. A test adds the page-specific helpers
//! it needs in an `impl Browser` of its own.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::error::NewSessionError;
use fantoccini::{Client, ClientBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

/// Chromium and chromedriver for `test`; when they are missing, the test says SKIPPED (and
/// fails under `CI=true`, [`instaface_testkit::skip_or_fail_in_ci`]) and gets `None`.
pub fn browser_tools_or_skip(test: &str) -> Option<(PathBuf, PathBuf)> {
    let tools = browser_tools();
    if tools.is_none() {
        instaface_testkit::skip_or_fail_in_ci(
            test,
            "chromium and chromedriver are not installed \
             (apt-get install chromium chromium-driver, or set CHROME_BIN and CHROMEDRIVER)",
        );
    }
    tools
}

/// Chromium and chromedriver, from `CHROME_BIN`/`CHROMEDRIVER` or the PATH.
pub fn browser_tools() -> Option<(PathBuf, PathBuf)> {
    let from_env = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_file());
    let chromium = from_env("CHROME_BIN")
        .or_else(|| ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|n| on_path(n)))?;
    let driver = from_env("CHROMEDRIVER").or_else(|| on_path("chromedriver"))?;
    Some((chromium, driver))
}

pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(name)).find(|p| p.is_file())
}

pub use instaface_testkit::free_port;

/// Kills the child on drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A WebDriver session on headless Chromium, through chromedriver (started here, on a port
/// of its own).
pub struct Browser {
    pub client: Client,
    /// chromedriver's address.
    driver_url: String,
    /// The session while it is open: dropping the browser (after a panic) still ends it.
    session: Option<String>,
    _driver: Reaped,
}

impl Browser {
    /// Starts chromedriver and opens a session on headless Chromium with a window of
    /// `window` (width, height) pixels.
    pub async fn start(chromium: &Path, chromedriver: &Path, window: (u32, u32)) -> Browser {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let driver = Reaped(driver);
        let driver_url = format!("http://127.0.0.1:{port}");
        let (width, height) = window;
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-background-networking", format!("--window-size={width},{height}"),
                         "--hide-scrollbars"]
            }
        });
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps.as_object().cloned().expect("capabilities are an object"));
        // chromedriver takes a moment to listen: retry while it cannot be reached, not when
        // it refuses the session.
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            match builder.connect(&driver_url).await {
                Ok(client) => break client,
                Err(e @ (NewSessionError::Failed(_) | NewSessionError::FailedC(_) | NewSessionError::Lost(_))) => {
                    assert!(Instant::now() < deadline, "chromedriver did not start within 20 s: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("chromedriver refused a session: {e}"),
            }
        };
        let session = client.session_id().await.ok().flatten();
        Browser { client, driver_url, session, _driver: driver }
    }

    /// Ends the session; chromedriver is killed when the browser is dropped.
    pub async fn quit(mut self) {
        let _ = self.client.clone().close().await;
        self.session = None;
    }
}

impl Drop for Browser {
    /// After a panic, ends the session too: killing chromedriver alone can leave Chromium
    /// running. On a thread and runtime of its own (this runs inside the test's runtime),
    /// best effort, bounded.
    fn drop(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        let url = self.driver_url.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let end = async {
                    let client = Client::with_existing_session(&url, &session, HttpConnector::new()).await.ok()?;
                    client.close().await.ok()
                };
                tokio::time::timeout(Duration::from_secs(5), end).await.ok().flatten()
            })
        })
        .join();
    }
}
